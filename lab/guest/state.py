"""A Windows guest's persistent state, kept like a disk.

Each VM that ever booted Windows in the lab has a directory `<lab>/guests/<vm-moref>/`:

- `disk/C:/...`   the guest's C: drive as real files (case-insensitive lookups via `host_path`). sshd
                  reads its host keys and the SFTP server serves files from here, so what the
                  automation writes or deletes is really written or deleted.
- `state.json`   everything Windows keeps outside plain files: OS build and hotfixes, services,
                  capabilities, firewall rules, ACLs, computer name, sysprep count and pending
                  unattend, installed VMware Tools and container runtime, network adapters.
- `runtime.json` what belongs to the running VM, not to its disk: VM moref and name, guest IP,
                  power state as the supervisor sees it. Never copied by a clone.

A clone copies `disk/` and `state.json` (vCenter copies disks; vcsim gives clones empty ones, so the
supervisor calls `GuestDisk.clone_to`). Every change goes through `GuestDisk.edit()`, which holds an
exclusive file lock, so the SSH emulator processes and the supervisor never lose each other's writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

# Windows' service status and start type names, as PowerShell prints them.
RUNNING, STOPPED = "Running", "Stopped"
AUTOMATIC, MANUAL, DISABLED = "Automatic", "Manual", "Disabled"

# How many times an image may be generalized before sysprep refuses (Windows' rearm limit).
SYSPREP_LIMIT = 3


@dataclass
class Service:
    name: str
    display_name: str
    status: str = STOPPED
    start_type: str = MANUAL
    binary_path: str = ""


@dataclass
class FirewallRule:
    name: str
    display_name: str
    direction: str = "Inbound"
    protocol: str = "TCP"
    local_port: list[str] = field(default_factory=lambda: ["Any"])
    action: str = "Allow"
    enabled: bool = True
    edge_traversal_policy: str = "Block"
    profile: str = "Any"
    group: str = ""

    def allows_inbound_tcp(self, port: int) -> bool:
        if not (self.enabled and self.direction == "Inbound" and self.action == "Allow"):
            return False
        if self.protocol.upper() not in ("TCP", "ANY"):
            return False
        return any(p == "Any" or _port_in(p, port) for p in self.local_port)


def _port_in(spec: str, port: int) -> bool:
    if "-" in spec:
        lo, _, hi = spec.partition("-")
        return lo.isdigit() and hi.isdigit() and int(lo) <= port <= int(hi)
    return spec.isdigit() and int(spec) == port


@dataclass
class HotFix:
    hotfix_id: str
    description: str = "Update"
    installed_on: str = ""


@dataclass
class GuestState:
    """What Windows keeps besides files. Field names are the emulator's and supervisor's contract."""

    installed: bool = False
    # OS identity from the installation media.
    product_name: str = ""  # e.g. "Windows Server 2022 Datacenter"
    edition_id: str = ""  # e.g. "ServerDatacenter"
    display_version: str = ""  # e.g. "21H2" or "20H2"
    build: int = 0  # e.g. 20348
    ubr: int = 0  # update build revision, e.g. 681
    install_media: str = ""  # datastore path of the ISO it was installed from
    hotfixes: list[HotFix] = field(default_factory=list)
    computer_name: str = ""
    machine_sid: str = ""
    services: dict[str, Service] = field(default_factory=dict)  # key: lower-case service name
    capabilities: dict[str, str] = field(default_factory=dict)  # name -> "Installed"|"NotPresent"
    firewall_rules: list[FirewallRule] = field(default_factory=list)
    acls: dict[str, list[str]] = field(
        default_factory=dict
    )  # lower-case Windows path -> principals
    tools_version: str = ""  # VMware Tools, e.g. "12.1.5"; empty when not installed
    container_runtime: str = ""  # "" or "docker"
    # Network adapters: the VM's vNIC is "Ethernet0". When a node joins, the hybrid overlay creates
    # an HNS network and the host IP moves to "vEthernet (Ethernet0)" (see lab.md, tools.conf rule).
    adapters: list[str] = field(default_factory=lambda: ["Ethernet0"])
    # Pending until the next boot (Rename-Computer; Install-WindowsFeature needs a restart).
    pending_computer_name: str = ""
    features: dict[str, str] = field(
        default_factory=dict
    )  # "Containers" -> "Installed"|"InstallPending"
    packages: dict[str, str] = field(default_factory=dict)  # PowerShell modules/packages -> version
    sysprep_count: int = 0
    generalized: bool = False
    pending_unattend: str = ""  # Windows path of the unattend.xml OOBE applies at next boot
    winhttp_proxy: str = ""  # `netsh winhttp set proxy`: "host:port" or "" (direct access)
    boot_count: int = 0
    # Windows Update (lab/guest/emulator/wua.py): KBs installed that finish at the next restart,
    # and the registry values automation writes (policy keys, lower-case key -> name -> value).
    pending_updates: list[str] = field(default_factory=list)
    registry: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)  # setup/OOBE/sysprep events, newest last

    def service(self, name: str) -> Service | None:
        return self.services.get(name.lower())

    def put_service(self, svc: Service) -> None:
        self.services[svc.name.lower()] = svc

    def allows_inbound_tcp(self, port: int) -> bool:
        return any(r.allows_inbound_tcp(port) for r in self.firewall_rules)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GuestState:
        data = dict(data)
        data["services"] = {k: Service(**v) for k, v in data.get("services", {}).items()}
        data["firewall_rules"] = [FirewallRule(**r) for r in data.get("firewall_rules", [])]
        data["hotfixes"] = [HotFix(**h) for h in data.get("hotfixes", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Runtime:
    """What belongs to the running VM, not to its disk. Never copied by a clone."""

    vm: str = ""  # vCenter moref value, e.g. "vm-57"
    name: str = ""  # VM name in vCenter
    ip: str = ""  # the guest's address (127.x.y.z); sshd listens on ip:22
    powered_on: bool = False
    supervisor_socket: str = ""
    # Connected CD-ROMs by drive letter ("D", "E", ...) -> host path of the ISO file.
    cdroms: dict[str, str] = field(default_factory=dict)
    # Virtual hardware as vCenter shows it: config.firmware ("bios" | "efi") and the controller of
    # the first disk ("pvscsi", "lsilogic-sas", "lsilogic", "buslogic", "sata", "nvme", "ide");
    # "" = not known (boot tests that run without vCenter).
    firmware: str = ""
    boot_disk_controller: str = ""
    # The lab's timing profile (lab.guest.timing.Timing.to_json), for the emulator behind sshd.
    timing: dict[str, Any] = field(default_factory=dict)


class GuestDisk:
    """One guest's directory: files, state and runtime, with locked read-modify-write."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def disk(self) -> Path:
        return self.root / "disk"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def runtime_file(self) -> Path:
        return self.root / "runtime.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def exists(self) -> bool:
        return self.state_file.exists()

    def create(self) -> None:
        """A blank disk: no OS installed."""
        (self.disk / "C:").mkdir(parents=True, exist_ok=True)
        if not self.state_file.exists():
            _atomic_write(self.state_file, GuestState().to_json())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def load(self) -> GuestState:
        if not self.state_file.exists():
            return GuestState()
        return GuestState.from_json(json.loads(self.state_file.read_text()))

    def save(self, state: GuestState) -> None:
        _atomic_write(self.state_file, state.to_json())

    @contextlib.contextmanager
    def edit(self) -> Iterator[GuestState]:
        """Lock, load, let the caller change the state, save (only if no exception)."""
        with self.locked():
            state = self.load()
            yield state
            self.save(state)

    def runtime(self) -> Runtime:
        if not self.runtime_file.exists():
            return Runtime()
        data = json.loads(self.runtime_file.read_text())
        return Runtime(**{k: v for k, v in data.items() if k in Runtime.__dataclass_fields__})

    def save_runtime(self, rt: Runtime) -> None:
        _atomic_write(self.runtime_file, asdict(rt))

    def clone_to(self, dest: GuestDisk) -> None:
        """Copy this disk (files and state, not runtime) to a new VM's directory."""
        with self.locked():
            if dest.disk.exists():
                shutil.rmtree(dest.disk)
            dest.root.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.disk, dest.disk, symlinks=True)
            shutil.copy2(self.state_file, dest.state_file)

    # -- Windows paths --------------------------------------------------------------------
    def host_path(self, win_path: str) -> Path:
        """Map `C:\\ProgramData\\ssh\\x` to `<disk>/C:/ProgramData/ssh/x`, matching existing
        components case-insensitively as NTFS does. Only the C: drive lives on the disk."""
        p = PureWindowsPath(win_path)
        drive = p.drive.rstrip(":").upper()
        if drive != "C":
            raise ValueError(f"not on the C: drive: {win_path}")
        cur = self.disk / "C:"
        for part in p.parts[1:]:
            cur = _match_case(cur, part)
        return cur


def _match_case(parent: Path, name: str) -> Path:
    exact = parent / name
    if exact.exists() or not parent.is_dir():
        return exact
    lowered = name.lower()
    for child in parent.iterdir():
        if child.name.lower() == lowered:
            return child
    return exact


def _atomic_write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
