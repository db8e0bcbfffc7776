"""The cmdlets the twin implements, with Windows PowerShell 5.1's parameters, output and errors.

Each one reads or changes the guest's disk and state the way the real cmdlet changes Windows, so the
effects are visible to everything else that looks at the guest (sshd, VMware Tools, the supervisor).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import ntpath
import uuid
from typing import Any

from lab.guest import windows
from lab.guest.emulator import parser as ast
from lab.guest.emulator.interp import (
    Interp,
    Invocation,
    Param,
    ScriptBlockValue,
    StatementError,
    as_list,
    cmdlet,
    get_member,
    like,
    to_number,
    truthy,
)
from lab.guest.emulator.objects import (
    FormattedText,
    PSEnum,
    PSHash,
    PSObject,
    format_list,
    format_table,
    out_default,
    service_start,
    service_status,
    to_json,
    to_text,
)
from lab.guest.state import AUTOMATIC, DISABLED, MANUAL, RUNNING, STOPPED, FirewallRule, Service

P = Param


# ---- paths --------------------------------------------------------------------------------------
def norm_path(interp: Interp, path: str) -> str:
    p = path.replace("/", "\\").strip()
    if p.lower().startswith("microsoft.powershell.core\\filesystem::"):
        p = p.split("::", 1)[1]
    if len(p) >= 2 and p[1] == ":":
        drive = p[0].upper()
        rest = p[2:]
        if not rest.startswith("\\"):
            rest = "\\" + rest
        return drive + ":" + ntpath.normpath(rest)
    if p.startswith("\\"):
        return "C:" + ntpath.normpath(p)
    return ntpath.normpath(ntpath.join(interp.cwd, p))


def has_wildcard(p: str) -> bool:
    return any(c in p for c in "*?[")


def _drive_error(interp: Interp, node: ast.Node, cmd: str, path: str) -> StatementError:
    drive = path.split(":", 1)[0]
    return StatementError(
        interp.record_for(
            node,
            f"Cannot find drive. A drive with the name '{drive}' does not exist.",
            "DriveNotFound",
            "ObjectNotFound",
            drive,
            "DriveNotFoundException",
            command=cmd,
            command_class=f"Microsoft.PowerShell.Commands.{cmd.replace('-', '')}Command",
        )
    )


def expand(interp: Interp, path: str) -> list[str]:
    """Existing Windows paths matching `path` (wildcards in any component), with their real case."""
    full = norm_path(interp, path)
    drive, rest = full[0], full[3:]
    parts = [p for p in rest.split("\\") if p]
    if drive == "C":
        cur = [("C:", interp.disk.disk / "C:")]
        for part in parts:
            nxt = []
            for wp, hp in cur:
                if not hp.is_dir():
                    continue
                if has_wildcard(part):
                    for child in sorted(hp.iterdir(), key=lambda c: c.name.lower()):
                        if fnmatch.fnmatch(child.name.lower(), part.lower()):
                            nxt.append((wp + "\\" + child.name, child))
                else:
                    child = _match(hp, part)
                    if child is not None:
                        nxt.append((wp + "\\" + child.name, child))
            cur = nxt
        return [wp if wp != "C:" else "C:\\" for wp, _ in cur]
    iso = interp.iso(drive)
    if iso is None:
        return []
    files = iso.files()
    out = []
    pattern = "/" + "/".join(parts)
    for f in files:
        if fnmatch.fnmatch(f.lower(), pattern.lower()):
            out.append(drive + ":" + f.replace("/", "\\"))
    if not parts or (not has_wildcard(pattern) and iso.is_dir(pattern) and not out):
        out.append(drive + ":\\" + "\\".join(parts))
    return out


def _match(parent: Any, name: str) -> Any:
    exact = parent / name
    if exact.exists():
        return exact
    for child in parent.iterdir():
        if child.name.lower() == name.lower():
            return child
    return None


def path_exists(interp: Interp, path: str) -> bool:
    try:
        return bool(expand(interp, path))
    except (OSError, ValueError):
        return False


def host_path(interp: Interp, node: ast.Node, cmd: str, path: str, write: bool = True) -> Any:
    full = norm_path(interp, path)
    if full[0] != "C":
        if interp.iso(full[0]) is not None:
            if write:
                raise StatementError(
                    interp.record_for(
                        node,
                        f"Access to the path '{full}' is denied.",
                        "UnauthorizedAccessError",
                        "PermissionDenied",
                        full,
                        "UnauthorizedAccessException",
                        command=cmd,
                        command_class=f"Microsoft.PowerShell.Commands.{cmd.replace('-', '')}Command",
                    )
                )
            return None
        raise _drive_error(interp, node, cmd, full)
    return interp.disk.host_path(full)


def read_bytes(interp: Interp, node: ast.Node, cmd: str, path: str) -> bytes | None:
    full = norm_path(interp, path)
    if full[0] == "C":
        hp = interp.disk.host_path(full)
        return hp.read_bytes() if hp.is_file() else None
    iso = interp.iso(full[0])
    if iso is None:
        raise _drive_error(interp, node, cmd, full)
    try:
        data: bytes = iso.read(full[2:].replace("\\", "/"))
        return data
    except FileNotFoundError:
        return None


def decode(raw: bytes) -> str:
    if raw.startswith(b"\xff\xfe"):
        return raw[2:].decode("utf-16-le", errors="replace")
    if raw.startswith(b"\xfe\xff"):
        return raw[2:].decode("utf-16-be", errors="replace")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def encode(text: str, encoding: str) -> bytes:
    e = encoding.lower()
    if e in ("unicode", "string", "utf16", "utf-16"):
        return b"\xff\xfe" + text.encode("utf-16-le")
    if e == "bigendianunicode":
        return b"\xfe\xff" + text.encode("utf-16-be")
    if e in ("utf8", "utf-8"):
        return b"\xef\xbb\xbf" + text.encode("utf-8")  # Windows PowerShell 5.1 writes a BOM
    if e == "utf8nobom":
        return text.encode("utf-8")
    if e == "utf32":
        return b"\xff\xfe\x00\x00" + text.encode("utf-32-le")
    if e == "ascii":
        return text.encode("ascii", errors="replace")
    return text.encode("cp1252", errors="replace")  # Default / Oem


def _file_encoding(raw: bytes) -> str:
    if raw.startswith(b"\xff\xfe"):
        return "unicode"
    if raw.startswith(b"\xef\xbb\xbf"):
        return "utf8"
    return "default"


def write_text_file(interp: Interp, node: ast.Node, path: str, text: str, encoding: str,
                    append: bool = False, cmd: str = "Out-File") -> None:  # fmt: skip
    hp = host_path(interp, node, cmd, path)
    full = norm_path(interp, path)
    if not hp.parent.is_dir():
        raise StatementError(
            interp.record_for(
                node,
                f"Could not find a part of the path '{full}'.",
                "GetContentWriterDirectoryNotFoundError"
                if cmd != "Out-File"
                else "FileOpenFailure",
                "ObjectNotFound",
                full,
                "DirectoryNotFoundException",
                command=cmd,
                command_class=f"Microsoft.PowerShell.Commands.{cmd.replace('-', '')}Command",
            )
        )
    if hp.is_dir():
        raise StatementError(
            interp.record_for(
                node,
                f"Access to the path '{full}' is denied.",
                "UnauthorizedAccessError",
                "PermissionDenied",
                full,
                "UnauthorizedAccessException",
                command=cmd,
                command_class=f"Microsoft.PowerShell.Commands.{cmd.replace('-', '')}Command",
            )
        )
    text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    if append and hp.exists():
        existing = hp.read_bytes()
        enc = _file_encoding(existing) if encoding == "auto" else encoding
        data = encode(text, enc)
        for bom in (b"\xff\xfe", b"\xef\xbb\xbf", b"\xfe\xff"):
            if existing and data.startswith(bom):
                data = data[len(bom) :]
        hp.write_bytes(existing + data)
    else:
        hp.write_bytes(encode(text, "default" if encoding == "auto" else encoding))
    _touch_state(interp)


def _touch_state(interp: Interp) -> None:
    interp.host.notify("changed")


def read_text_file(interp: Interp, node: ast.Node, path: str) -> str:
    raw = read_bytes(interp, node, "Get-Content", path)
    if raw is None:
        full = norm_path(interp, path)
        raise StatementError(interp.record_for(node, f"Could not find file '{full}'.", "FileNotFoundException", "ObjectNotFound", full, "FileNotFoundException"))  # fmt: skip
    return decode(raw)


def _not_found(inv: Invocation, full: str, error_id: str = "PathNotFound") -> None:
    inv.error(f"Cannot find path '{full}' because it does not exist.", error_id, "ObjectNotFound",
              full, "ItemNotFoundException")  # fmt: skip


def _paths(inv: Invocation, name: str = "Path") -> list[str]:
    paths = inv.strings(name) or inv.strings("LiteralPath")
    for item in inv.input:
        if isinstance(item, PSObject) and item.has("FullName"):
            paths.append(to_text(item.get("FullName")))
        elif isinstance(item, str) and not paths:
            paths.append(item)
    return paths


def file_object(interp: Interp, wp: str) -> PSObject:
    full = norm_path(interp, wp)
    is_dir = False
    size: int | None = None
    mtime = dt.datetime.now()
    if full[0] == "C":
        hp = interp.disk.host_path(full)
        is_dir = hp.is_dir()
        st = hp.stat()
        size = None if is_dir else st.st_size
        mtime = dt.datetime.fromtimestamp(st.st_mtime)
    else:
        iso = interp.iso(full[0])
        is_dir = iso.is_dir(full[2:].replace("\\", "/")) if iso else False
        size = None if is_dir else len(iso.read(full[2:].replace("\\", "/"))) if iso else 0
    name = ntpath.basename(full) or full
    parent = ntpath.dirname(full)
    when = f"{mtime.month}/{mtime.day}/{mtime.year} {mtime.strftime('%I:%M %p').lstrip('0')}"
    props = {
        "Mode": "d-----" if is_dir else "-a----",
        "LastWriteTime": when,
        "Length": size,
        "Name": name,
        "FullName": full,
        "DirectoryName": parent,
        "PSIsContainer": is_dir,
        "Extension": ntpath.splitext(name)[1] if not is_dir else "",
    }
    return PSObject("System.IO.DirectoryInfo" if is_dir else "System.IO.FileInfo", props,
                    table=[("Mode", 20), ("LastWriteTime", 26), ("Length", 15), ("Name", 0)],
                    to_string=full)  # fmt: skip


# ---- output and objects -------------------------------------------------------------------------
@cmdlet(
    "Write-Output",
    [P("InputObject", "any", 0, pipeline=True), P("NoEnumerate", "switch")],
    aliases=("echo", "write"),
)
def write_output(inv: Invocation) -> None:
    for x in as_list(inv.get("InputObject")) + inv.input:
        inv.out(x)


@cmdlet(
    "Write-Host",
    [
        P("Object", "any", 0),
        P("NoNewline", "switch"),
        P("ForegroundColor"),
        P("BackgroundColor"),
        P("Separator"),
    ],
)
def write_host(inv: Invocation) -> None:
    sep = inv.get("Separator", " ")
    text = sep.join(to_text(x) for x in as_list(inv.get("Object")))
    inv.interp.stdout.append(text + ("" if inv.get("NoNewline") else "\n"))


@cmdlet("Write-Warning", [P("Message", "string", 0, mandatory=True)])
def write_warning(inv: Invocation) -> None:
    inv.warn(inv.get("Message", ""))


@cmdlet("Write-Verbose", [P("Message", "string", 0)])
def write_verbose(inv: Invocation) -> None:
    if inv.get("Verbose"):
        inv.interp.stdout.append(f"VERBOSE: {inv.get('Message', '')}\n")


@cmdlet("Write-Error", [P("Message", "string", 0), P("Category"), P("ErrorId")])
def write_error(inv: Invocation) -> None:
    msg = inv.get("Message", "")
    inv.error(msg, inv.get("ErrorId") or "Microsoft.PowerShell.Commands.WriteErrorException",
              inv.get("Category") or "NotSpecified", exception="WriteErrorException")  # fmt: skip


@cmdlet("Out-Null", [P("InputObject", "any", pipeline=True)])
def out_null(inv: Invocation) -> None:
    return None


@cmdlet(
    "Out-String",
    [P("InputObject", "any", pipeline=True), P("Stream", "switch"), P("Width", "int")],
    aliases=(),
)
def out_string(inv: Invocation) -> None:
    items = inv.input + as_list(inv.get("InputObject"))
    text = out_default(items)
    if inv.get("Stream"):
        for line in text.splitlines():
            inv.out(line)
    else:
        inv.out(text)


@cmdlet("Out-Default", [P("InputObject", "any", pipeline=True)])
def out_default_cmd(inv: Invocation) -> None:
    inv.interp.stdout.append(out_default(inv.input))


@cmdlet(
    "Format-List",
    [P("Property", "strings", 0), P("InputObject", "any", pipeline=True)],
    aliases=("fl",),
)
def format_list_cmd(inv: Invocation) -> None:
    props = inv.strings("Property")
    if props == ["*"]:
        props = []
    items = inv.input + as_list(inv.get("InputObject"))
    objs = [_select_props(x, props) if props else x for x in items]
    inv.out(FormattedText(format_list(objs)))


@cmdlet("Format-Table", [P("Property", "strings", 0), P("InputObject", "any", pipeline=True), P("AutoSize", "switch"),
                         P("HideTableHeaders", "switch"), P("Wrap", "switch")], aliases=("ft",))  # fmt: skip
def format_table_cmd(inv: Invocation) -> None:
    props = inv.strings("Property")
    items = inv.input + as_list(inv.get("InputObject"))
    if props:
        items = [_select_props(x, props) for x in items]
        inv.out(FormattedText(format_table(items, [(p, 0) for p in props])))
    else:
        inv.out(FormattedText(format_table(items)))


def _select_props(x: Any, props: list[str]) -> PSObject:
    vals: dict[str, Any] = {}
    for p in props:
        if isinstance(x, PSObject) and x.key(p):
            vals[x.key(p) or p] = x.get(p)
        elif isinstance(x, PSHash):
            vals[p] = x.lookup(p)
        else:
            vals[p] = get_member(x, p)
    return PSObject("System.Management.Automation.PSCustomObject", vals)


@cmdlet("Select-Object", [P("Property", "any", 0), P("InputObject", "any", pipeline=True), P("First", "int"),
                          P("Last", "int"), P("ExpandProperty", "string"), P("Unique", "switch"),
                          P("Skip", "int")], aliases=("select",))  # fmt: skip
def select_object(inv: Invocation) -> None:
    items = inv.input + as_list(inv.get("InputObject"))
    if inv.has("Skip"):
        items = items[inv.get("Skip") :]
    if inv.has("First"):
        items = items[: inv.get("First")]
    if inv.has("Last"):
        items = items[-inv.get("Last") :] if inv.get("Last") else []
    props_raw = as_list(inv.get("Property"))
    exp = inv.get("ExpandProperty")
    for x in items:
        if exp:
            v = get_member(x, exp)
            if v is None and not (isinstance(x, PSObject) and x.has(exp)):
                inv.error(f"Property \"{exp}\" cannot be found.", ["ExpandPropertyNotFound", "Microsoft.PowerShell.Commands.SelectObjectCommand"][0], "InvalidArgument", "", "PSArgumentException")  # fmt: skip
                continue
            for y in as_list(v):
                inv.out(y)
            continue
        if not props_raw:
            inv.out(x)
            continue
        vals: dict[str, Any] = {}
        for p in props_raw:
            if isinstance(p, PSHash):
                label = to_text(
                    p.lookup("Name") or p.lookup("Label") or p.lookup("N") or p.lookup("L")
                )
                expr = p.lookup("Expression") or p.lookup("E")
                if isinstance(expr, ScriptBlockValue):
                    r = expr.invoke(inv.interp, [], x, with_under=True)
                    vals[label] = r[0] if len(r) == 1 else (r or None)
                else:
                    vals[label] = get_member(x, to_text(expr))
                continue
            name = to_text(p)
            if has_wildcard(name) and isinstance(x, PSObject):
                for k, v in x.props.items():
                    if like(k, name):
                        vals[k] = v
                continue
            if isinstance(x, PSObject) and x.key(name):
                vals[x.key(name) or name] = x.get(name)
            else:
                vals[name] = get_member(x, name)
        inv.out(PSObject("System.Management.Automation.PSCustomObject", vals))


@cmdlet("Where-Object", [P("FilterScript", "any", 0), P("Property", "string"), P("Value", "any", 1),
                         P("EQ", "switch"), P("Like", "switch"), P("Match", "switch"), P("NE", "switch"),
                         P("InputObject", "any", pipeline=True)], aliases=("where", "?"))  # fmt: skip
def where_object(inv: Invocation) -> None:
    sb = inv.get("FilterScript")
    for x in inv.input:
        if isinstance(sb, ScriptBlockValue):
            r = sb.invoke(inv.interp, [], x, with_under=True)
            ok = truthy(r[0] if len(r) == 1 else r)
        else:
            prop = to_text(sb) if sb is not None else inv.get("Property", "")
            v = get_member(x, prop)
            target = inv.get("Value")
            if inv.get("Like"):
                ok = like(v, to_text(target))
            elif inv.get("NE"):
                ok = to_text(v).lower() != to_text(target).lower()
            elif inv.has("Value"):
                ok = to_text(v).lower() == to_text(target).lower()
            else:
                ok = truthy(v)
        if ok:
            inv.out(x)


@cmdlet("ForEach-Object", [P("Process", "any", 0), P("MemberName", "string"), P("InputObject", "any", pipeline=True),
                           P("Begin", "any"), P("End", "any")], aliases=("foreach", "%"))  # fmt: skip
def foreach_object(inv: Invocation) -> None:
    sb = inv.get("Process")
    if isinstance(inv.get("Begin"), ScriptBlockValue):
        for y in inv.get("Begin").invoke(inv.interp, []):
            inv.out(y)
    for x in inv.input:
        if isinstance(sb, ScriptBlockValue):
            for y in sb.invoke(inv.interp, [], x, with_under=True):
                inv.out(y)
        elif sb is not None:
            for y in as_list(get_member(x, to_text(sb))):
                inv.out(y)
    if isinstance(inv.get("End"), ScriptBlockValue):
        for y in inv.get("End").invoke(inv.interp, []):
            inv.out(y)


@cmdlet(
    "Sort-Object",
    [
        P("Property", "any", 0),
        P("Descending", "switch"),
        P("Unique", "switch"),
        P("InputObject", "any", pipeline=True),
    ],
    aliases=("sort",),
)
def sort_object(inv: Invocation) -> None:
    props = [to_text(p) for p in as_list(inv.get("Property"))]

    def key(x: Any) -> Any:
        vals = [get_member(x, p) for p in props] if props else [x]
        return [to_text(v).lower() if not isinstance(v, (int, float)) else f"{v:020}" for v in vals]

    for x in sorted(inv.input, key=key, reverse=bool(inv.get("Descending"))):
        inv.out(x)


@cmdlet(
    "Measure-Object",
    [P("InputObject", "any", pipeline=True), P("Property", "string", 0)],
    aliases=("measure",),
)
def measure_object(inv: Invocation) -> None:
    inv.out(PSObject("Microsoft.PowerShell.Commands.GenericMeasureInfo", {"Count": len(inv.input), "Average": None, "Sum": None, "Maximum": None, "Minimum": None, "Property": inv.get("Property")}, view="list"))  # fmt: skip


@cmdlet(
    "ConvertTo-Json",
    [P("InputObject", "any", 0, pipeline=True), P("Depth", "int"), P("Compress", "switch")],
)
def convertto_json(inv: Invocation) -> None:
    items = (
        inv.input
        if inv.input
        else as_list(inv.get("InputObject"))
        if not isinstance(inv.get("InputObject"), list)
        else [inv.get("InputObject")]
    )
    value: Any = items[0] if len(items) == 1 else items
    if not inv.input and isinstance(inv.get("InputObject"), list):
        value = inv.get("InputObject")
    text = to_json(value, inv.get("Depth", 2), bool(inv.get("Compress")))
    inv.out(text.replace("\n", "\r\n") if not inv.get("Compress") else text)


@cmdlet("ConvertFrom-Json", [P("InputObject", "string", 0, pipeline=True)])
def convertfrom_json(inv: Invocation) -> None:
    import json

    text = "\n".join(to_text(x) for x in inv.input) if inv.input else inv.get("InputObject", "")

    def conv(v: Any) -> Any:
        if isinstance(v, dict):
            return PSObject(
                "System.Management.Automation.PSCustomObject", {k: conv(x) for k, x in v.items()}
            )
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v

    try:
        inv.out(conv(json.loads(text)))
    except ValueError as e:
        raise inv.fail(
            f"Invalid JSON primitive: {e}.",
            "System.ArgumentException",
            "NotSpecified",
            exception="ArgumentException",
        ) from None


@cmdlet("Get-Date", [P("Format", "string"), P("UFormat", "string")])
def get_date(inv: Invocation) -> None:
    now = dt.datetime.now()
    if inv.has("Format"):
        inv.out(
            now.strftime("%Y-%m-%dT%H:%M:%S")
            if inv.get("Format") in ("o", "s")
            else now.isoformat()
        )
    else:
        inv.out(
            f"{now.strftime('%A, %B')} {now.day}, {now.year} {now.strftime('%I:%M:%S %p').lstrip('0')}"
        )


@cmdlet(
    "Start-Sleep",
    [P("Seconds", "int", 0, aliases=("s",)), P("Milliseconds", "int", aliases=("ms",))],
    aliases=("sleep",),
)
def start_sleep(inv: Invocation) -> None:
    return None  # time passes instantly in the twin


@cmdlet("Set-Location", [P("Path", "string", 0)], aliases=("cd", "sl", "chdir"))
def set_location(inv: Invocation) -> None:
    full = norm_path(inv.interp, inv.get("Path", "C:\\"))
    if not path_exists(inv.interp, full):
        raise inv.fail(
            f"Cannot find path '{full}' because it does not exist.",
            "PathNotFound",
            "ObjectNotFound",
            full,
            "ItemNotFoundException",
        )
    inv.interp.cwd = full


@cmdlet("Get-Location", [], aliases=("pwd", "gl"))
def get_location(inv: Invocation) -> None:
    inv.out(
        PSObject(
            "System.Management.Automation.PathInfo",
            {"Path": inv.interp.cwd},
            to_string=inv.interp.cwd,
        )
    )


@cmdlet(
    "Set-ExecutionPolicy",
    [P("ExecutionPolicy", "string", 0), P("Scope", "string"), P("Force", "switch")],
)
def set_execution_policy(inv: Invocation) -> None:
    return None


@cmdlet("Import-Module", [P("Name", "strings", 0), P("Force", "switch")], aliases=("ipmo",))
def import_module(inv: Invocation) -> None:
    return None


# ---- files --------------------------------------------------------------------------------------
@cmdlet("Get-Content", [P("Path", "strings", 0, pipeline=True), P("LiteralPath", "strings", aliases=("PSPath",)), P("Raw", "switch"),
                        P("Encoding", "string"), P("TotalCount", "int", aliases=("First", "Head")), P("Tail", "int")],
        aliases=("gc", "cat", "type"))  # fmt: skip
def get_content(inv: Invocation) -> None:
    for p in _paths(inv):
        matches = expand(inv.interp, p) if has_wildcard(p) else [norm_path(inv.interp, p)]
        for wp in matches:
            raw = read_bytes(inv.interp, inv.node, "Get-Content", wp)
            if raw is None:
                full = norm_path(inv.interp, wp)
                hp = inv.disk.host_path(full) if full[0] == "C" else None
                if hp is not None and hp.is_dir():
                    inv.error(f"Access to the path '{full}' is denied.", "GetContentReaderUnauthorizedAccessError", "PermissionDenied", full, "UnauthorizedAccessException")  # fmt: skip
                else:
                    _not_found(inv, full)
                continue
            text = decode(raw)
            if inv.get("Raw"):
                inv.out(text)
                continue
            lines = text.replace("\r\n", "\n").split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            if inv.has("TotalCount"):
                lines = lines[: inv.get("TotalCount")]
            if inv.has("Tail"):
                lines = lines[-inv.get("Tail") :]
            for line in lines:
                inv.out(line)


def _content_cmd(inv: Invocation, append: bool, cmd: str) -> None:
    values = inv.get("Value") if inv.has("Value") else inv.input
    lines = [to_text(v) for v in as_list(values)]
    text = "".join(line + "\r\n" for line in lines) if not inv.get("NoNewline") else "".join(lines)
    enc = (inv.get("Encoding") or ("auto" if append else "default")).lower()
    for p in inv.strings("Path") or inv.strings("LiteralPath"):
        full = norm_path(inv.interp, p)
        targets = expand(inv.interp, full) if has_wildcard(full) else [full]
        for t in targets:
            hp = host_path(inv.interp, inv.node, cmd, t)
            if not hp.parent.is_dir():
                if inv.get("Force") and append:
                    hp.parent.mkdir(parents=True, exist_ok=True)
                else:
                    inv.error(f"Could not find a part of the path '{t}'.", "GetContentWriterDirectoryNotFoundError", "ObjectNotFound", t, "DirectoryNotFoundException")  # fmt: skip
                    continue
            write_text_file(inv.interp, inv.node, t, text, enc, append=append, cmd=cmd)


_CONTENT_PARAMS = [P("Path", "strings", 0), P("LiteralPath", "strings", aliases=("PSPath",)), P("Value", "any", 1, pipeline=True),
                   P("Encoding", "string"), P("Force", "switch"), P("NoNewline", "switch"), P("PassThru", "switch")]  # fmt: skip


@cmdlet("Set-Content", _CONTENT_PARAMS, aliases=("sc",))
def set_content(inv: Invocation) -> None:
    _content_cmd(inv, False, "Set-Content")


@cmdlet("Add-Content", _CONTENT_PARAMS, aliases=("ac",))
def add_content(inv: Invocation) -> None:
    _content_cmd(inv, True, "Add-Content")


@cmdlet("Out-File", [P("FilePath", "string", 0, aliases=("Path",)), P("Encoding", "string", 1), P("Append", "switch"), P("Force", "switch"),
                     P("InputObject", "any", pipeline=True), P("NoNewline", "switch"), P("Width", "int"), P("NoClobber", "switch")])  # fmt: skip
def out_file(inv: Invocation) -> None:
    items = inv.input + as_list(inv.get("InputObject"))
    text = out_default(items)
    enc = (inv.get("Encoding") or "unicode").lower()
    write_text_file(
        inv.interp, inv.node, inv.get("FilePath", ""), text, enc, append=bool(inv.get("Append"))
    )


@cmdlet(
    "Test-Path",
    [
        P("Path", "strings", 0, pipeline=True),
        P("LiteralPath", "strings"),
        P("PathType", "string"),
        P("IsValid", "switch"),
    ],
)
def test_path(inv: Invocation) -> None:
    for p in inv.strings("Path") or inv.strings("LiteralPath") or [to_text(x) for x in inv.input]:
        if p.lower().startswith("hklm:"):
            inv.out(_registry(inv, p) is not None)
            continue
        full = norm_path(inv.interp, p)
        if full[0] != "C" and inv.interp.iso(full[0]) is None and full[0] not in "C":
            inv.out(False)
            continue
        matches = expand(inv.interp, full)
        kind = (inv.get("PathType") or "Any").lower()
        if kind == "leaf":
            matches = [m for m in matches if not file_object(inv.interp, m).get("PSIsContainer")]
        elif kind == "container":
            matches = [m for m in matches if file_object(inv.interp, m).get("PSIsContainer")]
        inv.out(bool(matches))


@cmdlet("New-Item", [P("Path", "strings", 0), P("Name", "string"), P("ItemType", "string", aliases=("Type",)), P("Value", "any", pipeline=True),
                     P("Force", "switch")], aliases=("ni",))  # fmt: skip
def new_item(inv: Invocation) -> None:
    for p in inv.strings("Path") or [inv.interp.cwd]:
        if p.lower().startswith(("hklm:", "hkey_local_machine")):
            _new_registry_key(inv, p)
            continue
        full = norm_path(inv.interp, ntpath.join(p, inv.get("Name")) if inv.get("Name") else p)
        hp = host_path(inv.interp, inv.node, "New-Item", full)
        kind = (inv.get("ItemType") or "File").lower()
        if hp.exists() and not inv.get("Force"):
            inv.error(f"An item with the specified name {full} already exists.", "DirectoryExist" if kind == "directory" else "NewItemIOError",
                      "ResourceExists", full, "IOException")  # fmt: skip
            continue
        if kind == "directory":
            hp.mkdir(parents=True, exist_ok=True)
        elif kind == "file":
            if not hp.parent.is_dir():
                if inv.get("Force"):
                    hp.parent.mkdir(parents=True, exist_ok=True)
                else:
                    inv.error(f"Could not find a part of the path '{full}'.", "NewItemIOError", "WriteError", full, "DirectoryNotFoundException")  # fmt: skip
                    continue
            value = inv.get("Value")
            if value is None and inv.input:
                value = inv.input[0]
            hp.write_bytes(encode(to_text(value), "default") if value is not None else b"")
        else:
            raise inv.fail("The type is not a known type for the file system. Only \"file\" and \"directory\" can be created.", "Argument", "InvalidArgument", exception="PSArgumentException")  # fmt: skip
        _touch_state(inv.interp)
        inv.out(file_object(inv.interp, full))


@cmdlet("Remove-Item", [P("Path", "strings", 0, pipeline=True), P("LiteralPath", "strings"), P("Force", "switch"), P("Recurse", "switch"),
                        P("Include", "strings"), P("Exclude", "strings")], aliases=("rm", "del", "erase", "rd", "rmdir", "ri"))  # fmt: skip
def remove_item(inv: Invocation) -> None:
    import shutil

    removed = False
    for p in _paths(inv):
        full = norm_path(inv.interp, p)
        if full[0] != "C":
            host_path(inv.interp, inv.node, "Remove-Item", full)
        matches = expand(inv.interp, full)
        if not matches:
            if not has_wildcard(full):
                _not_found(inv, full)
            continue
        for wp in matches:
            hp = inv.disk.host_path(wp)
            if hp.is_dir():
                if any(hp.iterdir()) and not inv.get("Recurse"):
                    inv.error(f"The item at {wp} has children and the Recurse parameter was not specified. In a non-interactive session "
                              "the item cannot be removed without it.", "RemoveItemNoRecurse", "InvalidOperation", wp, "IOException")  # fmt: skip
                    continue
                shutil.rmtree(hp)
            else:
                hp.unlink()
            removed = True
            with inv.edit() as st:
                for k in [k for k in st.acls if k == wp.lower() or k.startswith(wp.lower() + "\\")]:
                    del st.acls[k]
    if removed:
        _touch_state(inv.interp)


@cmdlet("Copy-Item", [P("Path", "strings", 0), P("Destination", "string", 1), P("Force", "switch"), P("Recurse", "switch"),
                      P("LiteralPath", "strings")], aliases=("cp", "copy", "cpi"))  # fmt: skip
def copy_item(inv: Invocation) -> None:
    import shutil

    dest = norm_path(inv.interp, inv.get("Destination", inv.interp.cwd))
    for p in _paths(inv):
        matches = expand(inv.interp, p)
        if not matches:
            _not_found(inv, norm_path(inv.interp, p))
            continue
        for wp in matches:
            dhp = host_path(inv.interp, inv.node, "Copy-Item", dest)
            target = dhp / ntpath.basename(wp) if dhp.is_dir() else dhp
            if not target.parent.is_dir():
                inv.error(f"Could not find a part of the path '{dest}'.", "CopyItemIOError", "WriteError", dest, "DirectoryNotFoundException")  # fmt: skip
                continue
            if wp[0] == "C":
                src = inv.disk.host_path(wp)
                if src.is_dir():
                    if not inv.get("Recurse"):
                        target.mkdir(exist_ok=True)
                    else:
                        shutil.copytree(src, target, dirs_exist_ok=True)
                else:
                    shutil.copyfile(src, target)
            else:
                data = read_bytes(inv.interp, inv.node, "Copy-Item", wp)
                if data is None:
                    iso = inv.interp.iso(wp[0])
                    target.mkdir(exist_ok=True)
                    prefix = wp[2:].replace("\\", "/").lower().rstrip("/") + "/"
                    for f in iso.files():
                        if f.lower().startswith(prefix) and inv.get("Recurse"):
                            out = target / f[len(prefix) :]
                            out.parent.mkdir(parents=True, exist_ok=True)
                            out.write_bytes(iso.read(f))
                else:
                    target.write_bytes(data)
    _touch_state(inv.interp)


@cmdlet("Get-ChildItem", [P("Path", "strings", 0), P("Filter", "string", 1), P("Recurse", "switch"), P("Force", "switch"),
                          P("File", "switch"), P("Directory", "switch"), P("Name", "switch"), P("LiteralPath", "strings")],
        aliases=("dir", "ls", "gci"))  # fmt: skip
def get_childitem(inv: Invocation) -> None:
    objs: list[PSObject] = []
    for p in inv.strings("Path") or inv.strings("LiteralPath") or [inv.interp.cwd]:
        full = norm_path(inv.interp, p)
        if full[0] != "C" and inv.interp.iso(full[0]) is None:
            raise _drive_error(inv.interp, inv.node, "Get-ChildItem", full)
        matches = expand(inv.interp, full)
        if not matches:
            _not_found(inv, full)
            continue
        for wp in matches:
            fo = file_object(inv.interp, wp)
            if fo.get("PSIsContainer") and not has_wildcard(full):
                children = expand(inv.interp, wp + "\\*")
                objs.extend(file_object(inv.interp, c) for c in children)
            else:
                objs.append(fo)
    flt = inv.get("Filter")
    if flt:
        objs = [o for o in objs if like(o.get("Name"), flt)]
    if inv.get("File"):
        objs = [o for o in objs if not o.get("PSIsContainer")]
    if inv.get("Directory"):
        objs = [o for o in objs if o.get("PSIsContainer")]
    if inv.get("Name"):
        for o in objs:
            inv.out(o.get("Name"))
        return
    if False:
        pass
    for o in objs:
        inv.out(o)


@cmdlet(
    "Get-Item",
    [P("Path", "strings", 0), P("LiteralPath", "strings"), P("Force", "switch")],
    aliases=("gi",),
)
def get_item(inv: Invocation) -> None:
    for p in inv.strings("Path") or inv.strings("LiteralPath"):
        matches = expand(inv.interp, p)
        if not matches:
            _not_found(inv, norm_path(inv.interp, p))
        for wp in matches:
            inv.out(file_object(inv.interp, wp))


# ---- registry (read-only view of what the state knows) -------------------------------------------
def _registry(inv: Invocation, path: str) -> PSObject | None:
    key = path.replace("/", "\\").rstrip("\\").lower()
    key = key.replace("hkey_local_machine", "hklm:").replace("hklm:\\\\", "hklm:\\")
    st = inv.state()
    if key == "hklm:\\software\\microsoft\\windows nt\\currentversion":
        return PSObject("System.Management.Automation.PSCustomObject", {
            "SystemRoot": "C:\\Windows", "BuildBranch": "fe_release" if st.build >= 20348 else "vb_release",
            "CurrentBuild": str(st.build), "CurrentMajorVersionNumber": 10, "CurrentMinorVersionNumber": 0,
            "CurrentType": "Multiprocessor Free", "CurrentVersion": "6.3", "EditionID": st.edition_id,
            "InstallationType": "Server Core" if st.edition_id.endswith("Cor") else "Server",
            "ProductName": st.product_name, "ReleaseId": "2009" if st.build >= 19042 else "1809",
            "CurrentBuildNumber": str(st.build), "DisplayVersion": st.display_version, "UBR": st.ubr,
            "RegisteredOwner": "Owner", "RegisteredOrganization": "",
            "PSPath": "Microsoft.PowerShell.Core\\Registry::HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion",
            "PSChildName": "CurrentVersion", "PSDrive": "HKLM", "PSProvider": "Microsoft.PowerShell.Core\\Registry",
        }, view="list")  # fmt: skip
    if key == "hklm:\\system\\currentcontrolset\\control\\computername\\computername":
        return PSObject(
            "System.Management.Automation.PSCustomObject",
            {"ComputerName": st.computer_name},
            view="list",
        )
    if key == "hklm:\\software\\vmware, inc.\\vmware tools" and st.tools_version:
        return PSObject(
            "System.Management.Automation.PSCustomObject",
            {"InstallPath": "C:\\Program Files\\VMware\\VMware Tools\\"},
            view="list",
        )
    if key in st.registry:  # keys automation created (policies)
        return PSObject(
            "System.Management.Automation.PSCustomObject", dict(st.registry[key]), view="list"
        )
    if key in ("hklm:", "hklm:\\software", "hklm:\\software\\microsoft", "hklm:\\system"):
        return PSObject("System.Management.Automation.PSCustomObject", {}, view="list")
    return None


@cmdlet(
    "Get-ItemProperty",
    [P("Path", "strings", 0), P("Name", "strings", 1), P("LiteralPath", "strings")],
    aliases=("gp",),
)
def get_itemproperty(inv: Invocation) -> None:
    for p in inv.strings("Path") or inv.strings("LiteralPath"):
        if not p.lower().startswith(("hklm:", "hkey_local_machine")):
            matches = expand(inv.interp, p)
            if not matches:
                _not_found(inv, norm_path(inv.interp, p))
            for wp in matches:
                inv.out(file_object(inv.interp, wp))
            continue
        obj = _registry(inv, p)
        if obj is None:
            _not_found(
                inv, p.replace("HKLM:", "HKEY_LOCAL_MACHINE").replace("hklm:", "HKEY_LOCAL_MACHINE")
            )
            continue
        names = inv.strings("Name")
        if names:
            sel = {}
            for n in names:
                if not obj.has(n):
                    inv.error(f"Property {n} does not exist at path {p}.", "System.Management.Automation.PSArgumentException", "InvalidArgument", n, "PSArgumentException")  # fmt: skip
                    continue
                sel[obj.key(n) or n] = obj.get(n)
            if sel:
                inv.out(PSObject("System.Management.Automation.PSCustomObject", sel, view="list"))
        else:
            inv.out(obj)


@cmdlet(
    "Get-ItemPropertyValue", [P("Path", "strings", 0), P("Name", "strings", 1)], aliases=("gpv",)
)
def get_itempropertyvalue(inv: Invocation) -> None:
    for p in inv.strings("Path"):
        obj = _registry(inv, p)
        if obj is None:
            _not_found(inv, p)
            continue
        for n in inv.strings("Name"):
            if not obj.has(n):
                inv.error(f"Property {n} does not exist at path {p}.", "System.Management.Automation.PSArgumentException", "InvalidArgument", n, "PSArgumentException")  # fmt: skip
                continue
            inv.out(obj.get(n))


# ---- services -----------------------------------------------------------------------------------
def service_object(svc: Service) -> PSObject:
    return PSObject(
        "System.ServiceProcess.ServiceController",
        {
            "Name": svc.name,
            "DisplayName": svc.display_name,
            "Status": service_status(svc.status),
            "StartType": service_start(svc.start_type),
            "ServiceName": svc.name,
            "ServiceType": PSEnum("System.ServiceProcess.ServiceType", "Win32OwnProcess", 16),
            "CanStop": svc.status == RUNNING,
            "CanPauseAndContinue": False,
            "CanShutdown": False,
            "MachineName": ".",
            "DependentServices": [],
            "ServicesDependedOn": [],
        },
        table=[("Status", 9), ("Name", 19), ("DisplayName", 0)],
        to_string="System.ServiceProcess.ServiceController",
    )


def _services(inv: Invocation, cmd_class_noun: str) -> list[Service]:
    """Services named by -Name/-DisplayName (wildcards) or piped in; errors for missing ones."""
    st = inv.state()
    out: list[Service] = []
    for item in inv.input + ([inv.get("InputObject")] if inv.has("InputObject") else []):
        if isinstance(item, PSObject) and item.has("ServiceName"):
            svc = st.service(to_text(item.get("ServiceName")))
            if svc:
                out.append(svc)
        elif isinstance(item, str) and not inv.has("Name"):
            inv.args.setdefault("Name", []).append(item)
    names = inv.strings("Name")
    for n in names:
        if has_wildcard(n):
            out.extend(
                s
                for s in sorted(st.services.values(), key=lambda s: s.name.lower())
                if like(s.name, n)
            )
            continue
        svc = st.service(n)
        if svc is None:
            inv.error(f"Cannot find any service with service name '{n}'.", "NoServiceFoundForGivenName", "ObjectNotFound", n, "ServiceCommandException")  # fmt: skip
            continue
        out.append(svc)
    for d in inv.strings("DisplayName"):
        found = [s for s in st.services.values() if like(s.display_name, d)]
        if not found and not has_wildcard(d):
            inv.error(f"Cannot find any service with display name '{d}'.", "NoServiceFoundForGivenDisplayName", "ObjectNotFound", d, "ServiceCommandException")  # fmt: skip
        out.extend(found)
    return out


_SVC_PARAMS = [P("Name", "strings", 0, aliases=("ServiceName",)), P("DisplayName", "strings"), P("InputObject", "any", pipeline=True),
               P("PassThru", "switch"), P("Force", "switch"), P("Include", "strings"), P("Exclude", "strings"), P("NoWait", "switch")]  # fmt: skip


@cmdlet("Get-Service", [P("Name", "strings", 0, aliases=("ServiceName",)), P("DisplayName", "strings"), P("InputObject", "any", pipeline=True),
                        P("ComputerName", "strings"), P("DependentServices", "switch"), P("RequiredServices", "switch"),
                        P("Include", "strings"), P("Exclude", "strings")], aliases=("gsv",))  # fmt: skip
def get_service(inv: Invocation) -> None:
    if not inv.has("Name") and not inv.has("DisplayName") and not inv.input:
        st = inv.state()
        svcs = sorted(st.services.values(), key=lambda s: s.name.lower())
    else:
        svcs = _services(inv, "Get")
    for s in svcs:
        inv.out(service_object(s))


def _start(inv: Invocation, svc: Service) -> bool:
    """Start one service as the SCM would; returns False (after an error) when it cannot."""
    st = inv.state()
    cur = st.service(svc.name)
    if cur is None:
        return False
    if cur.start_type == DISABLED:
        inv.error(f"Service '{cur.display_name} ({cur.name})' cannot be started due to the following error: Cannot start service {cur.name} on computer '.'.",
                  "CouldNotStartService", "OpenError", cur.name, "ServiceCommandException", "ServiceController")  # fmt: skip
        return False
    if cur.name.lower() == "docker" and windows.feature_state(st, "Containers") != "Installed":
        inv.error(f"Service '{cur.display_name} ({cur.name})' cannot be started due to the following error: Cannot start service {cur.name} on computer '.'.",
                  "CouldNotStartService", "OpenError", cur.name, "ServiceCommandException", "ServiceController")  # fmt: skip
        return False
    if cur.name.lower() == "sshd":
        windows.ensure_host_keys(inv.disk)
    if cur.status != RUNNING:
        with inv.edit() as st2:
            s2 = st2.service(cur.name)
            if s2 is not None:
                s2.status = RUNNING
    return True


@cmdlet("Start-Service", _SVC_PARAMS, aliases=("sasv",))
def start_service(inv: Invocation) -> None:
    for svc in _services(inv, "Start"):
        if _start(inv, svc) and inv.get("PassThru"):
            inv.out(service_object(inv.state().service(svc.name) or svc))


def _stop(inv: Invocation, svc: Service) -> None:
    with inv.edit() as st:
        s2 = st.service(svc.name)
        if s2 is not None:
            s2.status = STOPPED


@cmdlet("Stop-Service", _SVC_PARAMS, aliases=("spsv",))
def stop_service(inv: Invocation) -> None:
    for svc in _services(inv, "Stop"):
        _stop(inv, svc)
        if inv.get("PassThru"):
            inv.out(service_object(inv.state().service(svc.name) or svc))


@cmdlet("Restart-Service", _SVC_PARAMS)
def restart_service(inv: Invocation) -> None:
    for svc in _services(inv, "Restart"):
        _stop(inv, svc)
        if _start(inv, svc) and inv.get("PassThru"):
            inv.out(service_object(inv.state().service(svc.name) or svc))


_START_TYPES = {
    "automatic": AUTOMATIC,
    "manual": MANUAL,
    "disabled": DISABLED,
    "automaticdelayedstart": AUTOMATIC,
    "boot": "Boot",
    "system": "System",
}


@cmdlet("Set-Service", [P("Name", "string", 0, aliases=("ServiceName", "SN")), P("DisplayName", "string"), P("StartupType", "string", aliases=("StartMode", "SM", "ST")),
                        P("Status", "string"), P("InputObject", "any", pipeline=True), P("PassThru", "switch"), P("Description", "string")])  # fmt: skip
def set_service(inv: Invocation) -> None:
    if inv.has("Name"):
        inv.args["Name"] = [inv.get("Name")]
    svcs = _services(inv, "Set")
    stype = inv.get("StartupType")
    if stype is not None and stype.lower() not in _START_TYPES:
        raise inv.fail(f"Cannot bind parameter 'StartupType'. Cannot convert value \"{stype}\" to type \"Microsoft.PowerShell.Commands.ServiceStartupType\". Error: \"Unable to match the identifier name {stype} to a valid enumerator name. Specify one of the following enumerator names and try again:\nAutomatic, Manual, Disabled, AutomaticDelayedStart\"",
                       "CannotConvertArgumentNoMessage", "InvalidArgument", exception="ParameterBindingException")  # fmt: skip
    for svc in svcs:
        if stype is not None:
            with inv.edit() as st:
                s2 = st.service(svc.name)
                if s2 is not None:
                    s2.start_type = _START_TYPES[stype.lower()]
        status = (inv.get("Status") or "").lower()
        if status == "running":
            _start(inv, svc)
        elif status == "stopped":
            _stop(inv, svc)
        if inv.get("PassThru"):
            inv.out(service_object(inv.state().service(svc.name) or svc))


@cmdlet("New-Service", [P("Name", "string", 0), P("BinaryPathName", "string", 1, aliases=("Path",)), P("DisplayName", "string"),
                        P("StartupType", "string"), P("Description", "string"), P("DependsOn", "strings")])  # fmt: skip
def new_service(inv: Invocation) -> None:
    name = inv.get("Name", "")
    with inv.edit() as st:
        if st.service(name) is not None:
            raise inv.fail(f"Service '{name}' cannot be created because a service with the same name already exists.", "CouldNotNewService", "PermissionDenied", name, "ServiceCommandException")  # fmt: skip
        st.put_service(
            Service(
                name,
                inv.get("DisplayName") or name,
                STOPPED,
                _START_TYPES.get((inv.get("StartupType") or "Automatic").lower(), AUTOMATIC),
                inv.get("BinaryPathName", ""),
            )
        )
        svc = st.service(name)
    assert svc is not None
    inv.out(service_object(svc))


# ---- firewall -----------------------------------------------------------------------------------
_GPO_BOOL = {True: PSEnum("Microsoft.PowerShell.Cmdletization.GeneratedTypes.NetSecurity.Enabled", "True", 1),
             False: PSEnum("Microsoft.PowerShell.Cmdletization.GeneratedTypes.NetSecurity.Enabled", "False", 2)}  # fmt: skip
_DIRECTION = {"inbound": 1, "outbound": 2}
_ACTION = {"notconfigured": 0, "allow": 2, "block": 4}
_EDGE = {"block": 0, "allow": 1, "deferetouser": 2, "defertoapp": 3}
_PROFILE = {"any": 0, "domain": 1, "private": 2, "public": 4, "notapplicable": 0}


def _enum(ns: str, table: dict[str, int], name: str) -> PSEnum:
    canon = {
        "deferetouser": "DeferToUser",
        "defertoapp": "DeferToApp",
        "notconfigured": "NotConfigured",
    }
    return PSEnum(
        ns, canon.get(name.lower(), name[:1].upper() + name[1:]), table.get(name.lower(), 0)
    )


def _profile_value(profile: str) -> int:
    return sum(_PROFILE.get(p.strip().lower(), 0) for p in profile.split(","))


def rule_object(r: FirewallRule) -> PSObject:
    obj = PSObject(
        "Microsoft.Management.Infrastructure.CimInstance#root/standardcimv2/MSFT_NetFirewallRule",
        {
            "Name": r.name,
            "DisplayName": r.display_name,
            "Description": "",
            "DisplayGroup": r.group,
            "Group": r.group,
            "Enabled": _GPO_BOOL[r.enabled],
            "Profile": PSEnum("NetSecurity.Profile", r.profile, _profile_value(r.profile)),
            "Platform": [],
            "Direction": _enum("NetSecurity.Direction", _DIRECTION, r.direction),
            "Action": _enum("NetSecurity.Action", _ACTION, r.action),
            "EdgeTraversalPolicy": _enum(
                "NetSecurity.EdgeTraversal", _EDGE, r.edge_traversal_policy
            ),
            "LooseSourceMapping": False,
            "LocalOnlyMapping": False,
            "Owner": None,
            "PrimaryStatus": PSEnum("NetSecurity.PrimaryStatus", "OK", 1),
            "Status": "The rule was parsed successfully from the store. (65536)",
            "EnforcementStatus": PSEnum("NetSecurity.EnforcementStatus", "NotApplicable", 1),
            "PolicyStoreSource": "PersistentStore",
            "PolicyStoreSourceType": PSEnum("NetSecurity.PolicyStoreType", "Local", 1),
        },
        view="list",
        to_string=f'MSFT_NetFirewallRule (Name = "{r.name}")',
    )
    obj.rule = r  # type: ignore[attr-defined]
    return obj


_FW_CLASS = "Microsoft.Management.Infrastructure.CimCmdlets"


def _rules(inv: Invocation, cmd: str) -> list[FirewallRule]:
    st = inv.state()
    found: list[FirewallRule] = []
    for item in inv.input:
        r = getattr(item, "rule", None)
        if isinstance(r, FirewallRule):
            found.extend(x for x in st.firewall_rules if x.name == r.name)
    for key, attr in (("Name", "name"), ("DisplayName", "display_name")):
        for pat in inv.strings(key):
            m = [r for r in st.firewall_rules if like(getattr(r, attr), pat)]
            if not m and not has_wildcard(pat):
                inv.error(f"No MSFT_NetFirewallRule objects found with property '{key}' equal to '{pat}'.  Verify the value of the property and retry.",
                          f"CmdletizationQuery_NotFound_{key}", "ObjectNotFound", pat, "CimJobException")  # fmt: skip
            found.extend(m)
    for grp in inv.strings("DisplayGroup") + inv.strings("Group"):
        found.extend(r for r in st.firewall_rules if like(r.group, grp))
    if not inv.input and not any(
        inv.has(k) for k in ("Name", "DisplayName", "DisplayGroup", "Group")
    ):
        found = list(st.firewall_rules)
    for key, attr in (("Direction", "direction"), ("Action", "action")):
        if inv.has(key) and cmd == "Get":
            found = [r for r in found if getattr(r, attr).lower() == to_text(inv.get(key)).lower()]
    if inv.has("Enabled") and cmd == "Get":
        want = to_text(inv.get("Enabled")).lower() == "true"
        found = [r for r in found if r.enabled == want]
    seen: set[int] = set()
    return [r for r in found if not (id(r) in seen or seen.add(id(r)))]  # type: ignore[func-returns-value]


def _fw(name: str, params: list[Param]) -> Any:
    return cmdlet(name, params, command_class="", aliases=())


_FW_SELECT = [P("Name", "strings", 0, aliases=("ID",)), P("DisplayName", "strings"), P("DisplayGroup", "strings"), P("Group", "strings"),
              P("InputObject", "any", pipeline=True), P("AssociatedNetFirewallPortFilter", "any"), P("PolicyStore", "string")]  # fmt: skip


def _fix_class(name: str) -> None:
    from lab.guest.emulator.interp import REGISTRY

    REGISTRY[name.lower()].command_class = ""


@cmdlet(
    "Get-NetFirewallRule",
    [
        *_FW_SELECT,
        P("Enabled", "string"),
        P("Direction", "string"),
        P("Action", "string"),
        P("All", "switch"),
    ],
)
def get_netfirewallrule(inv: Invocation) -> None:
    for r in _rules(inv, "Get"):
        inv.out(rule_object(r))


def _bool_enabled(inv: Invocation, v: Any) -> bool:
    t = to_text(v).lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "2", "0"):
        return False
    raise inv.fail(f"Cannot process argument transformation on parameter 'Enabled'. Cannot convert value \"{to_text(v)}\" to type \"Microsoft.PowerShell.Cmdletization.GeneratedTypes.NetSecurity.Enabled\". Error: \"Unable to match the identifier name {to_text(v)} to a valid enumerator name. Specify one of the following enumerator names and try again:\nTrue, False\"",
                   "ParameterArgumentTransformationError", "InvalidData", exception="ParameterBindingArgumentTransformationException")  # fmt: skip


def _check_choice(inv: Invocation, param: str, value: str, allowed: list[str]) -> str:
    for a in allowed:
        if a.lower() == value.lower():
            return a
    raise inv.fail(f"Cannot bind parameter '{param}'. Cannot convert value \"{value}\" to type \"NetSecurity.{param}\". Error: \"Unable to match the identifier name {value} to a valid enumerator name. Specify one of the following enumerator names and try again:\n{', '.join(allowed)}\"",
                   "CannotConvertArgumentNoMessage", "InvalidArgument", exception="ParameterBindingException")  # fmt: skip


@cmdlet("New-NetFirewallRule", [P("DisplayName", "string", mandatory=True), P("Name", "string", aliases=("ID",)), P("Direction", "string"),
                                P("Protocol", "string"), P("LocalPort", "strings"), P("RemotePort", "strings"), P("Action", "string"),
                                P("Enabled", "string"), P("EdgeTraversalPolicy", "string"), P("Profile", "strings"), P("Group", "string"),
                                P("Description", "string"), P("Program", "string"), P("LocalAddress", "strings"), P("RemoteAddress", "strings"),
                                P("PolicyStore", "string")])  # fmt: skip
def new_netfirewallrule(inv: Invocation) -> None:
    if not inv.has("DisplayName"):
        raise inv.fail("Cannot process command because of one or more missing mandatory parameters: DisplayName.", "MissingMandatoryParameter", "InvalidArgument", exception="ParameterBindingException")  # fmt: skip
    direction = _check_choice(
        inv, "Direction", inv.get("Direction") or "Inbound", ["Inbound", "Outbound"]
    )
    action = _check_choice(
        inv, "Action", inv.get("Action") or "Allow", ["NotConfigured", "Allow", "Block"]
    )
    edge = _check_choice(
        inv,
        "EdgeTraversalPolicy",
        inv.get("EdgeTraversalPolicy") or "Block",
        ["Block", "Allow", "DeferToUser", "DeferToApp"],
    )
    enabled = _bool_enabled(inv, inv.get("Enabled", "True"))
    protocol = (inv.get("Protocol") or "Any").upper()
    protocol = {"ANY": "Any", "ICMPV4": "ICMPv4", "ICMPV6": "ICMPv6"}.get(protocol, protocol)
    ports: list[str] = []
    for p in inv.strings("LocalPort"):
        ports.extend(x.strip() for x in p.split(",") if x.strip())
    if ports and protocol not in ("TCP", "UDP"):
        raise inv.fail("The port is only valid for TCP or UDP protocols. Specify a protocol of TCP or UDP and try again.", "HRESULT 0x80070057",
                       "InvalidArgument", "MSFT_NetFirewallRule", "CimException")  # fmt: skip
    profiles = [x.strip() for p in inv.strings("Profile") for x in p.split(",")] or ["Any"]
    name = inv.get("Name") or "{" + str(uuid.uuid4()) + "}"
    rule = FirewallRule(
        name,
        inv.get("DisplayName"),
        direction,
        protocol,
        ports or ["Any"],
        action,
        enabled,
        edge,
        ", ".join(profiles),
        inv.get("Group") or "",
    )
    with inv.edit() as st:
        if any(r.name.lower() == name.lower() for r in st.firewall_rules):
            raise inv.fail("Cannot create a file when that file already exists.", "Windows System Error 183", "ResourceExists",
                           "MSFT_NetFirewallRule", "CimException", target_type="root/standardcimv2/MSFT_NetFirewallRule")  # fmt: skip
        st.firewall_rules.append(rule)
    inv.out(rule_object(rule))


@cmdlet("Remove-NetFirewallRule", _FW_SELECT)
def remove_netfirewallrule(inv: Invocation) -> None:
    rules = _rules(inv, "Remove")
    if not rules:
        return
    names = {r.name for r in rules}
    with inv.edit() as st:
        st.firewall_rules = [r for r in st.firewall_rules if r.name not in names]


@cmdlet("Set-NetFirewallRule", [*_FW_SELECT, P("Enabled", "string"), P("Action", "string"), P("Direction", "string"), P("LocalPort", "strings"), P("Protocol", "string"), P("Profile", "strings"), P("NewDisplayName", "string"), P("EdgeTraversalPolicy", "string"), P("PassThru", "switch")])  # fmt: skip
def set_netfirewallrule(inv: Invocation) -> None:
    sel = PSHash()
    for k in ("Name", "DisplayName", "DisplayGroup", "Group"):
        if inv.has(k):
            sel[k] = inv.get(k)
    rules = _rules(inv, "Set")
    names = {r.name for r in rules}
    enabled = _bool_enabled(inv, inv.get("Enabled")) if inv.has("Enabled") else None
    with inv.edit() as st:
        for r in st.firewall_rules:
            if r.name not in names:
                continue
            if enabled is not None:
                r.enabled = enabled
            if inv.has("Action"):
                r.action = _check_choice(
                    inv, "Action", inv.get("Action"), ["NotConfigured", "Allow", "Block"]
                )
            if inv.has("Direction"):
                r.direction = _check_choice(
                    inv, "Direction", inv.get("Direction"), ["Inbound", "Outbound"]
                )
            if inv.has("LocalPort"):
                r.local_port = [x.strip() for p in inv.strings("LocalPort") for x in p.split(",")]
            if inv.has("Protocol"):
                r.protocol = inv.get("Protocol").upper()
            if inv.has("NewDisplayName"):
                r.display_name = inv.get("NewDisplayName")
            if inv.has("EdgeTraversalPolicy"):
                r.edge_traversal_policy = inv.get("EdgeTraversalPolicy")
            if inv.get("PassThru"):
                inv.out(rule_object(r))


@cmdlet("Enable-NetFirewallRule", _FW_SELECT)
def enable_netfirewallrule(inv: Invocation) -> None:
    names = {r.name for r in _rules(inv, "Set")}
    with inv.edit() as st:
        for r in st.firewall_rules:
            if r.name in names:
                r.enabled = True


@cmdlet("Disable-NetFirewallRule", _FW_SELECT)
def disable_netfirewallrule(inv: Invocation) -> None:
    names = {r.name for r in _rules(inv, "Set")}
    with inv.edit() as st:
        for r in st.firewall_rules:
            if r.name in names:
                r.enabled = False


@cmdlet(
    "Get-NetFirewallPortFilter",
    [
        P("AssociatedNetFirewallRule", "any", pipeline=True),
        P("Protocol", "strings"),
        P("All", "switch"),
        P("PolicyStore", "string"),
    ],
)
def get_netfirewallportfilter(inv: Invocation) -> None:
    rules = [
        getattr(x, "rule", None) for x in inv.input + as_list(inv.get("AssociatedNetFirewallRule"))
    ]
    if not inv.input and not inv.has("AssociatedNetFirewallRule"):
        rules = list(inv.state().firewall_rules)
    for r in rules:
        if not isinstance(r, FirewallRule):
            continue
        lp: Any = r.local_port[0] if len(r.local_port) == 1 else list(r.local_port)
        inv.out(PSObject("Microsoft.Management.Infrastructure.CimInstance#root/standardcimv2/MSFT_NetProtocolPortFilter",
                         {"Protocol": r.protocol, "LocalPort": lp, "RemotePort": "Any", "IcmpType": "Any", "DynamicTarget": PSEnum("DynamicTransport", "Any", 0)},
                         view="list"))  # fmt: skip


for _n in ("Get-NetFirewallRule", "New-NetFirewallRule", "Remove-NetFirewallRule", "Set-NetFirewallRule", "Enable-NetFirewallRule",
           "Disable-NetFirewallRule", "Get-NetFirewallPortFilter"):  # fmt: skip
    _fix_class(_n)
    # CIM cmdlets' error ids end in ",<cmdlet name>" rather than a .NET class name
    from lab.guest.emulator.interp import REGISTRY as _R

    _R[_n.lower()].command_class = _n


# ---- network ------------------------------------------------------------------------------------
def ip_adapter(state: Any) -> str:
    return next((a for a in state.adapters if a.lower().startswith("vethernet")), "Ethernet0")


@cmdlet(
    "Get-NetIPAddress",
    [
        P("AddressFamily", "string"),
        P("InterfaceAlias", "strings"),
        P("IPAddress", "strings"),
        P("InterfaceIndex", "int"),
    ],
)
def get_netipaddress(inv: Invocation) -> None:
    st = inv.state()
    rt = inv.disk.runtime()
    fam = (inv.get("AddressFamily") or "").lower()
    entries = []
    if rt.ip and fam in ("", "ipv4"):
        alias = ip_adapter(st)
        entries.append((rt.ip, 8, alias, 6 if alias == "Ethernet0" else 14, "IPv4", "Dhcp"))
    if fam in ("", "ipv4"):
        entries.append(("127.0.0.1", 8, "Loopback Pseudo-Interface 1", 1, "IPv4", "WellKnown"))
    if fam in ("", "ipv6"):
        entries.append(("::1", 128, "Loopback Pseudo-Interface 1", 1, "IPv6", "WellKnown"))
    for ip, plen, alias, idx, af, origin in entries:
        if inv.has("InterfaceAlias") and not any(
            like(alias, a) for a in inv.strings("InterfaceAlias")
        ):
            continue
        inv.out(PSObject("Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetIPAddress", {
            "IPAddress": ip, "InterfaceIndex": idx, "InterfaceAlias": alias, "AddressFamily": PSEnum("AddressFamily", af, 2 if af == "IPv4" else 23),
            "Type": PSEnum("Type", "Unicast", 1), "PrefixLength": plen, "PrefixOrigin": PSEnum("PrefixOrigin", origin, 3 if origin == "Dhcp" else 2),
            "SuffixOrigin": PSEnum("SuffixOrigin", origin, 3 if origin == "Dhcp" else 2), "AddressState": PSEnum("AddressState", "Preferred", 4),
            "ValidLifetime": "Infinite ([TimeSpan]::MaxValue)", "PreferredLifetime": "Infinite ([TimeSpan]::MaxValue)",
            "SkipAsSource": False, "PolicyStore": "ActiveStore"}, view="list"))  # fmt: skip


@cmdlet("Get-NetAdapter", [P("Name", "strings", 0)])
def get_netadapter(inv: Invocation) -> None:
    st = inv.state()
    for i, a in enumerate(st.adapters):
        if inv.has("Name") and not any(like(a, n) for n in inv.strings("Name")):
            continue
        desc = (
            "vmxnet3 Ethernet Adapter"
            if not a.lower().startswith("vethernet")
            else "Hyper-V Virtual Ethernet Adapter"
        )
        inv.out(PSObject("MSFT_NetAdapter", {"Name": a, "InterfaceDescription": desc, "ifIndex": 6 + 8 * i, "Status": "Up",
                                             "MacAddress": "00-50-56-AB-CD-EF", "LinkSpeed": "10 Gbps"}, table=[("Name", 0), ("InterfaceDescription", 0), ("ifIndex", 0), ("Status", 0), ("MacAddress", 0), ("LinkSpeed", 0)]))  # fmt: skip


@cmdlet(
    "New-HnsNetwork",
    [
        P("Type", "string"),
        P("Name", "string"),
        P("AddressPrefix", "strings"),
        P("Gateway", "strings"),
        P("AdapterName", "string"),
    ],
    any_params=True,
)
def new_hnsnetwork(inv: Invocation) -> None:
    """What the hybrid overlay does when the node joins: an HNS network on the vNIC, whose
    vEthernet adapter takes over the host IP."""
    adapter = inv.get("AdapterName") or "Ethernet0"
    with inv.edit() as st:
        name = f"vEthernet ({adapter})"
        if name not in st.adapters:
            st.adapters.append(name)
    inv.out(PSObject("System.Management.Automation.PSCustomObject", {"ActivityId": str(uuid.uuid4()).upper(), "ID": str(uuid.uuid4()).upper(),
                                                                     "Name": inv.get("Name") or "OVNKubernetesHybridOverlayNetwork",
                                                                     "Type": inv.get("Type") or "Overlay"}, view="list"))  # fmt: skip


@cmdlet("Get-HnsNetwork", [])
def get_hnsnetwork(inv: Invocation) -> None:
    st = inv.state()
    for a in st.adapters:
        if a.lower().startswith("vethernet"):
            inv.out(PSObject("System.Management.Automation.PSCustomObject", {"Name": "OVNKubernetesHybridOverlayNetwork", "Type": "Overlay", "NetworkAdapterName": a}, view="list"))  # fmt: skip


# ---- OS identity, updates, capabilities, features -------------------------------------------------
@cmdlet(
    "Get-HotFix",
    [
        P("Id", "strings", 0, aliases=("HFID",)),
        P("Description", "strings"),
        P("ComputerName", "strings", aliases=("CN",)),
    ],
)
def get_hotfix(inv: Invocation) -> None:
    st = inv.state()
    name = st.computer_name
    fixes = st.hotfixes
    ids = inv.strings("Id")
    if ids:
        sel = []
        for i in ids:
            m = [h for h in fixes if h.hotfix_id.lower() == i.lower()]
            if not m:
                inv.error("Cannot find the requested hotfix on the 'localhost' computer. Verify the input and Run the command again.",
                          "GetHotFixNoEntriesFound", "ObjectNotFound", name, "ArgumentException")  # fmt: skip
            sel.extend(m)
        fixes = sel
    for h in fixes:
        inv.out(PSObject("System.Management.ManagementObject#root\\cimv2\\Win32_QuickFixEngineering",
                         {"Source": name, "Description": h.description, "HotFixID": h.hotfix_id, "InstalledBy": "NT AUTHORITY\\SYSTEM",
                          "InstalledOn": f"{h.installed_on} 12:00:00 AM" if h.installed_on else ""},
                         table=[("Source", 14), ("Description", 17), ("HotFixID", 14), ("InstalledBy", 21), ("InstalledOn", 0)]))  # fmt: skip


@cmdlet("Get-ComputerInfo", [P("Property", "strings", 0)], aliases=("gin",))
def get_computerinfo(inv: Invocation) -> None:
    st = inv.state()
    info = {
        "WindowsBuildLabEx": f"{st.build}.1.amd64fre.fe_release.210507-1500",
        "WindowsCurrentVersion": "6.3",
        "WindowsEditionId": st.edition_id,
        "WindowsInstallationType": "Server Core" if st.edition_id.endswith("Cor") else "Server",
        "WindowsProductName": st.product_name,
        "WindowsRegisteredOrganization": "",
        "WindowsRegisteredOwner": "Owner",
        "WindowsSystemRoot": "C:\\Windows",
        "WindowsVersion": "2009" if st.build >= 19042 else "1809",
        "OsName": "Microsoft " + st.product_name,
        "OsType": "WINNT",
        "OsVersion": f"10.0.{st.build}",
        "OsBuildNumber": str(st.build),
        "OsHotFixes": [
            PSObject(
                "Hotfix",
                {
                    "HotFixID": h.hotfix_id,
                    "Description": h.description,
                    "InstalledOn": h.installed_on,
                    "FixComments": "",
                },
                to_string=h.hotfix_id,
            )
            for h in st.hotfixes
        ],
        "OsArchitecture": "64-bit",
        "CsName": st.computer_name,
        "CsDomain": "WORKGROUP",
        "CsManufacturer": "VMware, Inc.",
        "CsModel": "VMware7,1",
        "CsNumberOfLogicalProcessors": 4,
        "TimeZone": "(UTC-05:00) Eastern Time (US & Canada)",
    }
    if st.display_version:
        info["OSDisplayVersion"] = st.display_version
    props = inv.strings("Property")
    if props:
        sel = {}
        for p in props:
            for k, v in info.items():
                if like(k, p):
                    sel[k] = v
        info = sel
    inv.out(PSObject("Microsoft.PowerShell.Commands.ComputerInfo", info, view="list"))


_CAP_INFO = {
    "openssh.server~~~~0.0.1.0": (
        "OpenSSH Server",
        "OpenSSH-based secure shell (SSH) server, for secure key management and access from remote machines.",
    ),
    "openssh.client~~~~0.0.1.0": (
        "OpenSSH Client",
        "OpenSSH-based secure shell (SSH) client, for secure key management and access to remote machines.",
    ),
}
_CAP_STATE = {
    "NotPresent": 0,
    "UninstallPending": 1,
    "Staged": 2,
    "Removed": 3,
    "Installed": 4,
    "InstallPending": 5,
}


@cmdlet("Get-WindowsCapability", [P("Online", "switch"), P("Name", "string"), P("Path", "string"), P("LimitAccess", "switch")],
        command_class="Microsoft.Dism.Commands.GetWindowsCapabilityCommand")  # fmt: skip
def get_windowscapability(inv: Invocation) -> None:
    if not inv.get("Online") and not inv.has("Path"):
        raise inv.fail("Parameter set cannot be resolved using the specified named parameters.", "AmbiguousParameterSet", "InvalidArgument", exception="ParameterBindingException")  # fmt: skip
    st = inv.state()
    name = inv.get("Name")
    for cap, state in sorted(st.capabilities.items()):
        if name and not like(cap, name):
            continue
        enum = PSEnum(
            "Microsoft.Dism.Commands.PackageFeatureState", state, _CAP_STATE.get(state, 0)
        )
        if name and not has_wildcard(name):
            dn, desc = _CAP_INFO.get(cap.lower(), (cap.split("~")[0], ""))
            inv.out(PSObject("Microsoft.Dism.Commands.CapabilityInfoObject", {"Name": cap, "State": enum, "DisplayName": dn, "Description": desc,
                                                                               "DownloadSize": 1290075, "InstallSize": 4207713}, view="list"))  # fmt: skip
        else:
            inv.out(
                PSObject(
                    "Microsoft.Dism.Commands.BasicCapabilityObject",
                    {"Name": cap, "State": enum},
                    view="list",
                )
            )


def _image_result() -> PSObject:
    return PSObject(
        "Microsoft.Dism.Commands.ImageObject",
        {"Path": "", "Online": True, "RestartNeeded": False},
        view="list",
    )


def spend(inv: Invocation, kind: str) -> None:
    """Let the work of `kind` take its time (the lab's timing profile, lab.guest.timing)."""
    from lab.guest.timing import spend_on

    spend_on(inv.disk, kind)


#: Where a Features-on-Demand ISO keeps its packages (Windows Server 2022 "Languages and Optional
#: Features" ISO); the lab's stand-in lists its capabilities in LAB_MEDIA.JSON.
FOD_DIR = "LanguagesAndOptionalFeatures"


def _fod_source_has(inv: Invocation, sources: list[str], capability: str) -> bool:
    """A -Source folder on a Features-on-Demand ISO that carries `capability`."""
    for src in sources:
        drive = ntpath.splitdrive(src)[0].rstrip(":").upper()
        iso = inv.interp.iso(drive) if len(drive) == 1 and drive != "C" else None
        info = iso.info() if iso is not None else None
        if not info or info.get("kind") != "features-on-demand":
            continue
        rest = ntpath.splitdrive(src)[1].strip("\\").lower()
        if rest not in ("", FOD_DIR.lower()):
            continue
        if any(c.lower() == capability.lower() for c in info.get("capabilities", [])):
            return True
    return False


@cmdlet("Add-WindowsCapability", [P("Online", "switch"), P("Name", "string", mandatory=True), P("Path", "string"), P("Source", "strings"),
                                  P("LimitAccess", "switch")], command_class="Microsoft.Dism.Commands.AddWindowsCapabilityCommand")  # fmt: skip
def add_windowscapability(inv: Invocation) -> None:
    if not inv.get("Online") and not inv.has("Path"):
        raise inv.fail("Parameter set cannot be resolved using the specified named parameters.", "AmbiguousParameterSet", "InvalidArgument", exception="ParameterBindingException")  # fmt: skip
    name = inv.get("Name") or ""
    st0 = inv.state()
    key0 = next((k for k in st0.capabilities if k.lower() == name.lower()), None)
    if key0 is not None and st0.capabilities[key0] != "Installed":
        # The payload comes from -Source (local media) or, unless -LimitAccess, Windows Update
        # (or WSUS) through WinHTTP. Offline both fail with DISM's real codes (docs/lab-fidelity.md).
        if _fod_source_has(inv, inv.strings("Source"), key0):
            spend(inv, "capability_local")
        elif inv.get("LimitAccess"):
            raise inv.fail("Add-WindowsCapability failed. Error code = 0x800f081f", "Microsoft.Dism.Commands.AddWindowsCapabilityCommand",
                           "NotSpecified", exception="COMException")  # fmt: skip
        elif not windows.internet_reachable(inv.disk):
            spend(inv, "command")
            raise inv.fail("Add-WindowsCapability failed. Error code = 0x800f0954", "Microsoft.Dism.Commands.AddWindowsCapabilityCommand",
                           "NotSpecified", exception="COMException")  # fmt: skip
        else:
            spend(inv, "capability")  # the Features-on-Demand download: minutes on real Windows
    with inv.edit() as st:
        key = next((k for k in st.capabilities if k.lower() == name.lower()), None)
        if key is None:
            raise inv.fail("Add-WindowsCapability failed. Error code = 0x800f0950", "Microsoft.Dism.Commands.AddWindowsCapabilityCommand",
                           "NotSpecified", exception="COMException")  # fmt: skip
        st.capabilities[key] = "Installed"
        if key.lower().startswith("openssh.server"):
            if st.service("sshd") is None:
                st.put_service(
                    Service(
                        "sshd",
                        "OpenSSH SSH Server",
                        STOPPED,
                        MANUAL,
                        "C:\\Windows\\System32\\OpenSSH\\sshd.exe",
                    )
                )
            if st.service("ssh-agent") is None:
                st.put_service(
                    Service(
                        "ssh-agent",
                        "OpenSSH Authentication Agent",
                        STOPPED,
                        DISABLED,
                        "C:\\Windows\\System32\\OpenSSH\\ssh-agent.exe",
                    )
                )
            if not any(r.name == "OpenSSH-Server-In-TCP" for r in st.firewall_rules):
                st.firewall_rules.append(FirewallRule("OpenSSH-Server-In-TCP", "OpenSSH SSH Server (sshd)", local_port=["22"], group="OpenSSH Server",
                                                      profile="Any"))  # fmt: skip
            exe = inv.disk.host_path("C:\\Windows\\System32\\OpenSSH")
            exe.mkdir(parents=True, exist_ok=True)
            for f in ("sshd.exe", "sftp-server.exe", "ssh-keygen.exe", "ssh-agent.exe"):
                (exe / f).write_bytes(b"MZ lab stand-in\n")
    inv.out(_image_result())


@cmdlet("Remove-WindowsCapability", [P("Online", "switch"), P("Name", "string", mandatory=True), P("Path", "string")],
        command_class="Microsoft.Dism.Commands.RemoveWindowsCapabilityCommand")  # fmt: skip
def remove_windowscapability(inv: Invocation) -> None:
    name = inv.get("Name") or ""
    with inv.edit() as st:
        key = next((k for k in st.capabilities if k.lower() == name.lower()), None)
        if key is None:
            raise inv.fail("Remove-WindowsCapability failed. Error code = 0x800f0950", "Microsoft.Dism.Commands.RemoveWindowsCapabilityCommand", "NotSpecified", exception="COMException")  # fmt: skip
        st.capabilities[key] = "NotPresent"
        if key.lower().startswith("openssh.server"):
            st.services.pop("sshd", None)
            st.firewall_rules = [r for r in st.firewall_rules if r.name != "OpenSSH-Server-In-TCP"]
    inv.out(_image_result())


_FEATURES = {
    "containers": ("Containers", "Containers"),
    "hyper-v": ("Hyper-V", "Hyper-V"),
    "web-server": ("Web-Server", "Web Server (IIS)"),
}


@cmdlet("Install-WindowsFeature", [P("Name", "strings", 0), P("IncludeManagementTools", "switch"), P("Restart", "switch"),
                                   P("IncludeAllSubFeature", "switch")], command_class="Microsoft.Windows.ServerManager.Commands.AddWindowsFeatureCommand",
        aliases=("Add-WindowsFeature",))  # fmt: skip
def install_windowsfeature(inv: Invocation) -> None:
    names = inv.strings("Name")
    results = []
    restart = False
    with inv.edit() as st:
        for n in names:
            if n.lower() not in _FEATURES:
                raise inv.fail(f"ArgumentNotValid: The role, role service, or feature name is not valid: '{n}'. The name was not found.",
                               "NameDoesNotExist", "InvalidArgument", n, "Exception")  # fmt: skip
            fname = _FEATURES[n.lower()][0]
            cur = windows.feature_state(st, fname)
            if cur in ("Installed", "InstallPending"):
                results.append((fname, False))
                continue
            st.features[fname] = f"InstallPending:{st.boot_count}"
            results.append((fname, True))
            restart = True
    inv.out(PSObject("Microsoft.Windows.ServerManager.Commands.FeatureOperationResult",
                     {"Success": True, "Restart Needed": "Yes" if restart else "No", "Exit Code": "SuccessRestartRequired" if restart else "NoChangeNeeded",
                      "Feature Result": [_FEATURES[f.lower()][1] for f, changed in results if changed]},
                     table=[("Success", 8), ("Restart Needed", 15), ("Exit Code", 15), ("Feature Result", 0)]))  # fmt: skip
    if restart:
        inv.warn("You must restart this server to finish the installation process.")
        if inv.get("Restart"):
            inv.interp.host.notify("restart")


@cmdlet(
    "Get-WindowsFeature",
    [P("Name", "strings", 0)],
    command_class="Microsoft.Windows.ServerManager.Commands.GetWindowsFeatureCommand",
)
def get_windowsfeature(inv: Invocation) -> None:
    st = inv.state()
    for _key, (fname, disp) in _FEATURES.items():
        if inv.has("Name") and not any(like(fname, n) for n in inv.strings("Name")):
            continue
        state = windows.feature_state(st, fname)
        inv.out(PSObject("Microsoft.Windows.ServerManager.Commands.Feature", {"Display Name": f"[{'X' if state == 'Installed' else ' '}] {disp}", "Name": fname,
                                                                              "Install State": "Available" if state == "Available" else state,
                                                                              "Installed": state == "Installed", "InstallState": state},
                         table=[("Display Name", 56), ("Name", 29), ("Install State", 0)]))  # fmt: skip


@cmdlet("Install-Module", [P("Name", "strings", 0), P("Repository", "strings"), P("Force", "switch"), P("RequiredVersion", "string"),
                           P("Scope", "string"), P("AllowClobber", "switch"), P("SkipPublisherCheck", "switch")],
        command_class="Install-Module")  # fmt: skip
def install_module(inv: Invocation) -> None:
    if not inv.get("Force"):
        raise inv.fail('Exception calling "ShouldContinue" with "2" argument(s): "Windows PowerShell is in NonInteractive mode. Read and Prompt functionality is not available."',
                       "InvalidOperationException", "NotSpecified", exception="MethodInvocationException")  # fmt: skip
    known = {
        "dockermsftprovider": ("DockerMsftProvider", "1.0.0.8"),
        "powershellget": ("PowerShellGet", "2.2.5"),
    }
    online = windows.internet_reachable(inv.disk)
    if not online:
        inv.warn("Unable to resolve package source 'https://www.powershellgallery.com/api/v2'.")
    for n in inv.strings("Name"):
        if n.lower() not in known or not online:
            inv.error(f"No match was found for the specified search criteria and module name '{n}'. Try Get-PSRepository to see all available registered module repositories.",
                      ["NoMatchFoundForCriteria", "Microsoft.PowerShell.PackageManagement.Cmdlets.InstallPackage"][0], "ObjectNotFound", n, "Exception")  # fmt: skip
            continue
        name, ver = known[n.lower()]
        with inv.edit() as st:
            st.packages["module:" + name] = ver
        inv.disk.host_path(f"C:\\Program Files\\WindowsPowerShell\\Modules\\{name}\\{ver}").mkdir(
            parents=True, exist_ok=True
        )


@cmdlet(
    "Install-PackageProvider",
    [P("Name", "strings", 0), P("MinimumVersion", "string"), P("Force", "switch")],
    command_class="Install-PackageProvider",
)
def install_packageprovider(inv: Invocation) -> None:
    if not windows.internet_reachable(inv.disk):
        inv.warn(
            "Unable to download from URI 'https://go.microsoft.com/fwlink/?LinkID=627338&clcid=0x409' to ''."
        )
        inv.warn(
            "Unable to download the list of available providers. Check your internet connection."
        )
        for n in inv.strings("Name"):
            inv.error(f"No match was found for the specified search criteria for the provider '{n}'. The package provider requires 'PackageManagement' and 'Provider' tags. Please check if the specified package has the tags.",
                      "NoMatchFoundForProvider,Microsoft.PowerShell.PackageManagement.Cmdlets.InstallPackageProvider", "InvalidArgument", n, "Exception")  # fmt: skip
        return
    for n in inv.strings("Name"):
        inv.out(PSObject("PackageProvider", {"Name": n, "Version": "2.8.5.208", "Source": "https://onegetcdn.azureedge.net/providers/Microsoft.PackageManagement.NuGetProvider-2.8.5.208.dll", "Summary": "NuGet provider for the OneGet meta-package manager"}))  # fmt: skip


@cmdlet("Install-Package", [P("Name", "strings", 0), P("ProviderName", "string", aliases=("Provider",)), P("Force", "switch"),
                            P("RequiredVersion", "string"), P("Source", "strings")], command_class="Microsoft.PowerShell.PackageManagement.Cmdlets.InstallPackage")  # fmt: skip
def install_package(inv: Invocation) -> None:
    st = inv.state()
    prov = inv.get("ProviderName") or ""
    if prov.lower() == "dockermsftprovider" and "module:DockerMsftProvider" not in st.packages:
        raise inv.fail(f"Unable to find package provider '{prov}'. It may not be imported yet. Try 'Get-PackageProvider -ListAvailable'.",
                       "UnknownProviderFromActivatedSession", "InvalidArgument", prov, "Exception")  # fmt: skip
    for n in inv.strings("Name"):
        if n.lower() != "docker" or prov.lower() != "dockermsftprovider":
            inv.error(f"No match was found for the specified search criteria and package name '{n}'. Try Get-PackageSource to see all available registered package sources.",
                      "NoMatchFoundForCriteria", "ObjectNotFound", n, "Exception")  # fmt: skip
            continue
        if not inv.get("Force"):
            raise inv.fail('Exception calling "ShouldContinue" with "2" argument(s): "Windows PowerShell is in NonInteractive mode. Read and Prompt functionality is not available."',
                           "InvalidOperationException", "NotSpecified", exception="MethodInvocationException")  # fmt: skip
        if not windows.internet_reachable(inv.disk):
            # DockerMsftProvider downloads its index (go.microsoft.com/fwlink/?LinkID=825636)
            # before anything else and then reads the file it could not write.
            raise inv.fail("Cannot find path 'C:\\Users\\Administrator\\AppData\\Local\\Temp\\DockerMsftProvider\\DockerDefault_DockerSearchIndex.json' because it does not exist.",
                           "PathNotFound,Microsoft.PowerShell.Commands.GetContentCommand", "ObjectNotFound", exception="ItemNotFoundException")  # fmt: skip
        spend(inv, "psgallery")
        with inv.edit() as st2:
            st2.packages["docker"] = "20.10.9"
            st2.container_runtime = "docker"
            if st2.service("docker") is None:
                st2.put_service(
                    Service(
                        "docker",
                        "Docker Engine",
                        STOPPED,
                        AUTOMATIC,
                        '"C:\\Program Files\\Docker\\dockerd.exe" --run-service',
                    )
                )
        d = inv.disk.host_path("C:\\Program Files\\Docker")
        d.mkdir(parents=True, exist_ok=True)
        for f in ("docker.exe", "dockerd.exe"):
            (d / f).write_bytes(b"MZ lab stand-in\n")
        inv.out(PSObject("Microsoft.PackageManagement.Packaging.SoftwareIdentity", {"Name": "Docker", "Version": "20.10.9", "Source": "DockerDefault",
                                                                                     "Summary": "Contains Docker EE for use with Windows Server."},
                         table=[("Name", 31), ("Version", 17), ("Source", 17), ("Summary", 0)]))  # fmt: skip
        if windows.feature_state(st, "Containers") != "Installed":
            inv.warn(
                "A restart is required to enable the containers feature. Please restart your machine."
            )


@cmdlet(
    "Get-Package",
    [P("Name", "strings", 0), P("ProviderName", "string")],
    command_class="Microsoft.PowerShell.PackageManagement.Cmdlets.GetPackage",
)
def get_package(inv: Invocation) -> None:
    st = inv.state()
    pk = {k: v for k, v in st.packages.items() if not k.startswith("module:")}
    names = inv.strings("Name")
    for n in names:
        if not any(like(k, n) for k in pk):
            inv.error(
                f"No package found for '{n}'.", "NoMatchFound", "ObjectNotFound", n, "Exception"
            )
    for k, v in pk.items():
        if names and not any(like(k, n) for n in names):
            continue
        inv.out(PSObject("Microsoft.PackageManagement.Packaging.SoftwareIdentity", {"Name": k.capitalize(), "Version": v, "Source": "DockerDefault", "ProviderName": "DockerMsftProvider"}))  # fmt: skip


@cmdlet("Get-Module", [P("Name", "strings", 0), P("ListAvailable", "switch")])
def get_module(inv: Invocation) -> None:
    st = inv.state()
    for k, v in st.packages.items():
        if k.startswith("module:"):
            n = k.split(":", 1)[1]
            if inv.has("Name") and not any(like(n, x) for x in inv.strings("Name")):
                continue
            inv.out(
                PSObject(
                    "System.Management.Automation.PSModuleInfo",
                    {"ModuleType": "Script", "Version": v, "Name": n},
                )
            )


# ---- computer -----------------------------------------------------------------------------------
@cmdlet("Rename-Computer", [P("NewName", "string", 0, mandatory=True), P("Force", "switch"), P("Restart", "switch"), P("LocalCredential", "any"),
                            P("DomainCredential", "any"), P("ComputerName", "string"), P("PassThru", "switch")])  # fmt: skip
def rename_computer(inv: Invocation) -> None:
    new = inv.get("NewName") or ""
    st = inv.state()
    import re as _re

    if len(new) > 15 or not _re.match(r"^[A-Za-z0-9-]+$", new) or new.isdigit():
        raise inv.fail(f"Skip computer '{st.computer_name}' with new name '{new}' because the new name is not valid. The new computer name entered is not properly formatted. "
                       "Standard names may contain letters (a-z, A-Z), numbers (0-9), and hyphens (-), but no spaces or periods (.). The name may not consist entirely of digits, "
                       "and may not be longer than 63 characters.", "InvalidNewName", "InvalidArgument", new, "InvalidOperationException")  # fmt: skip
    if new.lower() == st.computer_name.lower() and not st.pending_computer_name:
        raise inv.fail(f"Skip computer '{st.computer_name}' with new name '{new}' because the new name is the same as the current name.",
                       "NewNameIsOldName", "InvalidArgument", new, "InvalidOperationException")  # fmt: skip
    with inv.edit() as st2:
        st2.pending_computer_name = new
        st2.log.append(f"Rename-Computer: {st2.computer_name} -> {new} after restart")
    if inv.get("Restart"):
        inv.interp.host.notify("restart")
    else:
        inv.warn(f"The changes will take effect after you restart the computer {st.computer_name}.")


@cmdlet(
    "Restart-Computer",
    [P("Force", "switch"), P("ComputerName", "strings"), P("Wait", "switch"), P("Timeout", "int")],
)
def restart_computer(inv: Invocation) -> None:
    inv.interp.host.notify("restart")


@cmdlet("Stop-Computer", [P("Force", "switch"), P("ComputerName", "strings")])
def stop_computer(inv: Invocation) -> None:
    inv.interp.host.notify("shutdown")


@cmdlet("Get-Acl", [P("Path", "strings", 0)])
def get_acl(inv: Invocation) -> None:
    st = inv.state()
    for p in inv.strings("Path"):
        matches = expand(inv.interp, p)
        if not matches:
            _not_found(inv, norm_path(inv.interp, p))
        for wp in matches:
            aces = windows.effective_acl(st, wp)
            access = "\n".join(_ace_access_text(a) for a in aces)
            inv.out(PSObject("System.Security.AccessControl.FileSecurity", {"Path": wp, "Owner": "BUILTIN\\Administrators", "Access": access},
                             table=[("Path", 0), ("Owner", 0), ("Access", 0)]))  # fmt: skip


def _ace_access_text(ace: str) -> str:
    who, rights = ace.rsplit(":", 1)
    r = (
        "FullControl"
        if "(F)" in rights
        else "Modify, Synchronize"
        if "(M)" in rights
        else "ReadAndExecute, Synchronize"
    )
    return f"{who} Allow  {r}"


@cmdlet("Start-Process", [P("FilePath", "string", 0), P("ArgumentList", "strings", 1, aliases=("Args",)), P("Wait", "switch"), P("PassThru", "switch"),
                          P("NoNewWindow", "switch"), P("Verb", "string"), P("WindowStyle", "string"), P("WorkingDirectory", "string"),
                          P("RedirectStandardOutput", "string"), P("RedirectStandardError", "string")], aliases=("saps", "start"))  # fmt: skip
def start_process(inv: Invocation) -> None:
    from lab.guest.emulator import natives

    args: list[str] = []
    for a in inv.strings("ArgumentList"):
        args.extend(natives.split_command_line(a) if len(inv.strings("ArgumentList")) == 1 else [a])
    code = natives.run_program(
        inv.interp, inv.get("FilePath", ""), args, inv.node, background=not inv.get("Wait")
    )
    if code is None:
        raise inv.fail("This command cannot be run due to the error: The system cannot find the file specified.", "InvalidOperationException",
                       "InvalidOperation", exception="InvalidOperationException")  # fmt: skip
    if inv.get("PassThru"):
        inv.out(PSObject("System.Diagnostics.Process", {"Id": 4242, "ProcessName": ntpath.splitext(ntpath.basename(inv.get("FilePath", "")))[0],
                                                        "ExitCode": code, "HasExited": True}, view="list"))  # fmt: skip


# ---- registry writes (the keys automation creates: Windows Update policy) ---------------------------
_WRITABLE = "hklm:\\software\\policies\\"


def _reg_key(path: str) -> str:
    key = path.replace("/", "\\").rstrip("\\").lower()
    return key.replace("hkey_local_machine", "hklm:").replace("hklm:\\\\", "hklm:\\")


def _new_registry_key(inv: Invocation, path: str) -> None:
    key = _reg_key(path)
    if not key.startswith(_WRITABLE):
        raise inv.fail("Requested registry access is not allowed.", "System.Security.SecurityException,Microsoft.PowerShell.Commands.NewItemCommand",
                       "PermissionDenied", path, "SecurityException")  # fmt: skip
    st = inv.state()
    parent = key.rsplit("\\", 1)[0]
    known = parent in st.registry or parent == _WRITABLE.rstrip("\\") or parent.count("\\") <= 4
    if not known and not inv.get("Force"):
        _not_found(inv, path)
        return
    if key in st.registry and not inv.get("Force"):
        inv.error("A key at this path already exists.", "System.IO.IOException,Microsoft.PowerShell.Commands.NewItemCommand",
                  "ResourceExists", path, "IOException")  # fmt: skip
        return
    with inv.edit() as st2:
        st2.registry.setdefault(key, {})
        if inv.get("Force"):
            while parent.startswith(_WRITABLE) and parent not in st2.registry:
                st2.registry[parent] = {}
                parent = parent.rsplit("\\", 1)[0]
    inv.out(
        PSObject(
            "Microsoft.Win32.RegistryKey",
            {"Name": key.replace("hklm:", "HKEY_LOCAL_MACHINE")},
            view="list",
        )
    )


@cmdlet("New-ItemProperty", [P("Path", "strings", 0), P("Name", "string", 1, mandatory=True), P("Value", "any", 2),
                             P("PropertyType", "string", aliases=("Type",)), P("Force", "switch")])  # fmt: skip
def new_itemproperty(inv: Invocation) -> None:
    _set_registry_value(inv, create=True)


@cmdlet("Set-ItemProperty", [P("Path", "strings", 0), P("Name", "string", 1, mandatory=True), P("Value", "any", 2),
                             P("Type", "string"), P("Force", "switch")], aliases=("sp",))  # fmt: skip
def set_itemproperty(inv: Invocation) -> None:
    _set_registry_value(inv, create=False)


def _set_registry_value(inv: Invocation, create: bool) -> None:
    name = inv.get("Name") or ""
    kind = (inv.get("PropertyType") or inv.get("Type") or "String").lower()
    value = inv.get("Value")
    if kind == "dword":
        value = int(to_number(value))
    elif kind not in ("string", "expandstring"):
        raise inv.fail(f"Cannot bind parameter 'PropertyType': '{kind}' is not supported by the lab.", "CannotConvertArgument",
                       "InvalidArgument", exception="ParameterBindingException")  # fmt: skip
    else:
        value = to_text(value)
    for p in inv.strings("Path"):
        key = _reg_key(p)
        st = inv.state()
        if key not in st.registry:
            _not_found(
                inv, p.replace("HKLM:", "HKEY_LOCAL_MACHINE").replace("hklm:", "HKEY_LOCAL_MACHINE")
            )
            continue
        if create and name in st.registry[key] and not inv.get("Force"):
            inv.error("The property already exists.", "System.IO.IOException,Microsoft.PowerShell.Commands.NewItemPropertyCommand",
                      "ResourceExists", p, "IOException")  # fmt: skip
            continue
        with inv.edit() as st2:
            st2.registry[key][name] = value


@cmdlet(
    "New-Object",
    [
        P("TypeName", "string", 0),
        P("ComObject", "string"),
        P("ArgumentList", "any", 1),
        P("Property", "any"),
    ],
)
def new_object(inv: Invocation) -> None:
    from lab.guest.emulator import wua

    prog = inv.get("ComObject")
    if prog:
        obj = wua.new_com_object(prog)
        if obj is None:
            raise inv.fail("Retrieving the COM class factory for component with CLSID {00000000-0000-0000-0000-000000000000} failed due to the "
                           "following error: 80040154 Class not registered (Exception from HRESULT: 0x80040154 (REGDB_E_CLASSNOTREG)).",
                           "NoCOMClassIdentified", "ResourceUnavailable", exception="COMException")  # fmt: skip
        inv.out(obj)
        return
    tn = (inv.get("TypeName") or "").lower()
    if tn in ("psobject", "pscustomobject", "system.management.automation.psobject"):
        props = inv.get("Property")
        inv.out(
            PSObject(
                "System.Management.Automation.PSCustomObject",
                dict(props) if isinstance(props, dict) else {},
            )
        )
        return
    raise inv.fail(f"Cannot find type [{inv.get('TypeName')}]: verify that the assembly containing this type is loaded.", "TypeNotFound",
                   "InvalidType", exception="PSArgumentException")  # fmt: skip
