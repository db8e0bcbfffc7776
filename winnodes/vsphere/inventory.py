"""Lookups through the property collector: one round trip per question, only the properties needed.

Attribute access on a pyvmomi object (`vm.runtime.powerState`) is one SOAP call per access and, on
old simulators, crashed connections on unset properties (field notes). Everything here asks the
property collector for named properties of many objects at once (`RetrievePropertiesEx` over a
`ContainerView`), and returns plain dicts. Lookups with a known place use the `SearchIndex` (one
call: `FindByInventoryPath`, `FindChild`) and fall back to a view only where names may sit deeper.

Names are not identities: two VMs may share a name in different folders. A lookup by name that finds
more than one object raises `Conflict` ("ambiguous"), never "takes the first".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from winnodes import errors
from winnodes.vsphere.faults import boundary
from winnodes.vsphere.session import VSphereSession

PC = vmodl.query.PropertyCollector


@dataclass(frozen=True)
class Found:
    """An object found by a lookup and the properties that were asked for."""

    obj: Any
    props: dict[str, Any]

    @property
    def moid(self) -> str:
        return str(self.obj._moId)


def _collect(session: VSphereSession, spec: Any, props: Sequence[str]) -> list[Found]:
    """Run a filter spec; unset properties (which vCenter omits) come back as None."""
    pc = session.content.propertyCollector
    out: list[Found] = []
    result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    while result is not None:
        for oc in result.objects or []:
            values: dict[str, Any] = dict.fromkeys(props)
            values.update({p.name: p.val for p in oc.propSet or []})
            out.append(Found(oc.obj, values))
        if not result.token:
            break
        result = pc.ContinueRetrievePropertiesEx(result.token)
    return out


def retrieve(session: VSphereSession, objs: Iterable[Any], props: Sequence[str]) -> list[Found]:
    """Properties of known objects (all of one managed type) in one call."""
    objs = list(objs)
    if not objs:
        return []
    with boundary(action="read properties"):
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=o, skip=False) for o in objs],
            propSet=[PC.PropertySpec(type=type(objs[0]), pathSet=list(props))],
        )
        return _collect(session, spec, props)


def retrieve_each(
    session: VSphereSession, wanted: Sequence[tuple[Any, Sequence[str]]]
) -> list[dict[str, Any]]:
    """Properties of several objects, of any types, in one round trip: one dict per (object,
    properties) pair, in order. NotFound if one of them no longer exists."""
    specs: dict[type, list[str]] = {}
    for obj, props in wanted:
        paths = specs.setdefault(type(obj), [])
        paths += [p for p in props if p not in paths]
    with boundary(action="read properties"):
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=o, skip=False) for o, _ in wanted],
            propSet=[PC.PropertySpec(type=t, pathSet=paths) for t, paths in specs.items()],
        )
        found = {f.moid: f.props for f in _collect(session, spec, [])}
    out = []
    for obj, props in wanted:
        if obj._moId not in found:
            raise errors.NotFound(f"{obj._moId} no longer exists")
        values = dict.fromkeys(props)
        values.update({k: v for k, v in found[obj._moId].items() if k in props})
        out.append(values)
    return out


def properties(session: VSphereSession, obj: Any, props: Sequence[str]) -> dict[str, Any]:
    """Properties of one object; NotFound if it no longer exists."""
    found = retrieve(session, [obj], props)
    if not found:
        raise errors.NotFound(f"{obj._moId} no longer exists")
    return found[0].props


def contents(
    session: VSphereSession,
    root: Any,
    obj_type: type,
    props: Sequence[str],
    *,
    recursive: bool = True,
) -> list[Found]:
    """Every `obj_type` under `root` (a folder, datacenter, cluster...) with `props`, one view."""
    with boundary(action=f"list {obj_type.__name__} objects"):
        view = session.content.viewManager.CreateContainerView(root, [obj_type], recursive)
        try:
            spec = PC.FilterSpec(
                objectSet=[
                    PC.ObjectSpec(
                        obj=view,
                        skip=True,
                        selectSet=[PC.TraversalSpec(type=vim.view.ContainerView, path="view")],
                    )
                ],
                propSet=[PC.PropertySpec(type=obj_type, pathSet=list(props))],
            )
            return _collect(session, spec, props)
        finally:
            view.DestroyView()


def _one(found: list[Found], what: str, where: str) -> Found:
    if not found:
        raise errors.NotFound(f"{what} not found in {where}")
    if len(found) > 1:
        ids = ", ".join(f.moid for f in found)
        raise errors.Conflict(f"{what} is ambiguous in {where}: {len(found)} objects ({ids})")
    return found[0]


def by_name(
    session: VSphereSession,
    root: Any,
    obj_type: type,
    name: str,
    props: Sequence[str] = (),
    *,
    recursive: bool = True,
) -> Found:
    """The single `obj_type` called `name` under `root`. NotFound / Conflict (ambiguous)."""
    found = contents(session, root, obj_type, ["name", *props], recursive=recursive)
    where = getattr(root, "_moId", "inventory")
    return _one(
        [f for f in found if f.props.get("name") == name], f"{obj_type.__name__} {name!r}", where
    )


def find_by_path(session: VSphereSession, path: str, obj_type: type | None = None) -> Any:
    """The object at an inventory path (`/dc1/vm/golden/win-base`); NotFound when absent, Conflict
    when it is not of `obj_type`."""
    with boundary(action=f"find {path}"):
        index = session.content.searchIndex
        obj = index.FindByInventoryPath("/" + path.strip("/"))
    if obj is None:
        raise errors.NotFound(f"no inventory object at {path}")
    if obj_type is not None and not isinstance(obj, obj_type):
        raise errors.Conflict(f"{path} is a {type(obj).__name__}, not a {obj_type.__name__}")
    return obj


def find_path_or_none(session: VSphereSession, path: str, obj_type: type) -> Any:
    """The `obj_type` at an inventory path, or None (absent or of another type): one SearchIndex
    call, for the fast path of lookups by name that fall back to a view."""
    try:
        return find_by_path(session, path, obj_type)
    except (errors.NotFound, errors.Conflict):
        return None


def datacenter(session: VSphereSession, name: str) -> Any:
    """A datacenter by name: at the root (one SearchIndex call), else in a folder under the root."""
    if "/" not in name and (dc := find_path_or_none(session, f"/{name}", vim.Datacenter)):
        return dc
    return by_name(session, session.content.rootFolder, vim.Datacenter, name).obj


def folder(session: VSphereSession, path: str) -> Any:
    """A VM folder by inventory path (`/dc1/vm/golden-images`)."""
    return find_by_path(session, path, vim.Folder)


def vm_in_folder(
    session: VSphereSession, folder_obj: Any, name: str, props: Sequence[str] = ()
) -> Found | None:
    """The VM or template called `name` directly in `folder_obj`, or None: `SearchIndex.FindChild`
    (vCenter keeps names unique within a folder) and one read of `props`, two round trips
    whatever the folder holds."""
    with boundary(action=f"find {name} in {folder_obj._moId}"):
        obj = session.content.searchIndex.FindChild(folder_obj, name)
    if obj is None or not isinstance(obj, vim.VirtualMachine):
        return None
    try:
        return Found(obj, properties(session, obj, ["name", *props]))
    except errors.NotFound:  # deleted in between
        return None


def vm(session: VSphereSession, name_or_path: str, props: Sequence[str] = ()) -> Found:
    """A VM/template by inventory path (contains '/') or by name anywhere (must be unique)."""
    if "/" in name_or_path:
        obj = find_by_path(session, name_or_path, vim.VirtualMachine)
        return Found(obj, properties(session, obj, ["name", *props]))
    return by_name(session, session.content.rootFolder, vim.VirtualMachine, name_or_path, props)


def datastore(session: VSphereSession, dc: Any, name: str) -> Any:
    """A datastore of datacenter `dc` by name."""
    return by_name(session, _prop(session, dc, "datastoreFolder"), vim.Datastore, name).obj


def cluster(session: VSphereSession, dc: Any, name: str) -> Any:
    """A compute cluster of `dc` by name."""
    return by_name(session, _prop(session, dc, "hostFolder"), vim.ClusterComputeResource, name).obj


def cluster_pool(session: VSphereSession, dc: Any, name: str) -> Any:
    """The root resource pool of a cluster (where VMs go unless a pool is named)."""
    return _prop(session, cluster(session, dc, name), "resourcePool")


def resource_pool(session: VSphereSession, path: str) -> Any:
    """A resource pool by inventory path (`/dc1/host/cluster1/Resources/images`)."""
    return find_by_path(session, path, vim.ResourcePool)


@dataclass(frozen=True)
class Network:
    """A network a NIC can attach to: a standard port group or a distributed port group."""

    obj: Any
    name: str
    portgroup_key: str | None = None  # distributed port groups only
    switch_uuid: str | None = None

    @property
    def distributed(self) -> bool:
        return self.portgroup_key is not None


def network(session: VSphereSession, dc: Any, name: str) -> Network:
    """A network of `dc` by name; for a distributed port group, its key and its switch's UUID."""
    net = by_name(session, _prop(session, dc, "networkFolder"), vim.Network, name)
    if isinstance(net.obj, vim.dvs.DistributedVirtualPortgroup):
        pg = properties(session, net.obj, ["key", "config.distributedVirtualSwitch"])
        dvs = pg["config.distributedVirtualSwitch"]
        uuid = properties(session, dvs, ["uuid"])["uuid"]
        return Network(net.obj, name, portgroup_key=pg["key"], switch_uuid=uuid)
    return Network(net.obj, name)


def _prop(session: VSphereSession, obj: Any, name: str) -> Any:
    return properties(session, obj, [name])[name]


def datastore_file_exists(session: VSphereSession, ds_path: str, *, timeout: float = 120) -> bool:
    """Whether `[datastore] dir/file.iso` exists (HostDatastoreBrowser search of its directory)."""
    from winnodes.vsphere.waits import wait_for_task

    ds_name, rel = split_ds_path(ds_path)
    directory, _, filename = rel.rpartition("/")
    browser = session.memo(
        ("datastore-browser", ds_name),
        lambda: by_name(
            session, session.content.rootFolder, vim.Datastore, ds_name, ["browser"]
        ).props["browser"],
    )
    spec = vim.host.DatastoreBrowser.SearchSpec(matchPattern=[filename])
    with boundary(action=f"search {ds_path}"):
        task = browser.SearchDatastore_Task(
            datastorePath=f"[{ds_name}] {directory}", searchSpec=spec
        )
    try:
        result = wait_for_task(session, task, timeout=timeout)
    except errors.NotFound:
        return False  # the directory itself does not exist
    return any(f.path == filename for f in (getattr(result, "file", None) or []))


def split_ds_path(ds_path: str) -> tuple[str, str]:
    """`[LocalDS_0] iso/win.iso` -> ("LocalDS_0", "iso/win.iso")."""
    text = ds_path.strip()
    if not text.startswith("[") or "]" not in text:
        raise errors.ConfigError(f"{ds_path!r} is not a datastore path like '[datastore] dir/file'")
    name, _, rest = text[1:].partition("]")
    return name, rest.strip().lstrip("/")
