"""Keep secret values out of every Prefect log line, local or sent to the API.

Prefect has no redaction of its own (field-notes): a task that logs an exception message, a guest
command's stderr or a kubeconfig error can carry a password or a key into the run's logs, which the
server stores in plain text and shows to anyone who can open the UI. This module holds one process-wide
registry of secret values and a `logging.Filter` that replaces them with `***` (through
`winnodes.errors.redact`, which also catches XML-escaped, PowerShell-escaped and line-by-line forms).

The filter is attached to the `prefect.flow_runs` and `prefect.task_runs` loggers (records logged
there directly) and to every handler already configured (records that propagate from other loggers,
e.g. a library's, and the API handler itself), so both the console and the API see redacted text.

Flows call `protect_blocks(...)` at their start with the blocks they will use: it loads each block,
registers every `SecretStr`/`SecretBytes`/`SecretDict` value in it and installs the filter. Tasks run in
the flow's process, so the registry covers them too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

from winnodes.errors import redact

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect")


class SecretRedactor(logging.Filter):
    """Replaces every registered secret in a record's message, arguments and traceback text."""

    def __init__(self) -> None:
        super().__init__("winnodes-redaction")
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def add(self, *values: str | None) -> None:
        new = {v for v in values if v and len(v) >= 4}
        if not new:
            return
        with self._lock:
            self._secrets = self._secrets | new

    def clear(self) -> None:
        with self._lock:
            self._secrets = frozenset()

    def redact(self, text: str) -> str:
        secrets = self._secrets
        return redact(text, secrets) if secrets and text else text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep Prefect's own handling of it
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


REDACTOR = SecretRedactor()


def install(redactor: SecretRedactor = REDACTOR) -> SecretRedactor:
    """Attach the filter to Prefect's run loggers and to every configured handler (idempotent)."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [logging.getLogger(name) for name in RUN_LOGGERS]
    loggers += [
        lg
        for lg in list(logging.root.manager.loggerDict.values())
        if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        if lg.name in RUN_LOGGERS and redactor not in lg.filters:
            lg.addFilter(redactor)
        for handler in lg.handlers:
            if redactor not in handler.filters:
                handler.addFilter(redactor)
    return redactor


def secret_values(obj: Any) -> list[str]:
    """Every secret value held by a block or model (recursively), as plain strings."""
    out: list[str] = []
    if isinstance(obj, SecretStr):
        out.append(obj.get_secret_value())
    elif isinstance(obj, SecretBytes):
        out.append(obj.get_secret_value().decode("utf-8", "replace"))
    elif callable(getattr(obj, "get_secret_value", None)):  # pydantic Secret[T], SecretDict
        out += _strings(obj.get_secret_value())
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            out += secret_values(getattr(obj, name, None))
    elif isinstance(obj, Mapping):
        for value in obj.values():
            out += secret_values(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            out += secret_values(value)
    return out


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def protect(*objects: Any, values: Iterable[str | None] = ()) -> SecretRedactor:
    """Register the secrets of `objects` (blocks, models) and of `values`; install the filter."""
    for obj in objects:
        REDACTOR.add(*secret_values(obj))
    REDACTOR.add(*values)
    return install()


def protect_blocks(*refs: tuple[type[Any], str | None]) -> list[Any]:
    """Load each `(BlockClass, name)` (a `None` name is skipped), register its secrets, install the
    filter, and return the loaded blocks in order (`None` for skipped ones)."""
    loaded: list[Any] = []
    for cls, name in refs:
        block = cls.load(name) if name else None
        if block is not None:
            protect(block)
        loaded.append(block)
    install()
    return loaded
