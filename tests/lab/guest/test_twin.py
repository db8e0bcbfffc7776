"""The Windows guest twin end to end: real vcsim + the guest supervisor + the PowerShell emulator,
driven only the way the product drives a real site (pyvmomi over SOAP, paramiko over SSH).

One test per fidelity rule of docs/lab.md "Windows guest". A golden VM is installed once per module
from the Windows ISO, the Tools ISO and an answer ISO built here; tests that break a guest work on
clones of it (a clone copies the guest's disk, which is itself one of the rules).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import statistics
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import paramiko
import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from lab import cli
from lab.guest.state import SYSPREP_LIMIT, GuestDisk
from lab.media import build_iso

pytestmark = pytest.mark.lab

TIMEOUT = 30.0
Q = vmodl.query.PropertyCollector
GUEST_PROPS = [
    "guest.toolsRunningStatus",
    "guest.toolsVersion",
    "guest.ipAddress",
    "guest.hostName",
    "runtime.powerState",
]


# -- the lab (vcsim + supervisor), once per module ---------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private vcsim + guest supervisor: these tests inject faults and invalidate every vCenter
    session, which must not disturb a lab that other tests share."""
    with cli.private_lab(
        tmp_path_factory.mktemp("twin") / "lab", ["vcsim", "guest.supervisor"]
    ) as ctx:
        yield dict(ctx.env)


@dataclass
class VC:
    """A pyvmomi session on the lab's vCenter plus the few operations the tests need."""

    env: dict[str, str]
    si: Any
    created: list[str] = field(default_factory=list)  # morefs of the VMs made here

    @property
    def content(self) -> Any:
        return self.si.content

    def find(self, vim_type: Any, name: str) -> Any:
        """The one object of a type with that name, read through the property collector."""
        view = self.content.viewManager.CreateContainerView(
            self.content.rootFolder, [vim_type], True
        )
        try:
            spec = Q.FilterSpec(
                objectSet=[
                    Q.ObjectSpec(
                        obj=view,
                        skip=True,
                        selectSet=[Q.TraversalSpec(type=vim.view.ContainerView, path="view")],
                    )
                ],
                propSet=[Q.PropertySpec(type=vim_type, pathSet=["name"])],
            )
            res = self.content.propertyCollector.RetrievePropertiesEx([spec], Q.RetrieveOptions())
            found = [o.obj for o in (res.objects if res else []) if o.propSet[0].val == name]
        finally:
            view.DestroyView()
        assert len(found) == 1, f"{len(found)} {vim_type} named {name}"
        return found[0]

    def datacenter(self) -> Any:
        return self.find(vim.Datacenter, self.env["LAB_VSPHERE_DATACENTER"])

    def folder(self) -> Any:
        return self.datacenter().vmFolder

    def pool(self) -> Any:
        return self.find(vim.ClusterComputeResource, self.env["LAB_VSPHERE_CLUSTER"]).resourcePool

    def wait(
        self,
        obj: Any,
        paths: list[str],
        until: Callable[[dict[str, Any]], bool],
        timeout: float = TIMEOUT,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """WaitForUpdatesEx on `paths` of `obj` until `until(values)`; returns the values and every
        intermediate state seen."""
        pc = self.content.propertyCollector.CreatePropertyCollector()
        try:
            pc.CreateFilter(
                Q.FilterSpec(
                    objectSet=[Q.ObjectSpec(obj=obj)],
                    propSet=[Q.PropertySpec(type=type(obj), pathSet=paths)],
                ),
                partialUpdates=False,
            )
            cur: dict[str, Any] = {}
            seen: list[dict[str, Any]] = []
            version = ""
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; last values {cur}; seen {seen}")
                upd = pc.WaitForUpdatesEx(version, Q.WaitOptions(maxWaitSeconds=max(1, int(left))))
                if upd is None:
                    continue
                version = upd.version
                for fs in upd.filterSet:
                    for ob in fs.objectSet:
                        for ch in ob.changeSet:
                            cur[ch.name] = ch.val
                seen.append(dict(cur))
                if until(cur):
                    return cur, seen
        finally:
            pc.DestroyPropertyCollector()

    def run_task(self, task: Any) -> Any:
        info, _ = self.wait(
            task,
            ["info.state", "info.error", "info.result"],
            lambda v: str(v.get("info.state")) in ("success", "error"),
        )
        assert str(info["info.state"]) == "success", info.get("info.error")
        return info.get("info.result")

    def upload(self, local: Path, ds_path: str) -> str:
        """PUT a file into the lab datastore over vCenter's /folder HTTP interface."""
        url = urlparse(self.env["GOVC_URL"])
        target = (
            f"https://{url.netloc}/folder/{ds_path}?dcPath={self.env['LAB_VSPHERE_DATACENTER']}"
            f"&dsName={self.env['LAB_VSPHERE_DATASTORE']}"
        )
        req = urllib.request.Request(target, data=local.read_bytes(), method="PUT")
        req.add_header("Cookie", self.si._stub.cookie)
        req.add_header("Content-Type", "application/octet-stream")
        ctx = ssl.create_default_context(cafile=self.env["GOVC_TLS_CA_CERTS"])
        with urllib.request.urlopen(req, context=ctx) as resp:
            assert resp.status in (200, 201), resp.status
        return f"[{self.env['LAB_VSPHERE_DATASTORE']}] {ds_path}"

    def create_vm(
        self, name: str, isos: list[str], *, firmware: str = "bios", disk_controller: str = ""
    ) -> Any:
        """A VM with one CD-ROM per ISO (IDE, D:, E:, ... in order); with `disk_controller`
        ('pvscsi' or 'lsilogic-sas') also a system disk on such a controller."""
        devices = []
        if disk_controller:
            ctrl_cls = {
                "pvscsi": vim.vm.device.ParaVirtualSCSIController,
                "lsilogic-sas": vim.vm.device.VirtualLsiLogicSASController,
            }[disk_controller]
            devices += [
                vim.vm.device.VirtualDeviceSpec(
                    operation="add", device=ctrl_cls(key=-100, busNumber=0, sharedBus="noSharing")
                ),
                vim.vm.device.VirtualDeviceSpec(
                    operation="add",
                    fileOperation="create",
                    device=vim.vm.device.VirtualDisk(
                        key=-101,
                        controllerKey=-100,
                        unitNumber=0,
                        capacityInKB=40 * 1024 * 1024,
                        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                            diskMode="persistent", thinProvisioned=True
                        ),
                    ),
                ),
            ]
        for i, iso in enumerate(isos):
            cd = vim.vm.device.VirtualCdrom(
                key=-(i + 1),
                controllerKey=200 + i // 2,
                unitNumber=i % 2,
                backing=vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=iso),
                connectable=vim.vm.device.VirtualDevice.ConnectInfo(
                    startConnected=True, connected=True
                ),
            )
            devices.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=cd))
        spec = vim.vm.ConfigSpec(
            name=name,
            guestId="windows2019srvNext_64Guest",
            firmware=firmware,
            numCPUs=2,
            memoryMB=4096,
            files=vim.vm.FileInfo(vmPathName=f"[{self.env['LAB_VSPHERE_DATASTORE']}]"),
            deviceChange=devices,
        )
        vm = self.run_task(self.folder().CreateVM_Task(config=spec, pool=self.pool()))
        self.created.append(vm._moId)
        return vm

    def clone(self, src: Any, name: str, *, power_on: bool = False, template: bool = False) -> Any:
        spec = vim.vm.CloneSpec(
            location=vim.vm.RelocateSpec(pool=self.pool()), powerOn=power_on, template=template
        )
        vm = self.run_task(src.CloneVM_Task(folder=self.folder(), name=name, spec=spec))
        self.created.append(vm._moId)
        return vm

    def power_on(self, vm: Any) -> None:
        self.run_task(vm.PowerOnVM_Task())

    def power_off(self, vm: Any) -> None:
        self.run_task(vm.PowerOffVM_Task())

    def guest(self, vm: Any) -> dict[str, Any]:
        pc = self.content.propertyCollector
        res = pc.RetrievePropertiesEx(
            [
                Q.FilterSpec(
                    objectSet=[Q.ObjectSpec(obj=vm)],
                    propSet=[Q.PropertySpec(type=vim.VirtualMachine, pathSet=GUEST_PROPS)],
                )
            ],
            Q.RetrieveOptions(),
        )
        return {p.name: p.val for p in res.objects[0].propSet}

    def wait_ip(
        self, vm: Any, timeout: float = TIMEOUT
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        net = self.env.get("LAB_GUEST_NET") or os.environ.get("LAB_GUEST_NET", "77")
        return self.wait(
            vm,
            GUEST_PROPS,
            lambda v: str(v.get("guest.ipAddress") or "").startswith(f"127.{net}."),
            timeout,
        )


def login(lab: dict[str, str]) -> Any:
    url = urlparse(lab["GOVC_URL"])
    return SmartConnect(
        host=url.hostname,
        port=url.port,
        user=lab["GOVC_USERNAME"],
        pwd=lab["GOVC_PASSWORD"],
        sslContext=ssl.create_default_context(cafile=lab["GOVC_TLS_CA_CERTS"]),
    )


@pytest.fixture(scope="module")
def vc(lab: dict[str, str]) -> Iterator[VC]:
    """The module's session; at the end every VM the module made is destroyed (with a new login:
    the last test invalidates all sessions)."""
    v = VC(lab, login(lab))
    yield v
    with contextlib.suppress(Exception):
        Disconnect(v.si)
    si = login(lab)
    try:
        cleaner = VC(lab, si)
        for moid in reversed(v.created):
            vm = vim.VirtualMachine(moid, si._stub)
            with contextlib.suppress(vmodl.fault.ManagedObjectNotFound):
                if str(cleaner.guest(vm).get("runtime.powerState")) == "poweredOn":
                    cleaner.power_off(vm)
                cleaner.run_task(vm.Destroy_Task())
    finally:
        Disconnect(si)


def disk_of(lab: dict[str, str], vm: Any) -> GuestDisk:
    return GuestDisk(Path(lab["LAB_GUESTS_DIR"]) / vm._moId)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


# -- answer media -------------------------------------------------------------------------------------
ADMIN_KEYS = r"C:\ProgramData\ssh\administrators_authorized_keys"
TOOLS_CONF = r"C:\ProgramData\VMware\VMware Tools\tools.conf"


def first_logon(pubkey: str, *, openssh: bool = True) -> list[tuple[str, str]]:
    """FirstLogonCommands as a golden-image automation writes them (G2-G5, G7)."""
    ps = "powershell.exe -NoProfile -ExecutionPolicy Bypass -Command "
    cmds = [
        ('D:\\setup64.exe /S /v "/qn REBOOT=R"', "VMware Tools"),
        (
            ps
            + f"\"New-Item -ItemType Directory -Force -Path 'C:\\ProgramData\\VMware\\VMware Tools' | Out-Null; "
            f"Set-Content -Path '{TOOLS_CONF}' -Value '[guestinfo]','exclude-nics='\"",
            "tools.conf",
        ),
    ]
    if openssh:
        cmds += [
            (ps + '"Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0"', "OpenSSH"),
            (ps + '"Set-Service -Name sshd -StartupType Automatic; Start-Service sshd"', "sshd"),
            (ps + f"\"Set-Content -Path '{ADMIN_KEYS}' -Value '{pubkey}'\"", "admin key"),
            (
                f'icacls.exe "{ADMIN_KEYS}" /inheritance:r /grant "Administrators:F" /grant "SYSTEM:F"',
                "key ACL",
            ),
            (
                ps
                + "\"New-NetFirewallRule -Name sshd -DisplayName 'OpenSSH Server (sshd)' -Enabled True "
                '-Direction Inbound -Protocol TCP -Action Allow -LocalPort 22"',
                "firewall 22",
            ),
        ]
    return cmds


def autounattend(
    computer_name: str,
    commands: list[tuple[str, str]],
    *,
    image: str = "Windows Server 2022 SERVERDATACENTERCORE",
    driver_path: str = "",
) -> str:
    sync = "\n".join(
        f"""        <SynchronousCommand wcm:action="add">
          <Order>{i}</Order>
          <CommandLine>{_xml(cmd)}</CommandLine>
          <Description>{_xml(desc)}</Description>
        </SynchronousCommand>"""
        for i, (cmd, desc) in enumerate(commands, start=1)
    )
    drivers = (
        f'<PathAndCredentials wcm:action="add" wcm:keyValue="1"><Path>{_xml(driver_path)}</Path>'
        "</PathAndCredentials>"
        if driver_path
        else ""
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend" xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State">
  <settings pass="windowsPE">
    <component name="Microsoft-Windows-PnpCustomizationsWinPE" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <DriverPaths>{drivers}</DriverPaths>
    </component>
    <component name="Microsoft-Windows-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <ImageInstall><OSImage><InstallFrom><MetaData wcm:action="add"><Key>/IMAGE/NAME</Key><Value>{_xml(image)}</Value></MetaData></InstallFrom></OSImage></ImageInstall>
    </component>
  </settings>
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <ComputerName>{computer_name}</ComputerName>
      <TimeZone>UTC</TimeZone>
    </component>
  </settings>
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <UserAccounts>
        <AdministratorPassword><Value>Lab-Passw0rd!</Value><PlainText>true</PlainText></AdministratorPassword>
      </UserAccounts>
      <AutoLogon>
        <Enabled>true</Enabled><LogonCount>1</LogonCount><Username>Administrator</Username>
        <Password><Value>Lab-Passw0rd!</Value><PlainText>true</PlainText></Password>
      </AutoLogon>
      <FirstLogonCommands>
{sync}
      </FirstLogonCommands>
    </component>
  </settings>
</unattend>
"""


def sysprep_unattend(computer_name: str) -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <ComputerName>{computer_name}</ComputerName>
    </component>
  </settings>
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <AutoLogon><Enabled>false</Enabled></AutoLogon>
      <TimeZone>UTC</TimeZone>
      <UserAccounts>
        <AdministratorPassword><Value>Lab-Passw0rd!</Value><PlainText>true</PlainText></AdministratorPassword>
      </UserAccounts>
    </component>
  </settings>
</unattend>
"""


def _xml(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def answer_iso(vc: VC, tmp: Path, xml: str) -> str:
    name = unique("answer") + ".iso"
    local = tmp / name
    build_iso(local, {"/autounattend.xml": xml.encode()}, "ANSWER")
    return vc.upload(local, f"iso/{name}")


# -- SSH ------------------------------------------------------------------------------------------------
def ssh(
    lab: dict[str, str], ip: str, disk: GuestDisk, key: str | None = None
) -> paramiko.SSHClient:
    """paramiko as the product uses it: host keys pinned from the guest's disk, RejectPolicy, a
    TCP_NODELAY socket."""
    client = paramiko.SSHClient()
    for pub in sorted(disk.host_path(r"C:\ProgramData\ssh").glob("ssh_host_*_key.pub")):
        kind, data = pub.read_text().split()[:2]
        client.get_host_keys().add(
            ip, kind, paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(data))
        )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    sock = socket.create_connection((ip, 22), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pkey = paramiko.PKey.from_path(key or lab["LAB_SSH_PRIVATE_KEY"])
    client.connect(
        ip,
        port=22,
        username="Administrator",
        pkey=pkey,
        sock=sock,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _, out, err = client.exec_command(command, timeout=30)
    rc = out.channel.recv_exit_status()
    return rc, out.read().decode(), err.read().decode()


def host_key_fingerprints(disk: GuestDisk) -> set[str]:
    return {
        p.read_text().split()[1]
        for p in disk.host_path(r"C:\ProgramData\ssh").glob("ssh_host_*_key.pub")
    }


def wait_log(path: Path, text: str, timeout: float = TIMEOUT) -> str:
    """The supervisor's decisions are only in its logs: poll the guest's log for one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path}:\n{content[-2000:]}")


def wait_gone(path: Path, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"{path} still exists"
        time.sleep(0.05)


def guest_log(lab: dict[str, str], vm: Any) -> Path:
    return Path(lab["LAB_LOG_DIR"]) / "guests" / f"{vm._moId}.log"


# -- the golden VM --------------------------------------------------------------------------------------
@dataclass
class Golden:
    vm: Any
    name: str
    ip: str
    disk: GuestDisk
    seen: list[dict[str, Any]]
    boot_seconds: float


@pytest.fixture(scope="module")
def tmp_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def golden(lab: dict[str, str], vc: VC, tmp_media: Path) -> Golden:
    pub = Path(lab["LAB_SSH_PUBLIC_KEY"]).read_text().strip()
    answer = answer_iso(vc, tmp_media, autounattend("golden", first_logon(pub)))
    name = unique("golden")
    vm = vc.create_vm(name, [lab["LAB_TOOLS_ISO"], lab["LAB_WINDOWS_ISO_CURRENT"], answer])
    t0 = time.monotonic()
    vc.power_on(vm)
    values, seen = vc.wait_ip(vm)
    ip = values["guest.ipAddress"]
    return Golden(vm, name, ip, disk_of(lab, vm), seen, time.monotonic() - t0)


def fresh_clone(
    vc: VC, golden: Golden, lab: dict[str, str], prefix: str
) -> tuple[Any, str, GuestDisk]:
    vm = vc.clone(golden.vm, unique(prefix), power_on=True)
    values, _ = vc.wait_ip(vm)
    return vm, values["guest.ipAddress"], disk_of(lab, vm)


# -- tests: installation --------------------------------------------------------------------------------
def test_without_answer_media_windows_never_installs(lab: dict[str, str], vc: VC) -> None:
    vm = vc.create_vm(unique("noanswer"), [lab["LAB_WINDOWS_ISO_CURRENT"]])
    vc.power_on(vm)
    wait_log(guest_log(lab, vm), "boot result: setup-waits")
    g = vc.guest(vm)
    assert g["guest.toolsRunningStatus"] == "guestToolsNotRunning"
    assert not g.get("guest.ipAddress")
    assert not disk_of(lab, vm).load().installed


# -- G1 fidelity: EFI boot prompt, PVSCSI driver, image name (docs/lab-fidelity.md, h2) ------------------
PVSCSI_PATH = r"Program Files\VMware\VMware Tools\Drivers\pvscsi\Win8\amd64"
SPACEBAR = (0x2C << 16) | 7


def press_keys(vm: Any, presses: int, interval: float) -> None:
    spec = vim.vm.UsbScanCodeSpec(keyEvents=[vim.vm.UsbScanCodeSpec.KeyEvent(usbHidCode=SPACEBAR)])
    for n in range(presses):
        if n:
            time.sleep(interval)
        assert vm.PutUsbScanCodes(spec) == 1


def test_put_usb_scan_codes_needs_a_running_vm_and_is_recorded(lab: dict[str, str], vc: VC) -> None:
    from lab.vcsim import VcsimControl

    vm = vc.create_vm(unique("keys"), [])
    with pytest.raises(vim.fault.InvalidPowerState):
        press_keys(vm, 1, 0)
    vc.power_on(vm)
    t0 = time.time()
    press_keys(vm, 2, 0.05)
    keys = VcsimControl(lab["LAB_VCSIM_CONTROL_URL"]).keys(vm._moId)
    assert [k["hid_usage"] for k in keys] == [0x2C, 0x2C]
    assert all(t0 - 1 <= k["at"] <= time.time() + 1 for k in keys)


def efi_install(lab: dict[str, str], vc: VC, tmp_media: Path, prefix: str) -> Any:
    """An EFI VM with a PVSCSI disk, the Tools ISO (D:, where `first_logon` runs setup64.exe),
    the Windows ISO (E:) and answer media whose DriverPaths reach the PVSCSI driver on D: -
    everything but the boot key."""
    pub = Path(lab["LAB_SSH_PUBLIC_KEY"]).read_text()
    xml = autounattend(prefix, first_logon(pub), driver_path=f"D:\\{PVSCSI_PATH}")
    iso = answer_iso(vc, tmp_media, xml)
    return vc.create_vm(
        unique(prefix),
        [lab["LAB_TOOLS_ISO"], lab["LAB_WINDOWS_ISO_CURRENT"], iso],
        firmware="efi",
        disk_controller="pvscsi",
    )


def test_efi_without_a_boot_key_never_installs(
    lab: dict[str, str], vc: VC, tmp_media: Path
) -> None:
    vm = efi_install(lab, vc, tmp_media, "efinokey")
    vc.power_on(vm)
    press_keys(vm, 1, 0)  # during firmware start-up, before the prompt shows: lost
    log = wait_log(guest_log(lab, vm), "boot result: no-os", timeout=15)
    assert "Press any key to boot from CD or DVD" in log and "1 before the prompt" in log
    assert not disk_of(lab, vm).load().installed
    assert vc.guest(vm)["guest.toolsRunningStatus"] == "guestToolsNotRunning"


def test_efi_with_boot_keys_and_pvscsi_driver_installs(
    lab: dict[str, str], vc: VC, tmp_media: Path
) -> None:
    vm = efi_install(lab, vc, tmp_media, "efikey")
    vc.power_on(vm)
    press_keys(vm, 16, 0.25)  # spread over the prompt's window, as Packer's boot_command users do
    values, _ = vc.wait_ip(vm)
    assert values["guest.ipAddress"]
    assert "key pressed" in guest_log(lab, vm).read_text()


@pytest.mark.parametrize("how", ["reset", "power-off-on"])
def test_a_reset_shows_the_efi_prompt_again_and_a_key_then_starts_setup(
    lab: dict[str, str], vc: VC, tmp_media: Path, how: str
) -> None:
    """docs/lab-fidelity.md (h4): ResetVM_Task reboots the VM (vSphere API: a hard power-off, then
    a power-on), as a power-off + power-on does: the firmware starts again and the ISO's boot loader
    shows "Press any key to boot from CD or DVD" for a new window; a key pressed in it starts
    setup. Keys of the earlier window do not count for the new one."""
    vm = efi_install(lab, vc, tmp_media, f"efi-{how}")
    vc.power_on(vm)
    path = guest_log(lab, vm)
    wait_log(path, "boot result: no-os", timeout=15)  # nobody pressed a key: no setup
    if how == "reset":
        vc.run_task(vm.ResetVM_Task())
    else:
        vc.power_off(vm)
        vc.power_on(vm)
    press_keys(vm, 16, 0.25)
    values, _ = vc.wait_ip(vm)
    assert values["guest.ipAddress"]
    log = path.read_text()
    assert log.count("press any key: ") == 2 and "key pressed" in log
    assert disk_of(lab, vm).load().installed


@pytest.mark.parametrize(
    ("driver_path", "why"),
    [("", "no Microsoft-Windows-PnpCustomizationsWinPE DriverPaths"),
     (f"F:\\{PVSCSI_PATH}", "no pvscsi.inf there on F:"),
     (f"D:\\{PVSCSI_PATH}", "no pvscsi.inf there on D:")],
)  # fmt: skip
def test_pvscsi_without_a_reachable_driver_fails_setup(
    lab: dict[str, str], vc: VC, tmp_media: Path, driver_path: str, why: str
) -> None:
    xml = autounattend(
        "pvscsi", [("Set-Content -Path C:\\x.txt -Value 1", "x")], driver_path=driver_path
    )
    iso = answer_iso(vc, tmp_media, xml)
    vm = vc.create_vm(
        unique("pvscsi"),
        [lab["LAB_WINDOWS_ISO_CURRENT"], lab["LAB_TOOLS_ISO"], iso],
        disk_controller="pvscsi",
    )
    vc.power_on(vm)
    log = wait_log(guest_log(lab, vm), "boot result: setup-failed")
    assert "Windows could not apply the unattend answer file's <DiskConfiguration> setting" in log
    assert why in log
    assert not disk_of(lab, vm).load().installed


def test_lsi_logic_sas_needs_no_driver(lab: dict[str, str], vc: VC, tmp_media: Path) -> None:
    xml = autounattend("lsisas", [("Set-Content -Path C:\\x.txt -Value 1", "x")])
    iso = answer_iso(vc, tmp_media, xml)
    vm = vc.create_vm(
        unique("lsisas"),
        [lab["LAB_WINDOWS_ISO_CURRENT"], lab["LAB_TOOLS_ISO"], iso],
        disk_controller="lsilogic-sas",
    )
    vc.power_on(vm)
    wait_log(guest_log(lab, vm), "boot result: setup")
    assert disk_of(lab, vm).load().installed


def test_image_name_must_be_on_the_iso(lab: dict[str, str], vc: VC, tmp_media: Path) -> None:
    xml = autounattend("img", [], image="Windows Server 2025 SERVERDATACENTERCORE")
    iso = answer_iso(vc, tmp_media, xml)
    vm = vc.create_vm(unique("img"), [lab["LAB_WINDOWS_ISO_CURRENT"], iso])
    vc.power_on(vm)
    log = wait_log(guest_log(lab, vm), "boot result: setup-failed")
    assert "Windows cannot find the Microsoft Software License Terms" in log
    assert "Windows Server 2022 SERVERDATACENTERCORE" in log  # what the ISO does hold
    assert not disk_of(lab, vm).load().installed


def test_without_installation_media_no_os(lab: dict[str, str], vc: VC) -> None:
    vm = vc.create_vm(unique("nomedia"), [])
    vc.power_on(vm)
    wait_log(guest_log(lab, vm), "Operating System not found")
    assert vc.guest(vm)["guest.toolsRunningStatus"] == "guestToolsNotRunning"


def test_tools_report_version_and_ip_after_apipa(golden: Golden, lab: dict[str, str]) -> None:
    ips = [str(s.get("guest.ipAddress") or "") for s in golden.seen]
    assert any(ip.startswith("169.254.") for ip in ips), ips
    first_apipa = next(i for i, ip in enumerate(ips) if ip.startswith("169.254."))
    assert all(not ip.startswith("127.") for ip in ips[:first_apipa])
    final = golden.seen[-1]
    assert final["guest.toolsRunningStatus"] == "guestToolsRunning"
    assert final["guest.toolsVersion"] == str(12 * 1024 + 1 * 32 + 5)  # 12.1.5 from the Tools ISO
    assert final["guest.hostName"] == "golden"
    state = golden.disk.load()
    assert state.installed and state.build == 20348 and state.computer_name == "golden"
    print(
        f"\nPowerOn -> IP reported: {golden.boot_seconds:.2f}s (boot delay {os.environ.get('LAB_BOOT_DELAY', '0.5')}s)"
    )


def test_answer_file_without_password_stops_at_oobe(
    lab: dict[str, str], vc: VC, tmp_media: Path
) -> None:
    pub = Path(lab["LAB_SSH_PUBLIC_KEY"]).read_text().strip()
    xml = autounattend("nopw", first_logon(pub))
    start = xml.index("<UserAccounts>")
    xml = xml[:start] + xml[xml.index("</UserAccounts>") + len("</UserAccounts>") :]
    answer = answer_iso(vc, tmp_media, xml)
    vm = vc.create_vm(
        unique("nopw"), [lab["LAB_TOOLS_ISO"], lab["LAB_WINDOWS_ISO_CURRENT"], answer]
    )
    vc.power_on(vm)
    wait_log(guest_log(lab, vm), "boot result: oobe-waits")
    state = disk_of(lab, vm).load()
    assert state.installed and not state.tools_version  # FirstLogonCommands never ran
    assert vc.guest(vm)["guest.toolsRunningStatus"] == "guestToolsNotRunning"


def test_first_logon_without_openssh_gives_no_ssh(
    lab: dict[str, str], vc: VC, tmp_media: Path
) -> None:
    pub = Path(lab["LAB_SSH_PUBLIC_KEY"]).read_text().strip()
    answer = answer_iso(vc, tmp_media, autounattend("nossh", first_logon(pub, openssh=False)))
    vm = vc.create_vm(
        unique("nossh"), [lab["LAB_TOOLS_ISO"], lab["LAB_WINDOWS_ISO_CURRENT"], answer]
    )
    vc.power_on(vm)
    values, _ = vc.wait_ip(vm)
    assert disk_of(lab, vm).load().service("sshd") is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((values["guest.ipAddress"], 22), timeout=5).close()


# -- tests: Tools ----------------------------------------------------------------------------------------
def test_stopping_vmtools_clears_the_report(golden: Golden, lab: dict[str, str], vc: VC) -> None:
    vm, ip, disk = fresh_clone(vc, golden, lab, "tools")
    with ssh(lab, ip, disk) as c:
        rc, _, err = run(c, "Stop-Service -Name VMTools")
        assert rc == 0, err
        values, _ = vc.wait(
            vm, GUEST_PROPS, lambda v: v.get("guest.toolsRunningStatus") == "guestToolsNotRunning"
        )
        assert not values.get("guest.ipAddress")
        rc, _, err = run(c, "Start-Service -Name VMTools")
        assert rc == 0, err
    values, _ = vc.wait_ip(vm)
    assert values["guest.ipAddress"] == ip


def test_tools_conf_without_empty_exclude_nics_loses_ip_after_hns(
    golden: Golden, lab: dict[str, str], vc: VC
) -> None:
    vm, ip, disk = fresh_clone(vc, golden, lab, "hns")
    with ssh(lab, ip, disk) as c:
        rc, _, err = run(c, f"Set-Content -Path '{TOOLS_CONF}' -Value '[guestinfo]'")
        assert rc == 0, err
        rc, _, err = run(
            c,
            "New-HnsNetwork -Type Overlay -AddressPrefix 10.132.0.0/14 -Gateway 10.132.0.1 -Name BaseOVNKubernetesHybridOverlayNetwork -AdapterName Ethernet0 -SubnetPolicies @(@{Type='VSID'; VSID=4096})",
        )
        assert rc == 0, err
    values, _ = vc.wait(vm, GUEST_PROPS, lambda v: not v.get("guest.ipAddress"))
    assert values["guest.toolsRunningStatus"] == "guestToolsRunning"


def test_hns_with_empty_exclude_nics_keeps_ip(golden: Golden, lab: dict[str, str], vc: VC) -> None:
    vm, ip, disk = fresh_clone(vc, golden, lab, "hnsok")
    with ssh(lab, ip, disk) as c:
        rc, _, err = run(
            c,
            "New-HnsNetwork -Type Overlay -AddressPrefix 10.132.0.0/14 -Gateway 10.132.0.1 -Name BaseOVNKubernetesHybridOverlayNetwork -AdapterName Ethernet0 -SubnetPolicies @(@{Type='VSID'; VSID=4096})",
        )
        assert rc == 0, err
        # A later change makes the supervisor re-evaluate; the IP must survive it.
        rc, _, err = run(c, "Restart-Service -Name VMTools")
        assert rc == 0, err
    assert vc.guest(vm)["guest.ipAddress"] == ip


# -- tests: SSH -----------------------------------------------------------------------------------------
def test_ssh_and_latency(golden: Golden, lab: dict[str, str]) -> None:
    with ssh(lab, golden.ip, golden.disk) as c:
        rc, out, err = run(c, "(Get-Service -Name sshd).Status")
        assert (rc, out.strip()) == (0, "Running"), err
        times = []
        for _ in range(20):
            t = time.perf_counter()
            rc, out, _ = run(c, "$env:COMPUTERNAME")
            times.append(time.perf_counter() - t)
            assert rc == 0 and out.strip().lower() == "golden"
    print(f"\nSSH command latency: median {statistics.median(times) * 1000:.1f} ms over 20")


def test_ssh_rejects_a_wrong_host_key(golden: Golden, lab: dict[str, str], tmp_path: Path) -> None:
    client = paramiko.SSHClient()
    client.get_host_keys().add(
        golden.ip,
        "ssh-ed25519",
        paramiko.Ed25519Key.generate()
        if hasattr(paramiko.Ed25519Key, "generate")
        else paramiko.RSAKey.generate(2048),
    )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises((paramiko.BadHostKeyException, paramiko.SSHException)):
        client.connect(
            golden.ip,
            username="Administrator",
            key_filename=lab["LAB_SSH_PRIVATE_KEY"],
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    client.close()


def test_ssh_refuses_an_unknown_key(golden: Golden, lab: dict[str, str], tmp_path: Path) -> None:
    other = tmp_path / "other"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(other))
    with pytest.raises(paramiko.AuthenticationException):
        ssh(lab, golden.ip, golden.disk, key=str(other))


BREAKS = {
    "acl": f'icacls.exe "{ADMIN_KEYS}" /grant "Everyone:R"',
    "key-missing": f"Remove-Item -Path '{ADMIN_KEYS}'",
    # Add-WindowsCapability OpenSSH.Server creates its own rule, as on Windows: both must go.
    "firewall": "Remove-NetFirewallRule -Name sshd; Remove-NetFirewallRule -Name OpenSSH-Server-In-TCP",
    "sshd-stopped": "Stop-Service -Name sshd",
}


@pytest.mark.parametrize("breakage", sorted(BREAKS))
def test_ssh_needs_sshd_key_acl_and_firewall(
    breakage: str, golden: Golden, lab: dict[str, str], vc: VC
) -> None:
    vm, ip, disk = fresh_clone(vc, golden, lab, breakage)
    with ssh(lab, ip, disk) as c:
        rc, _, err = run(c, BREAKS[breakage])
        assert rc == 0, err
    if breakage in ("acl", "key-missing"):
        with pytest.raises(paramiko.AuthenticationException):
            ssh(lab, ip, disk)
    else:
        wait_log(guest_log(lab, vm), "sshd stopped")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((ip, 22), timeout=5).close()


def test_sftp_put_and_get(golden: Golden, lab: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello from the automation\r\n")
    with ssh(lab, golden.ip, golden.disk) as c, c.open_sftp() as sftp:
        sftp.put(str(src), "C:/Windows/Temp/hello.txt")
        back = tmp_path / "back.txt"
        sftp.get("C:/Windows/Temp/hello.txt", str(back))
    assert back.read_bytes() == src.read_bytes()
    assert golden.disk.host_path(r"C:\Windows\Temp\hello.txt").read_bytes() == src.read_bytes()


# -- tests: clone, sysprep, OOBE ------------------------------------------------------------------------
def test_clone_copies_files_and_state(golden: Golden, lab: dict[str, str], vc: VC) -> None:
    with ssh(lab, golden.ip, golden.disk) as c:
        rc, _, err = run(c, "Set-Content -Path C:\\marker.txt -Value 'from golden'")
        assert rc == 0, err
    _vm, ip, disk = fresh_clone(vc, golden, lab, "copy")
    assert ip != golden.ip
    state = disk.load()
    assert state.computer_name == "golden" and state.tools_version == "12.1.5"
    with ssh(lab, ip, disk) as c:
        rc, out, err = run(c, "Get-Content -Path C:\\marker.txt")
    assert (rc, out.strip()) == (0, "from golden"), err


def _sysprep(
    lab: dict[str, str], vc: VC, golden: Golden, name: str, *, remove_host_keys: bool
) -> Any:
    """G8-G10: clone the golden VM, generalize the clone, make it a template."""
    vm, ip, disk = fresh_clone(vc, golden, lab, name)
    with ssh(lab, ip, disk) as c:
        rc, _, err = run(
            c,
            f"Set-Content -Path C:\\Windows\\Temp\\unattend.xml -Value '{sysprep_unattend('node')}'".replace(
                "\n", ""
            ),
        )
        assert rc == 0, err
        if remove_host_keys:
            rc, _, err = run(c, "Remove-Item -Path C:\\ProgramData\\ssh\\ssh_host_* -Force")
            assert rc == 0, err
        rc, _, err = run(
            c,
            r"C:\Windows\System32\Sysprep\sysprep.exe /generalize /oobe /shutdown /unattend:C:\Windows\Temp\unattend.xml",
        )
        assert rc == 0, err
    vc.wait(vm, ["runtime.powerState"], lambda v: str(v.get("runtime.powerState")) == "poweredOff")
    state = disk.load()
    assert state.generalized and state.sysprep_count == golden.disk.load().sysprep_count + 1
    vm.MarkAsTemplate()
    return vm


def test_sysprep_powers_off_and_oobe_keeps_shared_host_keys(
    golden: Golden, lab: dict[str, str], vc: VC
) -> None:
    tmpl = _sysprep(lab, vc, golden, "tmpl", remove_host_keys=False)
    a = vc.clone(tmpl, unique("node"), power_on=True)
    b = vc.clone(tmpl, unique("node"), power_on=True)
    for vm in (a, b):
        values, _ = vc.wait_ip(vm)
        assert values["guest.hostName"] == "node"
        st = disk_of(lab, vm).load()
        assert not st.generalized and st.computer_name == "node"
    assert (
        host_key_fingerprints(disk_of(lab, a))
        == host_key_fingerprints(disk_of(lab, b))
        == host_key_fingerprints(golden.disk)
    )
    assert disk_of(lab, a).load().machine_sid != disk_of(lab, b).load().machine_sid


def test_oobe_regenerates_removed_host_keys(golden: Golden, lab: dict[str, str], vc: VC) -> None:
    tmpl = _sysprep(lab, vc, golden, "tmplk", remove_host_keys=True)
    a = vc.clone(tmpl, unique("nodek"), power_on=True)
    b = vc.clone(tmpl, unique("nodek"), power_on=True)
    keys = []
    for vm in (a, b):
        values, _ = vc.wait_ip(vm)
        wait_log(guest_log(lab, vm), "sshd started")
        keys.append(host_key_fingerprints(disk_of(lab, vm)))
        with ssh(lab, values["guest.ipAddress"], disk_of(lab, vm)) as c:
            assert run(c, "$env:COMPUTERNAME")[1].strip().lower() == "node"
    assert keys[0] and keys[1] and keys[0] != keys[1]
    assert not keys[0] & host_key_fingerprints(golden.disk)


def test_sysprep_limit(golden: Golden, lab: dict[str, str], vc: VC) -> None:
    vm, ip, disk = fresh_clone(vc, golden, lab, "limit")
    with disk.edit() as st:  # this image was generalized as often as Windows allows
        st.sysprep_count = SYSPREP_LIMIT
    with ssh(lab, ip, disk) as c:
        rc, _, err = run(
            c,
            f"Set-Content -Path C:\\Windows\\Temp\\unattend.xml -Value '{sysprep_unattend('node')}'".replace(
                "\n", ""
            ),
        )
        assert rc == 0, err
        rc, _, err = run(
            c,
            r"C:\Windows\System32\Sysprep\sysprep.exe /generalize /oobe /shutdown /unattend:C:\Windows\Temp\unattend.xml",
        )
    assert rc != 0, "sysprep generalized past the Windows limit"
    panther = disk.host_path(r"C:\Windows\System32\Sysprep\Panther\setuperr.log").read_text()
    assert "0xc004d307" in panther.lower()  # sysprep reports in its Panther logs, not on stderr
    assert not disk.load().generalized
    assert str(vc.guest(vm)["runtime.powerState"]) == "poweredOn"


# -- tests: power -----------------------------------------------------------------------------------------
def test_power_off_stops_sshd_and_clears_the_report(
    golden: Golden, lab: dict[str, str], vc: VC
) -> None:
    vm, ip, disk = fresh_clone(vc, golden, lab, "off")
    c = ssh(lab, ip, disk)
    vc.power_off(vm)
    values, _ = vc.wait(
        vm, GUEST_PROPS, lambda v: v.get("guest.toolsRunningStatus") == "guestToolsNotRunning"
    )
    assert not values.get("guest.ipAddress")
    wait_log(guest_log(lab, vm), "sshd stopped")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, 22), timeout=5).close()
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        run(c, "$env:COMPUTERNAME")
    c.close()


def test_destroy_deletes_the_guest(golden: Golden, lab: dict[str, str], vc: VC) -> None:
    vm, ip, disk = fresh_clone(vc, golden, lab, "gone")
    vc.power_off(vm)
    vc.run_task(vm.Destroy_Task())
    wait_gone(disk.root)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, 22), timeout=5).close()


def test_restart_computer_reboots_the_guest(golden: Golden, lab: dict[str, str], vc: VC) -> None:
    vm, ip, disk = fresh_clone(vc, golden, lab, "reboot")
    boots = disk.load().boot_count
    with ssh(lab, ip, disk) as c:
        run(c, "Restart-Computer -Force")
    vc.wait(vm, GUEST_PROPS, lambda v: v.get("guest.toolsRunningStatus") == "guestToolsNotRunning")
    vc.wait_ip(vm)
    assert disk.load().boot_count == boots + 1
    assert str(vc.guest(vm)["runtime.powerState"]) == "poweredOn"


# -- tests: the supervisor itself ------------------------------------------------------------------------
def test_supervisor_survives_injected_faults(golden: Golden, lab: dict[str, str], vc: VC) -> None:
    """The event collector fails twice (as a busy vCenter does): the supervisor logs in again,
    replays what it missed and still boots the new clone."""
    from lab.vcsim import VcsimControl

    control = VcsimControl(lab["LAB_VCSIM_CONTROL_URL"])
    control.add_fault("ReadNextEvents", "SystemError", max_count=2)
    try:
        _, _, disk = fresh_clone(vc, golden, lab, "fault")
    finally:
        control.clear_faults()
    assert disk.load().computer_name == "golden"
    assert (
        "vcenter watch interrupted"
        in (Path(lab["LAB_LOG_DIR"]) / "guest-supervisor.log").read_text()
    )


def test_supervisor_survives_lost_sessions(golden: Golden, lab: dict[str, str], vc: VC) -> None:
    """vCenter drops every session (as after a session timeout): the supervisor logs in again and
    still sees the power-on of a new clone. Last in the module: the module's own session dies too."""
    req = urllib.request.Request(
        lab["LAB_VCSIM_CONTROL_URL"] + "/sessions/invalidate", data=b"", method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    url = urlparse(lab["GOVC_URL"])
    si = SmartConnect(
        host=url.hostname,
        port=url.port,
        user=lab["GOVC_USERNAME"],
        pwd=lab["GOVC_PASSWORD"],
        sslContext=ssl.create_default_context(cafile=lab["GOVC_TLS_CA_CERTS"]),
    )
    try:
        again = VC(lab, si, created=vc.created)  # destroyed by the fixture
        vm = again.clone(
            again.find(vim.VirtualMachine, golden.name), unique("relogin"), power_on=True
        )
        values, _ = again.wait_ip(vm)
        assert values["guest.hostName"] == "golden"
    finally:
        Disconnect(si)
