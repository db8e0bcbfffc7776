"""The lab's machine-api: MachineSet and Machine controllers with vSphere provider semantics.

In a real OpenShift-on-vSphere cluster, machine-api turns a MachineSet into Machines and each Machine
into a VM cloned from `providerSpec.template`. The product's flows create MachineSets and wait for
Windows Machines to appear, so the lab needs something that does exactly that, and fails the same way
when the MachineSet is wrong. This simulator follows machine-api-operator's controllers
(pkg/controller/machineset, pkg/controller/machine, pkg/controller/vsphere):

MachineSet: keeps `spec.replicas` Machines, created with `generateName: <set>-` (the API server adds
5 random characters, as for the real controller), the template's labels, annotations and spec, and a
controller ownerReference to the set; adopts orphans that match the selector; scales down by the
set's `deletePolicy` (Random by default: machines being deleted or marked with
`machine.openshift.io/delete-machine`, then failed ones, then ones without a node, go first; Newest;
Oldest). Its status counts `replicas`, `fullyLabeledReplicas`, `readyReplicas` and
`availableReplicas` (ready = phase Running with a nodeRef whose Node is Ready; available = ready for
`minReadySeconds`), and `observedGeneration`.

Machine scope first, as the real actuator's newMachineScope: the `credentialsSecret` must exist in
the Machine's namespace with `<workspace.server>.username` and `.password`, and `workspace.server`
must be the vCenter this simulator talks to, with that user and password; otherwise no vCenter call
is made, the Machine keeps its phase (none yet) with condition InstanceExists=Unknown, reason
ErrorCheckingProvider and the real provider's message, and is retried with backoff (the real
controller loses the InvalidConfiguration type in a %v wrap, so such a Machine is never Failed).

Machine: adds the finalizer `machine.machine.openshift.io`; phase `Provisioning`; resolves the
datacenter, template, folder, datastore, resource pool and networks like govmomi's finder (a missing
one gives phase `Failed`, `errorReason: InvalidConfiguration`, an `errorMessage` naming it, and a
Warning Event `FailedCreate`); clones the template into the folder (the VM's instance UUID is the
Machine's UID, as the real provider sets it), sets CPUs, cores per socket, memory, the disk size and one
vmxnet3 NIC per network, powers it on, and sets `spec.providerID` (`vsphere://<BIOS uuid>`, as the real
provider does), the annotation `machine.openshift.io/instance-state` and `status.addresses`
(InternalIP from the guest's reported NICs, InternalDNS = VM name). The phase becomes `Provisioned`
only once VMware Tools report an IP, and `Running` once the Machine has a nodeRef. Every Machine's VM is
watched with WaitForUpdatesEx, so an IP that appears or vanishes in vCenter is reflected on the
Machine. A VM that already exists for a Machine is adopted (the controller can restart at any point).
Deletion powers the VM off, destroys it (NotFound counts as done), deletes the Node in
`status.nodeRef` and removes the finalizer. (Deletion does not check the scope: the real controller
would keep such a Machine's finalizer forever; the lab is lenient there so tests can clean up.)
Machines that exist without a VM of their UID, such as the Linux workers lab.seed creates for the
worker VMs of an installed cluster, are matched to their VM by name and adopted, never re-cloned.

Run as `python -m lab.controllers.machine_api` with KUBECONFIG and GOVC_* in the environment.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import math
import os
import random
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from pyVmomi import vim, vmodl

from lab.controllers.common import (
    Obj,
    VSphere,
    WorkQueue,
    kube_client,
    label_selector_matches,
    now_rfc3339,
    record_event,
    run_controller,
    setup_logging,
    watch_objects,
)

log = logging.getLogger("machine-api")

GROUP = "machine.openshift.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = "machine.machine.openshift.io"
MACHINESET_LABEL = "machine.openshift.io/cluster-api-machineset"
INSTANCE_STATE_ANNOTATION = "machine.openshift.io/instance-state"
DELETE_MACHINE_ANNOTATION = "machine.openshift.io/delete-machine"
PROVIDER_ID_PREFIX = "vsphere://"
COMPONENT = "machine-api-simulator"

PHASE_PROVISIONING = "Provisioning"
PHASE_PROVISIONED = "Provisioned"
PHASE_RUNNING = "Running"
PHASE_FAILED = "Failed"
PHASE_DELETING = "Deleting"

VM_PROPS = [
    "name",
    "config.uuid",
    "config.instanceUuid",
    "config.template",
    "config.hardware.device",
    "runtime.powerState",
    "guest.net",
    "guest.ipAddress",
]


class InvalidConfiguration(Exception):
    """machine-api's InvalidMachineConfiguration: the Machine goes to phase Failed for good."""


class ProviderScopeError(Exception):
    """The real actuator's "failed to create scope for machine": retried with backoff, the Machine
    is not Failed (the real controller loses the InvalidConfiguration type in a %v wrap)."""


class NotFound(Exception):
    """govmomi's find.NotFoundError (same message)."""

    def __init__(self, kind: str, path: str) -> None:
        super().__init__(f"{kind} '{path}' not found")


class MultipleFound(Exception):
    """govmomi's find.MultipleFoundError (same message)."""

    def __init__(self, kind: str, path: str) -> None:
        super().__init__(f"path '{path}' resolves to multiple {kind}s")


# --------------------------------------------------------------------------- pure decisions


def delete_priority(machine: Obj, policy: str, now: dt.datetime | None = None) -> float:
    """machine-api's delete priority (higher is deleted first) for the policies Random (the
    default), Newest and Oldest."""
    meta = machine.get("metadata", {})
    status = machine.get("status") or {}
    annotations = meta.get("annotations") or {}
    failed = bool(status.get("errorReason") or status.get("errorMessage"))
    if meta.get("deletionTimestamp"):
        return 100.0
    if policy in ("", "Random"):
        if annotations.get(DELETE_MACHINE_ANNOTATION) or failed:
            return 50.0
        return 40.0 if not status.get("nodeRef") else 20.0
    if annotations.get(DELETE_MACHINE_ANNOTATION) or failed:
        return 100.0
    created = meta.get("creationTimestamp")
    if not created:
        age = 0.0
    else:
        t = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        age = max(0.0, ((now or dt.datetime.now(dt.UTC)) - t).total_seconds())
    oldest = 100.0 * (1.0 - math.exp(-age / 864000.0))
    if policy == "Oldest":
        return oldest
    if policy == "Newest":
        return 100.0 - oldest
    raise InvalidConfiguration(
        f"Unsupported delete policy {policy}. Must be one of 'Random', 'Newest', or 'Oldest'"
    )


def machines_to_delete(machines: list[Obj], diff: int, policy: str) -> list[Obj]:
    """The `diff` machines to delete, highest priority first (stable on ties: by name)."""
    if diff <= 0:
        return []
    ranked = sorted(
        sorted(machines, key=lambda m: m["metadata"]["name"]),
        key=lambda m: delete_priority(m, policy),
        reverse=True,
    )
    return ranked[:diff]


def guest_ips(props: Mapping[str, Any]) -> list[str]:
    """IP addresses the guest reports for the VM's NICs (matched by MAC, as the real provider does;
    entries without a MAC count too), falling back to guest.ipAddress. Order kept, no duplicates."""
    macs = {
        (d.macAddress or "").lower()
        for d in props.get("config.hardware.device") or []
        if isinstance(d, vim.vm.device.VirtualEthernetCard)
    }
    ips: list[str] = []
    for nic in props.get("guest.net") or []:
        mac = (getattr(nic, "macAddress", None) or "").lower()
        if mac and macs and mac not in macs:
            continue
        for ip in getattr(nic, "ipAddress", None) or []:
            if ip and ip not in ips:
                ips.append(ip)
    if not ips and props.get("guest.ipAddress"):
        ips.append(props["guest.ipAddress"])
    return ips


def machine_addresses(props: Mapping[str, Any]) -> list[dict[str, str]]:
    out = [{"type": "InternalIP", "address": ip} for ip in guest_ips(props)]
    if props.get("name"):
        out.append({"type": "InternalDNS", "address": props["name"]})
    return out


def next_phase(current: str | None, has_ip: bool, has_node_ref: bool) -> str:
    """The phase of a Machine whose VM exists: Running with a nodeRef; Provisioned once the guest
    reported an IP (and kept when the IP goes away later); otherwise still Provisioning."""
    if has_node_ref:
        return PHASE_RUNNING
    if has_ip or current in (PHASE_PROVISIONED, PHASE_RUNNING):
        return PHASE_PROVISIONED
    return PHASE_PROVISIONING


def provider_spec(machine: Obj) -> Obj:
    return (((machine.get("spec") or {}).get("providerSpec") or {}).get("value")) or {}


def owner_set_name(machine: Obj) -> str | None:
    for ref in machine.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "MachineSet":
            name: str = ref["name"]
            return name
    return None


def scope_error(
    machine: Obj,
    secret_data: Mapping[str, str] | None,
    *,
    vcenter_host: str,
    vcenter_port: int,
    username: str,
    password: str,
) -> str | None:
    """Why the real provider cannot even build its machine scope (newMachineScope in
    machine-api-operator pkg/controller/vsphere/machine_scope.go), in its words, or None.

    Order as there: the credentials secret (`secret_data` is its decoded data, None when the Secret
    does not exist) must hold `<workspace.server>.username` and `.password`; then the provider
    logs in to `workspace.server`, which must be the vCenter this lab runs (a `:port` suffix must
    name its port) with that user and password. The real actuator wraps the error with %v, so it
    is not an InvalidMachineConfiguration: the Machine is not Failed but keeps being retried."""
    name = machine.get("metadata", {}).get("name", "")
    ns = machine.get("metadata", {}).get("namespace", "")
    spec = provider_spec(machine)
    ws = spec.get("workspace")
    secret_name = (spec.get("credentialsSecret") or {}).get("name")
    user = password_ = ""
    if secret_name:
        if secret_data is None:
            return (
                f"{name}: error getting credentials: credentials secret {ns}/{secret_name} not "
                f'found: secrets "{secret_name}" not found'
            )
        if not ws:
            return f"{name}: error getting credentials: no workspace"
        for key in (f"{ws.get('server', '')}.username", f"{ws.get('server', '')}.password"):
            if key not in secret_data:
                return (
                    f"{name}: error getting credentials: secret {ns}/{secret_name} does not "
                    f'have "{key}" field set'
                )
        user = secret_data[f"{ws.get('server', '')}.username"]
        password_ = secret_data[f"{ws.get('server', '')}.password"]
    if not ws:
        return f"{name}: no workspace provided"
    server = str(ws.get("server") or "")
    host, _, port = server.partition(":")
    if host.lower() != vcenter_host.lower() or (port and port != str(vcenter_port)):
        return (
            "failed to create vSphere session: error setting up new vSphere SOAP client: "
            f'Post "https://{server}/sdk": dial tcp: lookup {host}: no such host'
        )
    if user != username or password_ != password:
        return (
            "failed to create vSphere session: unable to login to vCenter: ServerFaultCode: "
            "Cannot complete login due to an incorrect user name or password."
        )
    return None


# --------------------------------------------------------------------------- vSphere lookups


@dataclass
class Placement:
    datacenter: Any
    template: Any
    folder: Any
    datastore: Any
    pool: Any
    networks: list[Any]


class Finder:
    """The subset of govmomi's find.Finder that the vSphere provider uses, with a datacenter set:
    absolute inventory paths, paths relative to the datacenter's folders, or plain names searched
    recursively (more than one match is an error, never "take the first")."""

    def __init__(self, vs: VSphere) -> None:
        self.vs = vs

    def datacenter(self, name: str) -> Any:
        if not name:
            dcs = self.vs.retrieve(vim.Datacenter, ["name"])
            if len(dcs) != 1:
                raise MultipleFound("datacenter", "*") if dcs else NotFound("datacenter", "*")
            return dcs[0][0]
        obj = self.vs.find_by_path(name if name.startswith("/") else "/" + name)
        if not isinstance(obj, vim.Datacenter):
            raise NotFound("datacenter", name)
        return obj

    def _path_of(self, dc: Any) -> str:
        parts: list[str] = []
        obj = dc
        content = self.vs.content
        while obj is not None and obj != content.rootFolder:
            p = self.vs.properties(obj, ["name", "parent"])
            parts.append(p.get("name", ""))
            obj = p.get("parent")
        return "/" + "/".join(reversed(parts))

    def _find(self, kind: str, obj_type: type, dc: Any, sub: str, root: Any, path: str) -> Any:
        if path.startswith("/"):
            obj = self.vs.find_by_path(path)
        elif "/" in path:
            base = self._path_of(dc)
            obj = self.vs.find_by_path(f"{base}/{sub}/{path}") or self.vs.find_by_path(
                f"{base}/{path}"
            )
        else:
            found = [o for o, p in self.vs.retrieve(obj_type, ["name"], root) if p["name"] == path]
            if len(found) > 1:
                raise MultipleFound(kind, path)
            obj = found[0] if found else None
        if not isinstance(obj, obj_type):
            raise NotFound(kind, path)
        return obj

    def vm(self, dc: Any, path: str) -> Any:
        return self._find("vm", vim.VirtualMachine, dc, "vm", dc.vmFolder, path)

    def folder(self, dc: Any, path: str) -> Any:
        if not path:
            return dc.vmFolder
        return self._find("folder", vim.Folder, dc, "vm", dc.vmFolder, path)

    def datastore(self, dc: Any, path: str) -> Any:
        if not path:
            found = self.vs.retrieve(vim.Datastore, ["name"], dc.datastoreFolder)
            if len(found) != 1:
                raise MultipleFound("datastore", "*") if found else NotFound("datastore", "*")
            return found[0][0]
        return self._find("datastore", vim.Datastore, dc, "datastore", dc.datastoreFolder, path)

    def resource_pool(self, dc: Any, path: str) -> Any:
        if not path:
            roots = [
                o
                for o, p in self.vs.retrieve(vim.ResourcePool, ["parent"], dc.hostFolder)
                if isinstance(p.get("parent"), vim.ComputeResource)
            ]
            if len(roots) != 1:
                raise (
                    MultipleFound("resource pool", "*/Resources")
                    if roots
                    else NotFound("resource pool", "*/Resources")
                )
            return roots[0]
        return self._find("resource pool", vim.ResourcePool, dc, "host", dc.hostFolder, path)

    def network(self, dc: Any, path: str) -> Any:
        return self._find("network", vim.Network, dc, "network", dc.networkFolder, path)


def resolve_placement(finder: Finder, spec: Obj) -> Placement:
    """Look up everything a clone needs, in the real provider's order, raising InvalidConfiguration
    with a message that names what is missing (e.g. `unable to get template "x": vm 'x' not
    found`)."""
    ws = spec.get("workspace") or {}
    dc_name = ws.get("datacenter", "")
    try:
        dc = finder.datacenter(dc_name)
    except (NotFound, MultipleFound) as exc:
        raise InvalidConfiguration(f'unable to find datacenter "{dc_name}": {exc}') from exc
    template = spec.get("template", "")
    try:
        tmpl = finder.vm(dc, template)
    except (NotFound, MultipleFound) as exc:
        raise InvalidConfiguration(f'unable to get template "{template}": {exc}') from exc
    folder_path = ws.get("folder", "")
    try:
        folder = finder.folder(dc, folder_path)
    except (NotFound, MultipleFound) as exc:
        raise InvalidConfiguration(f'unable to get folder for "{folder_path}": {exc}') from exc
    ds_path = ws.get("datastore", "")
    try:
        ds = finder.datastore(dc, ds_path)
    except (NotFound, MultipleFound) as exc:
        raise InvalidConfiguration(f'unable to get datastore for "{ds_path}": {exc}') from exc
    pool_path = ws.get("resourcePool", "")
    try:
        pool = finder.resource_pool(dc, pool_path)
    except (NotFound, MultipleFound) as exc:
        raise InvalidConfiguration(f'unable to get resource pool for "{pool_path}": {exc}') from exc
    networks = []
    for dev in (spec.get("network") or {}).get("devices") or []:
        name = dev.get("networkName", "")
        try:
            networks.append(finder.network(dc, name))
        except (NotFound, MultipleFound) as exc:
            raise InvalidConfiguration(f'unable to get network for "{name}": {exc}') from exc
    return Placement(dc, tmpl, folder, ds, pool, networks)


def _nic_backing(net: Any) -> Any:
    dvs: Any
    if isinstance(net, vim.dvs.DistributedVirtualPortgroup):
        dvs = net.config.distributedVirtualSwitch
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(portgroupKey=net.key, switchUuid=dvs.uuid)
        )
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(network=net, deviceName=net.name)


def clone_spec(machine: Obj, spec: Obj, placement: Placement, devices: list[Any]) -> Any:
    """The VirtualMachineCloneSpec the real provider builds (full clone, disk resized, NICs
    replaced by vmxnet3 on the requested networks, instance UUID = Machine UID), powered off: the
    controller powers the clone on once its hardware is verified."""
    name = machine["metadata"]["name"]
    changes: list[Any] = []
    disks = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    if len(disks) != 1:
        raise RuntimeError(f"invalid disk count: {len(disks)}")
    disk_gib = int(spec.get("diskGiB") or 0)
    if disk_gib:
        disk: Any = disks[0]
        want_kb = disk_gib * 1024 * 1024
        if disk.capacityInKB > want_kb:
            raise InvalidConfiguration(
                "can't resize template disk down, initial capacity is larger: "
                f"{disk.capacityInKB}KiB > {want_kb}KiB"
            )
        disk.capacityInKB = want_kb
        disk.capacityInBytes = want_kb * 1024
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk))
    for d in devices:
        if isinstance(d, vim.vm.device.VirtualEthernetCard):
            changes.append(vim.vm.device.VirtualDeviceSpec(operation="remove", device=d))
    for i, net in enumerate(placement.networks):
        nic = vim.vm.device.VirtualVmxnet3(key=-(100 + i), backing=_nic_backing(net))
        nic.connectable = vim.vm.device.VirtualDevice.ConnectInfo(
            startConnected=True, allowGuestControl=True, connected=True
        )
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=nic))
    cpus = int(spec.get("numCPUs") or 0)
    cores = int(spec.get("numCoresPerSocket") or 0) or cpus
    config: Any = vim.vm.ConfigSpec(
        annotation=name,
        instanceUuid=machine["metadata"]["uid"],
        flags=vim.vm.FlagInfo(diskUuidEnabled=True),
        extraConfig=[vim.option.OptionValue(key="guestinfo.hostname", value=name)],
        deviceChange=changes,
    )
    if cpus:
        config.numCPUs = cpus
        config.numCoresPerSocket = cores
    if spec.get("memoryMiB"):
        config.memoryMB = int(spec["memoryMiB"])
    return vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(
            datastore=placement.datastore,
            pool=placement.pool,
            folder=placement.folder,
            diskMoveType="moveAllDiskBackingsAndConsolidate",
        ),
        config=config,
        powerOn=False,
        template=False,
    )


# --------------------------------------------------------------------------- the controller


class MachineAPI:
    """Both controllers, sharing one work queue, one kube client and one vSphere session."""

    def __init__(self, env: Mapping[str, str], stop: threading.Event | None = None) -> None:
        self.env = dict(env)
        self.stop = stop or threading.Event()
        self.api = kube_client(env)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.core = k8s.CoreV1Api(self.api)
        self.vs = VSphere(env)
        self.finder = Finder(self.vs)
        self.queue = WorkQueue()
        self.workers = int(env.get("LAB_MACHINE_API_WORKERS", "3"))
        self.ip_wait = float(env.get("LAB_MACHINE_IP_DEADLINE", "1800"))
        self._lock = threading.Lock()
        # vcsim (v0.56) can deadlock when two clones/reconfigures of related VMs run at once; a
        # real vCenter does not, but serializing this controller's own changes costs little here.
        self._vsphere_changes = threading.Lock()
        self.machines: dict[tuple[str, str], Obj] = {}
        self.machinesets: dict[tuple[str, str], Obj] = {}
        self._failures: dict[Any, int] = {}
        self._vm_watchers: dict[tuple[str, str], tuple[str, threading.Event]] = {}
        self._synced: dict[str, threading.Event] = {
            k: threading.Event() for k in ("machines", "machinesets", "nodes")
        }

    # -- running -------------------------------------------------------------------------------

    def run(self, ready_file: Path | None = None) -> None:
        run_controller(
            [
                ("watch-machinesets", self._watch_machinesets),
                ("watch-machines", self._watch_machines),
                ("watch-nodes", self._watch_nodes),
            ],
            worker=self._worker,
            workers=self.workers,
            synced=self._synced.values(),
            stop=self.stop,
            queue=self.queue,
            ready_file=ready_file,
            log=log,
        )
        for _, ev in list(self._vm_watchers.values()):
            ev.set()
        self.vs.close()

    def _watch_machinesets(self) -> None:
        def on_list(items: list[Obj]) -> None:
            with self._lock:
                old = set(self.machinesets)
                self.machinesets = {_key(o): o for o in items}
                keys = old | set(self.machinesets)
            for ns, name in keys:
                self.queue.add(("MachineSet", ns, name))
            self._synced["machinesets"].set()

        def on_event(kind: str, o: Obj) -> None:
            with self._lock:
                if kind == "DELETED":
                    self.machinesets.pop(_key(o), None)
                else:
                    self.machinesets[_key(o)] = o
            self.queue.add(("MachineSet", *_key(o)))

        watch_objects(
            self.custom.list_cluster_custom_object,
            on_list=on_list,
            on_event=on_event,
            stop=self.stop,
            what="machinesets",
            group=GROUP,
            version=VERSION,
            plural="machinesets",
        )

    def _watch_machines(self) -> None:
        def on_list(items: list[Obj]) -> None:
            with self._lock:
                old = dict(self.machines)
                self.machines = {_key(o): o for o in items}
            for key in set(old) | set(self.machines):
                self._machine_changed((old | self.machines)[key])
            self._synced["machines"].set()

        def on_event(kind: str, o: Obj) -> None:
            with self._lock:
                if kind == "DELETED":
                    self.machines.pop(_key(o), None)
                else:
                    self.machines[_key(o)] = o
            self._machine_changed(o)

        watch_objects(
            self.custom.list_cluster_custom_object,
            on_list=on_list,
            on_event=on_event,
            stop=self.stop,
            what="machines",
            group=GROUP,
            version=VERSION,
            plural="machines",
        )

    def _machine_changed(self, m: Obj) -> None:
        ns, name = _key(m)
        self.queue.add(("Machine", ns, name))
        for set_ns, set_name in self._sets_for(m):
            self.queue.add(("MachineSet", set_ns, set_name))

    def _sets_for(self, m: Obj) -> list[tuple[str, str]]:
        ns = m["metadata"].get("namespace", "")
        owner = owner_set_name(m)
        if owner:
            return [(ns, owner)]
        labels = m["metadata"].get("labels") or {}
        with self._lock:
            sets = list(self.machinesets.values())
        return [
            _key(s)
            for s in sets
            if s["metadata"].get("namespace") == ns
            and label_selector_matches((s.get("spec") or {}).get("selector"), labels)
        ]

    def _watch_nodes(self) -> None:
        def node_changed(node: Obj) -> None:
            name = node.get("metadata", {}).get("name")
            with self._lock:
                ms = [m for m in self.machines.values() if _node_ref(m) == name]
            for m in ms:
                self._machine_changed(m)

        def on_list(items: list[Obj]) -> None:
            for n in items:
                node_changed(n)
            self._synced["nodes"].set()

        watch_objects(
            self.core.list_node,
            on_list=on_list,
            on_event=lambda _kind, n: node_changed(n),
            stop=self.stop,
            what="nodes",
        )

    def _worker(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                if key[0] == "MachineSet":
                    requeue = self.reconcile_machineset(key[1], key[2])
                else:
                    requeue = self.reconcile_machine(key[1], key[2])
                self._failures.pop(key, None)
                if requeue:
                    self.queue.add_after(key, requeue)
            except Exception as exc:
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                delay = min(0.5 * 2 ** (n - 1), 30.0) * (0.8 + 0.4 * random.random())
                if isinstance(exc, vim.fault.NotAuthenticated):
                    with contextlib.suppress(Exception):
                        self.vs.connect()
                log.warning("%s %s/%s: %s; retrying in %.1fs", *key, _brief(exc), delay)
                self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    # -- MachineSet ------------------------------------------------------------------------------

    def reconcile_machineset(self, ns: str, name: str) -> float | None:
        try:
            ms: Obj = _obj(
                self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "machinesets", name)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        if ms["metadata"].get("deletionTimestamp"):
            return None
        spec = ms.get("spec") or {}
        selector = spec.get("selector") or {}
        template = spec.get("template") or {}
        tmpl_labels = (template.get("metadata") or {}).get("labels") or {}
        if not label_selector_matches(selector, tmpl_labels):
            msg = f'failed validation on MachineSet "{name}" label selector, cannot match any machines '
            record_event(self.api, ms, "ReconcileError", msg, "Warning", COMPONENT)
            return None
        uid = ms["metadata"]["uid"]
        listed = _obj(self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "machines"))[
            "items"
        ]
        mine: list[Obj] = []
        for m in listed:
            meta = m["metadata"]
            ctrl = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
            if ctrl and ctrl[0].get("uid") != uid:
                continue
            if meta.get("deletionTimestamp"):
                continue
            if not label_selector_matches(selector, meta.get("labels") or {}):
                continue
            if not ctrl:
                self._adopt(ms, m)
            mine.append(m)
        mine.sort(key=lambda m: m["metadata"]["name"])

        replicas = spec.get("replicas")
        replicas = 1 if replicas is None else int(replicas)
        diff = len(mine) - replicas
        if diff < 0:
            log.info("MachineSet %s/%s: need %d, creating %d", ns, name, replicas, -diff)
            for _ in range(-diff):
                self._create_machine(ms)
        elif diff > 0:
            policy = spec.get("deletePolicy") or "Random"
            victims = machines_to_delete(mine, diff, policy)
            log.info(
                "MachineSet %s/%s: need %d, deleting %s (policy %s)",
                ns,
                name,
                replicas,
                [v["metadata"]["name"] for v in victims],
                policy,
            )
            for v in victims:
                with contextlib.suppress(ApiException):
                    self.custom.delete_namespaced_custom_object(
                        GROUP, VERSION, ns, "machines", v["metadata"]["name"]
                    )

        status, recheck = self._machineset_status(ms, mine, tmpl_labels)
        current = ms.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, ns, "machinesets", name, {"status": status}
            )
        return recheck

    def _adopt(self, ms: Obj, m: Obj) -> None:
        refs = [*list(m["metadata"].get("ownerReferences") or []), _controller_ref(ms)]
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            m["metadata"]["namespace"],
            "machines",
            m["metadata"]["name"],
            {
                "metadata": {
                    "ownerReferences": refs,
                    "resourceVersion": m["metadata"]["resourceVersion"],
                }
            },
        )

    def _create_machine(self, ms: Obj) -> None:
        template = ms["spec"].get("template") or {}
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels.setdefault(MACHINESET_LABEL, ms["metadata"]["name"])
        meta: Obj = {
            "generateName": ms["metadata"]["name"] + "-",
            "namespace": ms["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [_controller_ref(ms)],
        }
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        body = {
            "apiVersion": API_VERSION,
            "kind": "Machine",
            "metadata": meta,
            "spec": template.get("spec") or {},
        }
        created: Obj = _obj(
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, ms["metadata"]["namespace"], "machines", body
            )
        )
        log.info(
            "MachineSet %s: created Machine %s", ms["metadata"]["name"], created["metadata"]["name"]
        )

    def _machineset_status(
        self, ms: Obj, machines: list[Obj], tmpl_labels: Mapping[str, str]
    ) -> tuple[dict[str, int], float | None]:
        min_ready = int((ms.get("spec") or {}).get("minReadySeconds") or 0)
        fully = ready = available = 0
        recheck: float | None = None
        now = dt.datetime.now(dt.UTC)
        for m in machines:
            labels = m["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in tmpl_labels.items()):
                fully += 1
            node_name = _node_ref(m)
            if not node_name or (m.get("status") or {}).get("phase") != PHASE_RUNNING:
                continue
            try:
                node = self.core.read_node(node_name)
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            cond = next(
                (
                    c
                    for c in (node.status.conditions if node.status else None) or []
                    if c.type == "Ready"
                ),
                None,
            )
            if cond is None or cond.status != "True":
                continue
            ready += 1
            since = cond.last_transition_time
            if min_ready == 0 or since is None:
                available += 1
                continue
            left = (since + dt.timedelta(seconds=min_ready) - now).total_seconds()
            if left <= 0:
                available += 1
            else:
                recheck = min(recheck or left, left)
        status = {
            "replicas": len(machines),
            "fullyLabeledReplicas": fully,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": ms["metadata"].get("generation", 0),
        }
        return status, (recheck + 0.1 if recheck is not None else None)

    # -- Machine ---------------------------------------------------------------------------------

    def reconcile_machine(self, ns: str, name: str) -> float | None:
        try:
            m: Obj = _obj(
                self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "machines", name)
            )
        except ApiException as exc:
            if exc.status == 404:
                self._stop_vm_watcher((ns, name))
                return None
            raise
        meta = m["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            self._delete_machine(m, finalizers)
            return None
        if FINALIZER not in finalizers:
            self._patch(m, {"metadata": {"finalizers": [*finalizers, FINALIZER]}}, versioned=True)
            return None  # the update comes back as a watch event
        status = m.get("status") or {}
        if status.get("phase") == PHASE_FAILED:
            return None  # machine-api never reconciles a failed Machine again
        problem = self._scope_error(m)
        if problem is not None:
            # The actuator's Exists fails before anything else: condition InstanceExists=Unknown,
            # phase unchanged, retried with backoff (machine-api's controller.go).
            message = f"Failed to check if machine exists: {name}: failed to create scope for machine: {problem}"
            self._set_condition(m, "InstanceExists", "Unknown", "ErrorCheckingProvider", message)
            raise ProviderScopeError(message)
        self._clear_condition_if(m, "InstanceExists", "ErrorCheckingProvider")

        vm = self._find_vm(m)
        if vm is None:
            if (m.get("spec") or {}).get("providerID") or any(
                a.get("type") == "InternalIP" for a in status.get("addresses") or []
            ):
                self._set_failed(m, "Can't find created instance.", reason=None)
                return None
            if status.get("phase") != PHASE_PROVISIONING:
                self._patch_status(m, {"phase": PHASE_PROVISIONING, "lastUpdated": now_rfc3339()})
            try:
                with self._vsphere_changes:
                    vm = self._create_vm(m)
            except InvalidConfiguration as exc:
                msg = f"{name}: reconciler failed to Create machine: {exc}"
                self._set_failed(m, msg, reason="InvalidConfiguration")
                record_event(self.api, m, "FailedCreate", msg, "Warning", COMPONENT)
                return None
            record_event(self.api, m, "Create", f"Created Machine {name}", "Normal", COMPONENT)
        return self._update_from_vm(m, vm)

    def _scope_error(self, m: Obj) -> str | None:
        spec = provider_spec(m)
        secret_name = (spec.get("credentialsSecret") or {}).get("name")
        data: dict[str, str] | None = None
        if secret_name:
            try:
                secret = self.core.read_namespaced_secret(secret_name, m["metadata"]["namespace"])
                data = {
                    k: base64.b64decode(v).decode(errors="replace")
                    for k, v in (secret.data or {}).items()
                }
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return scope_error(
            m,
            data,
            vcenter_host=self.vs.host,
            vcenter_port=self.vs.port,
            username=self.vs.user,
            password=self.vs.password,
        )

    def _set_condition(self, m: Obj, type_: str, status: str, reason: str, message: str) -> None:
        conds = [
            c for c in (m.get("status") or {}).get("conditions") or [] if c.get("type") != type_
        ]
        current = next(
            (c for c in (m.get("status") or {}).get("conditions") or [] if c.get("type") == type_),
            None,
        )
        if current and (current.get("status"), current.get("reason"), current.get("message")) == (
            status,
            reason,
            message,
        ):
            return
        conds.append(
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now_rfc3339(),
            }
        )
        self._patch_status(m, {"conditions": conds})

    def _clear_condition_if(self, m: Obj, type_: str, reason: str) -> None:
        conds = (m.get("status") or {}).get("conditions") or []
        if any(c.get("type") == type_ and c.get("reason") == reason for c in conds):
            self._patch_status(
                m,
                {
                    "conditions": [
                        c
                        for c in conds
                        if not (c.get("type") == type_ and c.get("reason") == reason)
                    ]
                },
            )

    def _find_vm(self, m: Obj) -> Any:
        """The Machine's VM: by instance UUID (= Machine UID), else by name (not a template);
        two VMs with the name is an error."""
        content = self.vs.content
        uid = m["metadata"]["uid"]
        vm = content.searchIndex.FindByUuid(None, uid, True, True)
        if vm is not None:
            return vm
        name = m["metadata"]["name"]
        found = [
            o
            for o, p in self.vs.retrieve(vim.VirtualMachine, ["name", "config.template"])
            if p.get("name") == name and not p.get("config.template")
        ]
        if len(found) > 1:
            raise RuntimeError(f"{len(found)} VMs are named {name!r}; refusing to guess")
        return found[0] if found else None

    def _create_vm(self, m: Obj) -> Any:
        spec = provider_spec(m)
        name = m["metadata"]["name"]
        placement = resolve_placement(self.finder, spec)
        devices = self.vs.properties(placement.template, ["config.hardware.device"]).get(
            "config.hardware.device", []
        )
        cspec = clone_spec(m, spec, placement, list(devices))
        log.info("Machine %s: cloning %s", name, spec.get("template"))
        task = placement.template.CloneVM_Task(folder=placement.folder, name=name, spec=cspec)
        try:
            vm = self.vs.wait_task(task)
        except vim.fault.DuplicateName:
            vm = self._find_vm(m)
            if vm is None:
                raise
        self._converge_hardware(vm, spec)
        return vm

    def _converge_hardware(self, vm: Any, spec: Obj) -> None:
        """Make sure the clone has the requested CPUs, memory and disk size (reconfigure what the
        clone did not apply), then power it on."""
        props = self.vs.properties(
            vm,
            [
                "config.hardware.numCPU",
                "config.hardware.numCoresPerSocket",
                "config.hardware.memoryMB",
                "config.hardware.device",
                "runtime.powerState",
            ],
        )
        cfg: Any = vim.vm.ConfigSpec()
        dirty = False
        cpus = int(spec.get("numCPUs") or 0)
        if cpus and props.get("config.hardware.numCPU") != cpus:
            cfg.numCPUs, dirty = cpus, True
        cores = int(spec.get("numCoresPerSocket") or 0) or cpus
        if cores and props.get("config.hardware.numCoresPerSocket") != cores:
            cfg.numCoresPerSocket, dirty = cores, True
        mem = int(spec.get("memoryMiB") or 0)
        if mem and props.get("config.hardware.memoryMB") != mem:
            cfg.memoryMB, dirty = mem, True
        disk_gib = int(spec.get("diskGiB") or 0)
        disks = [
            d
            for d in props.get("config.hardware.device") or []
            if isinstance(d, vim.vm.device.VirtualDisk)
        ]
        if disk_gib and disks and disks[0].capacityInKB < disk_gib * 1024 * 1024:
            d: Any = disks[0]
            d.capacityInKB = disk_gib * 1024 * 1024
            d.capacityInBytes = d.capacityInKB * 1024
            cfg.deviceChange = [vim.vm.device.VirtualDeviceSpec(operation="edit", device=d)]
            dirty = True
        if dirty:
            self.vs.wait_task(vm.ReconfigVM_Task(spec=cfg))
        if str(props.get("runtime.powerState")) != "poweredOn":
            self._power_on(vm)

    def _power_on(self, vm: Any) -> None:
        with contextlib.suppress(vim.fault.InvalidPowerState):
            self.vs.wait_task(vm.PowerOnVM_Task())

    def _update_from_vm(self, m: Obj, vm: Any) -> float | None:
        ns, name = _key(m)
        props = self.vs.properties(vm, VM_PROPS)
        if not props:
            return 0.5  # destroyed under us: look again
        status = m.get("status") or {}
        power = str(props.get("runtime.powerState", ""))
        if power != "poweredOn" and not (m.get("spec") or {}).get("providerID"):
            with self._vsphere_changes:
                self._power_on(vm)  # adopted mid-creation: finish what the clone started
            props = self.vs.properties(vm, VM_PROPS)
            power = str(props.get("runtime.powerState", ""))
        provider_id = PROVIDER_ID_PREFIX + str(props.get("config.uuid", ""))
        annotations = m["metadata"].get("annotations") or {}
        meta_patch: Obj = {}
        if (m.get("spec") or {}).get("providerID") != provider_id:
            meta_patch.setdefault("spec", {})["providerID"] = provider_id
        if annotations.get(INSTANCE_STATE_ANNOTATION) != power:
            meta_patch.setdefault("metadata", {})["annotations"] = {
                INSTANCE_STATE_ANNOTATION: power
            }
        if meta_patch:
            m = self._patch(m, meta_patch)
        addresses = machine_addresses(props)
        has_ip = any(a["type"] == "InternalIP" for a in addresses)
        phase = next_phase(status.get("phase"), has_ip, bool(_node_ref(m)))
        new: Obj = {}
        if status.get("addresses") != addresses:
            new["addresses"] = addresses
        if status.get("phase") != phase:
            new["phase"] = phase
        ps = status.get("providerStatus") or {}
        uuid_ = str(props.get("config.uuid", ""))
        if ps.get("instanceId") != uuid_ or ps.get("instanceState") != power:
            new["providerStatus"] = {
                "apiVersion": "machine.openshift.io/v1beta1",
                "kind": "VSphereMachineProviderStatus",
                "instanceId": uuid_,
                "instanceState": power,
                "conditions": [
                    {
                        "type": "MachineCreation",
                        "status": "True",
                        "reason": "MachineCreationSucceeded",
                        "message": "Machine successfully created",
                        "lastProbeTime": now_rfc3339(),
                        "lastTransitionTime": now_rfc3339(),
                    }
                ],
            }
        if new:
            new["lastUpdated"] = now_rfc3339()
            self._patch_status(m, new)
            if "phase" in new:
                log.info("Machine %s/%s: phase %s, addresses %s", ns, name, phase, addresses)
        self._ensure_vm_watcher((ns, name), vm)
        return None

    def _delete_machine(self, m: Obj, finalizers: list[str]) -> None:
        ns, name = _key(m)
        if FINALIZER not in finalizers:
            self._stop_vm_watcher((ns, name))
            return None
        if (m.get("status") or {}).get("phase") != PHASE_DELETING:
            m = self._patch_status(m, {"phase": PHASE_DELETING, "lastUpdated": now_rfc3339()})
        self._stop_vm_watcher((ns, name))
        vm = self._find_vm(m)
        if vm is not None:
            with self._vsphere_changes, contextlib.suppress(vmodl.fault.ManagedObjectNotFound):
                state = self.vs.properties(vm, ["runtime.powerState"]).get("runtime.powerState")
                if str(state) == "poweredOn":
                    with contextlib.suppress(vim.fault.InvalidPowerState):
                        self.vs.wait_task(vm.PowerOffVM_Task())
                self.vs.wait_task(vm.Destroy_Task())
                log.info("Machine %s/%s: VM destroyed", ns, name)
            record_event(self.api, m, "Delete", f"Deleted machine {name}", "Normal", COMPONENT)
        node = _node_ref(m)
        if node:
            try:
                self.core.delete_node(node)
                log.info("Machine %s/%s: Node %s deleted", ns, name, node)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        try:
            self._patch(
                m,
                {"metadata": {"finalizers": [f for f in finalizers if f != FINALIZER]}},
                versioned=True,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        return None

    def _set_failed(self, m: Obj, message: str, reason: str | None) -> None:
        annotations = m["metadata"].get("annotations") or {}
        if annotations.get(INSTANCE_STATE_ANNOTATION) != "Unknown":
            m = self._patch(
                m, {"metadata": {"annotations": {INSTANCE_STATE_ANNOTATION: "Unknown"}}}
            )
        st: Obj = {"phase": PHASE_FAILED, "errorMessage": message, "lastUpdated": now_rfc3339()}
        if reason:
            st["errorReason"] = reason
        st["providerStatus"] = {
            "apiVersion": "machine.openshift.io/v1beta1",
            "kind": "VSphereMachineProviderStatus",
            "conditions": [
                {
                    "type": "MachineCreation",
                    "status": "False",
                    "reason": "MachineCreationFailed",
                    "message": message,
                    "lastProbeTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                }
            ],
        }
        self._patch_status(m, st)
        log.warning("Machine %s: Failed: %s", m["metadata"]["name"], message)

    def _patch(self, m: Obj, body: Obj, versioned: bool = False) -> Obj:
        if versioned:
            body.setdefault("metadata", {})["resourceVersion"] = m["metadata"]["resourceVersion"]
        out: Obj = _obj(
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, m["metadata"]["namespace"], "machines", m["metadata"]["name"], body
            )
        )
        return out

    def _patch_status(self, m: Obj, status: Obj) -> Obj:
        return _obj(
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                m["metadata"]["namespace"],
                "machines",
                m["metadata"]["name"],
                {"status": status},
            )
        )

    # -- VM watchers ---------------------------------------------------------------------------

    def _ensure_vm_watcher(self, key: tuple[str, str], vm: Any) -> None:
        with self._lock:
            current = self._vm_watchers.get(key)
            if current and current[0] == vm._moId and not current[1].is_set():
                return
            if current:
                current[1].set()
            ev = threading.Event()
            self._vm_watchers[key] = (vm._moId, ev)
        threading.Thread(
            target=self._watch_vm, args=(key, vm, ev), name=f"vm-{key[1]}", daemon=True
        ).start()

    def _stop_vm_watcher(self, key: tuple[str, str]) -> None:
        with self._lock:
            current = self._vm_watchers.pop(key, None)
        if current:
            current[1].set()

    def _watch_vm(self, key: tuple[str, str], vm: Any, stop: threading.Event) -> None:
        """Re-reconcile the Machine whenever vCenter reports a change of its VM's guest NICs, IP or
        power state: WaitForUpdatesEx on a private property collector with a bounded wait, resumed
        from the returned version. A VM still without an IP past the deadline is logged (the
        Machine stays Provisioning, as with the real provider)."""
        pc = None
        try:
            pc = self.vs.content.propertyCollector.CreatePropertyCollector()
            pc.CreateFilter(
                vmodl.query.PropertyCollector.FilterSpec(
                    objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm, skip=False)],
                    propSet=[
                        vmodl.query.PropertyCollector.PropertySpec(
                            type=vim.VirtualMachine,
                            pathSet=["guest.net", "guest.ipAddress", "runtime.powerState", "name"],
                        )
                    ],
                ),
                partialUpdates=True,
            )
            version = ""
            started = dt.datetime.now(dt.UTC)
            warned = False
            while not stop.is_set() and not self.stop.is_set():
                upd = pc.WaitForUpdatesEx(
                    version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=5)
                )
                if upd is not None:
                    version = upd.version
                    if any(
                        oc.kind == "leave"
                        for fs in upd.filterSet or []
                        for oc in fs.objectSet or []
                    ):
                        self.queue.add(("Machine", *key))
                        return
                    self.queue.add(("Machine", *key))
                    continue
                if not warned:
                    with self._lock:
                        m = self.machines.get(key) or {}
                    phase = (m.get("status") or {}).get("phase")
                    age = (dt.datetime.now(dt.UTC) - started).total_seconds()
                    if phase == PHASE_PROVISIONING and age > self.ip_wait:
                        log.warning(
                            "Machine %s/%s: its VM has reported no IP for %.0fs (are VMware Tools "
                            "running in the guest?); it stays Provisioning",
                            *key,
                            age,
                        )
                        warned = True
        except vmodl.fault.ManagedObjectNotFound:
            self.queue.add(("Machine", *key))
        except Exception as exc:
            if not stop.is_set() and not self.stop.is_set():
                log.warning("VM watch of %s/%s failed: %s; re-reconciling", *key, _brief(exc))
                with self._lock:
                    if self._vm_watchers.get(key, (None, None))[1] is stop:
                        self._vm_watchers.pop(key, None)
                self.queue.add_after(("Machine", *key), 1.0)
        finally:
            if pc is not None:
                with contextlib.suppress(Exception):
                    pc.DestroyPropertyCollector()


def _obj(x: Any) -> Obj:
    """A JSON object returned by the custom-objects API (typed `object` by the client)."""
    assert isinstance(x, dict)
    return x


def _key(o: Obj) -> tuple[str, str]:
    meta = o.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", "")


def _node_ref(m: Obj) -> str | None:
    ref = (m.get("status") or {}).get("nodeRef") or {}
    name = ref.get("name")
    return str(name) if name else None


def _controller_ref(ms: Obj) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "MachineSet",
        "name": ms["metadata"]["name"],
        "uid": ms["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"API {exc.status} {exc.reason}: {str(exc.body)[:300]}"
    msg = getattr(exc, "msg", None) or str(exc)
    return f"{type(exc).__name__}: {msg}"[:400]


def main() -> int:
    setup_logging("machine-api")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready = os.environ.get("LAB_CONTROLLER_READY_FILE")
    controller = MachineAPI(os.environ, stop)
    controller.run(Path(ready) if ready else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
