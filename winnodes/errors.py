"""One exception tree for the whole product, so that *whether to retry* is decided by the type.

Prefect tasks retry on `TransientError` (with backoff and jitter) and fail fast on `PermanentError`;
adapters map every client-library exception to the most specific class below at the point where it
enters (`raise VCenterBusy(...) from exc`). Nobody parses message text to decide anything.

    WinNodesError                      every error the product raises; carries `step_id` (or None)
    ├── TransientError                 retry with backoff: the same call may succeed later
    │   ├── VCenterBusy                task in progress / resource busy / HostCommunication faults
    │   ├── ConnectionLost             TCP reset, TLS EOF, timeout on a connected socket
    │   ├── SessionExpired             vCenter NotAuthenticated after a working login
    │   ├── ApiUnavailable             Kubernetes 5xx / 429 (`status` holds the HTTP code)
    │   ├── SSHDropped                 the guest's SSH session ended mid-command (reboot, sysprep...)
    │   └── CommandTimeout             a guest command ran past its own limit (command_seconds): the
    │                                  session is closed and the (idempotent) command tried again
    └── PermanentError                 retrying cannot help: a human (or the configuration) must act
        ├── WaitTimeout                a wait used up its step's whole budget (a new run starts anew)
        ├── ConfigError                bad input; `problems`: list[Problem] (field, rule, step ID)
        │   └── ValidationError        raised by `validate_all` with *every* problem found
        ├── AuthenticationError        wrong password / key / token / TSIG secret
        ├── NotFound                   a required object is missing (template, ISO, network...)
        ├── Conflict                   something exists and differs: api-int pointing elsewhere,
        │   │                          an SSH host key or key fingerprint that does not match
        │   └── HostKeyMismatch        the guest's SSH host key is not the trusted one (security)
        ├── IncompatiblePeer           the SSH peer shares no kex/cipher/MAC/host key algorithm with
        │                              us, or does not speak SSH-2 at all (wrong port, old server)
        └── GuestCheckFailed           a check inside the guest failed and could not be repaired;
            │                          `evidence` holds what was seen
            └── GuestCommandFailed     a command exited non-zero: command (no secrets), exit code,
                                       stderr tail

Why `WaitTimeout` is permanent. A wait's budget is the step's configured time *in total*: the
tasks compute one deadline per step and pass it down, so a retry after a dropped connection waits
only for what is left. When the deadline has passed, retrying cannot help within this run (a
transient class made every bounded wait run up to five times its configured time). A later run of
the flow gets a fresh budget and resumes from the real state.

Pickling. Prefect persists a failed task's exception and reads it back (result storage, retries
from the UI). `Exception.__reduce__` re-calls `cls(*args)`, which breaks every class with its own
`__init__`; `WinNodesError.__reduce__` instead restores the instance's attributes as they are, so
every subclass, present and future, survives a pickle round trip (tested for the whole tree).

Secrets rule: no exception message, `evidence`, `Problem.message` or `repr` ever contains a secret
value (passwords, private keys, tokens, TSIG secrets). Name the *field* ("windows_access.password is the
placeholder"), never the value. Text that comes from outside (a guest's stderr, an HTTP body) may echo a
secret back: pass it through `redact()` with the secrets you hold, and truncate it (`MAX_EVIDENCE`)
before it goes into an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape as _xml_escape

#: Longest evidence/detail text kept in an exception (bodies are truncated, see kopf/httpx habits).
MAX_EVIDENCE = 2000

REDACTED = "***"


@dataclass(frozen=True)
class Problem:
    """One broken rule: which step it endangers, which field, which rule, and a message for humans.

    `message` already names the field, the rule and the step ID, so it reads well on its own."""

    step_id: str
    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return self.message


class WinNodesError(Exception):
    """Base of every product error. `step_id` is the procedure step (e.g. "G3a", "M7") or None."""

    transient = False

    def __init__(self, message: str, *, step_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step_id = step_id

    def __str__(self) -> str:
        return f"[{self.step_id}] {self.message}" if self.step_id else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by state, not by constructor: subclasses' `__init__` signatures differ."""
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[WinNodesError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Unpickle a `WinNodesError` without calling its subclass's `__init__`."""
    obj = cls.__new__(cls)
    Exception.__init__(obj, *args)
    obj.__dict__.update(state)
    return obj


class TransientError(WinNodesError):
    """The same operation may succeed if retried later (with backoff)."""

    transient = True


class VCenterBusy(TransientError):
    """vCenter refused for now: a task is in progress on the object, a host is busy, a lock is held."""


class ConnectionLost(TransientError):
    """The connection broke (reset, TLS EOF, read timeout) after it had worked."""


class SessionExpired(TransientError):
    """The server no longer knows our session; log in again and retry."""


class ApiUnavailable(TransientError):
    """An API answered 5xx or 429 (too many requests). `status` is the HTTP code when known;
    `retry_after` the seconds the server asked us to wait (its Retry-After header), if it did."""

    def __init__(
        self,
        message: str,
        *,
        step_id: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, step_id=step_id)
        self.status = status
        self.retry_after = retry_after


class SSHDropped(TransientError):
    """The SSH session to the guest ended before the command finished (reboot, sysprep, network)."""


class CommandTimeout(TransientError):
    """A guest command gave no exit status within its own limit (`timeouts.command_seconds`): a
    stuck cmdlet or a hung session. The session is closed; a new one may well succeed (the guest's
    commands are idempotent), and the task's retry budget bounds the total, so it is transient,
    unlike `WaitTimeout`, which is a whole step's budget running out."""


class PermanentError(WinNodesError):
    """Retrying cannot help: the configuration, the credentials or the environment must change."""


class WaitTimeout(PermanentError):
    """A bounded wait used up its step's whole budget before its condition held. Not retried: the
    budget is the step's configured time across retries (a new flow run starts a new budget)."""


class ConfigError(PermanentError):
    """The configuration is wrong. `problems` lists every broken rule (field, rule, step ID)."""

    def __init__(
        self,
        message: str,
        *,
        step_id: str | None = None,
        problems: Sequence[Problem] = (),
    ) -> None:
        super().__init__(message, step_id=step_id)
        self.problems: list[Problem] = list(problems)


class ValidationError(ConfigError):
    """Raised before any side effect with *all* problems found, so one run shows every mistake."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        problems = list(problems)
        steps = sorted({p.step_id for p in problems})
        lines = [f"{len(problems)} configuration problem(s):"]
        lines += [f"  - {p.message}" for p in problems]
        super().__init__(
            "\n".join(lines), step_id=steps[0] if len(steps) == 1 else None, problems=problems
        )


class AuthenticationError(PermanentError):
    """Credentials were refused (vCenter login, SSH key, cluster token, TSIG key)."""


class NotFound(PermanentError):
    """A required object does not exist (template, ISO, base VM, network, datastore, folder...)."""


class Conflict(PermanentError):
    """An object exists and differs from what is required, and overwriting it is not allowed
    (api-int pointing elsewhere, a host key or SSH key fingerprint that does not match)."""


class IncompatiblePeer(PermanentError):
    """The peer cannot speak the protocol with us: no common SSH algorithm, an SSH-1 or non-SSH
    server on the port. The same attempt fails the same way until one side is reconfigured."""


class GuestCheckFailed(PermanentError):
    """A check inside the Windows guest failed and could not be repaired. `evidence` is what was
    seen (command output, already redacted and truncated)."""

    def __init__(self, step_id: str, message: str, evidence: str = "") -> None:
        super().__init__(message, step_id=step_id)
        self.evidence = truncate(evidence)


class HostKeyMismatch(Conflict):
    """The guest offered an SSH host key other than the trusted one: a possible interception, or a
    clone sharing/regenerating keys. Never retried, never accepted automatically."""


class GuestCommandFailed(GuestCheckFailed):
    """A command in the guest exited non-zero. `command` is the command as sent (callers pass no
    secrets in commands), `exit_code` its status, `evidence` the redacted, truncated stderr tail."""

    def __init__(self, step_id: str, command: str, exit_code: int, stderr_tail: str = "") -> None:
        self.command = truncate(command, 500)
        self.exit_code = exit_code
        super().__init__(
            step_id,
            f"guest command exited {exit_code}: {self.command}"
            + (f" -- {stderr_tail.strip()[-300:]}" if stderr_tail.strip() else ""),
            stderr_tail,
        )


def truncate(text: str, limit: int = MAX_EVIDENCE) -> str:
    """Cut `text` to `limit` characters, saying how much was dropped."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every known secret in `text` with `***`.

    Also catches the forms a secret takes when it travels: XML-escaped (unattend.xml), PowerShell
    single-quote-escaped, and each line of a multi-line secret (a PEM key echoed line by line).
    Secrets shorter than 4 characters are ignored: replacing them would shred ordinary text."""
    variants: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        candidates = {secret, _xml_escape(secret, {'"': "&quot;"}), secret.replace("'", "''")}
        candidates |= {line.strip() for line in secret.splitlines()}
        variants |= {c for c in candidates if len(c) >= 4}
    for v in sorted(variants, key=len, reverse=True):
        text = text.replace(v, REDACTED)
    return text
