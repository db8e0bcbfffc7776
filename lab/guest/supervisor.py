"""The guest supervisor: makes vcsim's VMs behave like Windows machines.

vcsim is a real vSphere API, but its VMs are empty: nothing boots, VMware Tools never report, clones get
blank disks. This daemon follows vCenter the way a real hypervisor's guests would be seen from it, and
turns each VM into a Windows guest twin (`lab.guest.state.GuestDisk` in `<lab>/guests/<vm moref>/`):

- it watches vCenter event-driven (an EventHistoryCollector whose `latestPage` is waited on with
  `WaitForUpdatesEx`, then drained in order with `ReadNextEvents`), with its own login, TLS verified
  against the lab CA, and re-logs in after any failure without losing events (keys already handled are
  skipped when the new collector replays the history);
- clone → copies the source's disk; power-on → after a boot delay, setup / OOBE / normal boot
  (`lab.guest.boot`); an EFI VM with an empty disk and the Windows ISO first shows "Press any key to
  boot from CD or DVD" for LAB_EFI_KEY_WINDOW seconds and boots the CD only if vCenter delivered a key
  (PutUsbScanCodes, read from the vcsim control endpoint) while it showed; the VM's firmware and its
  boot disk's controller go into runtime.json for Windows PE's driver rule; then reports Tools state, version, host name and IP through the vcsim control
  endpoint while the guest's `VMTools` service runs (first a short-lived APIPA address, as DHCP is slow
  on a real boot); and runs a real `sshd` (`lab.guest.sshd`) while the guest's sshd service runs and
  the firewall allows TCP 22;
- guest commands run over SSH notify it through a unix socket (`lab.guest.control`): "changed"
  re-evaluates Tools and sshd, "restart" reboots the guest, "shutdown"/"sysprep" power the VM off
  through vCenter after a short delay;
- power-off, removal and its own stop take sshd down with the guest.

Every decision is one line in `<lab>/logs/guest-supervisor.log`: VM, what, why. Component interface
(see lab/cli.py): `start(ctx)` publishes LAB_GUESTS_DIR and LAB_SUPERVISOR_SOCKET.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import logging
import os
import re
import shutil
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lab.guest import boot as guest_boot
from lab.guest import faults as guest_faults
from lab.guest.control import ControlError, ControlServer, SupervisorClient
from lab.guest.sshd import GuestSshd
from lab.guest.state import RUNNING, GuestDisk, GuestState, Runtime
from lab.guest.timing import Timing, lab_timing
from lab.paths import LabPaths
from lab.process import LabError, read_pid, start_daemon, stop_daemon

NAME = "guest-supervisor"
log = logging.getLogger("lab.guest.supervisor")

# The vCenter events the twin reacts to (vcsim matches concrete type names).
EVENT_TYPES = [
    "VmCreatedEvent",
    "VmRegisteredEvent",
    "VmClonedEvent",
    "VmDeployedEvent",
    "VmPoweredOnEvent",
    "VmPoweredOffEvent",
    "VmSuspendedEvent",
    "VmRemovedEvent",
    "VmRenamedEvent",
    "VmReconfiguredEvent",
]
WAIT_SECONDS = 5  # bounded WaitForUpdatesEx
NOTIFY_EVENTS = {"changed", "restart", "shutdown", "sysprep", "guestinfo", "ssh-refuse"}
CURRENT_TOOLS = (12, 0, 0)  # Tools at or above this version report guestToolsCurrent


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    """What the daemon needs, all from the environment the lab publishes (see lab.vcsim)."""

    paths: LabPaths
    govc_url: str
    username: str
    password: str
    ca_file: str
    control_url: str
    datastore: str
    datastore_dir: Path
    guest_net: str
    boot_delay: float  # power-on (or restart) -> Windows up
    apipa_seconds: float  # how long Tools report the APIPA address before the DHCP one
    shutdown_delay: (
        float  # Restart-Computer / Stop-Computer / sysprep /shutdown -> the guest goes down
    )
    efi_key_window: float = 2.0  # how long "Press any key to boot from CD or DVD" shows (scaled)
    timing: Timing = field(default_factory=Timing)  # LAB_TIMING profile (lab.guest.timing)

    @classmethod
    def from_env(cls, paths: LabPaths | None = None) -> Settings:
        env = os.environ
        need = [
            "GOVC_URL",
            "GOVC_TLS_CA_CERTS",
            "LAB_VCSIM_CONTROL_URL",
            "LAB_VSPHERE_DATASTORE",
            "LAB_VSPHERE_DATASTORE_DIR",
        ]
        if missing := [v for v in need if not env.get(v)]:
            raise LabError(
                f"guest supervisor: {', '.join(missing)} not set; start lab.vcsim first "
                "(`python -m lab up`, or LAB_COMPONENTS=vcsim,guest.supervisor)"
            )
        timing = Timing.from_env(env)
        return cls(
            timing=timing,
            paths=paths or LabPaths.default(),
            govc_url=env["GOVC_URL"],
            username=env.get("GOVC_USERNAME", "administrator@vsphere.local"),
            password=env.get("GOVC_PASSWORD", ""),
            ca_file=env["GOVC_TLS_CA_CERTS"],
            control_url=env["LAB_VCSIM_CONTROL_URL"],
            datastore=env["LAB_VSPHERE_DATASTORE"],
            datastore_dir=Path(env["LAB_VSPHERE_DATASTORE_DIR"]),
            guest_net=env.get("LAB_GUEST_NET", "77"),
            boot_delay=_float_env("LAB_BOOT_DELAY", 0.5),
            apipa_seconds=_float_env("LAB_APIPA_SECONDS", 0.3),
            shutdown_delay=_float_env("LAB_GUEST_SHUTDOWN_DELAY", 0.5),
            efi_key_window=_float_env("LAB_EFI_KEY_WINDOW", 2.0),
        )


# -- pure helpers ---------------------------------------------------------------------------------
def encode_tools_version(version: str) -> int:
    """VMware's encoding of a Tools version in `guest.toolsVersion`: major*1024 + minor*32 + patch."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]] + [0, 0, 0]
    return parts[0] * 1024 + parts[1] * 32 + parts[2]


def tools_version_status(version: str) -> str:
    if not version:
        return "guestToolsNotInstalled"
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    return "guestToolsCurrent" if parts >= CURRENT_TOOLS else "guestToolsSupportedOld"


def guest_os_identity(state: GuestState) -> tuple[str, str]:
    """(guestFullName, guestId) as VMware Tools report them for the installed build."""
    if state.build >= 26100:
        return "Microsoft Windows Server 2025 (64-bit)", "windows2022srvNext_64Guest"
    if state.build >= 20348:
        return "Microsoft Windows Server 2022 (64-bit)", "windows2019srvNext_64Guest"
    return "Microsoft Windows Server 2019 (64-bit)", "windows2019srv_64Guest"


def apipa_address(vm: str) -> str:
    """The link-local address Windows assigns itself before DHCP answers (stable per VM)."""
    h = hashlib.sha256(vm.encode()).digest()
    return f"169.254.{1 + h[0] % 254}.{1 + h[1] % 254}"


def guest_ip(net: str, n: int) -> str:
    """The n-th guest address (n >= 0) in 127.<net>.0.0/16, skipping .0 and .255."""
    return f"127.{net}.{n // 254}.{n % 254 + 1}"


def cdrom_letters(
    devices: list[Any], datastore: str, datastore_dir: Path
) -> tuple[dict[str, str], list[str]]:
    """Drive letters of a VM's CD-ROM drives, D: first, in (controller, unit) order, as Windows
    assigns them; maps each connected (or start-connected) drive holding an ISO of the lab's datastore
    to the ISO's host path. Returns (cdroms, notes on drives that hold nothing usable)."""
    from pyVmomi import vim

    cds = [d for d in devices if isinstance(d, vim.vm.device.VirtualCdrom)]
    cds.sort(key=lambda d: (d.controllerKey or 0, d.unitNumber or 0))
    out: dict[str, str] = {}
    notes: list[str] = []
    for i, dev in enumerate(cds):
        letter = chr(ord("D") + i)
        conn = dev.connectable
        backing = dev.backing
        if (
            not isinstance(backing, vim.vm.device.VirtualCdrom.IsoBackingInfo)
            or not backing.fileName
        ):
            continue
        if conn is not None and not (conn.connected or conn.startConnected):
            notes.append(f"{letter}: {backing.fileName} is not connected")
            continue
        m = re.match(r"\[(?P<ds>[^\]]+)\]\s*(?P<path>.*)", backing.fileName)
        if not m or m["ds"] != datastore:
            notes.append(f"{letter}: {backing.fileName} is not on datastore {datastore}")
            continue
        host = datastore_dir / m["path"]
        if not host.is_file():
            notes.append(f"{letter}: {backing.fileName} does not exist ({host})")
            continue
        out[letter] = str(host)
    return out, notes


# -- vCenter session -------------------------------------------------------------------------------
class VCenter:
    """One pyvmomi login (TLS verified with the lab CA) that logs in again after any failure."""

    def __init__(self, s: Settings, purpose: str) -> None:
        self.s = s
        self.purpose = purpose
        self.si: Any = None

    def connect(self) -> Any:
        from pyVim.connect import SmartConnect

        url = urlparse(self.s.govc_url)
        ctx = ssl.create_default_context(cafile=self.s.ca_file)
        self.disconnect()
        self.si = SmartConnect(
            host=url.hostname or "127.0.0.1",
            port=url.port or 443,
            user=self.s.username,
            pwd=self.s.password,
            path=url.path or "/sdk",
            sslContext=ctx,
            httpConnectionTimeout=WAIT_SECONDS + 30,
        )
        return self.si

    def disconnect(self) -> None:
        if self.si is not None:
            with contextlib.suppress(Exception):
                self.si.content.sessionManager.Logout()
            self.si = None

    def call(self, fn: Callable[[Any], Any], attempts: int = 3) -> Any:
        """Run fn(service_instance); on failure log in again and retry (a session timeout or an
        injected fault must not stop the supervisor)."""
        from pyVmomi import vim

        for attempt in range(attempts):
            try:
                if self.si is None:
                    self.connect()
                return fn(self.si)
            except vim.fault.NotAuthenticated as exc:
                log.info(
                    "vcenter(%s): session lost (%s); logging in again",
                    self.purpose,
                    getattr(exc, "msg", exc),
                )
                self.si = None
            except Exception as exc:
                if attempt == attempts - 1:
                    raise
                log.info(
                    "vcenter(%s): %s: %s; retrying with a new login",
                    self.purpose,
                    type(exc).__name__,
                    exc,
                )
                self.si = None
                time.sleep(0.2 * (attempt + 1))
        return fn(self.si) if self.si else None


def _vm_ref(si: Any, moref: str) -> Any:
    from pyVmomi import vim

    return vim.VirtualMachine(moref, si._stub)


def _retrieve_vm(si: Any, moref: str) -> dict[str, Any] | None:
    """name, power state, template flag and devices of one VM; None when it no longer exists."""
    from pyVmomi import vim, vmodl

    pc = si.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=_vm_ref(si, moref))],
        propSet=[
            vmodl.query.PropertyCollector.PropertySpec(
                type=vim.VirtualMachine,
                pathSet=[
                    "name",
                    "runtime.powerState",
                    "config.template",
                    "config.guestId",
                    "config.firmware",
                    "config.hardware.device",
                ],
            )
        ],
    )
    try:
        res = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
    except vmodl.fault.ManagedObjectNotFound:
        return None
    if not res or not res.objects:
        return None
    props = {p.name: p.val for p in res.objects[0].propSet}
    return {
        "name": props.get("name", ""),
        "power": str(props.get("runtime.powerState", "")),
        "template": bool(props.get("config.template", False)),
        "guest_id": str(props.get("config.guestId") or ""),
        "firmware": str(props.get("config.firmware") or "bios"),
        "devices": list(props.get("config.hardware.device", []) or []),
    }


def boot_disk_controller(devices: list[Any]) -> str:
    """The kind of controller the VM's first disk (lowest controller/unit) hangs on."""
    from pyVmomi import vim

    kinds = [
        (vim.vm.device.ParaVirtualSCSIController, "pvscsi"),
        (vim.vm.device.VirtualLsiLogicSASController, "lsilogic-sas"),
        (vim.vm.device.VirtualLsiLogicController, "lsilogic"),
        (vim.vm.device.VirtualBusLogicController, "buslogic"),
        (vim.vm.device.VirtualNVMEController, "nvme"),
        (vim.vm.device.VirtualSATAController, "sata"),
        (vim.vm.device.VirtualIDEController, "ide"),
    ]
    by_key = {d.key: d for d in devices}
    disks = sorted(
        (d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)),
        key=lambda d: (d.controllerKey or 0, d.unitNumber or 0),
    )
    if not disks:
        return ""
    ctrl = by_key.get(disks[0].controllerKey)
    return next((name for cls, name in kinds if isinstance(ctrl, cls)), "")


def _retrieve_all_vms(si: Any) -> dict[str, dict[str, Any]]:
    from pyVmomi import vim, vmodl

    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        q = vmodl.query.PropertyCollector
        spec = q.FilterSpec(
            objectSet=[
                q.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        q.TraversalSpec(
                            name="v", type=vim.view.ContainerView, path="view", skip=False
                        )
                    ],
                )
            ],
            propSet=[
                q.PropertySpec(type=vim.VirtualMachine, pathSet=["name", "runtime.powerState"])
            ],
        )
        out: dict[str, dict[str, Any]] = {}
        res = content.propertyCollector.RetrievePropertiesEx([spec], q.RetrieveOptions())
        while res:
            for obj in res.objects:
                props = {p.name: p.val for p in obj.propSet}
                out[obj.obj._moId] = {
                    "name": props.get("name", ""),
                    "power": str(props.get("runtime.powerState")),
                }
            res = (
                content.propertyCollector.ContinueRetrievePropertiesEx(res.token)
                if res.token
                else None
            )
        return out
    finally:
        view.DestroyView()


def _event_dict(e: Any) -> dict[str, Any]:
    kind = type(e).__name__.rsplit(".", 1)[-1]
    vm_arg = getattr(e, "vm", None)
    d: dict[str, Any] = {
        "key": int(e.key),
        "type": kind,
        "vm": vm_arg.vm._moId if vm_arg is not None and vm_arg.vm is not None else "",
        "name": vm_arg.name if vm_arg is not None else "",
    }
    if kind == "VmClonedEvent" and getattr(e, "sourceVm", None) is not None:
        d["source"] = e.sourceVm.vm._moId
        d["source_name"] = e.sourceVm.name
    elif kind == "VmDeployedEvent" and getattr(e, "srcTemplate", None) is not None:
        d["source"] = e.srcTemplate.vm._moId
        d["source_name"] = e.srcTemplate.name
    elif kind == "VmRenamedEvent":
        d["new_name"] = getattr(e, "newName", "")
    return d


# -- the twins --------------------------------------------------------------------------------------
@dataclass
class Twin:
    vm: str
    name: str
    ip: str
    disk: GuestDisk
    sshd: GuestSshd
    powered_on: bool = False
    booted: bool = False
    gen: int = 0  # bumped at every power transition; stale timers carry an old one
    ip_ready: bool = False  # DHCP answered (the APIPA phase of this boot is over)
    reported: dict[str, str] = field(default_factory=dict)
    # Set when Windows goes down: the first-logon thread of that boot stops.
    down: threading.Event = field(default_factory=threading.Event)
    refuse_until: float = 0.0  # an SSH "refuse" fault: sshd stays down until then (monotonic)


@dataclass(order=True)
class _Item:
    due: float
    seq: int
    kind: str = field(compare=False)
    vm: str = field(compare=False, default="")
    data: dict[str, Any] = field(compare=False, default_factory=dict)
    gen: int | None = field(compare=False, default=None)


class Supervisor:
    def __init__(self, s: Settings) -> None:
        from lab.vcsim import VcsimControl

        self.s = s
        self.paths = s.paths
        self.control = VcsimControl(s.control_url)
        self.twins: dict[str, Twin] = {}
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.watch_vc = VCenter(s, "events")
        self.work_vc = VCenter(s, "worker")
        self.server: ControlServer | None = None
        self.paths.guests.mkdir(parents=True, exist_ok=True)
        (self.paths.logs / "guests").mkdir(parents=True, exist_ok=True)

    # -- timing -------------------------------------------------------------------------------------
    def timing(self) -> Timing:
        """LAB_TIMING, or the profile a test switched the running lab to (lab.guest.timing)."""
        return lab_timing(self.paths.guests, self.s.timing)

    def boot_delay(self) -> float:
        return max(self.s.boot_delay, self.timing().seconds("restart"))

    def shutdown_delay(self) -> float:
        return max(self.s.shutdown_delay, self.timing().seconds("shutdown"))

    # -- queue ----------------------------------------------------------------------------------
    def put(
        self,
        kind: str,
        vm: str = "",
        data: dict[str, Any] | None = None,
        *,
        delay: float = 0.0,
        gen: int | None = None,
    ) -> None:
        with self._cv:
            heapq.heappush(
                self._heap,
                _Item(time.monotonic() + delay, next(self._seq), kind, vm, data or {}, gen),
            )
            self._cv.notify()

    def _next_item(self) -> _Item | None:
        with self._cv:
            while not self._stop.is_set():
                now = time.monotonic()
                if self._heap and self._heap[0].due <= now:
                    return heapq.heappop(self._heap)
                self._cv.wait(min(self._heap[0].due - now, 1.0) if self._heap else 1.0)
        return None

    # -- logging --------------------------------------------------------------------------------
    def decide(self, vm: str, what: str, why: str) -> None:
        t = self.twins.get(vm)
        label = f"{vm} ({t.name})" if t and t.name else vm or "-"
        first, _, more = why.partition("\n")
        log.info(
            "%s: %s: %s%s", label, what, first, " (details in the guest's log)" if more else ""
        )
        if t is not None:
            self.guest_log(t, f"{what}: {why}")

    def guest_log(self, t: Twin, msg: str) -> None:
        path = guest_boot.guest_log_path(self.paths.logs, t.vm)
        with open(path, "a") as fh:
            for line in msg.splitlines() or [""]:
                fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> None:
        watcher = threading.Thread(target=self._watch, name="vcenter-events", daemon=True)
        watcher.start()
        worker = threading.Thread(target=self._work, name="worker", daemon=True)
        worker.start()
        while not self._connected.wait(0.5):
            if self._stop.is_set():
                return
        self.server = ControlServer(self.paths.supervisor_socket, self._on_notify)
        self.server.start()
        log.info("-: ready: control socket %s", self.paths.supervisor_socket)
        self._stop.wait()
        self.shutdown()
        worker.join(timeout=5)

    def stop(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.twins.values()):
            if t.sshd.stop():
                self.decide(t.vm, "sshd stopped", "the guest supervisor stops")
        self.watch_vc.disconnect()
        self.work_vc.disconnect()
        log.info("-: stopped")

    def _on_notify(self, vm: str, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        if event in guest_faults.CONTROL_EVENTS:  # the SSH fault control API: lab-wide, no queue
            return guest_faults.handle_control(guest_faults.Store(self.paths.guests), event, data)
        if event not in NOTIFY_EVENTS:
            raise ValueError(f"unknown event {event!r} (known: {', '.join(sorted(NOTIFY_EVENTS))})")
        if vm not in self.twins:
            raise ValueError(f"unknown VM {vm!r}")
        self.put("notify", vm, {"event": event, **data})
        return None

    # -- vCenter events -------------------------------------------------------------------------
    def _watch(self) -> None:
        from pyVmomi import vim, vmodl

        last_key = -1
        backoff = 0.5
        while not self._stop.is_set():
            collector = None
            try:
                si = self.watch_vc.connect()
                content = si.content
                spec = vim.event.EventFilterSpec(
                    entity=vim.event.EventFilterSpec.ByEntity(
                        entity=content.rootFolder,
                        recursion=vim.event.EventFilterSpec.RecursionOption.all,
                    ),
                    eventTypeId=EVENT_TYPES,
                )
                collector = content.eventManager.CreateCollectorForEvents(spec)
                why = "supervisor start"
                if last_key >= 0:
                    # A new collector replays vCenter's history: skip what was handled. Keys lower
                    # than the last one handled mean a new vCenter (vcsim restarted): start over.
                    top = max((int(e.key) for e in collector.latestPage or []), default=0)
                    if top < last_key:
                        why, last_key = "vCenter restarted (event keys started over)", -1
                        log.info("-: %s: reconciling everything", why)
                fresh = last_key < 0
                if fresh:
                    collector.ResetCollector()  # history before now is covered by the reconcile
                pc = content.propertyCollector.CreatePropertyCollector()
                q = vmodl.query.PropertyCollector
                pc.CreateFilter(
                    q.FilterSpec(
                        objectSet=[q.ObjectSpec(obj=collector)],
                        propSet=[
                            q.PropertySpec(
                                type=vim.event.EventHistoryCollector, pathSet=["latestPage"]
                            )
                        ],
                    ),
                    partialUpdates=False,
                )
                if fresh:
                    self.put("reconcile-all", data={"why": why})
                else:
                    last_key = self._drain(collector, last_key)  # events missed while disconnected
                    self.put("reconcile-all", data={"why": "re-login after a vCenter error"})
                self._connected.set()
                backoff = 0.5
                version = ""
                while not self._stop.is_set():
                    upd = pc.WaitForUpdatesEx(version, q.WaitOptions(maxWaitSeconds=WAIT_SECONDS))
                    if upd is not None:
                        version = upd.version
                    last_key = self._drain(collector, last_key)
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.info(
                    "-: vcenter watch interrupted: %s: %s; logging in again in %.1fs",
                    type(exc).__name__,
                    getattr(exc, "msg", exc),
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if collector is not None and self._stop.is_set():
                    with contextlib.suppress(Exception):
                        collector.DestroyCollector()

    def _drain(self, collector: Any, last_key: int) -> int:
        while True:
            events = collector.ReadNextEvents(100)
            if not events:
                return last_key
            for e in events:
                if int(e.key) <= last_key:
                    continue
                last_key = int(e.key)
                self.put("event", data=_event_dict(e))

    # -- worker ---------------------------------------------------------------------------------
    def _work(self) -> None:
        while (item := self._next_item()) is not None:
            try:
                self._handle(item)
            except Exception as exc:
                log.exception("%s: %s failed: %s", item.vm or "-", item.kind, exc)

    def _handle(self, item: _Item) -> None:
        t = self.twins.get(item.vm) if item.vm else None
        if item.gen is not None and (t is None or t.gen != item.gen):
            return  # a timer of an earlier power cycle
        if item.kind == "event":
            self._on_event(item.data)
        elif item.kind == "reconcile-all":
            self._reconcile_all(item.data.get("why", ""))
        elif item.kind == "boot" and t is not None:
            self._boot(t, item.data.get("why", "power-on"), item.data)
        elif item.kind == "dhcp" and t is not None:
            t.ip_ready = True
            self._reconcile(t, "DHCP lease obtained")
        elif item.kind == "notify" and t is not None:
            self._on_guest(t, item.data)
        elif item.kind == "go-down" and t is not None:
            self._go_down(t, item.data)
        elif item.kind == "retry-report" and t is not None:
            self._reconcile(t, "retrying the Tools report")
        elif item.kind == "sshd-back" and t is not None:
            self._reconcile(t, "the SSH refuse fault is over")

    # -- event handlers ---------------------------------------------------------------------------
    def _twin(self, vm: str, name: str) -> Twin:
        t = self.twins.get(vm)
        if t is not None:
            if name and name != t.name:
                t.name = name
                self._save_runtime(t)
            return t
        disk = GuestDisk(self.paths.guests / vm)
        rt = disk.runtime()
        ip = rt.ip or self._allocate_ip()
        t = Twin(
            vm=vm, name=name or rt.name, ip=ip, disk=disk, sshd=GuestSshd(self.paths, vm, disk.root)
        )
        self.twins[vm] = t
        if not disk.exists():
            disk.create()
        self._save_runtime(t)
        return t

    def _allocate_ip(self) -> str:
        used = {t.ip for t in self.twins.values()}
        for d in self.paths.guests.iterdir() if self.paths.guests.exists() else []:
            used.add(GuestDisk(d).runtime().ip)
        for n in itertools.count():
            ip = guest_ip(self.s.guest_net, n)
            if ip not in used:
                return ip
        raise AssertionError("unreachable")

    def _save_runtime(
        self, t: Twin, cdroms: dict[str, str] | None = None, hardware: tuple[str, str] | None = None
    ) -> None:
        rt = t.disk.runtime()
        firmware, controller = hardware or (rt.firmware, rt.boot_disk_controller)
        t.disk.save_runtime(
            Runtime(
                vm=t.vm,
                name=t.name,
                ip=t.ip,
                powered_on=t.powered_on,
                supervisor_socket=str(self.paths.supervisor_socket),
                cdroms=rt.cdroms if cdroms is None else cdroms,
                firmware=firmware,
                boot_disk_controller=controller,
                timing=self.timing().to_json(),
            )
        )

    def _on_event(self, e: dict[str, Any]) -> None:
        kind, vm, name = e["type"], e["vm"], e["name"]
        if not vm:
            return
        if kind in ("VmCreatedEvent", "VmRegisteredEvent"):
            t = self._twin(vm, name)
            self.decide(vm, "created", f"{kind} #{e['key']}: blank disk, guest address {t.ip}")
        elif kind in ("VmClonedEvent", "VmDeployedEvent"):
            t = self._twin(vm, name)
            src = e.get("source", "")
            src_disk = GuestDisk(self.paths.guests / src) if src else None
            if src_disk is not None and src_disk.exists():
                src_disk.clone_to(t.disk)
                st = t.disk.load()
                what = (
                    f"installed ({st.product_name}, {st.computer_name})"
                    if st.installed
                    else "no OS"
                )
                self.decide(
                    vm,
                    "disk cloned",
                    f"{kind} #{e['key']} from {src} ({e.get('source_name')}): {what}",
                )
            else:
                self.decide(
                    vm, "blank disk", f"{kind} #{e['key']}: source {src or '?'} has no guest disk"
                )
        elif kind == "VmPoweredOnEvent":
            t = self._twin(vm, name)
            if t.powered_on:
                return  # already seen by a reconcile
            self._power_on(t, f"{kind} #{e['key']}")
        elif kind in ("VmPoweredOffEvent", "VmSuspendedEvent"):
            t = self._twin(vm, name)
            self._power_off(t, f"{kind} #{e['key']}")
        elif kind == "VmRemovedEvent":
            self._remove(vm, f"{kind} #{e['key']}")
        elif kind == "VmRenamedEvent":
            t = self._twin(vm, e.get("new_name") or name)
            self.decide(vm, "renamed", f"{kind} #{e['key']}")
        elif kind == "VmReconfiguredEvent":
            t = self._twin(vm, name)
            if t.powered_on:
                self._refresh_cdroms(t)

    def _power_on(self, t: Twin, why: str) -> None:
        t.powered_on, t.booted, t.ip_ready = True, False, False
        t.gen += 1
        t.reported.clear()
        self._save_runtime(t)
        self.decide(t.vm, "powered on", f"{why}; booting in {self.boot_delay():.2f}s")
        self._reconcile(t, "power-on: firmware running, no OS yet")
        self.put("boot", t.vm, {"why": why}, delay=self.boot_delay(), gen=t.gen)

    def _power_off(self, t: Twin, why: str) -> None:
        was = t.powered_on
        t.powered_on, t.booted, t.ip_ready = False, False, False
        t.gen += 1
        t.down.set()
        if t.sshd.stop():
            self.decide(t.vm, "sshd stopped", f"VM powered off ({why})")
        if t.disk.exists():
            with t.disk.edit() as st:
                for svc in st.services.values():
                    svc.status = "Stopped"
        self._save_runtime(t)
        t.reported.clear()
        self._reconcile(t, f"powered off ({why})")
        if was:
            self.decide(t.vm, "powered off", why)

    def _remove(self, vm: str, why: str) -> None:
        t = self.twins.pop(vm, None)
        if t is not None:
            t.sshd.stop()
        shutil.rmtree(self.paths.guests / vm, ignore_errors=True)
        log.info("%s: removed: %s; guest disk deleted", vm, why)

    def _refresh_cdroms(self, t: Twin) -> dict[str, Any] | None:
        info = self.work_vc.call(lambda si: _retrieve_vm(si, t.vm))
        if info is None:
            return None
        cdroms, notes = cdrom_letters(info["devices"], self.s.datastore, self.s.datastore_dir)
        if t.name != info["name"]:
            t.name = info["name"]
        self._save_runtime(t, cdroms, (info["firmware"], boot_disk_controller(info["devices"])))
        for note in notes:
            self.guest_log(t, f"CD-ROM {note}")
        return info

    def _reconcile_all(self, why: str) -> None:
        vms = self.work_vc.call(_retrieve_all_vms)
        for vm, info in vms.items():
            t = self._twin(vm, info["name"])
            on = info["power"] == "poweredOn"
            if on and not t.powered_on:
                self._power_on(t, f"reconcile ({why}): VM is powered on")
            elif not on and t.powered_on:
                self._power_off(t, f"reconcile ({why}): VM is {info['power']}")
        for vm in list(self.twins):
            if vm not in vms:
                self._remove(vm, f"reconcile ({why}): VM no longer in vCenter")
        for d in self.paths.guests.iterdir():
            if d.is_dir() and d.name not in vms:
                shutil.rmtree(d, ignore_errors=True)
                log.info(
                    "%s: stale guest disk deleted: reconcile (%s): no such VM in vCenter",
                    d.name,
                    why,
                )
        self.decide(
            "",
            "reconciled",
            f"{why}: {len(vms)} VMs, {sum(t.powered_on for t in self.twins.values())} powered on",
        )

    def _boot(self, t: Twin, why: str, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        info = self._refresh_cdroms(t)
        if info is None or info["power"] != "poweredOn":
            self.decide(t.vm, "boot skipped", f"VM is {info['power'] if info else 'gone'}")
            return
        if (
            not t.disk.load().installed
            and info["guest_id"]
            and not info["guest_id"].startswith("windows")
        ):
            self.decide(
                t.vm,
                "not a Windows guest",
                f"guestId {info['guest_id']} and no Windows on the disk: left as vCenter shows it",
            )
            return
        if (
            not data.get("setup_ran")
            and guest_boot.needs_boot_key(t.disk)
            and not self._boot_key(t, why, data.get("prompt_at"))
        ):
            return
        setup_time = self.timing().seconds("setup")
        if not t.disk.load().installed and setup_time > 0 and not data.get("setup_ran"):
            # Windows Setup copies files and restarts a few times before anyone can log on.
            self.decide(t.vm, "windows setup", f"installing: {setup_time:.2f}s (timing profile)")
            self.put("boot", t.vm, {"why": why, "setup_ran": True}, delay=setup_time, gen=t.gen)
            return
        cds = t.disk.runtime().cdroms
        self.decide(
            t.vm,
            "booting",
            f"{why}; CD-ROMs: {', '.join(f'{k}:={Path(v).name}' for k, v in cds.items()) or 'none'}",
        )
        outcome = guest_boot.boot(t.disk, lambda msg: self.decide(t.vm, "boot", msg))
        t.booted = outcome.running
        self.decide(t.vm, "boot result", f"{outcome.kind}: {outcome.reason}")
        self._reconcile(t, f"after {outcome.kind}")
        if outcome.running:
            self.put("dhcp", t.vm, delay=self.s.apipa_seconds, gen=t.gen)
        for event, detail in outcome.events:
            if event != "changed":
                self.put("notify", t.vm, {"event": event, **detail})
        if outcome.running and outcome.first_logon:
            self._start_first_logon(t, outcome.first_logon)

    def _start_first_logon(self, t: Twin, commands: list[tuple[int, str, str]]) -> None:
        """The first logon runs beside the supervisor's worker, as on Windows: Tools report while
        later FirstLogonCommands still run. Their notifications come back through the queue."""
        t.down = threading.Event()
        gen, down = t.gen, t.down
        sup = self

        class Host:
            def notify(self, event: str, **data: Any) -> None:
                sup.put("notify", t.vm, {"event": event, **data}, gen=gen)

        def run() -> None:
            try:
                guest_boot.run_first_logon(
                    t.disk,
                    commands,
                    Host(),
                    lambda msg: self.decide(t.vm, "first logon", msg),
                    self.timing(),
                    lambda: not down.is_set() and t.gen == gen and not self._stop.is_set(),
                )
            except Exception as exc:  # a bug in the emulator must not kill the supervisor
                log.exception("%s: first logon failed: %s", t.vm, exc)

        self.decide(t.vm, "first logon", f"{len(commands)} FirstLogonCommands start")
        threading.Thread(target=run, name=f"first-logon-{t.vm}", daemon=True).start()

    def _boot_key(self, t: Twin, why: str, prompt_at: float | None) -> bool:
        """EFI + Windows ISO + empty disk: the boot loader's "Press any key to boot from CD or DVD"
        shows for `efi_key_window` seconds. True when a key (PutUsbScanCodes) came in time."""
        window = self.s.efi_key_window
        if prompt_at is None:
            self.decide(
                t.vm,
                "press any key",
                f"{why}; EFI firmware started the CD's boot loader: 'Press any key to boot from CD "
                f"or DVD...' for {window:.2f}s",
            )
            self.put("boot", t.vm, {"why": why, "prompt_at": time.time()}, delay=window, gen=t.gen)
            return False
        try:
            keys = self.control.keys(t.vm)
        except Exception as exc:
            self.decide(t.vm, "keys unreadable", f"{exc}; treated as no key")
            keys = []
        after = guest_boot.key_in_window(keys, prompt_at, window)
        if after is not None:
            self.decide(t.vm, "key pressed", f"{after:.2f}s into the prompt: booting from CD")
            return True
        early = sum(1 for k in keys if float(k.get("at", 0)) < prompt_at)
        reason = (
            f"no key within {window:.2f}s of 'Press any key to boot from CD or DVD' "
            f"({len(keys)} key events on this VM, {early} before the prompt showed): the firmware "
            "fell through to network boot and found no operating system; Windows Setup never "
            "starts, VMware Tools never report"
        )
        self.decide(t.vm, "boot result", f"no-os: {reason}")
        with t.disk.edit() as st:
            st.log.append(f"firmware: {reason}")
        self._reconcile(t, "EFI boot prompt timed out")
        return False

    def _on_guest(self, t: Twin, data: dict[str, Any]) -> None:
        event = data.get("event", "")
        detail = {k: v for k, v in data.items() if k != "event"}
        if event == "changed":
            self._reconcile(t, f"guest changed {detail}" if detail else "guest changed")
        elif event == "guestinfo":
            self._set_guestinfo(t, str(detail.get("key", "")), str(detail.get("value", "")))
        elif event == "ssh-refuse":
            # lab.guest.faults "refuse": sshd goes away (connections refused at TCP level) and the
            # service manager starts it again after `seconds`; open sessions are not touched here
            seconds = float(detail.get("seconds", 0) or 0)
            t.refuse_until = time.monotonic() + seconds
            if t.sshd.stop(kill_sessions=False):
                self.decide(t.vm, "sshd stopped", f"SSH refuse fault: back in {seconds:.1f}s")
            self.put("sshd-back", t.vm, delay=seconds, gen=t.gen)
        elif event in ("restart", "shutdown", "sysprep"):
            if not t.booted:
                self.decide(t.vm, f"{event} ignored", "the guest is not running")
                return
            self.decide(
                t.vm,
                f"{event} requested",
                f"the guest goes down in {self.shutdown_delay():.2f}s {detail or ''}".rstrip(),
            )
            self.put("go-down", t.vm, {"event": event}, delay=self.shutdown_delay(), gen=t.gen)

    def _set_guestinfo(self, t: Twin, key: str, value: str) -> None:
        """`rpctool "info-set guestinfo.<k> <v>"` in the guest: the VMX keeps the variable and
        vCenter shows it in the VM's config.extraConfig. Through vcsim-lab's control endpoint, not
        ReconfigVM_Task: the guest's call does not go through the vSphere API, so the fault
        matrix's rules on ReconfigVM_Task must not reach it."""
        if not key.startswith("guestinfo."):
            self.decide(t.vm, "guestinfo refused", f"{key!r} is not a guestinfo.* variable")
            return
        try:
            self.control.set_guestinfo(t.vm, key, value)
        except Exception as exc:
            self.decide(t.vm, "guestinfo failed", f"{key}: {type(exc).__name__}: {exc}")
            return
        self.decide(t.vm, "guestinfo", f"{key} = {value[:200]}")

    def _go_down(self, t: Twin, data: dict[str, Any]) -> None:
        event = data["event"]
        t.booted, t.ip_ready = False, False
        t.gen += 1
        t.down.set()
        if t.sshd.stop():
            self.decide(t.vm, "sshd stopped", f"Windows is going down ({event})")
        with t.disk.edit() as st:
            for svc in st.services.values():
                svc.status = "Stopped"
        self._reconcile(t, f"Windows is going down ({event})")
        if event == "restart":
            self.decide(t.vm, "restarting", f"boot again in {self.boot_delay():.2f}s")
            self.put("boot", t.vm, {"why": "guest restart"}, delay=self.boot_delay(), gen=t.gen)
        else:
            self.decide(t.vm, "guest shutdown", f"{event}: powering the VM off through vCenter")
            self.control.guest_shutdown(t.vm)

    # -- desired state: Tools report and sshd ------------------------------------------------------
    def _reconcile(self, t: Twin, why: str) -> None:
        from lab.guest import windows

        state = t.disk.load() if t.disk.exists() else GuestState()
        up = t.powered_on and t.booted
        tools = state.service("VMTools")
        tools_running = (
            up and tools is not None and tools.status == RUNNING and bool(state.tools_version)
        )
        fields: dict[str, str] = {}
        if tools_running:
            ip = t.ip if t.ip_ready else apipa_address(t.vm)
            ip_note = "DHCP" if t.ip_ready else "APIPA (DHCP pending)"
            if not windows.reports_ip(t.disk):
                ip, ip_note = (
                    "",
                    "none: tools.conf excludes the node's NIC (no empty exclude-nics=)",
                )
            full_name, guest_id = guest_os_identity(state)
            fields = {
                "toolsRunningStatus": "guestToolsRunning",
                "toolsVersion": str(encode_tools_version(state.tools_version)),
                "toolsVersionStatus2": tools_version_status(state.tools_version),
                "guestState": "running",
                "hostName": state.computer_name,
                "ipAddress": ip,
                "guestFullName": full_name,
                "guestId": guest_id,
            }
        else:
            ip_note = ""
            fields = {
                "toolsRunningStatus": "guestToolsNotRunning",
                "toolsVersion": str(encode_tools_version(state.tools_version))
                if state.tools_version
                else "0",
                "toolsVersionStatus2": tools_version_status(state.tools_version),
                "guestState": "notRunning",
                "ipAddress": "",
            }
        changed = {k: v for k, v in fields.items() if t.reported.get(k) != v}
        if not state.installed and not t.reported.get("_windows"):
            # No Windows ever ran on this VM (or it is another OS, e.g. the seeded Linux workers):
            # there are no Windows Tools to report, and whatever vCenter shows is left alone.
            changed = {}
        if changed:
            try:
                self.control.set_guest(t.vm, **changed)
            except Exception as exc:
                if (
                    getattr(exc, "status", None) == 404
                ):  # destroyed meanwhile; VmRemovedEvent follows
                    self.decide(t.vm, "tools report skipped", "the VM is no longer in vCenter")
                    return
                self.decide(t.vm, "tools report failed", f"{exc}; retrying in 1s")
                self.put("retry-report", t.vm, delay=1.0, gen=t.gen)
            else:
                t.reported.update(changed)
                t.reported["_windows"] = "1"
                if tools_running:
                    self.decide(
                        t.vm,
                        "tools report",
                        f"{why}: Tools {state.tools_version} running, "
                        f"host {state.computer_name}, IP {ip_note}{' ' + fields['ipAddress'] if fields['ipAddress'] else ''}",
                    )
                else:
                    reason = (
                        "VM off"
                        if not t.powered_on
                        else "Windows not running"
                        if not t.booted
                        else "VMware Tools not installed"
                        if not state.tools_version
                        else "VMTools service not running"
                    )
                    self.decide(t.vm, "tools not running", f"{why}: {reason}")
        self._reconcile_sshd(t, state, why)

    def _reconcile_sshd(self, t: Twin, state: GuestState, why: str) -> None:
        from lab.guest import windows

        svc = state.service("sshd")
        up = t.powered_on and t.booted
        if not up:
            want, reason = False, "Windows not running"
        elif svc is None:
            want, reason = False, "OpenSSH server not installed"
        elif svc.status != RUNNING:
            want, reason = False, f"sshd service {svc.status}"
        elif not state.allows_inbound_tcp(22):
            want, reason = False, "no firewall rule allows inbound TCP 22"
        elif time.monotonic() < t.refuse_until:
            want, reason = False, "SSH refuse fault (lab.guest.faults): sshd restarting"
        else:
            want, reason = True, "sshd running and TCP 22 allowed"
        if want and not t.sshd.running():
            keys = windows.ensure_host_keys(t.disk)
            try:
                t.sshd.start(t.ip, keys)
            except LabError as exc:
                self.decide(t.vm, "sshd failed", str(exc))
                return
            self.decide(t.vm, "sshd started", f"{why}: {reason}; listening on {t.ip}:22")
        elif not want and t.sshd.running():
            t.sshd.stop(kill_sessions=not up)
            self.decide(t.vm, "sshd stopped", f"{why}: {reason}")


# -- component interface -----------------------------------------------------------------------------
def start(ctx: Any) -> dict[str, str]:
    """Start the daemon with the variables published by lab.vcsim; ready when its socket answers."""
    paths: LabPaths = ctx.paths
    need = ["GOVC_URL", "GOVC_TLS_CA_CERTS", "LAB_VCSIM_CONTROL_URL", "LAB_VSPHERE_DATASTORE_DIR"]
    if missing := [v for v in need if not ctx.env.get(v)]:
        raise LabError(
            f"guest supervisor needs {', '.join(missing)} from lab.vcsim: start lab.vcsim first"
        )
    env = {
        **ctx.env,
        "WINNODES_LAB_DIR": str(paths.root),
        "LAB_GUEST_NET": ctx.cfg.guest_net,
        "LAB_BOOT_DELAY": str(ctx.cfg.boot_delay),
        "LAB_EFI_KEY_WINDOW": str(ctx.cfg.efi_key_window),
    }
    client = SupervisorClient(paths.supervisor_socket, timeout=1.0)
    start_daemon(
        paths,
        NAME,
        [sys.executable, "-m", "lab.guest.supervisor"],
        ready=client.ping,
        timeout=60.0,
        env=env,
    )
    return {
        "LAB_GUESTS_DIR": str(paths.guests),
        "LAB_SUPERVISOR_SOCKET": str(paths.supervisor_socket),
        "LAB_GUEST_NET": ctx.cfg.guest_net,
    }


def stop(ctx: Any) -> None:
    """Stop the daemon (it stops its guests' sshd) and any sshd a killed daemon left behind."""
    paths: LabPaths = ctx.paths
    stop_daemon(paths, NAME, timeout=15.0)
    for pid_file in paths.run.glob("sshd-*.pid") if paths.run.exists() else []:
        vm = pid_file.name.removeprefix("sshd-").removesuffix(".pid")
        GuestSshd(paths, vm, paths.guests / vm).stop()


def status(ctx: Any) -> str:
    paths: LabPaths = ctx.paths
    pid = read_pid(paths, NAME)
    if pid is None:
        return "stopped"
    if not SupervisorClient(paths.supervisor_socket, timeout=1.0).ping():
        return f"not answering (pid {pid}, socket {paths.supervisor_socket})"
    guests = [d for d in paths.guests.iterdir() if d.is_dir()] if paths.guests.exists() else []
    sshds = sum(GuestSshd(paths, d.name, d).running() for d in guests)
    return f"running (pid {pid}, {len(guests)} guests, {sshds} sshd)"


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(message)s",
    )
    for noisy in ("pyVmomi", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        sup = Supervisor(Settings.from_env())
    except LabError as exc:
        log.error("-: cannot start: %s", exc)
        return 2

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("-: signal %d: stopping", signum)
        sup.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sup.run()
    except ControlError as exc:
        log.error("-: cannot serve the control socket: %s", exc)
        sup.stop()
        sup.shutdown()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
