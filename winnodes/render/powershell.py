"""The exact PowerShell each golden-image step runs in the guest, and parsers for what it prints.

One pure function per check or repair (G3a, G3c, G4, G5, G6, G7, G9), so a reader looking for "how
is G7 done" finds the command here, with its test, and the guest adapter only sends strings.

The commands stay within a deliberately small PowerShell subset that real Windows PowerShell 5.1
runs unchanged and the lab's emulator implements: statements separated by `;`, pipelines, named
parameters, single-quoted strings, variables, `if/else`, `-eq -ne -like -not`, `Where-Object`,
`ForEach-Object`, `Select-Object`, `ConvertTo-Json`, `Test-Path`, `Get-Content`, `Set-Content`,
`New-Item`, `Remove-Item`, `Get/Set/Start-Service`, `Get/New-NetFirewallRule`,
`Add-WindowsCapability`, `icacls`, `Start-Process -Wait`, `&`. No functions, no try/catch, no .NET.
SSH commands are one line; `powershell_command_line` wraps any of them as -EncodedCommand so no
shell between SSH and powershell.exe can mangle them.

Output parsing: Windows PowerShell 5.1's `ConvertTo-Json` writes enums as integers (a service's
Status Running=4, Stopped=1; StartType Automatic=2, Manual=3, Disabled=4; a firewall rule's Enabled
True=1 False=2, Direction Inbound=1, Action Allow=2). PowerShell 7 writes the same integers unless
`-EnumsAsStrings`; the parsers accept both forms.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from winnodes.model.profiles import FirewallPort, RequirementProfile

# Windows PowerShell treats these as single quotes too; each is doubled to escape it.
_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"

TOOLS_CONF = r"C:\ProgramData\VMware\VMware Tools\tools.conf"
TOOLS_CONF_DIR = r"C:\ProgramData\VMware\VMware Tools"
TOOLBOX_CMD = r"C:\Program Files\VMware\VMware Tools\VMwareToolboxCmd.exe"
AUTHORIZED_KEYS = r"C:\ProgramData\ssh\administrators_authorized_keys"
SSH_DIR = r"C:\ProgramData\ssh"
HOST_KEYS_GLOB = r"C:\ProgramData\ssh\ssh_host_*"
SYSPREP_EXE = r"C:\Windows\System32\Sysprep\sysprep.exe"
#: Where G9 uploads unattend.xml for sysprep: the file sysprep caches the answer file to and the
#: first place Windows Setup looks at the next boot (implicit answer file search), so the clone
#: holds one copy, not two; SetupComplete.cmd removes it on every node once OOBE used it.
UNATTEND_PATH = r"C:\Windows\Panther\unattend.xml"
#: Where earlier builds uploaded it (still removed wherever found).
LEGACY_UNATTEND_PATH = r"C:\Windows\Temp\winnodes-unattend.xml"
#: Windows Setup runs this as SYSTEM at the end of setup and of a generalized image's OOBE.
SETUP_COMPLETE = r"C:\Windows\Setup\Scripts\SetupComplete.cmd"
#: Every place an answer file with the Administrator password can be left after setup.
SETUP_SECRET_FILES = (
    UNATTEND_PATH,
    r"C:\Windows\Panther\Unattend\unattend.xml",
    r"C:\Windows\Panther\autounattend.xml",
    r"C:\Windows\System32\Sysprep\unattend.xml",
    LEGACY_UNATTEND_PATH,
)
OPENSSH_CAPABILITY = "OpenSSH.Server~~~~0.0.1.0"
SSH_FIREWALL_RULE = "OpenSSH-Server-In-TCP"
MISSING_MARKER = "WINNODES-MISSING"


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted string literal of `value` (no expansion happens inside)."""
    out = "".join(c + c if c in _SINGLE_QUOTES else c for c in value)
    return f"'{out}'"


def ps_array(values: list[str] | tuple[str, ...]) -> str:
    """A PowerShell array of single-quoted strings: 'a','b'."""
    return ",".join(ps_quote(v) for v in values)


def encode_command(script: str) -> str:
    """`script` as powershell.exe's -EncodedCommand value: base64 of its UTF-16LE bytes."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def powershell_command_line(
    script: str, *, extra: str = "-NonInteractive", quiet_progress: bool = True
) -> str:
    """A command line that runs `script` in Windows PowerShell whatever parses the line first:
    `powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand <base64>`.

    Why encoded: Windows' OpenSSH runs a command through its default shell, cmd.exe unless the
    site set DefaultShell to PowerShell; FirstLogonCommands are run without PowerShell. A
    `-Command "..."` line means different things in each (a PowerShell parent expands `$_` inside
    the double quotes, cmd expands `%X%`); base64 has no quotes, no `$`, no `%`, so it reaches
    powershell.exe intact everywhere. Progress records are silenced so stderr carries only errors."""
    body = f"$ProgressPreference = 'SilentlyContinue'; {script}" if quiet_progress else script
    return (
        f"powershell.exe -NoProfile {extra} -ExecutionPolicy Bypass "
        f"-EncodedCommand {encode_command(body)}".replace("  ", " ")
    )


def _join(*statements: str) -> str:
    return "; ".join(statements)


def _json_of(select: str) -> str:
    return f"Select-Object -Property {select} | ConvertTo-Json -Compress"


# ---- PRE-2: the installed Windows build --------------------------------------------------------
OS_VERSION_KEY = r"HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion"


@dataclass(frozen=True)
class OsVersion:
    """What the registry says Windows is: build and UBR (the patch level) decide; the names are for
    humans (ProductName is unreliable: Windows keeps old names across releases)."""

    build: int
    ubr: int
    product_name: str
    display_version: str

    @property
    def version(self) -> str:
        """'20348.681': build.UBR (what G6u shows before and after the updates)."""
        return f"{self.build}.{self.ubr}"

    def __str__(self) -> str:
        shown = " ".join(p for p in (self.product_name, self.display_version) if p)
        return f"{shown or 'Windows'} {self.version}"


def os_version_command() -> str:
    """PRE-2 (and G6u's before/after): build, UBR and names from the registry (the values
    `winver` shows)."""
    return f"Get-ItemProperty -Path {ps_quote(OS_VERSION_KEY)} | " + _json_of(
        "CurrentBuildNumber, UBR, ProductName, DisplayVersion"
    )


def parse_os_version(output: str) -> OsVersion:
    """The object of `os_version_command()`; ValueError when there is no build number."""
    for item in _json_items(output):
        try:
            build = int(str(item.get("CurrentBuildNumber") or "").strip())
        except ValueError:
            continue
        try:
            ubr = int(item.get("UBR") or 0)
        except (TypeError, ValueError):
            ubr = 0
        return OsVersion(
            build=build,
            ubr=ubr,
            product_name=str(item.get("ProductName") or ""),
            display_version=str(item.get("DisplayVersion") or ""),
        )
    raise ValueError(f"no CurrentBuildNumber in {output.strip()[:200]!r}")


# ---- G2/G3: VMware Tools -------------------------------------------------------------------------
def tools_version_command() -> str:
    """G2: the installed Tools version, e.g. '12.1.5.20735 (build-20735119)'."""
    return f"& {ps_quote(TOOLBOX_CMD)} -v"


_TOOLS_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def parse_tools_version(output: str) -> tuple[int, int, int]:
    """'12.1.5.20735 (build-20735119)' -> (12, 1, 5). ValueError when there is no version."""
    m = _TOOLS_VERSION.search(output)
    if not m:
        raise ValueError(f"no VMware Tools version in {output.strip()[:200]!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def decode_vcenter_tools_version(encoded: int | str) -> tuple[int, int, int]:
    """vCenter's `guest.toolsVersion` (e.g. 12325 = 12.1.5): major<<10 | minor<<5 | patch."""
    n = int(encoded)
    return n >> 10, (n >> 5) & 0x1F, n & 0x1F


def tools_conf_read_command() -> str:
    """G3a check: print tools.conf, or the MISSING marker when the file does not exist."""
    p = ps_quote(TOOLS_CONF)
    return f"if (Test-Path -Path {p}) {{ Get-Content -Path {p} }} else {{ Write-Output '{MISSING_MARKER}' }}"


@dataclass(frozen=True)
class ToolsConfState:
    exists: bool
    exclude_nics_empty: bool  # `exclude-nics=` with an empty value in [guestinfo]
    exclude_nics_value: str | None  # the value found in [guestinfo], None when absent


def parse_tools_conf(output: str) -> ToolsConfState:
    """G3a: does tools.conf have an uncommented, empty `exclude-nics=` in its [guestinfo] section?"""
    if output.strip() == MISSING_MARKER:
        return ToolsConfState(False, False, None)
    section = ""
    value: str | None = None
    for raw in output.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        key, sep, val = line.partition("=")
        if sep and section == "guestinfo" and key.strip().lower() == "exclude-nics":
            value = val.strip()
    return ToolsConfState(True, value == "", value)


def repaired_tools_conf(existing: str | None) -> list[str]:
    """G3a repair: the lines of tools.conf with `exclude-nics=` empty in [guestinfo], keeping every
    other setting (a missing file becomes just that section)."""
    if existing is None or existing.strip() == MISSING_MARKER:
        return ["[guestinfo]", "exclude-nics="]
    lines = existing.splitlines()
    out: list[str] = []
    section = ""
    placed = False
    for raw in lines:
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            if section == "guestinfo" and not placed:
                out.append("exclude-nics=")
                placed = True
            section = line[1:-1].strip().lower()
        elif section == "guestinfo" and line and line[0] not in "#;":
            key = line.partition("=")[0].strip().lower()
            if key == "exclude-nics":
                if not placed:
                    out.append("exclude-nics=")
                    placed = True
                continue
        out.append(raw)
    if not placed:
        if section == "guestinfo":
            out.append("exclude-nics=")
        else:
            out += ["[guestinfo]", "exclude-nics="]
    return out


def tools_conf_write_command(lines: list[str]) -> str:
    """G3a repair: write tools.conf (one array element per line), creating its directory."""
    d, p = ps_quote(TOOLS_CONF_DIR), ps_quote(TOOLS_CONF)
    return _join(
        "$ErrorActionPreference = 'Stop'",
        f"if (-not (Test-Path -Path {d})) {{ New-Item -ItemType Directory -Path {d} -Force }}",
        f"Set-Content -Path {p} -Value {ps_array(lines)}",
    )


# ---- services (G3c, G4, G6) ----------------------------------------------------------------------
SERVICE_STATUS = {
    1: "Stopped",
    2: "StartPending",
    3: "StopPending",
    4: "Running",
    5: "ContinuePending",
    6: "PausePending",
    7: "Paused",
}
SERVICE_START_TYPE = {0: "Boot", 1: "System", 2: "Automatic", 3: "Manual", 4: "Disabled"}


@dataclass(frozen=True)
class ServiceState:
    name: str
    status: str  # "Running", "Stopped", ...
    start_type: str  # "Automatic", "Manual", "Disabled", ...

    @property
    def running_automatic(self) -> bool:
        return self.status == "Running" and self.start_type == "Automatic"


def services_command(*names: str) -> str:
    """Services as JSON. Exact names fail (non-zero exit, stderr) when a service is missing, as
    `Get-Service -Name VMTools` does in the procedure (G3c); wildcard names ('ssh*') just match
    nothing. Parse stdout with `parse_services` either way."""
    return f"Get-Service -Name {ps_array(list(names))} | {_json_of('Name, Status, StartType')}"


def vmtools_status_command() -> str:
    """G3c: `Get-Service -Name VMTools | Select Status, StartType`, as JSON."""
    return services_command("VMTools")


def openssh_status_command() -> str:
    """G4: sshd and ssh-agent (a wildcard, so missing services print nothing instead of failing)."""
    return services_command("ssh*")


def _enum(value: Any, table: dict[int, str]) -> str:
    if isinstance(value, int):
        return table.get(value, str(value))
    if isinstance(value, dict) and "value" in value:  # PS 7 with -EnumsAsStrings off in objects
        return _enum(value["value"], table)
    return str(value)


def _json_items(output: str) -> list[dict[str, Any]]:
    """Objects of every `ConvertTo-Json -Compress` line in `output` (other lines are skipped)."""
    items: list[dict[str, Any]] = []
    for line in output.splitlines():
        text = line.strip()
        if not text or text[0] not in "[{":
            continue
        data = json.loads(text)
        if isinstance(data, dict):
            items.append(data)
        elif isinstance(data, list):
            items += [d for d in data if isinstance(d, dict)]
    return items


def parse_services(output: str) -> dict[str, ServiceState]:
    """`Get-Service ... | Select Name, Status, StartType | ConvertTo-Json` -> by lower-case name."""
    out: dict[str, ServiceState] = {}
    for item in _json_items(output):
        name = str(item.get("Name", ""))
        out[name.lower()] = ServiceState(
            name=name,
            status=_enum(item.get("Status"), SERVICE_STATUS),
            start_type=_enum(item.get("StartType"), SERVICE_START_TYPE),
        )
    return out


def ensure_service_running_command(name: str) -> str:
    """G3c/G4 repair: Automatic start type and running."""
    n = ps_quote(name)
    return _join(
        "$ErrorActionPreference = 'Stop'",
        f"Set-Service -Name {n} -StartupType Automatic",
        f"Start-Service -Name {n}",
    )


# ---- G4: OpenSSH server --------------------------------------------------------------------------
def install_openssh_command() -> str:
    """G4: install the OpenSSH server capability (idempotent on Windows)."""
    return f"Add-WindowsCapability -Online -Name {ps_quote(OPENSSH_CAPABILITY)}"


def ssh_firewall_rule_command() -> str:
    """G4: create the inbound TCP 22 rule if the capability's rule is missing."""
    return (
        f"if (-not (Get-NetFirewallRule | Where-Object {{ $_.Name -eq {ps_quote(SSH_FIREWALL_RULE)} }})) "
        f"{{ New-NetFirewallRule -Name {ps_quote(SSH_FIREWALL_RULE)} -DisplayName 'OpenSSH Server (sshd)' "
        "-Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort 22 }"
    )


def openssh_repair_command() -> str:
    """G4 repair: sshd and ssh-agent Automatic and running, port 22 open."""
    return _join(
        ensure_service_running_command("sshd"),
        ensure_service_running_command("ssh-agent"),
        ssh_firewall_rule_command(),
    )


# ---- G5: administrator key -----------------------------------------------------------------------
def authorized_keys_read_command() -> str:
    """G5 check (1/2): the keys file, or the MISSING marker."""
    p = ps_quote(AUTHORIZED_KEYS)
    return f"if (Test-Path -Path {p}) {{ Get-Content -Path {p} }} else {{ Write-Output '{MISSING_MARKER}' }}"


def authorized_keys_acl_command() -> str:
    """G5 check (2/2): the file's ACL as icacls prints it."""
    return f"icacls {ps_quote(AUTHORIZED_KEYS)}"


def authorized_keys_write_command(public_key_line: str) -> str:
    """G5 repair: write the key and restrict the ACL to Administrators and SYSTEM."""
    p = ps_quote(AUTHORIZED_KEYS)
    d = ps_quote(SSH_DIR)
    return _join(
        "$ErrorActionPreference = 'Stop'",
        f"if (-not (Test-Path -Path {d})) {{ New-Item -ItemType Directory -Path {d} -Force }}",
        f"Set-Content -Path {p} -Value {ps_quote(public_key_line.strip())}",
        f"icacls {p} /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'",
    )


def key_present(authorized_keys: str, public_key_line: str) -> bool:
    """G5: is the key (type + base64 blob; options and comments ignored) in the file's text?"""
    want = public_key_line.split()[:2]
    for raw in authorized_keys.splitlines():
        parts = raw.strip().split()
        for i in range(len(parts) - 1):
            if parts[i : i + 2] == want:
                return True
    return False


_ACE = re.compile(r"(?P<who>[^\s:][^:]*?):(?P<perms>(\([A-Z,]+\))+)\s*$")
ALLOWED_KEY_PRINCIPALS = {"builtin\\administrators", "nt authority\\system"}


@dataclass(frozen=True)
class Ace:
    principal: str
    perms: str  # e.g. "(F)", "(I)(RX)"

    @property
    def inherited(self) -> bool:
        return "(I)" in self.perms


def parse_icacls(output: str) -> list[Ace]:
    """Entries of `icacls <file>` output (the path on the first line, one ACE per line)."""
    aces: list[Ace] = []
    for n, raw in enumerate(output.splitlines()):
        line = raw.strip()
        if not line or line.startswith("Successfully processed"):
            continue
        if n == 0 and ":" in line:
            # "C:\ProgramData\ssh\administrators_authorized_keys NT AUTHORITY\SYSTEM:(F)"
            m = re.search(r"\s(?P<ace>[^\s][^:\\]*\\?[^:]*:(\([A-Z,]+\))+)\s*$", line)
            line = m.group("ace") if m else ""
        m = _ACE.match(line)
        if m:
            aces.append(Ace(m.group("who").strip(), m.group("perms")))
    return aces


def acl_problems(aces: list[Ace]) -> list[str]:
    """G5: the key file must be readable by Administrators and SYSTEM only (Windows' sshd refuses
    the file otherwise), with no inherited entries."""
    problems = []
    seen = {a.principal.lower() for a in aces}
    for a in aces:
        if a.principal.lower() not in ALLOWED_KEY_PRINCIPALS:
            problems.append(f"{a.principal} has access {a.perms}")
        elif a.inherited:
            problems.append(f"{a.principal} access {a.perms} is inherited")
    for need in sorted(ALLOWED_KEY_PRINCIPALS - seen):
        problems.append(f"{need} has no access")
    return problems


# ---- G6: container runtime -----------------------------------------------------------------------
RUNTIME_SERVICES = ("docker", "containerd")


def runtime_status_command() -> str:
    """G6: container runtime services (wildcards: none installed prints nothing)."""
    return services_command("docker*", "containerd*")


def install_docker_commands() -> list[str]:
    """G6 (ocp-4.9): Microsoft's documented Docker install, one command per step (the Containers
    feature needs a restart before the docker service runs)."""
    return [
        "Install-WindowsFeature -Name Containers",
        "Install-Module -Name DockerMsftProvider -Repository PSGallery -Force",
        "Install-Package -Name docker -ProviderName DockerMsftProvider -Force",
    ]


def runtime_problems(profile: RequirementProfile, services: dict[str, ServiceState]) -> list[str]:
    """G6: ocp-4.9 needs Docker running; current needs no runtime in the image (WMCO installs
    containerd and refuses a preinstalled one)."""
    present = {n: s for n, s in services.items() if n in RUNTIME_SERVICES}
    if profile.runtime == "docker":
        docker = present.get("docker")
        if docker is None:
            return ["the docker service is not installed"]
        if not docker.running_automatic:
            return [f"docker is {docker.status}/{docker.start_type}, not Running/Automatic"]
        return []
    return [f"a container runtime is preinstalled: {s.name} ({s.status})" for s in present.values()]


# ---- G7: firewall --------------------------------------------------------------------------------
FIREWALL_ENABLED = {1: "True", 2: "False"}
FIREWALL_DIRECTION = {1: "Inbound", 2: "Outbound"}
FIREWALL_ACTION = {0: "NotConfigured", 2: "Allow", 4: "Block"}


@dataclass(frozen=True)
class FirewallRuleState:
    name: str
    display_name: str
    enabled: bool
    direction: str
    action: str


def firewall_rules_command(display_names: list[str] | tuple[str, ...]) -> str:
    """G7 check: the rules with these display names, as JSON (one compressed line per name; `-or`
    is outside the subset, so each name is its own pipeline)."""
    return _join(
        *(
            f"Get-NetFirewallRule | Where-Object {{ $_.DisplayName -eq {ps_quote(n)} }} | "
            f"{_json_of('Name, DisplayName, Enabled, Direction, Action')}"
            for n in display_names
        )
    )


def parse_firewall_rules(output: str) -> list[FirewallRuleState]:
    rules = []
    for item in _json_items(output):
        enabled = item.get("Enabled")
        rules.append(
            FirewallRuleState(
                name=str(item.get("Name", "")),
                display_name=str(item.get("DisplayName", "")),
                enabled=_enum(enabled, FIREWALL_ENABLED) in ("True", "true") or enabled is True,
                direction=_enum(item.get("Direction"), FIREWALL_DIRECTION),
                action=_enum(item.get("Action"), FIREWALL_ACTION),
            )
        )
    return rules


def missing_firewall_ports(
    profile: RequirementProfile, rules: list[FirewallRuleState]
) -> list[FirewallPort]:
    """G7: the profile's ports without an enabled inbound Allow rule of their display name."""
    ok = {
        r.display_name
        for r in rules
        if r.enabled and r.direction == "Inbound" and r.action == "Allow"
    }
    return [p for p in profile.firewall if p.display_name not in ok]


def new_firewall_rule_command(port: FirewallPort) -> str:
    """G7: the procedure's command for one port (quoting aside, exactly the documented one)."""
    return (
        f"New-NetFirewallRule -DisplayName {ps_quote(port.display_name)} -LocalPort {port.port} "
        "-Enabled True -Direction Inbound -Protocol TCP -Action Allow -EdgeTraversalPolicy Allow"
    )


def ensure_firewall_rule_command(port: FirewallPort) -> str:
    """G7, idempotent in one command: create the rule only if no rule has its display name."""
    return (
        f"if (-not (Get-NetFirewallRule | Where-Object {{ $_.DisplayName -eq {ps_quote(port.display_name)} }})) "
        f"{{ {new_firewall_rule_command(port)} }}"
    )


# ---- G3b: ipconfig -------------------------------------------------------------------------------
_IPV4 = re.compile(r"IPv4 Address[ .]*:\s*(\d+\.\d+\.\d+\.\d+)")


def parse_ipconfig_ipv4(output: str) -> list[str]:
    """G3b: the IPv4 addresses `ipconfig` shows ('(Preferred)' suffix ignored), in order."""
    return _IPV4.findall(output)


def is_usable_ipv4(address: str) -> bool:
    """G3b: a real address, not 0.0.0.0, APIPA/link-local (169.254/16, DHCP not answered yet),
    multicast or broadcast. Loopback is accepted: the lab's guests live on 127.x addresses."""
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
        return False
    a, b = int(parts[0]), int(parts[1])
    if address == "0.0.0.0" or address == "255.255.255.255":
        return False
    if a == 169 and b == 254:
        return False
    return not 224 <= a <= 239


# ---- G9: sysprep ---------------------------------------------------------------------------------
def remove_host_keys_command() -> str:
    """G9: remove the SSH host keys so every clone generates its own at first boot (sysprep keeps
    C:\\ProgramData)."""
    return f"Remove-Item -Path {ps_quote(HOST_KEYS_GLOB)} -Force"


def sysprep_command(unattend_path: str = UNATTEND_PATH) -> str:
    """G9: `sysprep.exe /generalize /oobe /shutdown /unattend:<path>`. The VM powers off when it is
    done; the SSH session usually drops first (SSHDropped is expected here)."""
    return f"& {ps_quote(SYSPREP_EXE)} /generalize /oobe /shutdown {ps_quote('/unattend:' + unattend_path)}"


def generalize_command(unattend_path: str = UNATTEND_PATH) -> str:
    """G9's point of no return as ONE command: remove the SSH host keys, check they are gone, start
    sysprep. One command, so that a session lost around it leaves one question, answerable from
    outside: a new SSH session opens only while the host keys are there, i.e. only if this command
    never got to run (then it is sent again); otherwise sysprep runs and powers the clone off."""
    glob = ps_quote(HOST_KEYS_GLOB)
    return _join(
        remove_host_keys_command(),
        f"if (Test-Path -Path {glob}) {{ Write-Error '{HOST_KEYS_GLOB} still present after removal'; exit 3 }}",
        sysprep_command(unattend_path),
        "exit $LASTEXITCODE",
    )


# ---- secrets left by setup (G1 answer file, G9 unattend.xml) ---------------------------------------
def remove_setup_secrets_command() -> str:
    """Remove every answer-file copy Windows Setup or sysprep leaves (they hold the Administrator
    password in plain text) and print the ones still there (nothing: all gone)."""
    files = ps_array(list(SETUP_SECRET_FILES))
    return (
        f"{files} | Where-Object {{ Test-Path -Path $_ }} | "
        "ForEach-Object { Remove-Item -Path $_ -Force }; "
        f"{files} | Where-Object {{ Test-Path -Path $_ }}"
    )


def setup_complete_cmd() -> str:
    """G9: C:\\Windows\\Setup\\Scripts\\SetupComplete.cmd for the template. Windows runs it on every
    node at the end of OOBE (after the unattend.xml set the password), as SYSTEM: it removes the
    answer-file copies and then itself. cmd.exe syntax free: one encoded PowerShell line."""
    script = _join(
        f"{ps_array(list(SETUP_SECRET_FILES))} | Where-Object {{ Test-Path -Path $_ }} | "
        "ForEach-Object { Remove-Item -Path $_ -Force }",
        f"Remove-Item -Path {ps_quote(SETUP_COMPLETE)} -Force",
    )
    return (
        "@echo off\r\n"
        "rem winnodes: remove the answer files (Administrator password) once OOBE used them\r\n"
        + powershell_command_line(script)
        + "\r\n"
    )
