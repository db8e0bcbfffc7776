"""PowerShell values as the emulator models them, and how Windows PowerShell 5.1 prints them.

Automation parses what PowerShell prints: default tables and lists, `Format-List`, and above all
`ConvertTo-Json`, whose 5.1 flavour writes enums as integers (`"Status": 4`), indents nested values
under their key and escapes `'<>&` as `\\u0027`-style sequences. This module reproduces those shapes so
a parser written against real Windows works against the twin, and one written against a guess fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PSEnum:
    """A .NET enum value: prints as its name, serializes to JSON as its number."""

    type_name: str
    name: str
    value: int

    def __str__(self) -> str:
        return self.name


SERVICE_STATUS = {"Stopped": 1, "StartPending": 2, "StopPending": 3, "Running": 4, "Paused": 7}
SERVICE_START = {"Boot": 0, "System": 1, "Automatic": 2, "Manual": 3, "Disabled": 4}


def service_status(name: str) -> PSEnum:
    return PSEnum("System.ServiceProcess.ServiceControllerStatus", name, SERVICE_STATUS[name])


def service_start(name: str) -> PSEnum:
    return PSEnum("System.ServiceProcess.ServiceStartMode", name, SERVICE_START[name])


class PSObject:
    """An object with ordered, case-insensitively addressed properties and a default view."""

    def __init__(
        self,
        type_name: str,
        props: dict[str, Any],
        table: list[tuple[str, int]] | None = None,
        view: str | None = None,
        to_string: str | None = None,
    ) -> None:
        self.type_name = type_name
        self.props = dict(props)
        # Default table columns with fixed widths (0 = computed), as the type's format.ps1xml has.
        self.table = table
        self.view = view  # "table" | "list" | None (decided by the property count)
        self._str = to_string

    def has(self, name: str) -> bool:
        return any(k.lower() == name.lower() for k in self.props)

    def get(self, name: str) -> Any:
        for k, v in self.props.items():
            if k.lower() == name.lower():
                return v
        return None

    def key(self, name: str) -> str | None:
        for k in self.props:
            if k.lower() == name.lower():
                return k
        return None

    def set(self, name: str, value: Any) -> None:
        self.props[self.key(name) or name] = value

    def __str__(self) -> str:
        if self._str is not None:
            return self._str
        if self.type_name == "System.Management.Automation.PSCustomObject":
            inner = "; ".join(f"{k}={display(v)}" for k, v in self.props.items())
            return "@{" + inner + "}"
        return self.type_name


class PSHash(dict[str, Any]):
    """A hashtable: keys compared case-insensitively, insertion order kept for display."""

    def _k(self, key: str) -> str:
        for k in self:
            if isinstance(k, str) and k.lower() == str(key).lower():
                return k
        return key

    def lookup(self, key: str) -> Any:
        return self.get(self._k(key))

    def put(self, key: str, value: Any) -> None:
        self[self._k(key)] = value


def display(v: Any) -> str:
    """A value as a table or list cell shows it."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, float):
        return repr(v).rstrip("0").rstrip(".") if v != int(v) else str(int(v))
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(display(x) for x in v) + "}"
    if isinstance(v, PSHash):
        return "System.Collections.Hashtable"
    return str(v)


def to_text(v: Any) -> str:
    """A value converted to string as PowerShell does in "$v" and -join (arrays space-joined)."""
    if isinstance(v, (list, tuple)):
        return " ".join(to_text(x) for x in v)
    if isinstance(v, bool):
        return "True" if v else "False"
    if v is None:
        return ""
    return display(v)


# ---- Out-Default ---------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def format_table(objs: list[Any], columns: list[tuple[str, int]] | None = None) -> str:
    if not objs:
        return ""
    if columns is None:
        first = objs[0]
        if isinstance(first, PSObject):
            columns = first.table or [(k, 0) for k in first.props]
        elif isinstance(first, PSHash):
            rows = [PSObject("", {"Name": k, "Value": v}) for o in objs for k, v in o.items()]
            return format_table(rows, [("Name", 0), ("Value", 0)])
        else:
            columns = [("", 0)]
    cells = [[display(_prop(o, name)) for name, _ in columns] for o in objs]
    numeric = [
        all(_is_number(_prop(o, name)) or _prop(o, name) is None for o in objs)
        for name, _ in columns
    ]
    widths = []
    for c, (name, fixed) in enumerate(columns):
        w = fixed - 1 if fixed else max([len(name)] + [len(r[c]) for r in cells])
        widths.append(w)
    lines = ["", _row([n for n, _ in columns], widths, numeric, header=True)]
    lines.append(_row(["-" * len(n) for n, _ in columns], widths, numeric, header=True))
    for r in cells:
        lines.append(_row(r, widths, numeric, header=False))
    return "\n".join(lines) + "\n\n"


def _row(values: list[str], widths: list[int], numeric: list[bool], header: bool) -> str:
    out = []
    last = len(values) - 1
    for i, (v, w) in enumerate(zip(values, widths, strict=True)):
        if len(v) > w and i != last:
            v = v[: max(w - 3, 0)] + "..."
        if numeric[i]:
            out.append(v.rjust(w))
        elif i == last:
            out.append(v)
        else:
            out.append(v.ljust(w))
    return " ".join(out).rstrip()


def format_list(objs: list[Any], props: list[str] | None = None) -> str:
    blocks = []
    for o in objs:
        if isinstance(o, PSObject):
            names = props or list(o.props)
            pairs = [(o.key(n) or n, _prop(o, n)) for n in names]
        elif isinstance(o, PSHash):
            pairs = [(str(k), v) for k, v in o.items()]
        else:
            blocks.append(display(o))
            continue
        w = max((len(k) for k, _ in pairs), default=0)
        blocks.append("\n".join(f"{k.ljust(w)} : {display(v)}".rstrip() for k, v in pairs))
    return "\n" + "\n\n".join(blocks) + "\n\n\n" if blocks else ""


def _prop(o: Any, name: str) -> Any:
    if isinstance(o, PSObject):
        return o.get(name)
    if isinstance(o, PSHash):
        return o.lookup(name)
    return o if name == "" else None


def _shape(o: Any) -> tuple[str, ...]:
    if isinstance(o, PSObject):
        return (o.type_name, *o.props.keys())
    if isinstance(o, PSHash):
        return ("hashtable",)
    return ("scalar",)


def out_default(objs: Iterable[Any]) -> str:
    """Text for objects reaching the end of a pipeline, grouped by shape as Out-Default does."""
    out: list[str] = []
    group: list[Any] = []

    def flush() -> None:
        if not group:
            return
        first = group[0]
        if isinstance(first, PSObject):
            view = first.view or ("table" if first.table or len(first.props) <= 4 else "list")
            out.append(format_table(group) if view == "table" else format_list(group))
        elif isinstance(first, PSHash):
            out.append(format_table(group))
        group.clear()

    for o in objs:
        if o is None:
            continue
        if isinstance(o, FormattedText):
            flush()
            out.append(o.text)
        elif isinstance(o, (PSObject, PSHash)):
            if group and _shape(group[0]) != _shape(o):
                flush()
            group.append(o)
        else:
            flush()
            out.append(display(o) + "\n")
    flush()
    return "".join(out)


@dataclass
class FormattedText:
    """Output of Format-Table/Format-List: already text, printed as is."""

    text: str

    def __str__(self) -> str:
        return self.text


# ---- ConvertTo-Json (Windows PowerShell 5.1) -------------------------------------------------
def _json_str(s: str) -> str:
    text = json.dumps(s, ensure_ascii=False)
    for ch, esc in (("'", "\\u0027"), ("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text


def _json_scalar(v: Any) -> str | None:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, PSEnum):
        return str(v.value)
    if _is_number(v):
        return display(v)
    if isinstance(v, str):
        return _json_str(v)
    return None


def _json_items(v: Any) -> list[tuple[str, Any]] | None:
    if isinstance(v, PSObject):
        return list(v.props.items())
    if isinstance(v, PSHash):
        return [(str(k), x) for k, x in v.items()]
    return None


def to_json(v: Any, depth: int = 2, compress: bool = False) -> str:
    if compress:
        return _json_compact(v, depth)
    return _json_pretty(v, depth, 0)


def _json_compact(v: Any, depth: int) -> str:
    s = _json_scalar(v)
    if s is not None:
        return s
    if isinstance(v, (list, tuple)):
        if depth < 0:
            return _json_str(" ".join(display(x) for x in v))
        return "[" + ",".join(_json_compact(x, depth - 1) for x in v) + "]"
    items = _json_items(v)
    if items is None or depth < 0:
        return _json_str(
            display(v) if not isinstance(v, PSHash) else "System.Collections.Hashtable"
        )
    return "{" + ",".join(f"{_json_str(k)}:{_json_compact(x, depth - 1)}" for k, x in items) + "}"


def _json_pretty(v: Any, depth: int, col: int) -> str:
    s = _json_scalar(v)
    if s is not None:
        return s
    pad = " " * col
    if isinstance(v, (list, tuple)):
        if depth < 0:
            return _json_str(" ".join(display(x) for x in v))
        if not v:
            return "[\n\n" + pad + "]"
        inner = [" " * (col + 4) + _json_pretty(x, depth - 1, col + 4) for x in v]
        return "[\n" + ",\n".join(inner) + "\n" + pad + "]"
    items = _json_items(v)
    if items is None or depth < 0:
        return _json_str(
            display(v) if not isinstance(v, PSHash) else "System.Collections.Hashtable"
        )
    if not items:
        return "{\n\n" + pad + "}"
    lines = []
    for k, x in items:
        head = " " * (col + 4) + _json_str(k) + ":  "
        lines.append(head + _json_pretty(x, depth - 1, len(head)))
    return "{\n" + ",\n".join(lines) + "\n" + pad + "}"
