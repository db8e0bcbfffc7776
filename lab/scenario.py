"""Lab scenarios: drive the lab's vCenter and Windows guests the way an administrator would by hand.

The lab's own tests, the controllers' tests and `make demo` (until the product's flows run it) all
need the same few sequences: install a Windows VM from ISO with answer media, wait for VMware Tools to
report an IP, run PowerShell over SSH, clone, sysprep and make a template. This module does them with
pyvmomi and paramiko directly, with no code from the product: if the product and the lab shared a bug,
the tests could not see it.

SSH host keys are verified: the trusted key is read from the guest's disk in the lab's run directory
(the lab is the one place that can know it out of band), never accepted blindly.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import paramiko
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from lab import media
from lab.guest.state import GuestDisk


@dataclass(frozen=True)
class Site:
    """The lab's vCenter as `.lab/env` describes it."""

    url: str
    user: str
    password: str
    ca_file: str
    datacenter: str
    datastore: str
    datastore_dir: str
    network: str
    folder: str
    resource_pool: str
    guests_dir: str
    windows_iso: dict[str, str]
    tools_iso: str
    tools_iso_old: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Site:
        return cls(
            url=env["GOVC_URL"],
            user=env["GOVC_USERNAME"],
            password=env["GOVC_PASSWORD"],
            ca_file=env["GOVC_TLS_CA_CERTS"],
            datacenter=env["LAB_VSPHERE_DATACENTER"],
            datastore=env["LAB_VSPHERE_DATASTORE"],
            datastore_dir=env["LAB_VSPHERE_DATASTORE_DIR"],
            network=env["LAB_VSPHERE_NETWORK"],
            folder=env["LAB_VSPHERE_FOLDER"],
            resource_pool=env["LAB_VSPHERE_RESOURCE_POOL"],
            guests_dir=env.get("LAB_GUESTS_DIR", ""),
            windows_iso={
                "ocp-4.9": env["LAB_WINDOWS_ISO_OCP49"],
                "current": env["LAB_WINDOWS_ISO_CURRENT"],
            },
            tools_iso=env["LAB_TOOLS_ISO"],
            tools_iso_old=env["LAB_TOOLS_ISO_OLD"],
        )

    @property
    def host_port(self) -> tuple[str, int]:
        u = urllib.parse.urlsplit(self.url)
        return u.hostname or "127.0.0.1", u.port or 443

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


@contextlib.contextmanager
def connect(site: Site) -> Iterator[vim.ServiceInstance]:
    host, port = site.host_port
    si = SmartConnect(
        host=host, port=port, user=site.user, pwd=site.password, sslContext=site.ssl_context()
    )
    try:
        yield si
    finally:
        with contextlib.suppress(Exception):
            Disconnect(si)


def find(si: vim.ServiceInstance, path: str) -> vim.ManagedEntity:
    index = si.content.searchIndex
    assert index is not None
    obj = index.FindByInventoryPath(path)
    if obj is None:
        raise LookupError(f"no inventory object at {path}")
    return obj


def vm_by_name(si: vim.ServiceInstance, site: Site, name: str) -> vim.VirtualMachine:
    vm = find(si, f"{site.folder}/{name}")
    assert isinstance(vm, vim.VirtualMachine)
    return vm


def upload(site: Site, data: bytes, ds_path: str) -> str:
    """PUT a file into the datastore (`iso/answers.iso` -> `[LocalDS_0] iso/answers.iso`)."""
    base = site.url.removesuffix("/sdk")
    query = urllib.parse.urlencode({"dcPath": site.datacenter, "dsName": site.datastore})
    url = f"{base}/folder/{urllib.parse.quote(ds_path)}?{query}"
    auth = base64.b64encode(f"{site.user}:{site.password}".encode()).decode()
    req = urllib.request.Request(url, data=data, method="PUT")
    req.add_header("Authorization", f"Basic {auth}")
    req.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(req, context=site.ssl_context(), timeout=30) as resp:
        if resp.status not in (200, 201, 204):
            raise RuntimeError(f"upload of {ds_path} failed: HTTP {resp.status}")
    return f"[{site.datastore}] {ds_path}"


def wait_task(si: vim.ServiceInstance, task: vim.Task, timeout: float = 120) -> object:
    """Wait for a task with the property collector (no polling)."""
    wait_for(si, task, "info.state", lambda s: s in ("success", "error"), timeout)
    if task.info.state == "error":
        err = task.info.error
        raise err if isinstance(err, BaseException) else RuntimeError(str(err))
    return task.info.result


def wait_for(
    si: vim.ServiceInstance,
    obj: vim.ManagedEntity | vim.Task,
    prop: str,
    done: object,
    timeout: float = 60,
) -> object:
    """Block until `done(value)` holds for `obj.prop`, with WaitForUpdatesEx and a deadline.
    Returns the value."""
    pc = si.content.propertyCollector.CreatePropertyCollector()
    try:
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=[prop])],
        )
        pc.CreateFilter(spec, partialUpdates=False)
        deadline = time.monotonic() + timeout
        version = ""
        value: object = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{obj._moId}.{prop} still {value!r} after {timeout:.0f}s")
            opts = vmodl.query.PropertyCollector.WaitOptions(
                maxWaitSeconds=max(1, int(min(left, 10)))
            )
            res = pc.WaitForUpdatesEx(version, opts)
            if res is None:
                continue
            version = res.version
            for fs in res.filterSet:
                for oc in fs.objectSet:
                    for ch in oc.changeSet:
                        if ch.name == prop:
                            value = ch.val
            if callable(done) and done(value):
                return value
    finally:
        pc.DestroyPropertyCollector()


def is_usable_ipv4(ip: object) -> bool:
    """Not empty, IPv4, not APIPA (169.254/16, what Windows shows before DHCP answers)."""
    return isinstance(ip, str) and ip.count(".") == 3 and not ip.startswith(("169.254.", "0."))


# -- answer media ----------------------------------------------------------------------------


def first_logon_script(
    public_key: str,
    *,
    install_openssh: bool = True,
    firewall_ports: Sequence[int] = (),
    tools_conf: bool = True,
    tools_drive: str = "E:",
) -> str:
    """What the administrator's first-logon script does in the documented procedure (G2-G5, G7)."""
    lines = [
        "$ErrorActionPreference = 'Stop'",
        f"Start-Process -FilePath '{tools_drive}\\setup64.exe' -ArgumentList '/s /v \"/qn REBOOT=R\"' -Wait",
    ]
    if tools_conf:
        lines += [
            "New-Item -ItemType Directory -Force -Path 'C:\\ProgramData\\VMware\\VMware Tools'",
            "Set-Content -Path 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf' "
            '-Value "[guestinfo]`r`nexclude-nics="',
        ]
    if install_openssh:
        lines += [
            "Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0",
            "Set-Service -Name sshd -StartupType Automatic",
            "Start-Service sshd",
            f"Set-Content -Path 'C:\\ProgramData\\ssh\\administrators_authorized_keys' -Value '{public_key.strip()}'",
            "icacls 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /inheritance:r "
            "/grant 'Administrators:F' /grant 'SYSTEM:F'",
        ]
    for port in firewall_ports:
        lines.append(
            f"New-NetFirewallRule -DisplayName 'Port {port}' -LocalPort {port} -Enabled True "
            "-Direction Inbound -Protocol TCP -Action Allow -EdgeTraversalPolicy Allow"
        )
    return "\r\n".join(lines) + "\r\n"


#: The image each stand-in Windows ISO installs by default (lab.media lists every image).
IMAGE_NAMES = {
    "ocp-4.9": "Windows Server SERVERDATACENTERACORE",
    "current": "Windows Server 2022 SERVERDATACENTERCORE",
}


def autounattend(
    computer_name: str,
    admin_password: str,
    script_drive: str = "F:",
    image_name: str = IMAGE_NAMES["current"],
) -> str:
    """An autounattend.xml that installs `image_name` unattended and runs the first-logon script
    once. No DriverPaths: the lab's hand-made VMs use LSI Logic SAS, whose driver Windows has."""
    pw = escape(admin_password)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend" xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State">
  <settings pass="windowsPE">
    <component name="Microsoft-Windows-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <ImageInstall><OSImage><InstallFrom><MetaData wcm:action="add"><Key>/IMAGE/NAME</Key><Value>{escape(image_name)}</Value></MetaData></InstallFrom></OSImage></ImageInstall>
    </component>
  </settings>
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <ComputerName>{escape(computer_name)}</ComputerName>
    </component>
  </settings>
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <AutoLogon><Enabled>false</Enabled></AutoLogon>
      <UserAccounts><AdministratorPassword><Value>{pw}</Value><PlainText>true</PlainText></AdministratorPassword></UserAccounts>
      <TimeZone>UTC</TimeZone>
      <FirstLogonCommands>
        <SynchronousCommand wcm:action="add">
          <Order>1</Order>
          <CommandLine>powershell -NoProfile -ExecutionPolicy Bypass -File {script_drive}\\first-logon.ps1</CommandLine>
          <Description>Tools, OpenSSH, key, firewall</Description>
        </SynchronousCommand>
      </FirstLogonCommands>
    </component>
  </settings>
</unattend>
"""


def sysprep_unattend(computer_name: str, admin_password: str) -> str:
    """The procedure's unattend.xml for sysprep (G9), from the seed's example."""
    pw = escape(admin_password)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
   <settings pass="specialize">
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-International-Core" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <InputLocale>0409:00000409</InputLocale>
         <SystemLocale>en-US</SystemLocale>
         <UILanguage>en-US</UILanguage>
         <UILanguageFallback>en-US</UILanguageFallback>
         <UserLocale>en-US</UserLocale>
      </component>
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-Security-SPP-UX" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <SkipAutoActivation>true</SkipAutoActivation>
      </component>
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-SQMApi" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <CEIPEnabled>0</CEIPEnabled>
      </component>
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <ComputerName>{escape(computer_name)}</ComputerName>
      </component>
   </settings>
   <settings pass="oobeSystem">
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <AutoLogon>
            <Enabled>false</Enabled>
         </AutoLogon>
         <OOBE>
            <HideEULAPage>true</HideEULAPage>
            <HideLocalAccountScreen>true</HideLocalAccountScreen>
            <HideOEMRegistrationScreen>true</HideOEMRegistrationScreen>
            <HideOnlineAccountScreens>true</HideOnlineAccountScreens>
            <HideWirelessSetupInOOBE>true</HideWirelessSetupInOOBE>
            <NetworkLocation>Work</NetworkLocation>
            <ProtectYourPC>1</ProtectYourPC>
            <SkipMachineOOBE>true</SkipMachineOOBE>
            <SkipUserOOBE>true</SkipUserOOBE>
         </OOBE>
         <RegisteredOrganization>Organization</RegisteredOrganization>
         <RegisteredOwner>AutoBot</RegisteredOwner>
         <DisableAutoDaylightTimeSet>false</DisableAutoDaylightTimeSet>
         <TimeZone>Eastern Standard Time</TimeZone>
         <UserAccounts>
            <AdministratorPassword>
               <Value>{pw}</Value>
               <PlainText>true</PlainText>
            </AdministratorPassword>
         </UserAccounts>
      </component>
   </settings>
</unattend>
"""


def answer_iso(site: Site, name: str, autounattend_xml: str, script: str) -> str:
    """Pack and upload answer media; returns its datastore path."""
    tmp = Path(site.datastore_dir) / "iso" / f".{name}.building"
    media.build_iso(
        tmp,
        {"/autounattend.xml": autounattend_xml.encode(), "/first-logon.ps1": script.encode()},
        "ANSWERS",
    )
    data = tmp.read_bytes()
    tmp.unlink()
    return upload(site, data, f"iso/{name}.iso")


# -- VMs ---------------------------------------------------------------------------------------


def _cdrom(key: int, controller_key: int, unit: int, iso: str) -> vim.vm.device.VirtualDeviceSpec:
    dev = vim.vm.device.VirtualCdrom(
        key=key,
        controllerKey=controller_key,
        unitNumber=unit,
        backing=vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=iso),
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(
            startConnected=True, connected=True, allowGuestControl=True
        ),
    )
    return vim.vm.device.VirtualDeviceSpec(operation="add", device=dev)


def create_windows_vm(
    si: vim.ServiceInstance,
    site: Site,
    name: str,
    isos: Sequence[str],
    *,
    cpus: int = 2,
    memory_mb: int = 4096,
    disk_gb: int = 40,
) -> vim.VirtualMachine:
    """A BIOS VM with hardware version 19, a disk on LSI Logic SAS (as WMCO's CI template; Windows
    has its driver), a NIC on the network and one CD-ROM per ISO (D:, E:, F: in that order),
    powered off."""
    folder = find(si, site.folder)
    pool = find(si, site.resource_pool)
    devices: list[vim.vm.device.VirtualDeviceSpec] = [
        vim.vm.device.VirtualDeviceSpec(
            operation="add",
            device=vim.vm.device.VirtualLsiLogicSASController(
                key=1000, busNumber=0, sharedBus="noSharing"
            ),
        ),
        vim.vm.device.VirtualDeviceSpec(
            operation="add",
            fileOperation="create",
            device=vim.vm.device.VirtualDisk(
                key=2000,
                controllerKey=1000,
                unitNumber=0,
                capacityInKB=disk_gb * 1024 * 1024,
                backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                    diskMode="persistent", thinProvisioned=True
                ),
            ),
        ),
        vim.vm.device.VirtualDeviceSpec(
            operation="add",
            device=vim.vm.device.VirtualVmxnet3(
                key=4000,
                backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
                    deviceName=site.network
                ),
                connectable=vim.vm.device.VirtualDevice.ConnectInfo(
                    startConnected=True, connected=True
                ),
            ),
        ),
    ]
    # The simulator's default devices include IDE controllers 200 and 201, two units each.
    for i, iso in enumerate(isos):
        devices.append(_cdrom(3000 + i, 200 + i // 2, i % 2, iso))
    spec = vim.vm.ConfigSpec(
        name=name,
        guestId="windows2019srvNext_64Guest",
        version="vmx-19",
        numCPUs=cpus,
        memoryMB=memory_mb,
        files=vim.vm.FileInfo(vmPathName=f"[{site.datastore}]"),
        deviceChange=devices,
    )
    vm = wait_task(si, folder.CreateVM_Task(config=spec, pool=pool))
    assert isinstance(vm, vim.VirtualMachine)
    return vm


def power_on(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> None:
    # not vm.runtime: pyVmomi 9 cannot read vcsim's VM runtime property (AttributeError)
    with contextlib.suppress(vim.fault.InvalidPowerState):
        wait_task(si, vm.PowerOnVM_Task())


def wait_for_ip(si: vim.ServiceInstance, vm: vim.VirtualMachine, timeout: float = 60) -> str:
    """The first usable IPv4 address VMware Tools report (skipping APIPA)."""
    ip = wait_for(si, vm, "guest.ipAddress", is_usable_ipv4, timeout)
    assert isinstance(ip, str)
    return ip


def wait_powered_off(si: vim.ServiceInstance, vm: vim.VirtualMachine, timeout: float = 60) -> None:
    wait_for(si, vm, "runtime.powerState", lambda s: s == "poweredOff", timeout)


def clone(
    si: vim.ServiceInstance,
    site: Site,
    source: vim.VirtualMachine,
    name: str,
    *,
    power: bool = False,
    template: bool = False,
) -> vim.VirtualMachine:
    spec = vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(pool=find(si, site.resource_pool)),
        powerOn=power,
        template=template,
    )
    vm = wait_task(si, source.CloneVM_Task(folder=find(si, site.folder), name=name, spec=spec))
    assert isinstance(vm, vim.VirtualMachine)
    return vm


def destroy(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> None:
    with contextlib.suppress(vim.fault.InvalidPowerState):
        wait_task(si, vm.PowerOffVM_Task())
    wait_task(si, vm.Destroy_Task())


# -- SSH -----------------------------------------------------------------------------------------


def host_keys(site: Site, vm: vim.VirtualMachine) -> list[paramiko.PKey]:
    """The guest's SSH host public keys, read from its disk in the lab's run directory."""
    disk = GuestDisk(Path(site.guests_dir) / vm._moId)
    ssh_dir = disk.host_path("C:\\ProgramData\\ssh")
    keys = []
    for pub in sorted(ssh_dir.glob("ssh_host_*_key.pub")):
        kind, b64 = pub.read_text().split()[:2]
        keys.append(paramiko.PKey.from_type_string(kind, base64.b64decode(b64)))
    return keys


@contextlib.contextmanager
def ssh(
    ip: str,
    key_file: str,
    trusted: Sequence[paramiko.PKey],
    user: str = "Administrator",
    timeout: float = 10,
) -> Iterator[paramiko.SSHClient]:
    """A verified SSH session (RejectPolicy + known host keys; TCP_NODELAY, see field notes)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    hk = client.get_host_keys()
    for k in trusted:
        hk.add(ip, k.get_name(), k)
    sock = socket.create_connection((ip, 22), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        client.connect(
            ip,
            username=user,
            key_filename=key_file,
            sock=sock,
            timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
        yield client
    finally:
        client.close()


def run(client: paramiko.SSHClient, command: str, timeout: float = 60) -> tuple[int, str, str]:
    _, out, err = client.exec_command(command, timeout=timeout)
    rc = out.channel.recv_exit_status()
    return rc, out.read().decode(errors="replace"), err.read().decode(errors="replace")


# -- the whole golden image, by hand ---------------------------------------------------------------


@dataclass
class Golden:
    base: vim.VirtualMachine
    template: vim.VirtualMachine


def install_windows(
    si: vim.ServiceInstance,
    site: Site,
    name: str,
    public_key: str,
    *,
    profile: str = "current",
    firewall_ports: Sequence[int] = (10250, 9182),
    tools_conf: bool = True,
    install_openssh: bool = True,
    admin_password: str = "Lab-Passw0rd!",
) -> tuple[vim.VirtualMachine, str]:
    """G1-G7 by hand: a VM installed from ISO with answer media, powered on; returns (vm, ip)."""
    script = first_logon_script(
        public_key,
        install_openssh=install_openssh,
        firewall_ports=firewall_ports,
        tools_conf=tools_conf,
    )
    answers = answer_iso(
        site,
        f"{name}-answers",
        autounattend(name.lower()[:15], admin_password, image_name=IMAGE_NAMES[profile]),
        script,
    )
    vm = create_windows_vm(si, site, name, [site.windows_iso[profile], site.tools_iso, answers])
    power_on(si, vm)
    ip = wait_for_ip(si, vm)
    # Tools report while the first logon still runs (as on Windows): wait for its end.
    wait_for_first_logon(site, vm, commands=1)
    if install_openssh:
        # The log line of the last command is written before the guest supervisor sees the
        # change and starts sshd: "done" is when port 22 answers (CI saw the gap once).
        wait_for_sshd(ip)
    return vm, ip


def wait_for_sshd(ip: str, timeout: float = 30) -> None:
    """Until the guest's sshd accepts TCP connections on `ip`:22 (bounded, growing pauses)."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        try:
            with socket.create_connection((ip, 22), timeout=1.0):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"sshd on {ip}:22 not answering after {timeout}s: {exc}"
                ) from exc
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def wait_for_first_logon(
    site: Site, vm: vim.VirtualMachine, commands: int, timeout: float = 120
) -> None:
    """Until the guest's first logon ran `commands` FirstLogonCommands (read from the twin's disk,
    the lab's own means; bounded, with growing pauses)."""
    disk = GuestDisk(Path(site.guests_dir) / vm._moId)
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        with disk.locked():
            done = sum(1 for line in disk.load().log if line.startswith("FirstLogonCommand"))
        if done >= commands:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{vm._moId}: {done}/{commands} FirstLogonCommands after {timeout}s")
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def make_template(
    si: vim.ServiceInstance,
    site: Site,
    base: vim.VirtualMachine,
    key_file: str,
    template_name: str,
    *,
    remove_host_keys: bool = True,
    computer_name: str = "winworker",
    admin_password: str = "Lab-Passw0rd!",
) -> vim.VirtualMachine:
    """G8-G10 by hand: clone the base, sysprep the clone, wait for power-off, mark as template."""
    vm = clone(si, site, base, template_name, power=True)
    ip = wait_for_ip(si, vm)
    with ssh(ip, key_file, host_keys(site, vm)) as c:
        if remove_host_keys:
            rc, _, err = run(c, "Remove-Item -Force C:\\ProgramData\\ssh\\ssh_host_*")
            if rc != 0:
                raise RuntimeError(f"removing host keys failed: {err}")
        sftp = c.open_sftp()
        with sftp.open("C:/Windows/Temp/unattend.xml", "w") as fh:
            fh.write(sysprep_unattend(computer_name, admin_password))
        sftp.close()
        rc, _, err = run(
            c,
            "C:\\Windows\\System32\\Sysprep\\sysprep.exe /generalize /oobe /shutdown "
            "/unattend:C:\\Windows\\Temp\\unattend.xml",
        )
        if rc != 0:
            raise RuntimeError(f"sysprep failed: {err}")
    wait_powered_off(si, vm)
    vm.MarkAsTemplate()
    return vm


def remove_golden(si: vim.ServiceInstance, site: Site, template: str, base: str) -> None:
    """Destroy a template make_template made from `base` (an install_windows VM, already destroyed)
    and the answer ISO that install uploaded: what tests sharing a lab remove after themselves."""
    with contextlib.suppress(LookupError):
        wait_task(si, vm_by_name(si, site, template).Destroy_Task())
    (Path(site.datastore_dir) / "iso" / f"{base}-answers.iso").unlink(missing_ok=True)


# -- a Windows MachineSet, written by hand as procedure C1 shows ---------------------------------


def provider_spec(site: Site, template: str, server: str | None = None) -> dict[str, object]:
    """The documented VSphereMachineProviderSpec (M5-M9) for this lab's placement."""
    return {
        "apiVersion": "vsphereprovider.openshift.io/v1beta1",
        "kind": "VSphereMachineProviderSpec",
        "credentialsSecret": {"name": "vsphere-cloud-credentials"},
        "diskGiB": 128,
        "memoryMiB": 16384,
        "numCPUs": 4,
        "numCoresPerSocket": 1,
        "snapshot": "",
        "template": template,
        "network": {"devices": [{"networkName": site.network}]},
        "userDataSecret": {"name": "windows-user-data"},
        "workspace": {
            "datacenter": site.datacenter.strip("/").split("/")[-1],
            "datastore": site.datastore,
            "folder": site.folder,
            "resourcePool": site.resource_pool,
            "server": server or site.host_port[0],
        },
    }


def windows_machineset(
    name: str, infra_id: str, provider: dict[str, object], replicas: int = 1
) -> dict[str, object]:
    """A Windows worker MachineSet with every label of M1-M4 around `provider`."""
    labels = {
        "machine.openshift.io/cluster-api-cluster": infra_id,
        "machine.openshift.io/cluster-api-machineset": name,
    }
    return {
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "MachineSet",
        "metadata": {
            "name": name,
            "namespace": "openshift-machine-api",
            "labels": {"machine.openshift.io/cluster-api-cluster": infra_id},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": {
                        **labels,
                        "machine.openshift.io/os-id": "Windows",
                        "machine.openshift.io/cluster-api-machine-role": "worker",
                        "machine.openshift.io/cluster-api-machine-type": "worker",
                    }
                },
                "spec": {
                    "metadata": {"labels": {"node-role.kubernetes.io/worker": ""}},
                    "providerSpec": {"value": provider},
                },
            },
        },
    }
