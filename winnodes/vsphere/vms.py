"""VM operations for the golden image (G1, G8, G10): each reads first, then converges.

Identity: a VM this product creates or clones carries its *build ID* from birth, in the extraConfig
key `winnodes.build` of the CreateVM spec / the clone spec's `config`, so the marker exists as soon as
the VM does and there is no window in which a VM of ours is unmarked. An existing VM of the requested
name is returned only when it carries the same build ID; otherwise the operation raises `Conflict`
rather than adopt or overwrite someone else's VM. Why extraConfig and not the annotation or a custom
attribute: custom attributes cannot be part of a clone spec; the annotation is free text people edit
in the UI (and vcsim drops a clone spec's annotation); extraConfig is copied with the VM, set
atomically by both CreateVM and CloneVM, and not shown for casual editing. Custom attributes and the
annotation still carry provenance for humans (G10). Lookups use the name *in the target folder*,
which vCenter keeps unique.

In-flight tasks: operations that start a vCenter task accept `resume_task` (a task ID saved by an
earlier run) and `on_task` (called with the new task's ID right after it starts, to be persisted).
A resumed run that finds its task still queued/running waits on it instead of starting a second one.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pyVmomi import vim

from winnodes import errors
from winnodes.vsphere import inventory
from winnodes.vsphere.faults import boundary
from winnodes.vsphere.inventory import Network, split_ds_path
from winnodes.vsphere.session import VSphereSession
from winnodes.vsphere.waits import task_state, wait_for_power_state, wait_for_task

BUILD_KEY = "winnodes.build"
#: The flow run that made a clone (G8), so that a later build can tell an abandoned one.
FLOW_RUN_KEY = "winnodes.flowrun"
VM_PROPS = (
    "name",
    "config.extraConfig",
    "config.template",
    "runtime.powerState",
    "config.version",
)

OnTask = Callable[[str], None]


# -- identity (pure) -------------------------------------------------------------------------------
def build_of(extra_config: Sequence[Any] | None) -> str | None:
    """The build ID in a VM's `config.extraConfig` (OptionValue list), or None."""
    for opt in extra_config or []:
        if getattr(opt, "key", None) == BUILD_KEY:
            value = getattr(opt, "value", None)
            return str(value) if value else None
    return None


def build_option(build_id: str) -> Any:
    return vim.option.OptionValue(key=BUILD_KEY, value=build_id)


def flow_run_of(extra_config: Sequence[Any] | None) -> str | None:
    """The flow run recorded in a clone's `config.extraConfig` at G8, or None."""
    for opt in extra_config or []:
        if getattr(opt, "key", None) == FLOW_RUN_KEY:
            value = getattr(opt, "value", None)
            return str(value) if value else None
    return None


@dataclass(frozen=True)
class VmRef:
    """A VM or template as the operations return it."""

    obj: Any
    name: str
    build_id: str | None
    created: bool  # True when this call created it, False when it already existed
    template: bool = False
    power_state: str | None = None
    hardware_version: str | None = None
    flow_run: str | None = None  # the flow run that made it (clones, G8)

    @property
    def moid(self) -> str:
        return str(self.obj._moId)


def _ref(found: inventory.Found, created: bool) -> VmRef:
    p = found.props
    return VmRef(
        obj=found.obj,
        name=p.get("name", ""),
        build_id=build_of(p.get("config.extraConfig")),
        created=created,
        template=bool(p.get("config.template")),
        power_state=p.get("runtime.powerState"),
        hardware_version=p.get("config.version"),
        flow_run=flow_run_of(p.get("config.extraConfig")),
    )


def get_vm(session: VSphereSession, vm: Any) -> VmRef:
    """Fresh state of a VM (one property-collector call)."""
    return _ref(inventory.Found(vm, inventory.properties(session, vm, VM_PROPS)), created=False)


def find_vm(session: VSphereSession, folder: Any, name: str) -> VmRef | None:
    """The VM/template `name` in `folder`, or None."""
    found = inventory.vm_in_folder(session, folder, name, VM_PROPS[1:])
    return _ref(found, created=False) if found else None


def _require_build(ref: VmRef, build_id: str, step_id: str | None) -> VmRef:
    if ref.build_id != build_id:
        raise errors.Conflict(
            f"VM {ref.name!r} ({ref.moid}) already exists but belongs to build "
            f"{ref.build_id or '<none: not made by winnodes>'}, not {build_id}; rename or remove it",
            step_id=step_id,
        )
    return ref


def _resume(
    session: VSphereSession, resume_task: str | None, timeout: float, step_id: str | None
) -> None:
    """Wait for a remembered task that is still in flight (its outcome is re-read by the caller)."""
    if resume_task and task_state(session, resume_task) in ("queued", "running"):
        # If it failed, the caller reads the real state and starts again if needed.
        with contextlib.suppress(errors.PermanentError):
            wait_for_task(session, resume_task, timeout=timeout, step_id=step_id)


def _start(
    start: Callable[[], Any], on_task: OnTask | None, action: str, step_id: str | None
) -> Any:
    with boundary(step_id, action=action):
        task = start()
    if on_task is not None:
        on_task(str(task._moId))
    return task


# -- placement ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """Resolved vCenter objects for new VMs."""

    datacenter: Any
    datacenter_name: str
    folder: Any
    pool: Any
    datastore: str
    network: Network | None = None


def resolve_placement(
    session: VSphereSession,
    *,
    datacenter: str,
    folder: str,
    datastore: str,
    network: str | None = None,
    cluster: str | None = None,
    resource_pool: str | None = None,
    step_id: str | None = "G1",
) -> Placement:
    """Look up every placement object once (NotFound/Conflict name the missing/ambiguous one).

    Fast path: the objects where vCenter puts them by default (`/<dc>/host/<cluster>/Resources`,
    `/<dc>/datastore/<name>`, `/<dc>/network/<name>`), one `FindByInventoryPath` each; names that
    sit deeper (in sub-folders, datastore clusters) fall back to a search by name under the
    datacenter, which also reports ambiguity."""

    def at(path: str, obj_type: type) -> Any:
        return inventory.find_path_or_none(session, f"/{datacenter}/{path}", obj_type)

    try:
        dc = inventory.datacenter(session, datacenter)
        if resource_pool:
            pool = inventory.resource_pool(session, resource_pool)
        elif cluster:
            pool = at(f"host/{cluster}/Resources", vim.ResourcePool)
            if pool is None:
                pool = inventory.cluster_pool(session, dc, cluster)
        else:
            raise errors.ConfigError("placement: set cluster or resource_pool", step_id=step_id)
        if at(f"datastore/{datastore}", vim.Datastore) is None:
            inventory.datastore(session, dc, datastore)  # exists and is unique
        net: Network | None = None
        if network:
            found = at(f"network/{network}", vim.Network)
            if found is None or isinstance(found, vim.dvs.DistributedVirtualPortgroup):
                net = inventory.network(session, dc, network)
            else:
                net = Network(found, network)
        return Placement(
            datacenter=dc,
            datacenter_name=datacenter,
            folder=inventory.folder(session, folder),
            pool=pool,
            datastore=datastore,
            network=net,
        )
    except errors.WinNodesError as exc:
        if exc.step_id is None:
            exc.step_id = step_id
        raise


# -- G1: create ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VmSpec:
    """What G1 creates: hardware, one disk, one NIC, one CD-ROM per ISO (D:, E:, ... in order)."""

    name: str
    guest_id: str
    hardware_version: str = "vmx-19"  # "vmx-NN"; OpenShift needs >= 15 (validated upstream)
    firmware: Literal["efi", "bios"] = "efi"
    num_cpus: int = 2
    num_cores_per_socket: int = 1
    memory_mib: int = 4096
    disk_gib: int = 60
    isos: tuple[str, ...] = ()
    annotation: str = ""
    extra_config: Mapping[str, str] = field(default_factory=dict)
    disk_controller: Literal["pvscsi", "lsilogic-sas"] = "pvscsi"


def disk_controller_device(kind: str, key: int) -> Any:
    """The SCSI controller of the system disk: VMware Paravirtual (needs its driver in Windows PE)
    or LSI Logic SAS (inbox in Windows)."""
    if kind == "lsilogic-sas":
        return vim.vm.device.VirtualLsiLogicSASController(
            key=key, busNumber=0, sharedBus="noSharing"
        )
    if kind == "pvscsi":
        return vim.vm.device.ParaVirtualSCSIController(key=key, busNumber=0, sharedBus="noSharing")
    raise errors.ConfigError(f"unknown disk controller {kind!r}", step_id="G1")


def nic_backing(network: Network) -> Any:
    """Standard port group: network backing by name; distributed: port connection by key."""
    if network.distributed:
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(
                portgroupKey=network.portgroup_key, switchUuid=network.switch_uuid
            )
        )
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
        deviceName=network.name, network=network.obj
    )


def config_spec(spec: VmSpec, placement: Placement, build_id: str) -> Any:
    """The CreateVM ConfigSpec (pure apart from pyVmomi data objects). Device keys are negative,
    as the API asks for new devices; controllers: `spec.disk_controller` (PVSCSI or LSI Logic SAS)
    for the disk, SATA (AHCI) for the CD-ROMs, one unit each in `spec.isos` order (D:, E:, ...)."""
    if placement.network is None:
        raise errors.ConfigError("placement.network is required to create a VM", step_id="G1")
    connect = vim.vm.device.VirtualDevice.ConnectInfo
    scsi, sata = -100, -200
    devices = [
        vim.vm.device.VirtualDeviceSpec(
            operation="add", device=disk_controller_device(spec.disk_controller, scsi)
        ),
        vim.vm.device.VirtualDeviceSpec(
            operation="add",
            fileOperation="create",
            device=vim.vm.device.VirtualDisk(
                key=-101,
                controllerKey=scsi,
                unitNumber=0,
                capacityInKB=spec.disk_gib * 1024 * 1024,
                backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                    diskMode="persistent", thinProvisioned=True
                ),
            ),
        ),
        vim.vm.device.VirtualDeviceSpec(
            operation="add",
            device=vim.vm.device.VirtualVmxnet3(
                key=-300,
                backing=nic_backing(placement.network),
                connectable=connect(startConnected=True, connected=True, allowGuestControl=True),
            ),
        ),
    ]
    if spec.isos:
        devices.append(
            vim.vm.device.VirtualDeviceSpec(
                operation="add", device=vim.vm.device.VirtualAHCIController(key=sata, busNumber=0)
            )
        )
    for i, iso in enumerate(spec.isos):
        devices.append(
            vim.vm.device.VirtualDeviceSpec(
                operation="add",
                device=vim.vm.device.VirtualCdrom(
                    key=-201 - i,
                    controllerKey=sata,
                    unitNumber=i,
                    backing=vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=iso),
                    connectable=connect(
                        startConnected=True, connected=True, allowGuestControl=True
                    ),
                ),
            )
        )
    return vim.vm.ConfigSpec(
        name=spec.name,
        guestId=spec.guest_id,
        version=spec.hardware_version,
        firmware=spec.firmware,
        numCPUs=spec.num_cpus,
        numCoresPerSocket=spec.num_cores_per_socket,
        memoryMB=spec.memory_mib,
        annotation=spec.annotation or None,
        files=vim.vm.FileInfo(vmPathName=f"[{placement.datastore}]"),
        deviceChange=devices,
        extraConfig=[
            build_option(build_id),
            *(vim.option.OptionValue(key=k, value=v) for k, v in spec.extra_config.items()),
        ],
    )


def create_vm(
    session: VSphereSession,
    placement: Placement,
    spec: VmSpec,
    *,
    build_id: str,
    resume_task: str | None = None,
    on_task: OnTask | None = None,
    timeout: float = 600,
    step_id: str | None = "G1",
    require_same_build: bool = True,
) -> VmRef:
    """G1: the VM `spec.name` in the placement folder, created powered off if it does not exist.

    An existing VM is returned as is (`created=False`); with `require_same_build` it must carry
    `build_id` (Conflict otherwise). Reusing a base VM across builds passes False and decides itself.
    """
    _resume(session, resume_task, timeout, step_id)
    existing = find_vm(session, placement.folder, spec.name)
    if existing is not None:
        return _require_build(existing, build_id, step_id) if require_same_build else existing
    cs = config_spec(spec, placement, build_id)
    task = _start(
        lambda: placement.folder.CreateVM_Task(config=cs, pool=placement.pool),
        on_task,
        f"create VM {spec.name}",
        step_id,
    )
    vm = wait_for_task(session, task, timeout=timeout, step_id=step_id)
    return _ref(inventory.Found(vm, inventory.properties(session, vm, VM_PROPS)), created=True)


# -- datastore upload ------------------------------------------------------------------------------
def make_directory(
    session: VSphereSession, datacenter: str, ds_dir: str, *, step_id: str | None = "G1"
) -> bool:
    """Create the datastore directory `[datastore] a/b` with FileManager.MakeDirectory
    (createParentDirectories). Returns False when it already existed (FileAlreadyExists), so a
    re-run converges. A datastore does not create directories on upload; this does."""
    dc = inventory.datacenter(session, datacenter)
    fm = session.content.fileManager
    with boundary(step_id, action=f"make directory {ds_dir}"):
        try:
            fm.MakeDirectory(name=ds_dir, datacenter=dc, createParentDirectories=True)
        except vim.fault.FileAlreadyExists:
            return False
    return True


def upload_file(
    session: VSphereSession,
    datacenter: str,
    ds_path: str,
    data: bytes,
    *,
    timeout: float = 300,
    step_id: str | None = "G1",
) -> str:
    """PUT `data` to `[datastore] dir/file` over vCenter's datastore HTTP interface, with the SOAP
    session cookie and the session's verified TLS context. Overwrites (idempotent). Returns the path.

    A datastore answers 404 to a PUT into a directory that does not exist, so the file's directory
    is made first (`make_directory`, a no-op when it exists)."""
    ds_name, rel = split_ds_path(ds_path)
    if "/" in rel.strip("/"):
        make_directory(
            session, datacenter, f"[{ds_name}] {rel.strip('/').rsplit('/', 1)[0]}", step_id=step_id
        )
    query = urllib.parse.urlencode({"dcPath": datacenter, "dsName": ds_name})
    url = f"/folder/{urllib.parse.quote(rel)}?{query}"
    with boundary(step_id, action=f"upload {ds_path}"):
        conn = session.https_connection(timeout)
        try:
            conn.request(
                "PUT",
                url,
                body=data,
                headers={
                    "Cookie": session.session_cookie,
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(data)),
                },
            )
            resp = conn.getresponse()
            body = resp.read(500).decode(errors="replace")
        finally:
            conn.close()
        if resp.status not in (200, 201, 204):
            raise http.client.HTTPException(f"{resp.status} {resp.reason}: {body[:200]}")
    return f"[{ds_name}] {rel}"


def download_file(
    session: VSphereSession,
    datacenter: str,
    ds_path: str,
    *,
    timeout: float = 300,
    step_id: str | None = "G1",
    max_bytes: int = 512 * 1024 * 1024,
) -> bytes:
    """GET `[datastore] dir/file` over vCenter's datastore HTTP interface (same session cookie and
    verified TLS as `upload_file`). Raises NotFound for a missing file."""
    ds_name, rel = split_ds_path(ds_path)
    query = urllib.parse.urlencode({"dcPath": datacenter, "dsName": ds_name})
    url = f"/folder/{urllib.parse.quote(rel)}?{query}"
    with boundary(step_id, action=f"download {ds_path}"):
        conn = session.https_connection(timeout)
        try:
            conn.request("GET", url, headers={"Cookie": session.session_cookie})
            resp = conn.getresponse()
            data = resp.read(max_bytes + 1)
        finally:
            conn.close()
        if resp.status == 404:
            raise errors.NotFound(f"{ds_path} does not exist", step_id=step_id)
        if resp.status != 200:
            raise http.client.HTTPException(f"{resp.status} {resp.reason}")
        if len(data) > max_bytes:
            raise errors.PermanentError(
                f"{ds_path} is larger than {max_bytes} bytes", step_id=step_id
            )
    return data


# -- power -----------------------------------------------------------------------------------------
def power_on(
    session: VSphereSession, vm: Any, *, timeout: float = 600, step_id: str | None = None
) -> bool:
    """Power on unless already on. Returns True when this call powered it on."""
    if (
        inventory.properties(session, vm, ["runtime.powerState"])["runtime.powerState"]
        == "poweredOn"
    ):
        return False
    task = _start(vm.PowerOnVM_Task, None, f"power on {vm._moId}", step_id)
    wait_for_task(session, task, timeout=timeout, step_id=step_id)
    return True


def power_off(
    session: VSphereSession, vm: Any, *, timeout: float = 600, step_id: str | None = None
) -> bool:
    """Hard power-off unless already off. Returns True when this call powered it off."""
    if (
        inventory.properties(session, vm, ["runtime.powerState"])["runtime.powerState"]
        == "poweredOff"
    ):
        return False
    task = _start(vm.PowerOffVM_Task, None, f"power off {vm._moId}", step_id)
    wait_for_task(session, task, timeout=timeout, step_id=step_id)
    return True


def reset(
    session: VSphereSession, vm: Any, *, timeout: float = 600, step_id: str | None = None
) -> None:
    """Hard reset (`ResetVM_Task`: vSphere's "a hard power-off, then a power-on"): the VM boots
    again from its firmware. Waits for the task (WaitForUpdatesEx), i.e. until the VM runs again."""
    task = _start(vm.ResetVM_Task, None, f"reset {vm._moId}", step_id)
    wait_for_task(session, task, timeout=timeout, step_id=step_id)


def boot_time(session: VSphereSession, vm: Any) -> str:
    """When the VM last powered on or was reset (`summary.runtime.bootTime`, ISO 8601), "" when
    vCenter does not say (powered off, or a vCenter that leaves it unset)."""
    seen = inventory.properties(session, vm, ["summary.runtime.bootTime"])
    value = seen["summary.runtime.bootTime"]
    return value.isoformat() if value is not None else ""


def boot_key_missing(boot: str, keyed_boot: str | None) -> bool:
    """Whether the running boot of a VM whose Windows never ran got no EFI boot key: `boot` is its
    boot time (`boot_time`), `keyed_boot` the boot time recorded after the key was last pressed.
    True only when vCenter gives a boot time and no key was recorded for it: a VM whose boot time
    is unknown is treated as keyed (left alone: setup may be running)."""
    return bool(boot) and keyed_boot != boot


# -- G1: the EFI boot prompt ---------------------------------------------------------------------
#: USB HID usage IDs (HID Usage Tables, Keyboard/Keypad page 0x07).
HID_SPACEBAR = 0x2C
HID_ENTER = 0x28


def usb_scan_code(hid_usage: int) -> int:
    """`UsbScanCodeSpecKeyEvent.usbHidCode` for a key: (usage << 16) | 7, as govc vm.keystrokes
    and Packer's vsphere builder encode it."""
    return (hid_usage << 16) | 7


def key_spec(hid_usage: int = HID_SPACEBAR) -> Any:
    return vim.vm.UsbScanCodeSpec(
        keyEvents=[vim.vm.UsbScanCodeSpec.KeyEvent(usbHidCode=usb_scan_code(hid_usage))]
    )


def press_boot_key(
    session: VSphereSession,
    vm: Any,
    *,
    presses: int,
    interval: float,
    timeout: float = 600,
    step_id: str | None = "G1",
) -> int:
    """Answer an EFI boot loader's "Press any key to boot from CD or DVD": wait (WaitForUpdatesEx)
    until the VM runs, then press the spacebar `presses` times, `interval` seconds apart, through
    vCenter (`PutUsbScanCodes`), as Packer users' `boot_command = ["<spacebar>", ...]` does. The
    prompt shows only a few seconds after power-on and keys sent before it are lost, so the presses
    are spread over the window instead of sent once. Returns the key events vCenter delivered."""
    wait_for_power_state(session, vm, "poweredOn", timeout=timeout, step_id=step_id)
    delivered = 0
    missed: errors.TransientError | None = None
    pause = threading.Event()
    for n in range(presses):
        if n:
            pause.wait(interval)  # the pacing of the presses, not a wait for state
        try:
            with boundary(step_id, action=f"press the boot key on {vm._moId}"):
                delivered += int(vm.PutUsbScanCodes(key_spec()) or 0)
        except errors.TransientError as exc:  # one lost press is covered by the others
            missed = exc
    if not delivered and missed is not None:
        raise missed
    return delivered


# -- G8: clone -------------------------------------------------------------------------------------
def clone_vm(
    session: VSphereSession,
    source: Any,
    name: str,
    *,
    folder: Any,
    pool: Any,
    build_id: str,
    datastore: Any = None,
    power_on: bool = False,
    template: bool = False,
    annotation: str = "",
    resume_task: str | None = None,
    on_task: OnTask | None = None,
    timeout: float = 1800,
    step_id: str | None = "G8",
    flow_run: str | None = None,
) -> VmRef:
    """Clone `source` to `name` in `folder`/`pool`; an existing `name` of the same build is the
    result (Conflict if of another build). The build ID is set in the clone spec's extraConfig."""
    _resume(session, resume_task, timeout, step_id)
    existing = find_vm(session, folder, name)
    if existing is not None:
        return _require_build(existing, build_id, step_id)
    spec = vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(pool=pool, datastore=datastore),
        powerOn=power_on,
        template=template,
        config=vim.vm.ConfigSpec(
            extraConfig=[build_option(build_id)]
            + ([vim.option.OptionValue(key=FLOW_RUN_KEY, value=flow_run)] if flow_run else []),
            annotation=annotation or None,
        ),
    )
    task = _start(
        lambda: source.CloneVM_Task(folder=folder, name=name, spec=spec),
        on_task,
        f"clone {source._moId} to {name}",
        step_id,
    )
    vm = wait_for_task(session, task, timeout=timeout, step_id=step_id)
    return _ref(inventory.Found(vm, inventory.properties(session, vm, VM_PROPS)), created=True)


# -- G10: template, provenance -----------------------------------------------------------------------
def mark_as_template(session: VSphereSession, vm: Any, *, step_id: str | None = "G10") -> VmRef:
    """Convert a powered-off VM into a template (no-op if it already is one)."""
    ref = get_vm(session, vm)
    if ref.template:
        return ref
    if ref.power_state != "poweredOff":
        raise errors.PermanentError(
            f"{ref.name} is {ref.power_state}; only a powered-off VM becomes a template",
            step_id=step_id,
        )
    with boundary(step_id, action=f"mark {ref.name} as template"):
        vm.MarkAsTemplate()
    return get_vm(session, vm)


def set_annotation(
    session: VSphereSession,
    vm: Any,
    text: str,
    *,
    timeout: float = 600,
    step_id: str | None = None,
) -> bool:
    """Set the annotation unless it is already `text`. Before G10: vCenter does not reconfigure
    templates (custom attributes work on templates). Returns True when it changed."""
    current = inventory.properties(session, vm, ["config.annotation"])["config.annotation"] or ""
    if current == text:
        return False
    spec = vim.vm.ConfigSpec(annotation=text)
    task = _start(lambda: vm.ReconfigVM_Task(spec=spec), None, "set annotation", step_id)
    wait_for_task(session, task, timeout=timeout, step_id=step_id)
    return True


def set_custom_attributes(
    session: VSphereSession, obj: Any, values: Mapping[str, str], *, step_id: str | None = "G10"
) -> dict[str, str]:
    """Set custom attributes (works on templates). Field definitions are created when missing (for
    VirtualMachine); values already equal are not written again. Returns what was written."""
    cfm = session.content.customFieldsManager
    if cfm is None:
        raise errors.PermanentError("this vCenter has no CustomFieldsManager", step_id=step_id)
    with boundary(step_id, action="read custom field definitions"):
        fields, values_now = _fields_and_values(session, cfm, obj)
    defs = {d.name: d.key for d in fields}
    current = {getattr(v, "key", None): getattr(v, "value", None) for v in values_now}
    written: dict[str, str] = {}
    for name, value in values.items():
        with boundary(step_id, action=f"set custom attribute {name}"):
            key = defs.get(name)
            if key is None:
                try:
                    key = cfm.AddCustomFieldDef(name=name, moType=vim.VirtualMachine).key
                except vim.fault.DuplicateName:  # created concurrently: read it again
                    fields = inventory.properties(session, cfm, ["field"])["field"] or []
                    key = next(d.key for d in fields if d.name == name)
                defs[name] = key
            if current.get(key) != value:
                cfm.SetField(entity=obj, key=key, value=value)
                written[name] = value
    return written


def custom_attributes(session: VSphereSession, obj: Any) -> dict[str, str]:
    """Custom attribute values of `obj` by field name."""
    fields, values = _fields_and_values(session, session.content.customFieldsManager, obj)
    names = {d.key: d.name for d in fields}
    return {names.get(v.key, str(v.key)): v.value for v in values}


def _fields_and_values(session: VSphereSession, cfm: Any, obj: Any) -> tuple[list[Any], list[Any]]:
    """Custom field definitions and `obj`'s values, in one property-collector round trip."""
    defs, current = inventory.retrieve_each(session, [(cfm, ["field"]), (obj, ["customValue"])])
    return list(defs["field"] or []), list(current["customValue"] or [])


@dataclass(frozen=True)
class TemplateInfo:
    """One template of a series, for retention."""

    obj: Any
    name: str
    build_id: str | None
    created: datetime | None

    @property
    def moid(self) -> str:
        return str(self.obj._moId)


def list_templates(session: VSphereSession, folder: Any, series: str) -> list[TemplateInfo]:
    """Templates in `folder` named `<series>-...`, oldest first (creation date, then name)."""
    found = inventory.contents(
        session,
        folder,
        vim.VirtualMachine,
        ["name", "config.template", "config.extraConfig", "config.createDate"],
        recursive=False,
    )
    out = [
        TemplateInfo(
            f.obj,
            f.props["name"],
            build_of(f.props.get("config.extraConfig")),
            f.props.get("config.createDate"),
        )
        for f in found
        if f.props.get("config.template") and str(f.props.get("name", "")).startswith(series + "-")
    ]
    return sorted(out, key=lambda t: (t.created is None, t.created or datetime.min, t.name))


def list_vms(session: VSphereSession, folder: Any) -> list[VmRef]:
    """Every VM and template directly in `folder` (one property-collector call)."""
    found = inventory.contents(session, folder, vim.VirtualMachine, VM_PROPS, recursive=False)
    return [_ref(f, created=False) for f in found]


def templates_to_delete(templates: Sequence[TemplateInfo], keep: int) -> list[TemplateInfo]:
    """Retention (pure): everything but the newest `keep` (input oldest first)."""
    return list(templates[: max(0, len(templates) - keep)])


def destroy(
    session: VSphereSession, vm: Any, *, timeout: float = 600, step_id: str | None = None
) -> bool:
    """Power off (if on) and delete. A VM that is already gone counts as done. Returns True when
    this call deleted it."""
    try:
        power_off(session, vm, timeout=timeout, step_id=step_id)
        task = _start(vm.Destroy_Task, None, f"destroy {vm._moId}", step_id)
        wait_for_task(session, task, timeout=timeout, step_id=step_id)
    except errors.NotFound:
        return False
    return True
