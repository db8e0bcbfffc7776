"""Where pyvmomi, socket, TLS and HTTP exceptions become `winnodes.errors` (the adapter's boundary).

Every public function of `winnodes.vsphere` runs inside `boundary()`, so callers (Prefect tasks) see
only the product's exception tree and decide retry-or-fail from the type. The decisions live in one
ordered table (`FAULT_TABLE`), most specific class first, so a reader sees every decision at once and
a test can check that no upstream family is left unmapped.

Faults not in the table are *permanent*: an unknown vCenter fault is much more often a bad spec than
a passing hiccup, and a retry loop on a bad spec only hides it. Fault messages come from vCenter and
never contain our password (vCenter does not echo credentials); they are truncated all the same.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import socket
import ssl
from collections.abc import Iterator
from xml.parsers.expat import ExpatError

from pyVmomi import vim, vmodl

from winnodes import errors
from winnodes.errors import WinNodesError, truncate

#: (upstream class, product class, what it means): first match wins, so specific classes come first.
FAULT_TABLE: tuple[tuple[type[BaseException], type[WinNodesError], str], ...] = (
    (
        vim.fault.InvalidLogin,
        errors.AuthenticationError,
        "vCenter refused the user name or password",
    ),
    (vim.fault.NotAuthenticated, errors.SessionExpired, "the vCenter session is no longer valid"),
    (vim.fault.NoPermission, errors.AuthenticationError, "the vCenter user lacks a privilege"),
    (vmodl.fault.SecurityError, errors.AuthenticationError, "vCenter refused the request"),
    (vim.fault.TaskInProgress, errors.VCenterBusy, "another task is running on the object"),
    (vim.fault.ResourceInUse, errors.VCenterBusy, "the resource is in use"),
    (vim.fault.ConcurrentAccess, errors.VCenterBusy, "concurrent modification"),
    (vim.fault.Timedout, errors.VCenterBusy, "vCenter timed out the operation"),
    (vim.fault.HostConnectFault, errors.VCenterBusy, "vCenter cannot reach the host"),
    (vmodl.fault.HostCommunication, errors.VCenterBusy, "vCenter cannot reach the host"),
    (vim.fault.MethodDisabled, errors.VCenterBusy, "the method is disabled on the object for now"),
    (vmodl.fault.RequestCanceled, errors.VCenterBusy, "the request was canceled"),
    (vmodl.fault.SystemError, errors.ApiUnavailable, "vCenter reported an internal error"),
    (vim.fault.DuplicateName, errors.Conflict, "an object with that name already exists"),
    (vim.fault.AlreadyExists, errors.Conflict, "the object already exists"),
    (vim.fault.FileNotFound, errors.NotFound, "the datastore file does not exist"),
    (vim.fault.NotFound, errors.NotFound, "the object does not exist"),
    (vmodl.fault.ManagedObjectNotFound, errors.NotFound, "the object no longer exists"),
    (vim.fault.InvalidDatastore, errors.NotFound, "the datastore or datastore path is invalid"),
    (vim.fault.InvalidState, errors.PermanentError, "the object is in the wrong state"),
    (vmodl.fault.InvalidArgument, errors.PermanentError, "vCenter rejected an argument"),
    (vmodl.fault.NotSupported, errors.PermanentError, "not supported by this vCenter/host"),
    (vmodl.MethodFault, errors.PermanentError, "vCenter fault"),
)


def _http_status(exc: http.client.HTTPException) -> int | None:
    """pyvmomi raises `HTTPException("503 Service Unavailable")` for non-SOAP answers: the status
    is only in the text, so it is read here, once, and nowhere else."""
    head = str(exc).split(" ", 1)[0]
    return int(head) if head.isdigit() else None


#: Managed objects that belong to a session (vCenter destroys them with it).
SESSION_OBJECTS = (
    "PropertyCollector",
    "PropertyFilter",
    "ContainerView",
    "ListView",
    "InventoryView",
    "EventHistoryCollector",
    "TaskHistoryCollector",
)


def _session_object(exc: vmodl.fault.ManagedObjectNotFound) -> bool:
    obj = getattr(exc, "obj", None)
    kind = type(obj).__name__.rsplit(".", 1)[-1] if obj is not None else ""
    text = str(getattr(exc, "msg", None) or "")
    return kind in SESSION_OBJECTS or any(f"{k}:" in text for k in SESSION_OBJECTS)


def map_exception(
    exc: BaseException, *, step_id: str | None = None, action: str = "vCenter call"
) -> WinNodesError | None:
    """The product error for an upstream exception, or None when `exc` is not an upstream error
    (a programming error such as TypeError must stay visible as itself)."""
    if isinstance(exc, WinNodesError):
        return exc
    if isinstance(exc, vmodl.fault.ManagedObjectNotFound) and _session_object(exc):
        # A collector, filter or view lives as long as the session that made it: after the
        # session expired (and the client logged in again) it is gone, not the thing it watched.
        return errors.SessionExpired(
            f"{action}: a session-scoped object went with its expired session "
            f"({truncate(getattr(exc, 'msg', None) or '', 200)})",
            step_id=step_id,
        )
    if isinstance(exc, vmodl.MethodFault):
        detail = truncate(getattr(exc, "msg", None) or "", 500)
        for upstream, product, meaning in FAULT_TABLE:
            if isinstance(exc, upstream):
                text = f"{action}: {meaning} ({type(exc).__name__.rsplit('.', 1)[-1]})"
                return product(f"{text}: {detail}" if detail else text, step_id=step_id)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return errors.Conflict(
            f"{action}: the server's TLS certificate is not trusted ({getattr(exc, 'verify_message', None) or exc}); "
            "set ca_bundle to the vCenter CA or pin its thumbprint",
            step_id=step_id,
        )
    if type(exc).__name__ in ("ThumbprintMismatchException", "CertificateMismatchException"):
        return errors.Conflict(f"{action}: {exc}", step_id=step_id)
    if isinstance(exc, socket.gaierror):
        if exc.errno == socket.EAI_AGAIN:
            return errors.ConnectionLost(
                f"{action}: name resolution failed for now", step_id=step_id
            )
        return errors.NotFound(
            f"{action}: the server name does not resolve ({exc})", step_id=step_id
        )
    if isinstance(exc, ConnectionRefusedError):
        return errors.ConnectionLost(f"{action}: connection refused", step_id=step_id)
    if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
        return errors.ConnectionLost(f"{action}: {type(exc).__name__}: {exc}", step_id=step_id)
    if isinstance(exc, http.client.HTTPException):
        status = _http_status(exc)
        if status is not None and (status >= 500 or status == 429):
            return errors.ApiUnavailable(f"{action}: HTTP {exc}", step_id=step_id, status=status)
        if status in (401, 403):
            return errors.AuthenticationError(f"{action}: HTTP {exc}", step_id=step_id)
        if status is not None:
            return errors.PermanentError(f"{action}: HTTP {exc}", step_id=step_id)
        return errors.ConnectionLost(f"{action}: {type(exc).__name__}: {exc}", step_id=step_id)
    if isinstance(exc, ExpatError):
        return errors.ApiUnavailable(f"{action}: unreadable SOAP answer ({exc})", step_id=step_id)
    if isinstance(exc, OSError):
        transient = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EPIPE}
        if exc.errno in transient:
            return errors.ConnectionLost(f"{action}: {exc}", step_id=step_id)
        return errors.PermanentError(f"{action}: {exc}", step_id=step_id)
    return None


@contextlib.contextmanager
def boundary(step_id: str | None = None, action: str = "vCenter call") -> Iterator[None]:
    """Run a block that talks to vCenter; re-raise any upstream exception as a product error."""
    try:
        yield
    except WinNodesError:
        raise
    except Exception as exc:
        mapped = map_exception(exc, step_id=step_id, action=action)
        if mapped is None:
            raise
        raise mapped from exc
