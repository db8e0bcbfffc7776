""".NET methods and static members that provisioning scripts call on strings, arrays and types.

Only the handful seen in real Windows node scripts (`.Trim()`, `.Split()`, `[Environment]::OSVersion`,
`[IO.File]::WriteAllText`); anything else fails with PowerShell's "Method invocation failed" error
rather than returning something made up.
"""

from __future__ import annotations

from typing import Any

from lab.guest.emulator import parser as ast
from lab.guest.emulator.interp import Interp, StatementError, TypeValue, as_list, to_number
from lab.guest.emulator.objects import PSEnum, PSObject, to_text


def _fail(interp: Interp, node: ast.Node, type_name: str, name: str) -> StatementError:
    return StatementError(
        interp.record_for(
            node,
            f"Method invocation failed because [{type_name}] does not contain a method "
            f"named '{name}'.",
            "MethodNotFound",
            "InvalidOperation",
            "",
            "RuntimeException",
        )
    )


def invoke_method(interp: Interp, node: ast.Invoke) -> Any:
    obj = interp.eval(node.obj)
    args = [interp.eval(a) for a in node.args]
    name = node.name.lower()
    if node.static:
        return static_call(interp, obj, node.name, args, node)
    if obj is None:
        raise StatementError(
            interp.record_for(
                node,
                "You cannot call a method on a null-valued expression.",
                "InvokeMethodOnNull",
                "InvalidOperation",
            )
        )
    if hasattr(obj, "com_call"):  # a COM object (lab.guest.emulator.wua)
        return obj.com_call(interp, node.name, args, node)
    if name == "tostring":
        return to_text(obj)
    if name == "gettype":
        tn = "String" if isinstance(obj, str) else getattr(obj, "type_name", type(obj).__name__)
        return PSObject("System.RuntimeType", {"Name": tn, "FullName": tn}, to_string=tn)
    if isinstance(obj, str):
        s = obj
        a = [to_text(x) for x in args]
        table = {
            "trim": lambda: s.strip(a[0]) if a else s.strip(),
            "trimend": lambda: s.rstrip(a[0] if a else None),
            "trimstart": lambda: s.lstrip(a[0] if a else None),
            "tolower": lambda: s.lower(),
            "toupper": lambda: s.upper(),
            "contains": lambda: a[0] in s,
            "startswith": lambda: s.startswith(a[0]),
            "endswith": lambda: s.endswith(a[0]),
            "replace": lambda: s.replace(a[0], a[1]),
            "split": lambda: _split(s, a),
            "substring": lambda: (
                s[int(to_number(args[0])) :][: int(to_number(args[1]))]
                if len(args) > 1
                else s[int(to_number(args[0])) :]
            ),
            "indexof": lambda: s.find(a[0]),
            "padleft": lambda: s.rjust(int(to_number(args[0]))),
            "padright": lambda: s.ljust(int(to_number(args[0]))),
            "equals": lambda: s == a[0],
        }
        if name in table:
            return table[name]()
        raise _fail(interp, node, "System.String", node.name)
    if isinstance(obj, list):
        if name == "contains":
            return any(to_text(x).lower() == to_text(args[0]).lower() for x in obj)
        raise _fail(interp, node, "System.Object[]", node.name)
    if isinstance(obj, PSEnum) and name == "equals":
        return to_text(args[0]).lower() == obj.name.lower()
    tn = getattr(obj, "type_name", "System.Object")
    raise _fail(interp, node, tn, node.name)


def _split(s: str, a: list[str]) -> list[str]:
    if not a:
        return s.split()
    seps = a[0]
    out = [""]
    for ch in s:
        if ch in seps:
            out.append("")
        else:
            out[-1] += ch
    return out


def static_member(interp: Interp, obj: Any, name: str, node: ast.Node) -> Any:
    tn = to_text(obj).lower().removeprefix("system.") if isinstance(obj, TypeValue) else ""
    low = name.lower()
    if tn == "environment":
        st = interp.read_state()
        if low == "osversion":
            ver = f"10.0.{st.build}.0"
            return PSObject("System.OperatingSystem", {"Platform": "Win32NT", "ServicePack": "",
                            "Version": ver, "VersionString": f"Microsoft Windows NT {ver}"},
                            to_string=f"Microsoft Windows NT {ver}")  # fmt: skip
        if low == "machinename":
            return st.computer_name
        if low == "newline":
            return "\r\n"
        if low == "is64bitoperatingsystem":
            return True
    if tn in ("int32", "int") and low == "maxvalue":
        return 2147483647
    raise StatementError(
        interp.record_for(
            node,
            f"Unable to find type [{obj}].",
            "TypeNotFound",
            "InvalidOperation",
            to_text(obj),
            "RuntimeException",
        )
    )


def static_call(interp: Interp, obj: Any, name: str, args: list[Any], node: ast.Node) -> Any:
    tn = to_text(obj).lower().removeprefix("system.") if isinstance(obj, TypeValue) else ""
    low = name.lower()
    from lab.guest.emulator import cmdlets

    if tn == "io.file" and low in ("writealltext", "appendalltext", "writealllines"):
        text = (
            to_text(args[1])
            if low != "writealllines"
            else "\r\n".join(to_text(x) for x in as_list(args[1])) + "\r\n"
        )
        cmdlets.write_text_file(
            interp, node, to_text(args[0]), text, "utf8nobom", append=low.startswith("append")
        )
        return None
    if tn == "io.file" and low in ("readalltext", "exists"):
        if low == "exists":
            return cmdlets.path_exists(interp, to_text(args[0]))
        return cmdlets.read_text_file(interp, node, to_text(args[0]))
    if tn in ("net.dns", "dns") and low == "gethostname":
        return interp.read_state().computer_name
    if tn == "guid" and low == "newguid":
        import uuid

        return str(uuid.uuid4())
    raise StatementError(
        interp.record_for(
            node,
            f"Method invocation failed because [{obj}] does not contain a method named '{name}'.",
            "MethodNotFound",
            "InvalidOperation",
        )
    )
