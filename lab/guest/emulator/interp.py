"""The evaluator: runs parsed PowerShell against a guest's disk, with PowerShell's error semantics.

What matters for automation talking to a Windows guest is not the breadth of the language but how it
fails: non-terminating errors that let the next statement run, statement-terminating errors (unknown
command, bad parameter), `$ErrorActionPreference = 'Stop'` and `try/catch`, `$?`, `$LASTEXITCODE`, and
the exit code `powershell -Command` returns. Those rules live here; the commands live in
`cmdlets.py` and `natives.py`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.guest.emulator import parser as ast
from lab.guest.emulator.objects import (
    FormattedText,
    PSEnum,
    PSHash,
    PSObject,
    display,
    out_default,
    to_text,
)
from lab.guest.state import GuestDisk, GuestState

if TYPE_CHECKING:
    from lab.guest.emulator import GuestHost


# ---- errors -------------------------------------------------------------------------------------
@dataclass
class ErrorRecord:
    message: str
    error_id: str  # the part before ",<command class>" in FullyQualifiedErrorId
    category: str = "NotSpecified"
    target: str = ""
    target_type: str = "String"
    exception: str = "RuntimeException"
    command: str = ""  # "Get-Service" → "Get-Service : message" and "[Get-Service]"
    command_class: str = ""  # "Microsoft.PowerShell.Commands.GetServiceCommand"
    pos: int = 0
    end: int = 0
    source: str = ""
    script_name: str = ""
    parse_error: bool = False
    activity: str | None = None  # "[X]" in CategoryInfo; defaults to the command
    hresult: int = -2146233087  # Exception.HResult (COR_E_EXCEPTION unless a COM error says)

    def __str__(self) -> str:
        return self.message

    @property
    def fqid(self) -> str:
        if self.command_class:
            return f"{self.error_id},{self.command_class}"
        return self.error_id

    def render(self) -> str:
        """Windows PowerShell 5.1's NormalView of an error record."""
        lines: list[str] = []
        if not self.parse_error:
            lines.append(f"{self.command} : {self.message}" if self.command else self.message)
        src = self.source
        line_no = src.count("\n", 0, self.pos) + 1
        line_start = src.rfind("\n", 0, self.pos) + 1
        line_end = src.find("\n", self.pos)
        if line_end < 0:
            line_end = len(src)
        text = src[line_start:line_end].rstrip("\r")
        col = self.pos - line_start
        where = self.script_name or "line"
        lines.append(f"At {where}:{line_no} char:{col + 1}")
        lines.append(f"+ {text}")
        width = max(1, min(self.end, line_end) - self.pos)
        lines.append("+ " + " " * col + "~" * width)
        if self.parse_error:
            lines.append(self.message)
        target = f"{self.target}:{self.target_type}" if self.target else ":"
        act = self.command if self.activity is None else self.activity
        activity = f"[{act}]"
        lines.append(
            f"    + CategoryInfo          : {self.category}: ({target}) {activity}, {self.exception}"
        )
        lines.append(f"    + FullyQualifiedErrorId : {self.fqid}")
        lines.append(" ")
        return "\n".join(lines) + "\n"


class StatementError(Exception):
    """Ends the current statement (unknown command, parameter binding error, -ErrorAction Stop)."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(record.message)
        self.record = record


class ScriptTerminating(Exception):
    """Ends the whole script unless a try/catch handles it (throw; errors under Stop)."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(record.message)
        self.record = record


class ExitScript(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class ReturnFlow(Exception):
    pass


# ---- parameters -------------------------------------------------------------------------------
@dataclass
class Param:
    name: str
    kind: str = "string"  # string | strings | int | switch | any | bool | scriptblock
    position: int | None = None
    aliases: tuple[str, ...] = ()
    mandatory: bool = False
    pipeline: bool = False  # binds pipeline input by value


COMMON = [
    Param("ErrorAction", aliases=("ea",)),
    Param("WarningAction", aliases=("wa",)),
    Param("InformationAction", aliases=("infa",)),
    Param("ErrorVariable", aliases=("ev",)),
    Param("WarningVariable", aliases=("wv",)),
    Param("OutVariable", aliases=("ov",)),
    Param("OutBuffer", aliases=("ob",)),
    Param("PipelineVariable", aliases=("pv",)),
    Param("Verbose", "switch", aliases=("vb",)),
    Param("Debug", "switch", aliases=("db",)),
    Param("WhatIf", "switch", aliases=("wi",)),
    Param("Confirm", "switch", aliases=("cf",)),
]

_TYPE_NAMES = {
    "string": "System.String",
    "strings": "System.String[]",
    "int": "System.Int32",
    "any": "System.Object",
    "bool": "System.Boolean",
    "scriptblock": "System.Management.Automation.ScriptBlock",
}


@dataclass
class CmdletDef:
    name: str
    func: Callable[[Invocation], None]
    params: list[Param]
    command_class: str
    aliases: tuple[str, ...] = ()
    any_params: bool = False  # accept unknown named parameters (New-HnsNetwork's many options)


@dataclass
class Invocation:
    """One cmdlet call: bound arguments, pipeline input, and the ways to answer."""

    interp: Interp
    cmd: CmdletDef
    args: dict[str, Any]
    input: list[Any]
    node: ast.Node
    output: list[Any] = field(default_factory=list)
    error_action: str = "Continue"

    def has(self, name: str) -> bool:
        return name in self.args

    def get(self, name: str, default: Any = None) -> Any:
        return self.args.get(name, default)

    def strings(self, name: str) -> list[str]:
        v = self.args.get(name)
        if v is None:
            return []
        if isinstance(v, list):
            return [to_text(x) for x in v]
        return [to_text(v)]

    def out(self, obj: Any) -> None:
        self.output.append(obj)

    def record(self, message: str, error_id: str, category: str = "NotSpecified", target: str = "",
               exception: str = "RuntimeException", target_type: str = "String") -> ErrorRecord:  # fmt: skip
        return self.interp.record_for(
            self.node, message, error_id, category, target, exception, target_type,
            command=self.cmd.name, command_class=self.cmd.command_class,
        )  # fmt: skip

    def error(self, message: str, error_id: str, category: str = "NotSpecified", target: str = "",
              exception: str = "RuntimeException", target_type: str = "String") -> None:  # fmt: skip
        """A non-terminating error: reported, the command goes on (unless -ErrorAction Stop)."""
        rec = self.record(message, error_id, category, target, exception, target_type)
        self.interp.write_error(rec, self.error_action)

    def fail(self, message: str, error_id: str, category: str = "NotSpecified", target: str = "",
             exception: str = "RuntimeException", target_type: str = "String") -> StatementError:  # fmt: skip
        """A terminating error for this command (raise the result)."""
        return StatementError(
            self.record(message, error_id, category, target, exception, target_type)
        )

    def warn(self, message: str) -> None:
        if str(self.args.get("WarningAction", "")).lower() not in ("silentlycontinue", "ignore"):
            self.interp.write_host(f"WARNING: {message}")

    @property
    def disk(self) -> GuestDisk:
        return self.interp.disk

    def state(self) -> GuestState:
        return self.interp.read_state()

    @contextlib.contextmanager
    def edit(self) -> Iterator[GuestState]:
        with self.interp.edit_state() as st:
            yield st


REGISTRY: dict[str, CmdletDef] = {}
ALIASES: dict[str, str] = {}


def cmdlet(
    name: str,
    params: list[Param] | None = None,
    command_class: str = "",
    aliases: tuple[str, ...] = (),
    any_params: bool = False,
) -> Callable[[Callable[[Invocation], None]], Callable[[Invocation], None]]:
    def deco(func: Callable[[Invocation], None]) -> Callable[[Invocation], None]:
        cls = command_class or "Microsoft.PowerShell.Commands." + name.replace("-", "") + "Command"
        REGISTRY[name.lower()] = CmdletDef(name, func, list(params or []), cls, aliases, any_params)
        for a in aliases:
            ALIASES[a.lower()] = name.lower()
        return func

    return deco


# Native programs (icacls, sysprep.exe, ...): func(interp, windows path, args, stdout lines, node)
# -> exit code
NativeFunc = Callable[["Interp", str, list[str], list[str], ast.Node], int]
NATIVES: dict[str, NativeFunc] = {}


def native(*names: str) -> Callable[[NativeFunc], NativeFunc]:
    def deco(func: NativeFunc) -> NativeFunc:
        for n in names:
            NATIVES[n.lower()] = func
        return func

    return deco


# ---- the interpreter ----------------------------------------------------------------------------
_DEFAULT_VARS = {
    "true": True,
    "false": False,
    "null": None,
    "erroractionpreference": "Continue",
    "warningpreference": "Continue",
    "verbosepreference": "SilentlyContinue",
    "progresspreference": "Continue",
    "confirmpreference": "High",
    "pwd": "C:\\Users\\Administrator",
    "home": "C:\\Users\\Administrator",
    "pid": 4242,
    "host": "ConsoleHost",
    "lastexitcode": None,
}


class Interp:
    def __init__(
        self,
        disk: GuestDisk,
        host: GuestHost,
        source: str,
        script_name: str = "",
        stdout: list[str] | None = None,
        stderr: list[str] | None = None,
        parent: Interp | None = None,
    ) -> None:
        self.disk = disk
        self.host = host
        self.source = source
        self.script_name = script_name
        self.stdout = stdout if stdout is not None else []
        self.stderr = stderr if stderr is not None else []
        self.vars: dict[str, Any] = dict(_DEFAULT_VARS) if parent is None else {}
        self.parent = parent
        self.vars["error"] = [] if parent is None else parent.get_var("error")
        self.vars["?"] = True
        self.cwd: str = "C:\\Users\\Administrator" if parent is None else parent.cwd
        self.last_native: int | None = None  # exit code when the last statement ran a program
        self._isos: dict[str, Any] = {} if parent is None else parent._isos
        self._changed = False

    # -- state access: lock only while reading/writing
    def read_state(self) -> GuestState:
        with self.disk.locked():
            return self.disk.load()

    @contextlib.contextmanager
    def edit_state(self) -> Iterator[GuestState]:
        with self.disk.edit() as st:
            yield st
        self.host.notify("changed")

    def iso(self, drive: str) -> Any:
        """The ISO in CD drive `drive` (lab.media.Iso), or None when no disc is there."""
        d = drive.upper()
        if d not in self._isos:
            rt = self.disk.runtime()
            path = rt.cdroms.get(d)
            if not path:
                self._isos[d] = None
            else:
                from lab.media import Iso  # pycdlib is slow to import: only when a CD is read

                try:
                    self._isos[d] = Iso(path)
                except Exception:
                    self._isos[d] = None
        return self._isos[d]

    # -- variables
    def get_var(self, name: str) -> Any:
        low = name.lower()
        if low.startswith("env:"):
            return self.env(name[4:])
        scope: Interp | None = self
        while scope is not None:
            if low in scope.vars:
                return scope.vars[low]
            scope = scope.parent
        return None

    def set_var(self, name: str, value: Any) -> None:
        low = name.lower()
        if low in ("true", "false", "null", "?"):
            raise ScriptTerminating(
                self.record_for(
                    ast.Const(0, 0, None),
                    f"Cannot overwrite variable {name} because it is read-only or constant.",
                    "VariableNotWritable",
                    "WriteError",
                    name,
                    "SessionStateUnauthorizedAccessException",
                )
            )
        if low.startswith("env:"):
            return  # the environment of a one-command session: accepted, not persisted
        self.vars[low] = value

    def env(self, name: str) -> Any:
        low = name.lower()
        fixed = {
            "programdata": "C:\\ProgramData",
            "programfiles": "C:\\Program Files",
            "programfiles(x86)": "C:\\Program Files (x86)",
            "programw6432": "C:\\Program Files",
            "systemroot": "C:\\Windows",
            "windir": "C:\\Windows",
            "systemdrive": "C:",
            "userprofile": "C:\\Users\\Administrator",
            "homedrive": "C:",
            "homepath": "\\Users\\Administrator",
            "username": "Administrator",
            "temp": "C:\\Users\\Administrator\\AppData\\Local\\Temp",
            "tmp": "C:\\Users\\Administrator\\AppData\\Local\\Temp",
            "appdata": "C:\\Users\\Administrator\\AppData\\Roaming",
            "localappdata": "C:\\Users\\Administrator\\AppData\\Local",
            "public": "C:\\Users\\Public",
            "allusersprofile": "C:\\ProgramData",
            "comspec": "C:\\Windows\\system32\\cmd.exe",
            "os": "Windows_NT",
            "processor_architecture": "AMD64",
            "number_of_processors": "4",
            "pathext": ".COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH;.MSC;.CPL",
            "path": "C:\\Windows\\system32;C:\\Windows;C:\\Windows\\System32\\Wbem;"
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\;C:\\Windows\\System32\\OpenSSH\\",
            "psmodulepath": "C:\\Users\\Administrator\\Documents\\WindowsPowerShell\\Modules;"
            "C:\\Program Files\\WindowsPowerShell\\Modules;C:\\Windows\\system32\\WindowsPowerShell\\v1.0\\Modules",
        }
        if low in fixed:
            return fixed[low]
        if low in ("computername", "userdomain", "logonserver"):
            name_ = self.read_state().computer_name or "WIN-LAB"
            return name_ if low != "logonserver" else "\\\\" + name_
        return None

    # -- output
    def write_host(self, text: str) -> None:
        self.stdout.append(text + "\n")

    def write_error(self, rec: ErrorRecord, action: str | None = None) -> None:
        act = (action or to_text(self.get_var("ErrorActionPreference")) or "Continue").lower()
        if act == "stop":
            raise ScriptTerminating(rec)
        self.vars["?"] = False
        self._set_failed()
        if act in ("silentlycontinue", "ignore"):
            if act != "ignore":
                self.get_var("error").insert(0, rec)
            return
        self.get_var("error").insert(0, rec)
        if self._redirect_errors is not None:
            self._redirect_errors.append(rec)
        else:
            self.stderr.append(rec.render())

    _redirect_errors: list[Any] | None = None
    _failed = False

    def _set_failed(self) -> None:
        self._failed = True

    def record_for(self, node: ast.Node, message: str, error_id: str, category: str = "NotSpecified",
                   target: str = "", exception: str = "RuntimeException", target_type: str = "String",
                   command: str = "", command_class: str = "") -> ErrorRecord:  # fmt: skip
        return ErrorRecord(
            message, error_id, category, target, target_type, exception, command, command_class,
            node.pos, node.end, self.source, self.script_name,
        )  # fmt: skip

    # -- running
    def run_script(self) -> int:
        """Run the whole source; returns the exit code `powershell -Command` would."""
        try:
            stmts = ast.parse(self.source)
        except ast.ParseError as e:
            rec = ErrorRecord(
                e.message, e.error_id, "ParserError", exception="ParentContainsErrorRecordException",
                pos=e.pos, end=e.end, source=self.source, script_name=self.script_name, parse_error=True,
            )  # fmt: skip
            self.stderr.append(rec.render())
            return 1
        try:
            self.exec_block(stmts, self.emit_top)
        except ExitScript as e:
            return e.code
        except ReturnFlow:
            pass
        except (ScriptTerminating, StatementError) as e:
            self.get_var("error").insert(0, e.record)
            self.stderr.append(e.record.render())
            return 1
        if self.last_native is not None:
            return self.last_native
        return 0 if self.vars.get("?", True) else 1

    def emit_top(self, objs: list[Any]) -> None:
        text = out_default(objs)
        if text:
            self.stdout.append(text)

    def exec_block(self, stmts: list[ast.Node], emit: Callable[[list[Any]], None]) -> None:
        for st in stmts:
            self.exec_statement(st, emit)

    def exec_statement(self, st: ast.Node, emit: Callable[[list[Any]], None]) -> None:
        self._failed = False
        self.last_native = None
        try:
            if isinstance(st, ast.If):
                for cond, body in st.clauses:
                    if truthy(self.eval_pipeline_value(cond)):
                        self.exec_block(body, emit)
                        return
                if st.else_body is not None:
                    self.exec_block(st.else_body, emit)
                return
            if isinstance(st, ast.Foreach):
                for item in as_list(self.eval_pipeline_value(st.iterable)):
                    self.set_var(st.var, item)
                    self.exec_block(st.body, emit)
                return
            if isinstance(st, ast.Try):
                self.exec_try(st, emit)
                return
            if isinstance(st, ast.Flow):
                self.exec_flow(st)
                return
            if isinstance(st, ast.Assign):
                self.exec_assign(st)
                self.vars["?"] = True
                return
            out = self.run_pipeline(st)
            emit(out)
            self.vars["?"] = not self._failed
        except StatementError as e:
            eap = to_text(self.get_var("ErrorActionPreference")).lower()
            if eap == "stop" or self._in_try:
                raise ScriptTerminating(e.record) from None
            self.get_var("error").insert(0, e.record)
            if self._redirect_errors is not None:
                self._redirect_errors.append(e.record)
            else:
                self.stderr.append(e.record.render())
            self.vars["?"] = False

    _in_try = 0

    def exec_try(self, st: ast.Try, emit: Callable[[list[Any]], None]) -> None:
        try:
            self._in_try += 1
            try:
                self.exec_block(st.body, emit)
            finally:
                self._in_try -= 1
        except ScriptTerminating as e:
            if st.catch_body is None:
                if st.finally_body is not None:
                    self.exec_block(st.finally_body, emit)
                raise
            self.get_var("error").insert(0, e.record)
            old = self.vars.get("_")
            self.vars["_"] = e.record
            try:
                self.exec_block(st.catch_body, emit)
            finally:
                self.vars["_"] = old
                if st.finally_body is not None:
                    self.exec_block(st.finally_body, emit)
            return
        if st.finally_body is not None:
            self.exec_block(st.finally_body, emit)

    def exec_flow(self, st: ast.Flow) -> None:
        value = self.eval_pipeline_value(st.value) if st.value is not None else None
        if st.kind == "exit":
            code = 0
            if value is not None:
                try:
                    code = int(to_number(value))
                except (TypeError, ValueError):
                    code = 0
            raise ExitScript(code)
        if st.kind == "return":
            raise ReturnFlow()
        if isinstance(value, ErrorRecord):
            raise ScriptTerminating(value)
        msg = to_text(value) if value is not None else "ScriptHalted"
        raise ScriptTerminating(
            self.record_for(st, msg, msg, "OperationStopped", msg, "RuntimeException")
        )

    def exec_assign(self, st: ast.Assign) -> None:
        value = self.eval_pipeline_value(st.value) if not isinstance(st.value, ast.If) else None
        if st.op != "=":
            cur = self.eval(st.target)
            value = binary(self, "+" if st.op == "+=" else "-", cur, value, st)
        t = st.target
        if isinstance(t, ast.Var):
            self.set_var(t.name, value)
        elif isinstance(t, ast.Member):
            obj = self.eval(t.obj)
            if isinstance(obj, PSObject):
                obj.set(t.name, value)
            elif isinstance(obj, PSHash):
                obj.put(t.name, value)
            else:
                raise StatementError(self.record_for(t, f"The property '{t.name}' cannot be found on this object. Verify that the property exists and can be set.", "PropertyAssignmentException", "InvalidOperation"))  # fmt: skip
        elif isinstance(t, ast.Index):
            obj = self.eval(t.obj)
            idx = self.eval(t.index)
            if isinstance(obj, PSHash):
                obj.put(to_text(idx), value)
            elif isinstance(obj, list):
                obj[int(to_number(idx))] = value
        else:
            raise StatementError(self.record_for(t, "The assignment expression is not valid. The input to an assignment operator must be an object that is able to accept assignments, such as a variable or a property.", "InvalidLeftHandSide", "ParserError"))  # fmt: skip

    def eval_pipeline_value(self, node: ast.Node) -> Any:
        """A pipeline's output as a value: nothing → $null, one object → it, more → an array."""
        if isinstance(node, (ast.Pipeline, ast.If, ast.Foreach, ast.Try, ast.Assign)):
            if isinstance(node, ast.Pipeline):
                out = self.run_pipeline(node)
            else:
                out = []
                self.exec_statement(node, out.extend)
            return out[0] if len(out) == 1 else (out or None)
        return self.eval(node)

    def collect(self, stmts: list[ast.Node]) -> list[Any]:
        out: list[Any] = []
        self.exec_block(stmts, out.extend)
        return out

    # -- pipelines
    def run_pipeline(self, pl: ast.Node) -> list[Any]:
        if not isinstance(pl, ast.Pipeline):
            return unroll(self.eval(pl))
        data: list[Any] = []
        for i, el in enumerate(pl.elements):
            if isinstance(el, ast.Command):
                data = self.run_command_node(el, data, first=(i == 0))
            else:
                data = unroll(self.eval(el))
        return data

    def run_command_node(self, node: ast.Command, input_: list[Any], first: bool) -> list[Any]:
        from lab.guest.emulator import natives

        name_val = self.eval_arg(node.name) if node.call_op else node.name.value  # type: ignore[attr-defined]
        if isinstance(name_val, (ast.ScriptBlock, ScriptBlockValue)):
            sb = (
                name_val
                if isinstance(name_val, ScriptBlockValue)
                else ScriptBlockValue(name_val, self)
            )
            return sb.invoke(self, [])
        name = to_text(name_val)
        errs_to_out: list[Any] | None = None
        suppress = False
        out_file: tuple[Any, bool] | None = None
        discard_out = False
        for r in node.redirects:
            if r.target is None:
                errs_to_out = []
            else:
                tgt = self.eval_arg(r.target)
                if r.stream in ("2", "*") and tgt is None:
                    suppress = True
                if r.stream in ("1", "*"):
                    if tgt is None:
                        discard_out = True
                    else:
                        out_file = (tgt, r.append)
        saved = self._redirect_errors
        if suppress:
            self._redirect_errors = []
        elif errs_to_out is not None:
            self._redirect_errors = errs_to_out
        try:
            cdef = lookup_cmdlet(name)
            if cdef is not None:
                result = self.invoke_cmdlet(cdef, node, input_)
            else:
                result = natives.run_external(self, name, node, input_)
        except StatementError as e:
            if suppress:
                self.get_var("error").insert(0, e.record)
                self.vars["?"] = False
                self._failed = True
                result = []
            elif errs_to_out is not None:
                errs_to_out.append(e.record)
                self._failed = True
                result = []
            else:
                raise
        finally:
            self._redirect_errors = saved
        if errs_to_out:
            result = result + [FormattedText(r.render()) for r in errs_to_out]
        if discard_out:
            return []
        if out_file is not None:
            from lab.guest.emulator import cmdlets

            cmdlets.write_text_file(self, node, to_text(out_file[0]), out_default(result),
                                    "unicode", append=out_file[1])  # fmt: skip
            return []
        return result

    def invoke_cmdlet(self, cdef: CmdletDef, node: ast.Command, input_: list[Any]) -> list[Any]:
        args = self.bind(cdef, node)
        inv = Invocation(self, cdef, args, input_, node)
        ea = args.get("ErrorAction")
        if ea is not None:
            inv.error_action = to_text(ea)
        else:
            inv.error_action = to_text(self.get_var("ErrorActionPreference")) or "Continue"
        cdef.func(inv)
        if "OutVariable" in args:
            self.set_var(to_text(args["OutVariable"]), inv.output)
        return inv.output

    def bind(self, cdef: CmdletDef, node: ast.Command) -> dict[str, Any]:
        params = cdef.params + COMMON
        bound: dict[str, Any] = {}

        def err(
            message: str, error_id: str, exc: str = "ParameterBindingException"
        ) -> StatementError:
            return StatementError(
                self.record_for(
                    node,
                    message,
                    error_id,
                    "InvalidArgument",
                    "",
                    exc,
                    command=cdef.name,
                    command_class=cdef.command_class,
                )
            )

        positional: list[Any] = []
        args = node.args
        i = 0
        while i < len(args):
            a = args[i]
            i += 1
            if isinstance(a, ast.ParamArg):
                p = match_param(params, a.name)
                if isinstance(p, list):
                    names = " ".join("-" + q.name for q in p)
                    raise err(
                        f"Parameter cannot be processed because the parameter name '{a.name}' is "
                        f"ambiguous. Possible matches include: {names}.",
                        "AmbiguousParameter",
                    )
                if p is None:
                    if cdef.any_params:
                        p = Param(a.name, "any")
                    else:
                        raise err(
                            f"A parameter cannot be found that matches parameter name '{a.name}'.",
                            "NamedParameterNotFound",
                        )
                if p.name in bound and p.name not in ("Confirm", "Verbose"):
                    raise err(
                        f"Cannot bind parameter because parameter '{p.name}' is specified more than "
                        "once. To provide multiple values to parameters that can accept multiple "
                        'values, use the array syntax. For example, "-parameter value1,value2,value3".',
                        "ParameterAlreadyBound",
                    )
                if p.kind == "switch":
                    bound[p.name] = truthy(self.eval_arg(a.value)) if a.value is not None else True
                    continue
                if a.value is not None:
                    raw = self.eval_arg(a.value)
                elif i < len(args) and not isinstance(args[i], ast.ParamArg):
                    raw = self.eval_arg(args[i])
                    i += 1
                else:
                    if cdef.any_params:
                        bound[p.name] = True
                        continue
                    tname = _TYPE_NAMES.get(p.kind, "System.String")
                    raise err(
                        f"Missing an argument for parameter '{p.name}'. Specify a parameter of type "
                        f"'{tname}' and try again.",
                        "MissingArgument",
                    )
                bound[p.name] = self.convert(cdef, node, p, raw)
            else:
                positional.append(a)
        slots = sorted(
            (p for p in cdef.params if p.position is not None and p.name not in bound),
            key=lambda p: p.position or 0,
        )
        for a in positional:
            value = self.eval_arg(a)
            if not slots:
                text = (
                    display(value) if not isinstance(value, list) else " ".join(map(display, value))
                )
                raise err(
                    f"A positional parameter cannot be found that accepts argument '{text}'.",
                    "PositionalParameterNotFound",
                )
            p = slots.pop(0)
            bound[p.name] = self.convert(cdef, node, p, value)
        return bound

    def convert(self, cdef: CmdletDef, node: ast.Node, p: Param, raw: Any) -> Any:
        if p.kind == "strings":
            return [to_text(x) for x in as_list(raw)]
        if p.kind == "string":
            if isinstance(raw, list) and len(raw) > 1 and not p.pipeline:
                return " ".join(to_text(x) for x in raw)
            return to_text(raw) if not isinstance(raw, (PSObject,)) else raw
        if p.kind == "int":
            try:
                return int(to_number(raw))
            except (TypeError, ValueError):
                raise StatementError(
                    self.record_for(
                        node,
                        f"Cannot bind parameter '{p.name}'. Cannot convert value "
                        f'"{to_text(raw)}" to type "System.Int32". Error: "Input string was not in a correct format."',
                        "CannotConvertArgumentNoMessage",
                        "InvalidArgument",
                        "",
                        "ParameterBindingException",
                        command=cdef.name,
                        command_class=cdef.command_class,
                    )
                ) from None
        if p.kind == "bool":
            return truthy(raw)
        return raw

    def eval_arg(self, node: ast.Node | None) -> Any:
        if node is None:
            return None
        if isinstance(node, ast.Concat):
            return "".join(to_text(self.eval(p)) for p in node.parts)
        if isinstance(node, ast.ArrayLit):
            return [self.eval_arg(x) for x in node.items]
        return self.eval(node)

    # -- expressions
    def eval(self, node: ast.Node) -> Any:
        if isinstance(node, ast.Const):
            return node.value
        if isinstance(node, ast.Expandable):
            return "".join(p if isinstance(p, str) else to_text(self.eval(p)) for p in node.parts)
        if isinstance(node, ast.Var):
            return self.get_var(node.name)
        if isinstance(node, ast.Concat):
            return self.eval_arg(node)
        if isinstance(node, ast.ArrayLit):
            return [self.eval(x) for x in node.items]
        if isinstance(node, ast.Paren):
            inner = node.pipeline
            if (
                isinstance(inner, ast.Pipeline)
                and len(inner.elements) == 1
                and not isinstance(inner.elements[0], ast.Command)
            ):
                return self.eval(inner.elements[0])
            return self.eval_pipeline_value(inner)
        if isinstance(node, ast.SubExpr):
            out = self.collect(node.statements)
            if node.array:
                return out
            return out[0] if len(out) == 1 else (out or None)
        if isinstance(node, ast.HashLit):
            h = PSHash()
            for k, v in node.pairs:
                h.put(to_text(self.eval(k)), self.eval_pipeline_value(v))
            return h
        if isinstance(node, ast.ScriptBlock):
            return ScriptBlockValue(node, self)
        if isinstance(node, ast.Member):
            return self.member(node)
        if isinstance(node, ast.Invoke):
            from lab.guest.emulator.methods import invoke_method

            return invoke_method(self, node)
        if isinstance(node, ast.Index):
            obj = self.eval(node.obj)
            idx = self.eval(node.index)
            if isinstance(obj, PSHash):
                return obj.lookup(to_text(idx))
            if isinstance(obj, (list, str)):
                try:
                    return obj[int(to_number(idx))]
                except IndexError:
                    return None
            if obj is None:
                raise StatementError(self.record_for(node, "Cannot index into a null array.", "NullArray", "InvalidOperation"))  # fmt: skip
            return obj if int(to_number(idx)) in (0, -1) else None
        if isinstance(node, ast.Unary):
            v = self.eval(node.operand)
            if node.op == "not":
                return not truthy(v)
            if node.op == "neg":
                return -to_number(v)
            if node.op == "join":
                return "".join(to_text(x) for x in as_list(v))
            if node.op == "split":
                return to_text(v).split()
            raise StatementError(self.record_for(node, f"Operator -{node.op} is not supported.", "OperatorNotSupported"))  # fmt: skip
        if isinstance(node, ast.Binary):
            if node.op == "and":
                return truthy(self.eval(node.left)) and truthy(self.eval(node.right))
            if node.op == "or":
                return truthy(self.eval(node.left)) or truthy(self.eval(node.right))
            return binary(self, node.op, self.eval(node.left), self.eval(node.right), node)
        if isinstance(node, ast.TypeLit):
            return TypeValue(node.name)
        if isinstance(node, ast.Cast):
            return cast(self, node.type_name, self.eval(node.operand), node)
        if isinstance(node, ast.Pipeline):
            return self.eval_pipeline_value(node)
        if isinstance(node, ast.Command):
            out = self.run_command_node(node, [], True)
            return out[0] if len(out) == 1 else (out or None)
        raise StatementError(self.record_for(node, "This expression is not supported by the lab emulator.", "UnsupportedExpression"))  # fmt: skip

    def member(self, node: ast.Member) -> Any:
        obj = self.eval(node.obj)
        if node.static:
            from lab.guest.emulator.methods import static_member

            return static_member(self, obj, node.name, node)
        return get_member(obj, node.name)


def get_member(obj: Any, name: str) -> Any:
    low = name.lower()
    if isinstance(obj, list):
        if low in ("count", "length"):
            return len(obj)
        vals = [get_member(x, name) for x in obj]  # member enumeration
        vals = [v for v in vals if v is not None]
        return vals[0] if len(vals) == 1 else (vals or None)
    if isinstance(obj, PSObject):
        if obj.has(name):
            return obj.get(name)
        return 1 if low == "count" else None
    if isinstance(obj, PSHash):
        if low == "count" and obj.lookup("count") is None:
            return len(obj)
        if low == "keys":
            return list(obj.keys())
        if low == "values":
            return list(obj.values())
        return obj.lookup(name)
    if isinstance(obj, str):
        if low == "length":
            return len(obj)
        return 1 if low == "count" else None
    if isinstance(obj, PSEnum):
        if low == "value__":
            return obj.value
        return None
    if isinstance(obj, ErrorRecord):
        if low == "exception":
            return PSObject("System.Exception", {"Message": obj.message, "HResult": obj.hresult}, to_string=obj.message)  # fmt: skip
        if low == "fullyqualifiederrorid":
            return obj.fqid
        if low == "categoryinfo":
            return obj.category
        return None
    if obj is None:
        return None
    return 1 if low == "count" else None


@dataclass
class TypeValue:
    name: str

    def __str__(self) -> str:
        return self.name


class ScriptBlockValue:
    def __init__(self, node: ast.ScriptBlock, interp: Interp) -> None:
        self.node = node

    def __str__(self) -> str:
        return self.node.text

    def invoke(
        self, interp: Interp, args: list[Any], dollar_under: Any = None, with_under: bool = False
    ) -> list[Any]:
        old = interp.vars.get("_")
        if with_under:
            interp.vars["_"] = dollar_under
        try:
            return interp.collect(self.node.statements)
        except ReturnFlow:
            return []
        finally:
            if with_under:
                interp.vars["_"] = old


# ---- value helpers ------------------------------------------------------------------------------
def unroll(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, list):
        return list(v)
    return [v]


def as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def truthy(v: Any) -> bool:
    if isinstance(v, list):
        if len(v) == 1:
            return truthy(v[0])
        return len(v) > 0
    if isinstance(v, str):
        return v != ""
    if isinstance(v, PSEnum):
        return v.value != 0
    if isinstance(v, (int, float)):
        return v != 0
    return v is not None and v is not False


def to_number(v: Any) -> int | float:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, PSEnum):
        return v.value
    if v is None:
        return 0
    s = to_text(v).strip()
    if s == "":
        return 0
    n = ast.number_value(s.lstrip("-"))
    if n is None:
        raise ValueError(s)
    return -n if s.startswith("-") else n


def _cmp_key(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, PSEnum):
        if isinstance(right, (int, float)) and not isinstance(right, bool):
            return left.value, right
        return left.name.lower(), to_text(right).lower()
    if isinstance(left, bool):
        return left, truthy(right)
    if isinstance(left, (int, float)):
        try:
            return left, to_number(right)
        except ValueError:
            return str(left), to_text(right)
    return to_text(left).lower(), to_text(right).lower()


def _wild(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern.lower()).replace("(?s:", "(?s:", 1), re.DOTALL)


def like(value: Any, pattern: str) -> bool:
    return bool(_wild(pattern).match(to_text(value).lower()))


def binary(interp: Interp, op: str, left: Any, right: Any, node: ast.Node) -> Any:
    case = op.startswith("c") and op[1:] in (
        "eq",
        "ne",
        "like",
        "match",
        "notlike",
        "notmatch",
        "replace",
        "contains",
    )
    base = op[1:] if case else op
    if isinstance(left, list) and base in (
        "eq",
        "ne",
        "like",
        "notlike",
        "match",
        "notmatch",
        "gt",
        "lt",
        "ge",
        "le",
    ):
        return [x for x in left if truthy(binary(interp, op, x, right, node))]
    if base in ("eq", "ne", "gt", "ge", "lt", "le"):
        a, b = _cmp_key(left, right) if not case else (to_text(left), to_text(right))
        if base == "eq":
            return a == b
        if base == "ne":
            return a != b
        try:
            return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[base]
        except TypeError:
            return False
    if base in ("like", "notlike"):
        r = (
            like(left, to_text(right))
            if not case
            else fnmatch.fnmatchcase(to_text(left), to_text(right))
        )
        return r if base == "like" else not r
    if base in ("match", "notmatch"):
        try:
            m = re.search(to_text(right), to_text(left), 0 if case else re.IGNORECASE)
        except re.error as e:
            raise StatementError(interp.record_for(node, f'parsing "{to_text(right)}" - {e}.', "InvalidRegularExpression", "InvalidOperation")) from None  # fmt: skip
        if m and base == "match":
            h: dict[Any, Any] = PSHash()
            h[0] = m.group(0)
            for i, g in enumerate(m.groups(), 1):
                if g is not None:
                    h[i] = g
            for k, g in m.groupdict().items():
                if g is not None:
                    h[k] = g
            interp.vars["matches"] = h
        return bool(m) if base == "match" else not m
    if base == "replace":
        pat, rep = ([*as_list(right), ""])[:2]
        rep_s = re.sub(r"\$(\d+)", r"\\\1", to_text(rep))
        return re.sub(to_text(pat), rep_s, to_text(left), flags=0 if case else re.IGNORECASE)
    if base in ("contains", "notcontains"):
        r = any(_cmp_key(x, right)[0] == _cmp_key(x, right)[1] for x in as_list(left))
        return r if base == "contains" else not r
    if base in ("in", "notin"):
        r = any(_cmp_key(x, left)[0] == _cmp_key(x, left)[1] for x in as_list(right))
        return r if base == "in" else not r
    if base == "join":
        return to_text(right).join(to_text(x) for x in as_list(left))
    if base == "split":
        return re.split(to_text(right), to_text(left), flags=re.IGNORECASE)
    if base == "f":
        vals = as_list(right)

        def fmt(m: re.Match[str]) -> str:
            i = int(m.group(1))
            return display(vals[i]) if i < len(vals) else ""

        return re.sub(r"\{(\d+)(?:[:,][^}]*)?\}", fmt, to_text(left))
    if base in ("is", "isnot"):
        tn = to_text(right).lower()
        r = (tn in ("string", "system.string") and isinstance(left, str)) or (
            tn in ("int", "system.int32") and isinstance(left, int)
        )
        return r if base == "is" else not r
    if base == "..":
        a, b = int(to_number(left)), int(to_number(right))
        return list(range(a, b + 1)) if a <= b else list(range(a, b - 1, -1))
    if op == "+":
        if isinstance(left, list):
            return left + as_list(right)
        if isinstance(left, str):
            return left + to_text(right)
        if left is None:
            return right
        if isinstance(left, PSHash) and isinstance(right, PSHash):
            h = PSHash(left)
            h.update(right)
            return h
        return to_number(left) + to_number(right)
    if op in ("-", "*", "/", "%"):
        if op == "*" and isinstance(left, str):
            return left * int(to_number(right))
        try:
            a, b = to_number(left), to_number(right)
        except ValueError:
            raise StatementError(interp.record_for(node, f"Cannot convert value \"{to_text(right)}\" to type \"System.Int32\". Error: \"Input string was not in a correct format.\"", "InvalidCastFromStringToInteger", "InvalidArgument")) from None  # fmt: skip
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            raise StatementError(interp.record_for(node, "Attempted to divide by zero.", "RuntimeException", "NotSpecified"))  # fmt: skip
        if op == "%":
            return a % b
        q = a / b
        return int(q) if q == int(q) else q
    raise StatementError(interp.record_for(node, f"The operator '-{op}' is not supported by the lab emulator.", "OperatorNotSupported"))  # fmt: skip


def cast(interp: Interp, type_name: str, v: Any, node: ast.Node) -> Any:
    t = type_name.lower()
    if t in ("string", "system.string"):
        return to_text(v)
    if t in ("int", "int32", "long", "int64", "system.int32"):
        try:
            return int(to_number(v))
        except ValueError:
            raise StatementError(interp.record_for(node, f"Cannot convert value \"{to_text(v)}\" to type \"System.Int32\". Error: \"Input string was not in a correct format.\"", "InvalidCastFromStringToInteger", "InvalidArgument")) from None  # fmt: skip
    if t in ("bool", "boolean", "system.boolean"):
        return truthy(v)
    if t in ("array", "object[]", "string[]"):
        return as_list(v)
    if t in ("pscustomobject", "psobject") and isinstance(v, PSHash):
        return PSObject("System.Management.Automation.PSCustomObject", dict(v))
    if t == "void":
        return None
    if t in ("version", "system.version"):
        return to_text(v)
    return v


def lookup_cmdlet(name: str) -> CmdletDef | None:
    low = name.lower()
    if low in REGISTRY:
        return REGISTRY[low]
    if low in ALIASES:
        return REGISTRY[ALIASES[low]]
    return None


def match_param(params: list[Param], name: str) -> Param | list[Param] | None:
    low = name.lower()
    for p in params:
        if p.name.lower() == low or low in (a.lower() for a in p.aliases):
            return p
    cands = [p for p in params if p.name.lower().startswith(low)]
    if len(cands) == 1:
        return cands[0]
    if len(cands) > 1:
        return cands
    return None
