"""Parser for the PowerShell subset the guest twin understands.

PowerShell has two lexical modes: *expression mode* (`$a -eq 'x'`, `(Get-Service sshd).Status`) and
*argument mode* (`Get-Content C:\\Program Files\\x.txt`, where barewords are strings and whitespace
separates arguments). The difference decides whether automation that quotes badly fails, so this is a
scannerless recursive-descent parser that switches mode exactly where PowerShell does, and reports
errors with PowerShell's messages and error ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


class ParseError(Exception):
    def __init__(self, message: str, error_id: str, pos: int, end: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_id = error_id
        self.pos = pos
        self.end = end if end is not None else pos + 1


# ---- AST ---------------------------------------------------------------------------------------
@dataclass
class Node:
    pos: int
    end: int


@dataclass
class Const(Node):
    value: Any


@dataclass
class Expandable(Node):
    parts: list[Any]  # str | Node


@dataclass
class Var(Node):
    name: str  # "env:X" keeps the scope


@dataclass
class Member(Node):
    obj: Node
    name: str
    static: bool = False


@dataclass
class Invoke(Node):
    obj: Node
    name: str
    args: list[Node]
    static: bool = False


@dataclass
class Index(Node):
    obj: Node
    index: Node


@dataclass
class Unary(Node):
    op: str
    operand: Node


@dataclass
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass
class ArrayLit(Node):
    items: list[Node]


@dataclass
class SubExpr(Node):
    statements: list[Node]
    array: bool  # @( ) always yields an array


@dataclass
class Paren(Node):
    pipeline: Node


@dataclass
class HashLit(Node):
    pairs: list[tuple[Node, Node]]


@dataclass
class ScriptBlock(Node):
    statements: list[Node]
    text: str


@dataclass
class TypeLit(Node):
    name: str


@dataclass
class Cast(Node):
    type_name: str
    operand: Node


@dataclass
class Concat(Node):
    parts: list[Node]  # adjacent pieces of one argument: `/unattend:"C:\x y.xml"`


@dataclass
class ParamArg(Node):
    name: str
    value: Node | None
    text: str


@dataclass
class Redirect(Node):
    stream: str  # "1", "2", "*"
    target: Node | None  # None for 2>&1
    append: bool


@dataclass
class Command(Node):
    name: Node
    args: list[Node]
    call_op: bool
    redirects: list[Redirect] = field(default_factory=list)


@dataclass
class Pipeline(Node):
    elements: list[Node]  # the first may be an expression, the rest are Commands


@dataclass
class Assign(Node):
    target: Node
    op: str
    value: Node


@dataclass
class If(Node):
    clauses: list[tuple[Node, list[Node]]]
    else_body: list[Node] | None


@dataclass
class Foreach(Node):
    var: str
    iterable: Node
    body: list[Node]


@dataclass
class Try(Node):
    body: list[Node]
    catch_body: list[Node] | None
    finally_body: list[Node] | None


@dataclass
class Flow(Node):
    kind: str  # throw | exit | return
    value: Node | None


# ---- parser -----------------------------------------------------------------------------------
_COMPARISON = {
    "eq", "ne", "gt", "ge", "lt", "le", "like", "notlike", "match", "notmatch",
    "contains", "notcontains", "in", "notin", "replace", "is", "isnot", "split", "join",
}  # fmt: skip
_LOGICAL = {"and", "or", "xor"}
_KEYWORDS_UNSUPPORTED = {
    "function", "filter", "while", "do", "for", "switch", "param", "begin", "process", "trap",
    "class", "enum", "workflow", "data", "until", "break", "continue",
}  # fmt: skip
_ARG_END = set(";|&(){},\n\r")
_NUMBER = re.compile(r"(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?)(?:kb|mb|gb)?$", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def number_value(text: str) -> int | float | None:
    if not _NUMBER.match(text):
        return None
    t = text.lower()
    mult = 1
    for suf, m in (("kb", 1024), ("mb", 1024**2), ("gb", 1024**3)):
        if t.endswith(suf):
            t, mult = t[: -len(suf)], m
    if t.startswith("0x"):
        return int(t, 16) * mult
    return (float(t) if "." in t else int(t)) * mult


class Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.n = len(src)

    # -- low level
    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.src[j] if j < self.n else "\0"

    def error(self, message: str, error_id: str, pos: int | None = None) -> ParseError:
        p = self.i if pos is None else pos
        return ParseError(message, error_id, p)

    def skip_ws(self, newlines: bool = False) -> None:
        while self.i < self.n:
            c = self.src[self.i]
            if c in " \t\f\v\u00a0":
                self.i += 1
            elif c == "`" and self.peek(1) in ("\n", "\r"):
                self.i += 2
                if self.peek() == "\n":
                    self.i += 1
            elif c == "#":
                while self.i < self.n and self.src[self.i] not in "\r\n":
                    self.i += 1
            elif c == "<" and self.peek(1) == "#":
                end = self.src.find("#>", self.i + 2)
                if end < 0:
                    raise self.error(
                        "Missing closing '#>' of the block comment.", "MissingEndOfComment"
                    )
                self.i = end + 2
            elif newlines and c in "\r\n":
                self.i += 1
            else:
                break

    def at_word(self, word: str) -> bool:
        s = self.src[self.i : self.i + len(word)]
        if s.lower() != word:
            return False
        nxt = self.peek(len(word))
        return not (nxt.isalnum() or nxt in "_-.\\:")

    # -- statements
    def parse_script(self) -> list[Node]:
        stmts = self.parse_statements(end="")
        if self.i < self.n:
            c = self.peek()
            raise self.error(
                f"Unexpected token '{c}' in expression or statement.", "UnexpectedToken"
            )
        return stmts

    def parse_statements(self, end: str) -> list[Node]:
        stmts: list[Node] = []
        while True:
            self.skip_ws(newlines=True)
            while self.peek() == ";":
                self.i += 1
                self.skip_ws(newlines=True)
            if self.i >= self.n or (end and self.peek() == end):
                return stmts
            if self.peek() in ")}" and self.peek() != end:
                c = self.peek()
                raise self.error(
                    f"Unexpected token '{c}' in expression or statement.", "UnexpectedToken"
                )
            stmts.append(self.parse_statement())
            self.skip_ws()
            c = self.peek()
            if c != "\0" and c not in ";\r\n" and c != end:
                if c in ")}":
                    raise self.error(
                        f"Unexpected token '{c}' in expression or statement.", "UnexpectedToken"
                    )
                tok = re.match(r"\S+", self.src[self.i :])
                raise self.error(
                    f"Unexpected token '{tok.group(0) if tok else c}' in expression or statement.",
                    "UnexpectedToken",
                )

    def parse_block(self, what: str) -> list[Node]:
        self.skip_ws(newlines=True)
        if self.peek() != "{":
            raise self.error(f"Missing statement block {what}.", "MissingStatementBlock")
        start = self.i
        self.i += 1
        body = self.parse_statements(end="}")
        if self.peek() != "}":
            raise self.error(
                "Missing closing '}' in statement block or type definition.",
                "MissingEndCurlyBrace",
                start,
            )
        self.i += 1
        return body

    def parse_statement(self) -> Node:
        start = self.i
        if self.at_word("if"):
            return self.parse_if()
        if self.at_word("foreach"):
            return self.parse_foreach()
        if self.at_word("try"):
            return self.parse_try()
        for kw in ("throw", "exit", "return"):
            if self.at_word(kw):
                self.i += len(kw)
                self.skip_ws()
                value = None
                if self.peek() != "\0" and self.peek() not in ";\r\n}":
                    value = self.parse_pipeline()
                return Flow(start, self.i, kw, value)
        m = _WORD.match(self.src, self.i)
        if m and m.group(0).lower() in _KEYWORDS_UNSUPPORTED and self.at_word(m.group(0).lower()):
            # A real keyword this emulator does not implement: fail loudly, never skip it.
            raise self.error(
                f"The '{m.group(0)}' keyword is not supported by the lab's PowerShell emulator.",
                "ReservedKeywordNotAllowed",
            )
        return self.parse_pipeline()

    def parse_condition(self, kw: str) -> Node:
        self.skip_ws(newlines=True)
        if self.peek() != "(":
            raise self.error(
                f"Missing '(' after '{kw}' in {kw} statement.",
                "MissingOpenParenthesisInIfStatement",
            )
        self.i += 1
        self.skip_ws(newlines=True)
        cond = self.parse_pipeline()
        self.skip_ws(newlines=True)
        if self.peek() != ")":
            raise self.error(
                f"Missing closing ')' after expression in '{kw}' statement.",
                "MissingEndParenthesisAfterStatement",
            )
        self.i += 1
        return cond

    def parse_if(self) -> Node:
        start = self.i
        self.i += 2
        clauses = [(self.parse_condition("if"), self.parse_block("after if ( condition )"))]
        else_body = None
        while True:
            save = self.i
            self.skip_ws(newlines=True)
            if self.at_word("elseif"):
                self.i += 6
                clauses.append(
                    (self.parse_condition("elseif"), self.parse_block("after elseif ( condition )"))
                )
            elif self.at_word("else"):
                self.i += 4
                else_body = self.parse_block("after 'else'")
                break
            else:
                self.i = save
                break
        return If(start, self.i, clauses, else_body)

    def parse_foreach(self) -> Node:
        start = self.i
        self.i += 7
        self.skip_ws()
        if self.peek() != "(":
            raise self.error(
                "Missing opening '(' after keyword 'foreach'.", "MissingOpenParenthesisAfterKeyword"
            )
        self.i += 1
        self.skip_ws()
        if self.peek() != "$":
            raise self.error(
                "Missing variable name after foreach.", "MissingVariableNameAfterForeach"
            )
        var = self.parse_variable()
        self.skip_ws()
        if not self.at_word("in"):
            raise self.error("Missing 'in' after variable in foreach loop.", "MissingInInForeach")
        self.i += 2
        self.skip_ws()
        iterable = self.parse_pipeline()
        self.skip_ws()
        if self.peek() != ")":
            raise self.error(
                "Missing closing ')' in foreach statement.", "MissingEndParenthesisAfterForeach"
            )
        self.i += 1
        body = self.parse_block("in foreach loop")
        assert isinstance(var, Var)
        return Foreach(start, self.i, var.name, iterable, body)

    def parse_try(self) -> Node:
        start = self.i
        self.i += 3
        body = self.parse_block("after 'try'")
        catch_body = finally_body = None
        save = self.i
        self.skip_ws(newlines=True)
        if self.at_word("catch"):
            self.i += 5
            self.skip_ws()
            if self.peek() == "[":  # catch [Type] { }: any type matches here
                end = self.src.find("]", self.i)
                self.i = end + 1 if end > 0 else self.n
            catch_body = self.parse_block("after 'catch'")
            save = self.i
            self.skip_ws(newlines=True)
        if self.at_word("finally"):
            self.i += 7
            finally_body = self.parse_block("after 'finally'")
        else:
            self.i = save
        if catch_body is None and finally_body is None:
            raise self.error(
                "The Try statement is missing its Catch or Finally block.", "MissingCatchOrFinally"
            )
        return Try(start, self.i, body, catch_body, finally_body)

    # -- pipelines and commands
    def parse_pipeline(self) -> Node:
        start = self.i
        if self.peek() == "$":
            save = self.i
            target = self.parse_postfix(self.parse_variable())
            self.skip_ws()
            op = None
            if self.peek() == "=" and self.peek(1) != "=":
                op = "="
            elif self.peek() in "+-" and self.peek(1) == "=":
                op = self.peek() + "="
            if op:
                self.i += len(op)
                self.skip_ws(newlines=True)
                if self.at_word("if") or self.at_word("foreach") or self.at_word("try"):
                    value = self.parse_statement()
                else:
                    value = self.parse_pipeline()
                return Assign(start, self.i, target, op, value)
            self.i = save
        elements = [self.parse_element(first=True)]
        while True:
            self.skip_ws()
            if self.peek() == "|" and self.peek(1) != "|":
                self.i += 1
                self.skip_ws(newlines=True)
                if self.peek() == "\0" or self.peek() in ";)}":
                    raise self.error("An empty pipe element is not allowed.", "EmptyPipeElement")
                elements.append(self.parse_element(first=False))
            else:
                break
        return Pipeline(start, self.i, elements)

    def _expression_start(self) -> bool:
        c = self.peek()
        if c in "$('\"@[" or c.isdigit() or c == "!":
            return True
        if c == "-":
            n = self.peek(1)
            if n.isdigit() or n == ".":
                return True
            m = _WORD.match(self.src, self.i + 1)
            return bool(m and m.group(0).lower() in ("not", "bnot", "join", "split"))
        return bool(c == "." and self.peek(1).isdigit())

    def parse_element(self, first: bool) -> Node:
        start = self.i
        c = self.peek()
        if c == "&" or (c == "." and self.peek(1) in " \t"):
            self.i += 1
            self.skip_ws()
            name = self.parse_arg_value()
            return self.parse_command_args(start, name, call_op=True)
        if c == "{" and first:
            return self.parse_expression()
        if self._expression_start():
            if not first:
                raise self.error(
                    "Expressions are only allowed as the first element of a pipeline.",
                    "ExpressionsMustBeFirstInPipeline",
                )
            expr = self.parse_expression()
            redirects: list[Redirect] = []
            while True:
                save = self.i
                self.skip_ws()
                r = self.parse_redirect()
                if r is None:
                    self.i = save
                    break
                redirects.append(r)
            if redirects:  # `'text' > file`: the expression's output goes through Write-Output
                name = Const(start, start, "Write-Output")
                return Command(start, self.i, name, [expr], False, redirects)
            return expr
        m = re.match(r"[^\s;|&(){},\"'<>]+", self.src[self.i :])
        if not m:
            raise self.error(
                f"Unexpected token '{c}' in expression or statement.", "UnexpectedToken"
            )
        self.i += m.end()
        name = Const(start, self.i, m.group(0))
        return self.parse_command_args(start, name, call_op=False)

    def parse_command_args(self, start: int, name: Node, call_op: bool) -> Command:
        args: list[Node] = []
        redirects: list[Redirect] = []
        end = self.i
        while True:
            self.skip_ws()
            c = self.peek()
            if c == "\0" or c in ";|\r\n)}" or (c == "&" and self.peek(1) == "&"):
                break
            r = self.parse_redirect()
            if r is not None:
                redirects.append(r)
                end = self.i
                continue
            if c == "-" and self.peek(1) == "-" and self.peek(2) == "%":
                raise self.error(
                    "The stop-parsing token '--%' is not supported.", "UnexpectedToken"
                )
            if c == "-" and (self.peek(1).isalpha() or self.peek(1) in "_?"):
                args.append(self.parse_param())
            else:
                args.append(self.parse_arg_list())
            end = self.i
        return Command(start, end, name, args, call_op, redirects)

    def parse_redirect(self) -> Redirect | None:
        start = self.i
        m = re.match(r"([12*])?(>>?)(&1)?", self.src[self.i :])
        if not m or (m.group(1) is None and self.peek() != ">"):
            return None
        self.i += m.end()
        stream = m.group(1) or "1"
        if m.group(3):
            return Redirect(start, self.i, stream, None, False)
        self.skip_ws()
        target = self.parse_arg_value()
        return Redirect(start, self.i, stream, target, m.group(2) == ">>")

    def parse_param(self) -> Node:
        start = self.i
        m = re.match(r"-([A-Za-z_?][A-Za-z0-9_?\-]*)(:?)", self.src[self.i :])
        assert m
        self.i += m.end()
        name = m.group(1)
        value = None
        if m.group(2):
            self.skip_ws()
            value = self.parse_arg_list()
        return ParamArg(start, self.i, name, value, self.src[start : self.i])

    def parse_arg_list(self) -> Node:
        start = self.i
        items = [self.parse_arg_value()]
        while True:
            save = self.i
            self.skip_ws()
            if self.peek() == ",":
                self.i += 1
                self.skip_ws(newlines=True)
                items.append(self.parse_arg_value())
            else:
                self.i = save
                break
        if len(items) == 1:
            return items[0]
        return ArrayLit(start, self.i, items)

    def parse_arg_value(self) -> Node:
        """One argument-mode value: adjacent pieces (no whitespace) form one string."""
        start = self.i
        pieces: list[Node] = []
        while True:
            c = self.peek()
            if c == "\0" or c in " \t\r\n;|,)}" or (c == "&" and pieces):
                break
            if pieces and c in "<>":
                break
            if c == "'" or c == '"' or (c == "@" and self.peek(1) in "'\""):
                pieces.append(self.parse_string())
            elif c == "$":
                pieces.append(self.parse_postfix(self.parse_variable()))
            elif c == "(":
                pieces.append(self.parse_postfix(self.parse_paren()))
            elif c == "@" and self.peek(1) in "({":
                pieces.append(self.parse_postfix(self.parse_primary()))
            elif c == "{":
                pieces.append(self.parse_scriptblock())
            elif c == "&":
                break
            else:
                m = re.match(r"[^\s;|(){},\"'$`<>]+", self.src[self.i :])
                if not m:
                    if c == "`":
                        esc = self.peek(1)
                        self.i += 2
                        pieces.append(Const(self.i - 2, self.i, esc))
                        continue
                    break
                text = m.group(0)
                p0 = self.i
                self.i += m.end()
                if not pieces and self.peek() in (
                    "\0",
                    " ",
                    "\t",
                    "\r",
                    "\n",
                    ";",
                    "|",
                    ")",
                    "}",
                    ",",
                ):
                    num = number_value(text)
                    if num is not None:
                        pieces.append(Const(p0, self.i, num))
                        continue
                pieces.append(Const(p0, self.i, text))
        if not pieces:
            c = self.peek()
            raise self.error(
                "Missing expression after ','." if c == "," else f"Unexpected token '{c}'.",
                "MissingExpression",
            )
        if len(pieces) == 1:
            return pieces[0]
        return Concat(start, self.i, pieces)

    # -- expressions
    def parse_expression(self) -> Node:
        return self.parse_logical()

    def _operator(self, ops: set[str]) -> str | None:
        save = self.i
        self.skip_ws()
        if self.peek() == "-":
            m = _WORD.match(self.src, self.i + 1)
            if m:
                word = m.group(0).lower()
                base = word[1:] if word[:1] in ("i", "c") and word[1:] in ops else word
                if base in ops:
                    self.i = m.end()
                    self.skip_ws(newlines=True)
                    return base if not word.startswith("c") or base == word else "c" + base
        self.i = save
        return None

    def parse_logical(self) -> Node:
        left = self.parse_comparison()
        while True:
            op = self._operator(_LOGICAL)
            if not op:
                return left
            right = self.parse_comparison()
            left = Binary(left.pos, self.i, op, left, right)

    def parse_comparison(self) -> Node:
        left = self.parse_additive()
        while True:
            op = self._operator(_COMPARISON)
            if not op:
                return left
            right = self.parse_additive()
            left = Binary(left.pos, self.i, op, left, right)

    def _sym(self, syms: tuple[str, ...]) -> str | None:
        save = self.i
        self.skip_ws()
        for s in syms:
            if self.src.startswith(s, self.i) and self.peek(len(s)) != "=":
                if s == "-" and (self.peek(1).isalpha()):
                    break
                self.i += len(s)
                self.skip_ws(newlines=True)
                return s
        self.i = save
        return None

    def parse_additive(self) -> Node:
        left = self.parse_multiplicative()
        while True:
            op = self._sym(("+", "-"))
            if not op:
                return left
            right = self.parse_multiplicative()
            left = Binary(left.pos, self.i, op, left, right)

    def parse_multiplicative(self) -> Node:
        left = self.parse_format()
        while True:
            op = self._sym(("*", "/", "%"))
            if not op:
                return left
            right = self.parse_format()
            left = Binary(left.pos, self.i, op, left, right)

    def parse_format(self) -> Node:
        left = self.parse_comma()
        while True:
            op = self._operator({"f"})
            if not op:
                return left
            right = self.parse_comma()
            left = Binary(left.pos, self.i, "f", left, right)

    def parse_comma(self) -> Node:
        start = self.i
        first = self.parse_range()
        items = [first]
        while True:
            save = self.i
            self.skip_ws()
            if self.peek() == ",":
                self.i += 1
                self.skip_ws(newlines=True)
                items.append(self.parse_range())
            else:
                self.i = save
                break
        return first if len(items) == 1 else ArrayLit(start, self.i, items)

    def parse_range(self) -> Node:
        left = self.parse_unary()
        save = self.i
        self.skip_ws()
        if self.src.startswith("..", self.i):
            self.i += 2
            self.skip_ws()
            right = self.parse_unary()
            return Binary(left.pos, self.i, "..", left, right)
        self.i = save
        return left

    def parse_unary(self) -> Node:
        start = self.i
        c = self.peek()
        if c == "!":
            self.i += 1
            self.skip_ws()
            return Unary(start, self.i, "not", self.parse_unary())
        if c == "-":
            m = _WORD.match(self.src, self.i + 1)
            if m and m.group(0).lower() in ("not", "bnot", "join", "split"):
                self.i = m.end()
                self.skip_ws()
                return Unary(start, self.i, m.group(0).lower(), self.parse_unary())
            if self.peek(1).isdigit() or self.peek(1) == ".":
                self.i += 1
                return Unary(start, self.i, "neg", self.parse_unary())
        if c == "[":
            m = re.match(r"\[([A-Za-z_][\w.\[\]]*?)\]", self.src[self.i :])
            if m and not self.src.startswith("::", self.i + m.end()):
                self.i += m.end()
                save = self.i
                self.skip_ws()
                if (
                    self.peek()
                    and self.peek() not in ",;)}|\r\n"
                    and not (self.peek() == "-" and _WORD.match(self.src, self.i + 1))
                ):
                    return Cast(start, self.i, m.group(1), self.parse_unary())
                self.i = save
                return TypeLit(start, self.i, m.group(1))
        return self.parse_postfix(self.parse_primary())

    def parse_postfix(self, node: Node) -> Node:
        while True:
            c = self.peek()
            if c == "." and (self.peek(1).isalpha() or self.peek(1) == "_"):
                self.i += 1
                node = self._member(node, static=False)
            elif c == ":" and self.peek(1) == ":":
                self.i += 2
                node = self._member(node, static=True)
            elif c == "[":
                self.i += 1
                self.skip_ws(newlines=True)
                idx = self.parse_expression()
                self.skip_ws(newlines=True)
                if self.peek() != "]":
                    raise self.error(
                        "Array index expression is missing or not valid.",
                        "MissingArrayIndexExpression",
                    )
                self.i += 1
                node = Index(node.pos, self.i, node, idx)
            else:
                return node

    def _member(self, node: Node, static: bool) -> Node:
        m = _WORD.match(self.src, self.i)
        if not m:
            raise self.error(
                "Missing property name after reference operator.", "MissingPropertyName"
            )
        self.i = m.end()
        if self.peek() == "(":
            self.i += 1
            self.skip_ws(newlines=True)
            args: list[Node] = []
            if self.peek() != ")":
                while True:
                    args.append(self.parse_logical_no_comma())
                    self.skip_ws(newlines=True)
                    if self.peek() == ",":
                        self.i += 1
                        self.skip_ws(newlines=True)
                        continue
                    break
            if self.peek() != ")":
                raise self.error("Missing ')' in method call.", "MissingEndParenthesisInMethodCall")
            self.i += 1
            return Invoke(node.pos, self.i, node, m.group(0), args, static)
        return Member(node.pos, self.i, node, m.group(0), static)

    def parse_logical_no_comma(self) -> Node:
        # method arguments are separated by commas, so an argument is a single unary chain
        # combined by binary operators (good enough for .Replace('a','b') and .Split(','))
        return self.parse_unary_chain()

    def parse_unary_chain(self) -> Node:
        left = self.parse_unary()
        while True:
            op = self._sym(("+",))
            if not op:
                return left
            left = Binary(left.pos, self.i, "+", left, self.parse_unary())

    def parse_variable(self) -> Node:
        start = self.i
        self.i += 1  # $
        if self.peek() == "{":
            end = self.src.find("}", self.i)
            if end < 0:
                raise self.error("Missing '}' in variable reference.", "MissingEndCurlyBrace")
            name = self.src[self.i + 1 : end]
            self.i = end + 1
            return Var(start, self.i, name)
        if self.peek() in "?$^_" and not (
            self.peek() == "_" and (self.peek(1).isalnum() or self.peek(1) == "_")
        ):
            self.i += 1
            return Var(start, self.i, self.src[self.i - 1])
        m = re.match(
            r"(?:(env|global|script|local|private|variable):)?[A-Za-z0-9_]+",
            self.src[self.i :],
            re.IGNORECASE,
        )
        if not m:
            raise self.error(
                "Variable reference is not valid. '$' was not followed by a valid variable name "
                "character. Consider using ${} to delimit the name.",
                "InvalidVariableReference",
                start,
            )
        self.i += m.end()
        name = m.group(0)
        if name.lower().startswith(("global:", "script:", "local:", "private:")):
            name = name.split(":", 1)[1]
        return Var(start, self.i, name)

    def parse_paren(self) -> Node:
        start = self.i
        self.i += 1
        self.skip_ws(newlines=True)
        if self.peek() == ")":
            raise self.error("An expression was expected after '('.", "ExpectedExpression")
        if self.at_word("if") or self.at_word("foreach"):
            inner = self.parse_statement()
        else:
            inner = self.parse_pipeline()
        self.skip_ws(newlines=True)
        if self.peek() != ")":
            raise self.error(
                "Missing closing ')' in expression.", "MissingEndParenthesisInExpression"
            )
        self.i += 1
        return Paren(start, self.i, inner)

    def parse_scriptblock(self) -> Node:
        start = self.i
        self.i += 1
        body = self.parse_statements(end="}")
        if self.peek() != "}":
            raise self.error(
                "Missing closing '}' in statement block or type definition.",
                "MissingEndCurlyBrace",
                start,
            )
        self.i += 1
        return ScriptBlock(start, self.i, body, self.src[start + 1 : self.i - 1])

    def parse_primary(self) -> Node:
        start = self.i
        c = self.peek()
        if c == "$":
            if self.peek(1) == "(":
                self.i += 1
                return self._subexpr(start, array=False)
            return self.parse_variable()
        if c == "@":
            n = self.peek(1)
            if n == "(":
                self.i += 1
                return self._subexpr(start, array=True)
            if n == "{":
                return self.parse_hash()
            if n in "'\"":
                return self.parse_string()
            raise self.error("Unrecognized token in source text.", "UnrecognizedToken")
        if c in "'\"":
            return self.parse_string()
        if c == "(":
            return self.parse_paren()
        if c == "{":
            return self.parse_scriptblock()
        m = re.match(
            r"(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?|\.\d+)(?:kb|mb|gb)?(?![\w])",
            self.src[self.i :],
            re.IGNORECASE,
        )
        if m:
            self.i += m.end()
            text = m.group(0)
            val = number_value(text if not text.startswith(".") else "0" + text)
            return Const(start, self.i, val)
        if c == "\0":
            raise self.error(
                "You must provide a value expression following the operator.",
                "ExpectedValueExpression",
            )
        tok = re.match(r"[^\s;|(){}]+", self.src[self.i :])
        raise self.error(
            f"Unexpected token '{tok.group(0) if tok else c}' in expression or statement.",
            "UnexpectedToken",
        )

    def _subexpr(self, start: int, array: bool) -> Node:
        self.i += 1  # (
        body = self.parse_statements(end=")")
        if self.peek() != ")":
            raise self.error(
                "Missing closing ')' in subexpression.",
                "MissingEndParenthesisInSubexpression",
                start,
            )
        self.i += 1
        return SubExpr(start, self.i, body, array)

    def parse_hash(self) -> Node:
        start = self.i
        self.i += 2
        pairs: list[tuple[Node, Node]] = []
        while True:
            self.skip_ws(newlines=True)
            while self.peek() == ";":
                self.i += 1
                self.skip_ws(newlines=True)
            if self.peek() == "}":
                self.i += 1
                return HashLit(start, self.i, pairs)
            if self.peek() == "\0":
                raise self.error(
                    "Missing closing '}' in hash literal.", "MissingEndCurlyBrace", start
                )
            if self.peek() in "'\"":
                key: Node = self.parse_string()
            else:
                m = re.match(r"[A-Za-z0-9_\-]+", self.src[self.i :])
                if not m:
                    raise self.error(
                        "Missing key before '=' in hash literal.", "MissingEqualsInHashLiteral"
                    )
                key = Const(self.i, self.i + m.end(), m.group(0))
                self.i += m.end()
            self.skip_ws()
            if self.peek() != "=":
                raise self.error(
                    "Missing '=' operator after key in hash literal.", "MissingEqualsInHashLiteral"
                )
            self.i += 1
            self.skip_ws(newlines=True)
            pairs.append((key, self.parse_pipeline()))

    def parse_string(self) -> Node:
        start = self.i
        here = self.peek() == "@"
        if here:
            quote = self.peek(1)
            self.i += 2
            nl = re.match(r"[ \t]*\r?\n", self.src[self.i :])
            if not nl:
                raise self.error(
                    "No characters are allowed after a here-string header but before the end of "
                    "the line.",
                    "UnexpectedCharactersAfterHereStringHeader",
                )
            self.i += nl.end()
            m = re.compile(r"\r?\n" + quote + "@").search(self.src, self.i)
            if not m:
                raise self.error(
                    f"The string is missing the terminator: {quote}@.",
                    "TerminatorExpectedAtEndOfString",
                    start,
                )
            body = self.src[self.i : m.start()]
            self.i = m.end()
            if quote == "'":
                return Const(start, self.i, body)
            return Expandable(start, self.i, self._expand_parts(body, start, here=True))
        quote = self.peek()
        self.i += 1
        if quote == "'":
            out = []
            while True:
                if self.i >= self.n:
                    raise self.error(
                        "The string is missing the terminator: '.",
                        "TerminatorExpectedAtEndOfString",
                        start,
                    )
                ch = self.src[self.i]
                if ch in "'\u2018\u2019":
                    if self.peek(1) in "'\u2018\u2019" and self.peek(1):
                        out.append("'")
                        self.i += 2
                        continue
                    self.i += 1
                    return Const(start, self.i, "".join(out))
                out.append(ch)
                self.i += 1
        # double-quoted: find the end honouring backtick escapes, "" and $( ) nesting
        j = self.i
        depth = 0
        while True:
            if j >= self.n:
                raise self.error(
                    'The string is missing the terminator: ".',
                    "TerminatorExpectedAtEndOfString",
                    start,
                )
            ch = self.src[j]
            if ch == "`":
                j += 2
                continue
            if ch == "$" and j + 1 < self.n and self.src[j + 1] == "(":
                depth += 1
                j += 2
                continue
            if depth and ch == ")":
                depth -= 1
            elif not depth and ch == '"':
                if j + 1 < self.n and self.src[j + 1] == '"':
                    j += 2
                    continue
                break
            j += 1
        body = self.src[self.i : j]
        self.i = j + 1
        return Expandable(start, self.i, self._expand_parts(body, start + 1, here=False))

    def _expand_parts(self, body: str, offset: int, here: bool) -> list[Any]:
        parts: list[Any] = []
        buf: list[str] = []
        k = 0
        escapes = {
            "n": "\n",
            "t": "\t",
            "r": "\r",
            "0": "\0",
            "a": "\a",
            "b": "\b",
            "e": "\x1b",
            "f": "\f",
            "v": "\v",
        }
        while k < len(body):
            ch = body[k]
            if ch == "`" and k + 1 < len(body):
                nxt = body[k + 1]
                buf.append(escapes.get(nxt, nxt))
                k += 2
            elif ch == '"' and not here and body[k + 1 : k + 2] == '"':
                buf.append('"')
                k += 2
            elif ch == "$" and k + 1 < len(body) and body[k + 1] == "(":
                sub = Parser(body)
                sub.i = k
                node = sub.parse_primary()
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(node)
                k = sub.i
            elif (
                ch == "$" and k + 1 < len(body) and (body[k + 1].isalnum() or body[k + 1] in "_{?")
            ):
                sub = Parser(body)
                sub.i = k
                node = sub.parse_variable()
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(node)
                k = sub.i
            else:
                buf.append(ch)
                k += 1
        if buf:
            parts.append("".join(buf))
        return parts


def parse(src: str) -> list[Node]:
    return Parser(src).parse_script()
