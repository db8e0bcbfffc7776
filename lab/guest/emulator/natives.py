"""External programs of the guest: icacls, sysprep.exe, VMware Tools' setup64.exe, ipconfig,
powershell.exe, cmd.exe, sc.exe, and `.ps1` scripts.

They are found the way PowerShell finds programs: by path (on C: or a CD), or by bare name only
when the program is on Windows' default PATH (so `sysprep.exe` without its directory is not found,
as on Windows). Their output is text lines and their result an exit code in `$LASTEXITCODE`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import ntpath
import shlex
from typing import Any

from lab.guest import windows
from lab.guest.emulator import parser as ast
from lab.guest.emulator.interp import (
    NATIVES,
    ExitScript,
    Interp,
    ReturnFlow,
    StatementError,
    native,
    to_text,
)
from lab.guest.state import (
    AUTOMATIC,
    DISABLED,
    MANUAL,
    RUNNING,
    STOPPED,
    SYSPREP_LIMIT,
    FirewallRule,
    Service,
)

# Programs reachable by bare name (C:\Windows\System32 and the OpenSSH directory are on PATH).
ON_PATH = {
    "icacls",
    "ipconfig",
    "hostname",
    "powershell",
    "cmd",
    "whoami",
    "sc",
    "netsh",
    "ssh-keygen",
    "msiexec",
}
TOOLS_DIR = "C:\\Program Files\\VMware\\VMware Tools"


def split_command_line(s: str) -> list[str]:
    """Split like the MS C runtime: whitespace separates, double quotes group, `\\"` is a quote."""
    out: list[str] = []
    cur: list[str] = []
    inq = False
    have = False
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] == '"':
            cur.append('"')
            i += 2
            have = True
            continue
        if c == '"':
            inq = not inq
            have = True
        elif c in " \t" and not inq:
            if have:
                out.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(c)
            have = True
        i += 1
    if have:
        out.append("".join(cur))
    return out


def _arg_strings(interp: Interp, node: ast.Command) -> list[str]:
    out: list[str] = []
    for a in node.args:
        if isinstance(a, ast.ParamArg):
            if a.value is None:
                out.append(a.text)
            else:
                out.append(a.text + to_text(interp.eval_arg(a.value)))
            continue
        v = interp.eval_arg(a)
        if isinstance(v, list):
            out.extend(to_text(x) for x in v)
        else:
            out.append(to_text(v))
    return out


def not_recognized(interp: Interp, name: str, node: ast.Node) -> StatementError:
    rec = interp.record_for(
        node,
        f"The term '{name}' is not recognized as the name of a cmdlet, function, script "
        "file, or operable program. Check the spelling of the name, or if a path was included, "
        "verify that the path is correct and try again.",
        "CommandNotFoundException",
        "ObjectNotFound",
        name,
        "CommandNotFoundException",
        command=name,
    )
    rec.activity = ""
    return StatementError(rec)


def run_external(interp: Interp, name: str, node: ast.Command, input_: list[Any]) -> list[Any]:
    args = _arg_strings(interp, node)
    name_node = node.name if not node.call_op else node
    before = len(interp.stdout)
    lines: list[str] = []
    code = run_program(interp, name, args, node, lines=lines)
    if code is None:
        raise not_recognized(interp, name, name_node if not node.call_op else node.name)
    del before
    interp.vars["lastexitcode"] = code
    interp.last_native = code
    if code != 0:
        interp._failed = True
    return list(lines)


def _resolve(interp: Interp, name: str) -> tuple[str, str] | None:
    """(program key, Windows path) for a command name, or None when Windows would not find it."""
    from lab.guest.emulator.cmdlets import norm_path, path_exists

    base = ntpath.basename(name.replace("/", "\\"))
    stem, ext = ntpath.splitext(base)
    if "\\" in name or "/" in name or ":" in name:
        full = norm_path(interp, name)
        candidates = [full] if ext else [full + e for e in (".exe", ".ps1", ".cmd", ".bat")]
        for c in candidates:
            if path_exists(interp, c):
                return ntpath.splitext(ntpath.basename(c))[0].lower() + ntpath.splitext(c)[
                    1
                ].lower(), c
        return None
    if stem.lower() in ON_PATH and ext.lower() in ("", ".exe"):
        return stem.lower() + ".exe", "C:\\Windows\\System32\\" + stem.lower() + ".exe"
    return None


def run_program(interp: Interp, name: str, args: list[str], node: ast.Node, lines: list[str] | None = None,
                background: bool = False) -> int | None:  # fmt: skip
    """Run a program; its stdout lines go to `lines` (or straight to stdout). None: not found."""
    resolved = _resolve(interp, name)
    if resolved is None:
        return None
    key, path = resolved
    sink: list[str] = lines if lines is not None else []
    if key.endswith(".ps1"):
        code = run_ps1(interp, path, args, node, sink)
    else:
        stem = key.rsplit(".", 1)[0]
        func = NATIVES.get(stem)
        if func is None and path[0] != "C":
            func = NATIVES.get("cd:" + stem)
        if func is None:
            interp.stderr.append(
                f"Program '{ntpath.basename(path)}' failed to run: the lab's Windows twin does not emulate this program.\n"
            )
            return 1
        code = func(interp, path, args, sink, node)  # type: ignore[call-arg]
    if lines is None:
        for ln in sink:
            interp.stdout.append(ln + "\n")
    return code


def run_ps1(interp: Interp, path: str, args: list[str], node: ast.Node, sink: list[str]) -> int:
    from lab.guest.emulator.cmdlets import read_text_file

    text = read_text_file(interp, node, path)
    child = Interp(
        interp.disk,
        interp.host,
        text,
        script_name=path,
        stdout=interp.stdout,
        stderr=interp.stderr,
        parent=interp,
    )
    child.vars["args"] = list(args)
    child.vars["pscommandpath"] = path
    child.vars["psscriptroot"] = ntpath.dirname(path)
    try:
        stmts = ast.parse(text)
    except ast.ParseError as e:
        from lab.guest.emulator.interp import ErrorRecord

        rec = ErrorRecord(e.message, e.error_id, "ParserError", exception="ParentContainsErrorRecordException", pos=e.pos, end=e.end,
                          source=text, script_name=path, parse_error=True)  # fmt: skip
        interp.stderr.append(rec.render())
        return 1
    try:
        child.exec_block(stmts, child.emit_top)
    except ExitScript as e:
        return e.code
    except ReturnFlow:
        pass
    return 0 if child.vars.get("?", True) else 1


# ---- programs -----------------------------------------------------------------------------------
@native("hostname")
def hostname(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    out.append(interp.read_state().computer_name)
    return 0


@native("whoami")
def whoami(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    out.append(f"{interp.read_state().computer_name.lower()}\\administrator")
    return 0


@native("ipconfig")
def ipconfig(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    from lab.guest.emulator.cmdlets import ip_adapter

    st = interp.read_state()
    rt = interp.disk.runtime()
    holder = ip_adapter(st)
    out.extend(["", "Windows IP Configuration", ""])
    for a in st.adapters:
        out.extend(["", f"Ethernet adapter {a}:", ""])
        if a != holder and holder != "Ethernet0" and a == "Ethernet0":
            out.extend(
                [
                    "   Media State . . . . . . . . . . . : Media disconnected",
                    "   Connection-specific DNS Suffix  . :",
                ]
            )
            continue
        out.append("   Connection-specific DNS Suffix  . :")
        out.append(
            f"   Link-local IPv6 Address . . . . . : fe80::{abs(hash(a)) % 0xFFFF:x}:1c2d:3e4f:5a6b%{6 if a == 'Ethernet0' else 14}"
        )
        if rt.ip and a == holder:
            out.append(f"   IPv4 Address. . . . . . . . . . . : {rt.ip}")
            out.append("   Subnet Mask . . . . . . . . . . . : 255.0.0.0")
            out.append("   Default Gateway . . . . . . . . . : 127.0.0.1")
        else:
            out.append("   Autoconfiguration IPv4 Address. . : 169.254.12.34")
            out.append("   Subnet Mask . . . . . . . . . . . : 255.255.0.0")
            out.append("   Default Gateway . . . . . . . . . :")
    return 0


_PRINCIPALS = {
    "administrators": "BUILTIN\\Administrators",
    "builtin\\administrators": "BUILTIN\\Administrators",
    "*s-1-5-32-544": "BUILTIN\\Administrators",
    "system": "NT AUTHORITY\\SYSTEM",
    "nt authority\\system": "NT AUTHORITY\\SYSTEM",
    "*s-1-5-18": "NT AUTHORITY\\SYSTEM",
    "users": "BUILTIN\\Users",
    "builtin\\users": "BUILTIN\\Users",
    "*s-1-5-32-545": "BUILTIN\\Users",
    "authenticated users": "NT AUTHORITY\\Authenticated Users",
    "nt authority\\authenticated users": "NT AUTHORITY\\Authenticated Users",
    "*s-1-5-11": "NT AUTHORITY\\Authenticated Users",
    "everyone": "Everyone",
    "*s-1-1-0": "Everyone",
}


def _principal(interp: Interp, who: str) -> str | None:
    low = who.strip().lower()
    if low in _PRINCIPALS:
        return _PRINCIPALS[low]
    name = interp.read_state().computer_name
    if low in ("administrator", f"{name.lower()}\\administrator"):
        return f"{name}\\Administrator"
    if low in ("sshd", "nt service\\sshd"):
        return "NT SERVICE\\sshd"
    return None


def _perm(p: str) -> str:
    p = p.strip()
    if "(" in p:
        head, _, tail = p.rpartition(")")
        return head + ")" + (f"({tail})" if tail else "")
    return f"({p.upper()})"


@native("icacls")
def icacls(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    from lab.guest.emulator.cmdlets import expand, norm_path

    if not args or args[0].startswith("/"):
        interp.stderr.append('Invalid parameter "' + (args[0] if args else "") + '"\n')
        return 87
    target = norm_path(interp, args[0])
    ops = args[1:]
    files = expand(interp, target)
    if not files:
        out.append(f"{target}: The system cannot find the file specified.")
        out.append("Successfully processed 0 files; Failed processing 1 files")
        return 2
    if not ops:
        st = interp.read_state()
        for f in files:
            aces = windows.effective_acl(st, f)
            pad = " " * (len(f) + 1)
            out.append(f"{f} {aces[0]}" if aces else f)
            out.extend(pad + a for a in aces[1:])
            out.append("")
        out.append(f"Successfully processed {len(files)} files; Failed processing 0 files")
        return 0
    quiet = any(o.lower() == "/q" for o in ops)
    with interp.edit_state() as st:
        for f in files:
            aces = windows.effective_acl(st, f)
            i = 0
            while i < len(ops):
                op = ops[i].lower()
                i += 1
                if op in ("/t", "/c", "/l", "/q"):
                    continue
                if op.startswith("/inheritance:"):
                    mode = op.split(":", 1)[1]
                    if mode == "r":
                        aces = [a for a in aces if "(I)" not in a]
                    elif mode == "d":
                        aces = [a.replace("(I)", "") for a in aces]
                    elif mode == "e":
                        aces = aces + [a for a in windows.DEFAULT_ACL if a not in aces]
                    else:
                        interp.stderr.append(f'Invalid parameter "{ops[i - 1]}"\n')
                        return 87
                    continue
                if op == "/reset":
                    aces = list(windows.DEFAULT_ACL)
                    continue
                if op.startswith(("/grant", "/remove", "/deny")):
                    if i >= len(ops):
                        interp.stderr.append(f'Invalid parameter "{ops[i - 1]}"\n')
                        return 87
                    spec = ops[i]
                    i += 1
                    if op.startswith("/remove"):
                        who = _principal(interp, spec)
                        if who is None:
                            out.append(
                                f"{spec}: No mapping between account names and security IDs was done."
                            )
                            out.append("Successfully processed 0 files; Failed processing 1 files")
                            return 1332
                        aces = [
                            a for a in aces if windows.acl_principal(a) != who.lower() or "(I)" in a
                        ]
                        continue
                    if ":" not in spec:
                        interp.stderr.append(f'Invalid parameter "{spec}"\n')
                        return 87
                    who_raw, perm = spec.rsplit(":", 1)
                    who = _principal(interp, who_raw)
                    if who is None:
                        out.append(
                            f"{who_raw}: No mapping between account names and security IDs was done."
                        )
                        out.append("Successfully processed 0 files; Failed processing 1 files")
                        return 1332
                    ace = f"{who}:{_perm(perm)}"
                    if op == "/deny":
                        ace = f"{who}:(DENY){_perm(perm)}"
                    if op == "/grant:r":
                        aces = [
                            a for a in aces if windows.acl_principal(a) != who.lower() or "(I)" in a
                        ]
                    if ace not in aces:
                        explicit = [a for a in aces if "(I)" not in a]
                        inherited = [a for a in aces if "(I)" in a]
                        aces = [*explicit, ace, *inherited]
                    continue
                interp.stderr.append(f'Invalid parameter "{ops[i - 1]}"\n')
                return 87
            st.acls[f.lower()] = aces
            if not quiet:
                out.append(f"processed file: {f}")
    out.append(f"Successfully processed {len(files)} files; Failed processing 0 files")
    return 0


def _panther_log(interp: Interp, act: list[str], err: list[str]) -> None:
    d = interp.disk.host_path("C:\\Windows\\System32\\Sysprep\\Panther")
    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    with open(d / "setupact.log", "a", encoding="utf-8", newline="\r\n") as fh:
        for line in act + err:
            fh.write(f"{now}, Info                  SYSPRP {line}\n")
    if err:
        with open(d / "setuperr.log", "a", encoding="utf-8", newline="\r\n") as fh:
            for line in err:
                fh.write(f"{now}, Error                 SYSPRP {line}\n")


@native("sysprep")
def sysprep(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    from lab.guest import unattend
    from lab.guest.emulator.cmdlets import norm_path, read_bytes

    flags = {a.lower().split(":", 1)[0] for a in args}
    unknown = [
        a
        for a in args
        if a.lower().split(":", 1)[0]
        not in (
            "/generalize",
            "/oobe",
            "/audit",
            "/shutdown",
            "/reboot",
            "/quit",
            "/quiet",
            "/unattend",
            "/mode",
            "/mode:vm",
        )
    ]
    act = [f"Sysprep invoked with: {' '.join(args)}"]
    if unknown:
        _panther_log(
            interp,
            act,
            [
                f"ParseCommandLine: invalid command line argument(s): {' '.join(unknown)}; sysprep shows its usage dialog and does nothing"
            ],
        )
        return 1
    ua = next((a.split(":", 1)[1] for a in args if a.lower().startswith("/unattend:")), None)
    if "/unattend" in flags and not ua:
        _panther_log(interp, act, ["ParseCommandLine: /unattend needs a file: /unattend:<path>"])
        return 1
    st = interp.read_state()
    text_bytes: bytes | None = None
    if ua:
        ua_path = norm_path(interp, ua.strip('"'))
        try:
            text_bytes = read_bytes(interp, node, "sysprep.exe", ua_path)
        except StatementError:
            text_bytes = None
        if text_bytes is None:
            _panther_log(
                interp,
                act,
                [
                    f"ValidateUnattendFile: the answer file {ua_path} could not be found; Error [0x80070002]"
                ],
            )
            return 1
        answer = unattend.parse(text_bytes)
        problems = answer.validate_for_sysprep()
        if problems:
            _panther_log(interp, act, [f"ValidateUnattendFile: {ua_path}: {p}" for p in problems] + [
                "Windows could not parse or process the unattend answer file; Error [0x8007000d]"])  # fmt: skip
            return 1
    generalize = "/generalize" in flags
    if generalize and st.sysprep_count >= SYSPREP_LIMIT:
        _panther_log(interp, act, [
            f"SLReArmWindows: the image was generalized {st.sysprep_count} times; Windows allows {SYSPREP_LIMIT}. hr = 0xC004D307",
            "Error [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing 'SysprepGeneralizeValidate' from C:\\Windows\\System32\\spopk.dll; dwRet = 0xc004d307",
        ])  # fmt: skip
        return 1
    with interp.edit_state() as st2:
        if generalize:
            st2.sysprep_count += 1
            st2.generalized = True
            st2.machine_sid = ""
            st2.computer_name = windows.random_computer_name()
            st2.pending_computer_name = ""
        if text_bytes is not None:
            cached = interp.disk.host_path("C:\\Windows\\Panther")
            cached.mkdir(parents=True, exist_ok=True)
            (cached / "unattend.xml").write_bytes(text_bytes)
            st2.pending_unattend = "C:\\Windows\\Panther\\unattend.xml"
        st2.log.append(f"sysprep: {' '.join(args)} (generalizations: {st2.sysprep_count})")
    _panther_log(
        interp,
        [*act, "Sysprep_Generalize completed successfully" if generalize else "Sysprep completed"],
        [],
    )
    if "/shutdown" in flags:
        interp.host.notify("sysprep", generalized=generalize)
    elif "/reboot" in flags:
        interp.host.notify("restart")
    return 0


@native("cd:setup64", "cd:setup")
def tools_setup(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    iso = interp.iso(path[0])
    info = iso.info() if iso is not None else None
    if not info or info.get("kind") != "vmware-tools":
        if info and info.get("kind") == "windows-installer":
            interp.stderr.append(
                "Windows Setup cannot be run from within a running Windows installation in the lab.\n"
            )
        return 1
    silent = any(a.lower() in ("/s", "/s/v/qn") for a in args)
    msi = " ".join(args).lower()
    if not silent:
        # Without /S the installer opens its wizard and waits for a click that never comes.
        interp.stderr.append(
            'VMware Tools setup is waiting for input in its wizard (run it with /S /v "/qn").\n'
        )
        return 1602
    version, build = str(info.get("version", "")), str(info.get("build", ""))
    tools = interp.disk.host_path(TOOLS_DIR)
    tools.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"version": version, "build": build}).encode()
    from lab.guest.timing import spend_on

    spend_on(interp.disk, "tools_install")
    for f in ("vmtoolsd.exe", "VMwareToolboxCmd.exe", "VMwareResolutionSet.exe", "rpctool.exe"):
        (tools / f).write_bytes(b"MZ lab stand-in for VMware Tools\n" + meta)
    data = interp.disk.host_path("C:\\ProgramData\\VMware\\VMware Tools")
    data.mkdir(parents=True, exist_ok=True)
    (data / "tools.conf.example").write_bytes(
        b"# tools.conf.example\r\n[guestinfo]\r\n# exclude-nics=vEthernet*,veth*,docker*,virbr*,br-*,cali*,vxlan*\r\n"
    )
    with interp.edit_state() as st:
        st.tools_version = version
        st.put_service(
            Service("VMTools", "VMware Tools", RUNNING, AUTOMATIC, f'"{TOOLS_DIR}\\vmtoolsd.exe"')
        )
        st.put_service(Service("VGAuthService", "VMware Alias Manager and Ticket Service", RUNNING, AUTOMATIC,
                               f'"{TOOLS_DIR}\\VMware VGAuth\\VGAuthService.exe"'))  # fmt: skip
        st.log.append(f"VMware Tools {version} build {build} installed")
    if "reboot=r" not in msi and "reboot=reallysuppress" not in msi:
        interp.host.notify("restart")  # the installer reboots the machine unless told not to
    return 0


@native("rpctool")
def rpctool(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    """VMware Tools' rpctool.exe: `info-set guestinfo.<key> <value>` stores a guest variable in the
    VMX, which vCenter shows in the VM's config.extraConfig. Needs Tools installed."""
    line = " ".join(args).strip()
    verb, _, rest = line.partition(" ")
    if verb.lower() != "info-set":
        interp.stderr.append(f"rpctool: the lab emulates only info-set (got {verb!r})\n")
        return 1
    key, _, value = rest.strip().partition(" ")
    if not key.lower().startswith("guestinfo."):
        out.append("Permission denied")
        return 1
    interp.host.notify("guestinfo", key=key, value=value)
    return 0


#: Win32-OpenSSH's release MSI (github.com/PowerShell/Win32-OpenSSH/releases): what its stand-in on
#: the lab's datastore holds, so the emulator knows what msiexec installs.
OPENSSH_MSI_MARKER = b"LAB-MSI Win32-OpenSSH"


@native("msiexec")
def msiexec(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    """`msiexec /i <file.msi> /qn`: the lab knows one package, Win32-OpenSSH's MSI, which installs
    sshd and ssh-agent (services, Stopped) under C:\\Program Files\\OpenSSH and the inbound TCP 22
    rule. Works offline: everything is in the MSI. 1619: the package cannot be opened."""
    from lab.guest.emulator.cmdlets import norm_path, read_bytes
    from lab.guest.timing import spend_on

    low = [a.lower() for a in args]
    if "/i" not in low or low.index("/i") + 1 >= len(args):
        interp.stderr.append("msiexec: the lab runs only `msiexec /i <package.msi> /qn`\n")
        return 1639  # ERROR_INVALID_COMMAND_LINE
    if not any(a in ("/qn", "/quiet", "/q") for a in low):
        return 1602  # the installer's UI waits for a click (user cancel when nobody answers)
    pkg = norm_path(interp, args[low.index("/i") + 1].strip('"'))
    try:
        data = read_bytes(interp, node, "msiexec.exe", pkg)
    except StatementError:
        data = None
    if data is None:
        return 1619  # ERROR_INSTALL_PACKAGE_OPEN_FAILED
    if not data.startswith(OPENSSH_MSI_MARKER):
        interp.stderr.append(f"msiexec: {pkg}: not a package the lab's Windows twin knows\n")
        return 1620  # ERROR_INSTALL_PACKAGE_INVALID
    spend_on(interp.disk, "capability_local")
    exe = interp.disk.host_path("C:\\Program Files\\OpenSSH")
    exe.mkdir(parents=True, exist_ok=True)
    for f in ("sshd.exe", "sftp-server.exe", "ssh-keygen.exe", "ssh-agent.exe"):
        (exe / f).write_bytes(b"MZ lab stand-in (Win32-OpenSSH MSI)\n")
    with interp.edit_state() as st:
        if st.service("sshd") is None:
            st.put_service(Service("sshd", "OpenSSH SSH Server", STOPPED, MANUAL,
                                   '"C:\\Program Files\\OpenSSH\\sshd.exe"'))  # fmt: skip
        if st.service("ssh-agent") is None or "OpenSSH" not in st.service("ssh-agent").binary_path:  # type: ignore[union-attr]
            st.put_service(Service("ssh-agent", "OpenSSH Authentication Agent", STOPPED, MANUAL,
                                   '"C:\\Program Files\\OpenSSH\\ssh-agent.exe"'))  # fmt: skip
        if not any(r.local_port == ["22"] and r.direction == "Inbound" for r in st.firewall_rules):
            st.firewall_rules.append(FirewallRule("OpenSSH-Server-In-TCP", "OpenSSH SSH Server Preview (sshd)",
                                                  local_port=["22"], group="OpenSSH Server"))  # fmt: skip
        st.packages["msi:OpenSSH"] = "installed"
        st.log.append(f"msiexec: {pkg} installed")
    return 0


@native("vmwaretoolboxcmd")
def toolbox(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    raw = interp.disk.host_path(path).read_bytes()
    meta = json.loads(raw.split(b"\n", 1)[1] or b"{}") if b"\n" in raw else {}
    if args and args[0].lower() in ("-v", "--version"):
        out.append(
            f"{meta.get('version', '')}.{str(meta.get('build', ''))[:5]} (build-{meta.get('build', '')})"
        )
        return 0
    out.append("Usage: VMwareToolboxCmd <command> [options] [subcommand]")
    return 1


@native("vmtoolsd")
def vmtoolsd(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    return 0


@native("powershell")
def powershell(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    i = 0
    command: str | None = None
    file_: str | None = None
    rest: list[str] = []
    while i < len(args):
        a = args[i]
        low = a.lower()
        if low in ("-noprofile", "-nop", "-noninteractive", "-nologo", "-noexit", "-mta", "-sta"):
            i += 1
        elif low in (
            "-executionpolicy",
            "-ep",
            "-ex",
            "-windowstyle",
            "-w",
            "-inputformat",
            "-outputformat",
            "-version",
        ):
            i += 2
        elif low in ("-command", "-c"):
            command = " ".join(args[i + 1 :])
            break
        elif low in ("-encodedcommand", "-enc", "-e", "-ec"):
            try:
                command = base64.b64decode(args[i + 1]).decode("utf-16-le")
            except (ValueError, IndexError, UnicodeDecodeError):
                interp.stderr.append(
                    "Cannot process the command because the value specified with -EncodedCommand is not properly encoded. The value must be Base64 encoded.\n"
                )
                return 1
            break
        elif low in ("-file", "-f"):
            if i + 1 >= len(args):
                interp.stderr.append("Missing file name for parameter -File\n")
                return 1
            file_ = args[i + 1]
            rest = args[i + 2 :]
            break
        elif low.startswith("-"):
            interp.stderr.append(
                f"-{a.lstrip('-')} : The term '-{a.lstrip('-')}' is not recognized as the name of a cmdlet, function, script file, or operable program.\n"
            )
            return 1
        else:
            command = " ".join(args[i:])
            break
    if file_ is not None:
        from lab.guest.emulator.cmdlets import norm_path, path_exists

        full = norm_path(interp, file_)
        if not path_exists(interp, full):
            interp.stderr.append(
                f"The argument '{file_}' to the -File parameter does not exist. Provide the path to an existing '.ps1' file as an argument to the -File parameter.\n"
            )
            return 4294770688 & 0xFFFFFFFF if False else 1
        child_out: list[str] = []
        code = run_ps1(interp, full, rest, node, child_out)
        out.extend(child_out)
        return code
    if command is None:
        interp.stderr.append("The lab's PowerShell cannot run an interactive session.\n")
        return 1
    child = Interp(interp.disk, interp.host, command, stdout=[], stderr=interp.stderr)
    code = child.run_script()
    text = "".join(child.stdout)
    out.extend(text.splitlines())
    return code


@native("cmd")
def cmd(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    if not args or args[0].lower() not in ("/c", "/k", "/s/c"):
        interp.stderr.append("The lab's cmd.exe runs only `cmd /c <command>`.\n")
        return 1
    line = " ".join(args[1:]).strip()
    if len(line) >= 2 and line[0] == '"' and line[-1] == '"':
        line = line[1:-1]
    code = 0
    for part in [p.strip() for p in line.split("&&")]:
        words = split_command_line(part)
        if not words:
            continue
        w0 = words[0].lower()
        if w0 == "echo":
            out.append(part[4:].strip())
            code = 0
        elif w0 == "exit":
            nums = [w for w in words[1:] if w.lstrip("-").isdigit()]
            return int(nums[0]) if nums else 0
        elif w0 == "type":
            from lab.guest.emulator.cmdlets import decode, read_bytes

            data = read_bytes(interp, node, "type", words[1]) if len(words) > 1 else None
            if data is None:
                interp.stderr.append("The system cannot find the file specified.\n")
                code = 1
            else:
                out.extend(decode(data).splitlines())
        else:
            c = run_program(interp, words[0], words[1:], node, lines=out)
            if c is None:
                interp.stderr.append(
                    f"'{words[0]}' is not recognized as an internal or external command,\noperable program or batch file.\n"
                )
                c = 1
            code = c
        if code != 0:
            break
    return code


_SC_START = {"auto": AUTOMATIC, "demand": MANUAL, "disabled": DISABLED, "delayed-auto": AUTOMATIC}


@native("sc")
def sc_exe(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    if len(args) < 2:
        out.append(
            "DESCRIPTION:\n        SC is a command line program used for communicating with the\n        Service Control Manager and services."
        )
        return 0
    verb, name = args[0].lower(), args[1]
    st = interp.read_state()
    svc = st.service(name)
    if svc is None:
        out.append(
            "[SC] OpenService FAILED 1060:\n\nThe specified service does not exist as an installed service.\n"
        )
        return 1060
    if verb == "config":
        opts = {args[k].lower(): args[k + 1] for k in range(2, len(args) - 1, 2)}
        start = opts.get("start=")
        if start is None or start.lower() not in _SC_START:
            out.append("[SC] ChangeServiceConfig FAILED 87:\n\nThe parameter is incorrect.")
            return 87
        with interp.edit_state() as st2:
            s2 = st2.service(name)
            assert s2 is not None
            s2.start_type = _SC_START[start.lower()]
        out.append("[SC] ChangeServiceConfig SUCCESS")
        return 0
    if verb == "query":
        state = {RUNNING: "4  RUNNING", STOPPED: "1  STOPPED"}[svc.status]
        out.extend(
            [
                "",
                f"SERVICE_NAME: {svc.name}",
                "        TYPE               : 10  WIN32_OWN_PROCESS",
                f"        STATE              : {state}",
            ]
        )
        return 0
    out.append(f"[SC] {verb}: not emulated by the lab")
    return 1


@native("netsh")
def netsh(interp: Interp, path: str, args: list[str], out: list[str], node: ast.Node) -> int:
    low = [a.lower() for a in args]
    if low[:4] == ["advfirewall", "firewall", "add", "rule"]:
        opts = {}
        for a in args[4:]:
            k, _, v = a.partition("=")
            opts[k.lower()] = v
        if "name" not in opts or "dir" not in opts or "action" not in opts:
            out.append(
                "A specified value is not valid.\n\nUsage: add rule name=<string> dir=in|out action=allow|block|bypass ..."
            )
            return 1
        rule = FirewallRule(
            name="{" + __import__("uuid").uuid4().__str__() + "}",
            display_name=opts["name"],
            direction="Inbound" if opts["dir"].lower() == "in" else "Outbound",
            protocol=opts.get("protocol", "Any").upper()
            if opts.get("protocol", "any").lower() != "any"
            else "Any",
            local_port=[p for p in opts.get("localport", "Any").split(",")],
            action="Allow" if opts["action"].lower() == "allow" else "Block",
            enabled=opts.get("enable", "yes").lower() == "yes",
        )
        with interp.edit_state() as st:
            st.firewall_rules.append(rule)
        out.append("Ok.")
        out.append("")
        return 0
    if low[:3] == ["winhttp", "set", "proxy"]:
        opts = {}
        for a in args[3:]:
            k, _, v = a.partition("=")
            opts[k.lower()] = v.strip('"') if v else k
        server = opts.get("proxy-server", opts.get(args[3].lower(), "") if len(args) > 3 else "")
        with interp.edit_state() as st:
            st.winhttp_proxy = server
        out.extend(["", "Current WinHTTP proxy settings:", "", f"    Proxy Server(s) :  {server}",
                    f"    Bypass List     :  {opts.get('bypass-list', '(none)')}", ""])  # fmt: skip
        return 0
    if low[:3] == ["winhttp", "reset", "proxy"]:
        with interp.edit_state() as st:
            st.winhttp_proxy = ""
        out.extend(
            ["", "Current WinHTTP proxy settings:", "", "    Direct access (no proxy server).", ""]
        )
        return 0
    if low[:3] == ["winhttp", "show", "proxy"]:
        proxy = interp.read_state().winhttp_proxy
        out.extend(["", "Current WinHTTP proxy settings:", ""])
        out.append(
            f"    Proxy Server(s) :  {proxy}" if proxy else "    Direct access (no proxy server)."
        )
        out.append("")
        return 0
    out.append("The following command was not found: " + " ".join(args) + ".")
    return 1


del shlex
