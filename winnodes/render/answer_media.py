"""The answer media of G1: autounattend.xml plus the first-logon scripts, packed as an ISO in memory.

Windows setup looks for `autounattend.xml` at the root of every attached drive, so the build attaches
this ISO as a third CD after the Windows ISO and the Tools ISO (`INSTALL_CDS`, the order of the public
vSphere Packer templates: `iso_paths = [windows, tools]`, then the answer CD). Windows PE gives CD-ROMs
letters from D: in controller/unit order, so the Tools CD is E: and the windowsPE pass's DriverPaths
can name it (`cd_letter`); the first-logon commands still find files instead of assuming letters:
the scripts by their path on this media, `setup64.exe` on the Tools CD.

The scripts are real PowerShell for Windows Server, kept within the small subset described in
`winnodes.render.powershell` (the lab's guest emulator implements exactly that subset). Writing the
key file uses `Set-Content` (ANSI/ASCII): `Out-File` and `>` write UTF-16 in Windows PowerShell 5.1,
which Windows' sshd cannot read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pycdlib

from winnodes.model.config import GoldenImageConfig
from winnodes.render.powershell import (
    AUTHORIZED_KEYS,
    OPENSSH_CAPABILITY,
    SSH_FIREWALL_RULE,
    TOOLS_CONF,
    TOOLS_CONF_DIR,
    powershell_command_line,
    ps_array,
    ps_quote,
)
from winnodes.render.unattend import FirstLogonCommand, render_autounattend

#: Drive letters a CD can get on a fresh VM with up to a handful of drives.
CD_LETTERS = tuple("DEFGHIJ")
#: The CD-ROMs of an installation from ISO, in controller/unit order (G1 attaches them so).
INSTALL_CDS = ("windows", "tools", "answer")


def cd_letter(role: str) -> str:
    """The drive letter Windows PE gives the CD `role` of `INSTALL_CDS` (D: for the first). The VM
    has no other CD-ROM and its empty system disk has no volume yet, so the letters start at D:."""
    return CD_LETTERS[INSTALL_CDS.index(role)]


SCRIPT_DIR = "winnodes"
VOLUME_ID = "WINNODES_ANSWER"

TOOLS_SCRIPT = "g2-install-vmware-tools.ps1"
TOOLS_CONF_SCRIPT = "g3a-tools-conf.ps1"
OPENSSH_SCRIPT = "g4-g5-openssh.ps1"
OPENSSH_DESCRIPTION = "G4/G5 OpenSSH and admin key"
#: The Win32-OpenSSH MSI on the answer media (source.openssh_msi, for offline sites).
OPENSSH_MSI = "OpenSSH-Win64.msi"

#: First-logon progress, a guest variable the scripts set with VMware Tools' rpctool
#: ("<order> started|done <description>"); vCenter shows it in the VM's config.extraConfig, so G4
#: can say which command has not finished while SSH does not answer yet.
PROGRESS_KEY = "guestinfo.winnodes.progress"
RPCTOOL = r"C:\Program Files\VMware\VMware Tools\rpctool.exe"


def _progress(order: int, state: str, description: str) -> str:
    """One PowerShell line setting the progress variable (no-op while Tools are not installed)."""
    value = ps_quote(f"info-set {PROGRESS_KEY} {order} {state} {description}")
    return f"if (Test-Path -Path {ps_quote(RPCTOOL)}) {{ & {ps_quote(RPCTOOL)} {value} }}\n"


def _with_progress(order: int, description: str, body: str) -> str:
    return _progress(order, "started", description) + body + _progress(order, "done", description)


@dataclass(frozen=True)
class FirstLogonProgress:
    """What the progress variable says, in terms of the answer media's FirstLogonCommands."""

    last_done: FirstLogonCommand | None
    pending: FirstLogonCommand | None
    raw: str

    def describe(self) -> str:
        def name(c: FirstLogonCommand | None) -> str:
            return f"{c.order} ({c.description})" if c else "none"

        if not self.raw:
            return (
                "no first-logon progress reported (VMware Tools, which carry rpctool, not installed "
                f"yet or the commands never ran); pending: {name(self.pending)}"
            )
        return (
            f"last completed first-logon command: {name(self.last_done)}; "
            f"pending: {name(self.pending)}"
        )


def first_logon_progress(
    value: str | None, commands: list[FirstLogonCommand] | None = None
) -> FirstLogonProgress:
    """Interpret `guestinfo.winnodes.progress` ("3 started ...", "2 done ...", or nothing: the
    commands before Tools' install may have run, the marker needs Tools' rpctool)."""
    cmds = sorted(commands or first_logon_commands(), key=lambda c: c.order)
    raw = (value or "").strip()
    parts = raw.split(" ", 2)
    done_upto = 0
    if len(parts) >= 2 and parts[0].isdigit():
        order = int(parts[0])
        done_upto = order if parts[1] == "done" else order - 1
    last = next((c for c in reversed(cmds) if c.order <= done_upto), None)
    pending = next((c for c in cmds if c.order > done_upto), None)
    return FirstLogonProgress(last, pending, raw)


def tools_conf_script() -> str:
    """G3a at first logon: tools.conf with an empty exclude-nics= (written before Tools start, so
    the Tools service reads it at its first start; the installer never overwrites tools.conf)."""
    d = ps_quote(TOOLS_CONF_DIR)
    return (
        "# G3a: VMware Tools must not ignore the NIC the hybrid overlay clones (empty exclude-nics).\n"
        "$ErrorActionPreference = 'Stop'\n"
        f"if (-not (Test-Path -Path {d})) {{ New-Item -ItemType Directory -Path {d} -Force }}\n"
        f"Set-Content -Path {ps_quote(TOOLS_CONF)} -Value '[guestinfo]','exclude-nics='\n"
    )  # no progress marker: rpctool comes with Tools (command 2)


def tools_install_script() -> str:
    """G2 at first logon: install VMware Tools silently from the CD that holds setup64.exe."""
    candidates = ps_array([f"{letter}:\\setup64.exe" for letter in CD_LETTERS])
    return (
        "# G2: install VMware Tools silently (no reboot) from the Tools CD, found by its setup64.exe.\n"
        "$ErrorActionPreference = 'Stop'\n"
        f"$setup = {candidates} | Where-Object {{ Test-Path -Path $_ }}\n"
        "Start-Process -FilePath $setup -ArgumentList '/s /v \"/qn REBOOT=R\"' -Wait\n"
        + _progress(2, "done", "G2 install VMware Tools")
    )


def openssh_script(
    public_key_line: str,
    *,
    from_msi: bool = False,
    winhttp_proxy: str | None = None,
    winhttp_bypass: str = "<local>",
) -> str:
    """G4 and G5 at first logon: OpenSSH server running and Automatic (and ssh-agent), the
    administrator key with an ACL of Administrators and SYSTEM only, inbound TCP 22 open.

    OpenSSH comes from the Features-on-Demand download (`Add-WindowsCapability -Online`: Windows
    Update or WSUS, through WinHTTP's proxy when `winhttp_proxy` is set), or with `from_msi` from
    the Win32-OpenSSH MSI on this media (offline sites). Progress: `PROGRESS_KEY`."""
    keys = ps_quote(AUTHORIZED_KEYS)
    rule = ps_quote(SSH_FIREWALL_RULE)
    proxy = ""
    if winhttp_proxy:
        proxy = (
            f"netsh winhttp set proxy proxy-server={ps_quote(winhttp_proxy.strip())} "
            f"bypass-list={ps_quote(winhttp_bypass)}\n"
            "if ($LASTEXITCODE -ne 0) { throw 'netsh winhttp set proxy failed' }\n"
        )
    if from_msi:
        msis = ps_array([f"{letter}:\\{SCRIPT_DIR}\\{OPENSSH_MSI}" for letter in CD_LETTERS])
        install = (
            f"$msi = {msis} | Where-Object {{ Test-Path -Path $_ }} | Select-Object -First 1\n"
            "$p = Start-Process -FilePath 'msiexec.exe' -ArgumentList '/i', $msi, '/qn' -Wait -PassThru\n"
            "if ($p.ExitCode -ne 0) { throw 'msiexec could not install the OpenSSH MSI' }\n"
        )
    else:
        install = f"Add-WindowsCapability -Online -Name {ps_quote(OPENSSH_CAPABILITY)}\n"
    body = (
        proxy + install + "Set-Service -Name 'sshd' -StartupType Automatic\n"
        "Set-Service -Name 'ssh-agent' -StartupType Automatic\n"
        "Start-Service -Name 'sshd'\n"
        "Start-Service -Name 'ssh-agent'\n"
        f"Set-Content -Path {keys} -Value {ps_quote(public_key_line.strip())}\n"
        f'icacls {keys} /inheritance:r /grant "Administrators:F" /grant "SYSTEM:F"\n'
        f"if (-not (Get-NetFirewallRule | Where-Object {{ $_.Name -eq {rule} }})) {{\n"
        f"    New-NetFirewallRule -Name {rule} -DisplayName 'OpenSSH Server (sshd)' -Enabled True "
        "-Direction Inbound -Protocol TCP -Action Allow -LocalPort 22\n"
        "}\n"
    )
    return (
        "# G4: OpenSSH server; G5: the administrator's key. sshd creates C:\\ProgramData\\ssh at its first start.\n"
        "$ErrorActionPreference = 'Stop'\n" + _with_progress(3, OPENSSH_DESCRIPTION, body)
    )


def run_script_command_line(script: str) -> str:
    """A FirstLogonCommand that runs `script` from the answer media, whichever letter it got:
    `'D:','E:',... | ForEach-Object { "$_\\winnodes\\x.ps1" } | Where-Object { Test-Path -Path $_ }
    | ForEach-Object { & $_ }`, passed as -EncodedCommand (see `powershell_command_line`: no
    quoting survives every parser). Stays under Windows' 1024-character CommandLine limit."""
    drives = ps_array([f"{letter}:" for letter in CD_LETTERS])
    return powershell_command_line(
        f'{drives} | ForEach-Object {{ "$_\\{SCRIPT_DIR}\\{script}" }} | '
        "Where-Object { Test-Path -Path $_ } | ForEach-Object { & $_ }",
        extra="",
        quiet_progress=False,
    )


def first_logon_commands() -> list[FirstLogonCommand]:
    return [
        FirstLogonCommand(
            1, run_script_command_line(TOOLS_CONF_SCRIPT), "G3a tools.conf exclude-nics"
        ),
        FirstLogonCommand(2, run_script_command_line(TOOLS_SCRIPT), "G2 install VMware Tools"),
        FirstLogonCommand(3, run_script_command_line(OPENSSH_SCRIPT), OPENSSH_DESCRIPTION),
    ]


def answer_media_files(
    gi: GoldenImageConfig,
    admin_password: str,
    public_key_line: str,
    openssh_msi: bytes | None = None,
) -> dict[str, bytes]:
    """Every file of the answer media, by path: /autounattend.xml, /winnodes/*.ps1 and, for an
    offline site (`openssh_msi`: the bytes of source.openssh_msi), /winnodes/OpenSSH-Win64.msi.

    Raises ConfigError (G9 rules) for an invalid ComputerName or password."""
    tools_drive = cd_letter("tools") if gi.hardware.disk_controller == "pvscsi" else None
    xml = render_autounattend(gi, admin_password, first_logon_commands(), tools_drive=tools_drive)
    ssh = openssh_script(
        public_key_line,
        from_msi=openssh_msi is not None,
        winhttp_proxy=gi.source.winhttp_proxy,
        winhttp_bypass=gi.source.winhttp_bypass,
    )
    # Windows PowerShell 5.1 reads a BOM-less .ps1 as ANSI; the scripts are ASCII, so plain bytes.
    files = {
        "/autounattend.xml": xml.encode("utf-8"),
        f"/{SCRIPT_DIR}/{TOOLS_CONF_SCRIPT}": tools_conf_script()
        .replace("\n", "\r\n")
        .encode("ascii"),
        f"/{SCRIPT_DIR}/{TOOLS_SCRIPT}": tools_install_script()
        .replace("\n", "\r\n")
        .encode("ascii"),
        f"/{SCRIPT_DIR}/{OPENSSH_SCRIPT}": ssh.replace("\n", "\r\n").encode("ascii"),
    }
    if openssh_msi is not None:
        files[f"/{SCRIPT_DIR}/{OPENSSH_MSI}"] = openssh_msi
    return files


def _iso9660_name(name: str, is_dir: bool) -> str:
    """An ISO 9660 level-1 style identifier (the long name lives in Joliet and Rock Ridge)."""
    stem, _, ext = (
        name.upper().rpartition(".") if "." in name and not is_dir else (name.upper(), "", "")
    )
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)[:8] or "F"
    if is_dir:
        return clean
    ext = "".join(c if c.isalnum() or c == "_" else "_" for c in ext)[:3]
    return f"{clean}.{ext};1"


def render_answer_iso(files: dict[str, bytes], volume_id: str = VOLUME_ID) -> bytes:
    """An ISO 9660 image (Joliet + Rock Ridge long names) holding `files` (path -> bytes), built in
    memory. Paths are absolute with '/' separators, e.g. '/autounattend.xml'."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=volume_id[:32])
    made: set[str] = set()
    used: set[str] = set()
    for path, data in sorted(files.items()):
        parts = [p for p in path.strip("/").split("/") if p]
        if not parts:
            raise ValueError(f"empty path {path!r}")
        iso_dir = ""
        for i, part in enumerate(parts[:-1]):
            long_dir = "/" + "/".join(parts[: i + 1])
            iso_dir = f"{iso_dir}/{_iso9660_name(part, True)}"
            if long_dir not in made:
                iso.add_directory(iso_dir, rr_name=part, joliet_path=long_dir)
                made.add(long_dir)
        iso_name = f"{iso_dir}/{_iso9660_name(parts[-1], False)}"
        if iso_name in used:
            raise ValueError(f"{path!r} collides with another file's ISO 9660 name {iso_name}")
        used.add(iso_name)
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            iso_name,
            rr_name=parts[-1],
            joliet_path="/" + "/".join(parts),
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()
