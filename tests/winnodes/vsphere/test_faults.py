"""The boundary between pyvmomi/socket/TLS/HTTP and the product's exception tree (pure)."""

from __future__ import annotations

import http.client
import inspect
import socket
import ssl
from xml.parsers.expat import ExpatError

import pytest
from pyVmomi import VmomiSupport, vim, vmodl

from winnodes import errors
from winnodes.vsphere.faults import FAULT_TABLE, boundary, map_exception


def _all_method_faults() -> list[type]:
    """Every fault type pyVmomi knows (types load lazily, so walk its type catalogue)."""
    out = []
    for name in VmomiSupport._dataDefMap:
        cls = VmomiSupport.GetVmodlType(name)
        if inspect.isclass(cls) and issubclass(cls, vmodl.MethodFault):
            out.append(cls)
    return out


def test_every_pyvmomi_fault_maps_to_a_product_error() -> None:
    faults = _all_method_faults()
    assert len(faults) > 300  # the whole vim/vmodl fault catalogue, not a sample
    for cls in faults:
        mapped = map_exception(cls(msg="detail"), step_id="G8")
        assert isinstance(mapped, errors.WinNodesError), cls
        assert mapped.step_id == "G8"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (vim.fault.InvalidLogin(), errors.AuthenticationError),
        (vim.fault.NotAuthenticated(), errors.SessionExpired),
        (vim.fault.NoPermission(), errors.AuthenticationError),
        (vim.fault.TaskInProgress(), errors.VCenterBusy),
        (vim.fault.HostConnectFault(), errors.VCenterBusy),
        (vim.fault.NoHost(), errors.VCenterBusy),
        (vmodl.fault.HostCommunication(), errors.VCenterBusy),
        (vmodl.fault.HostNotReachable(), errors.VCenterBusy),
        (vim.fault.ResourceInUse(), errors.VCenterBusy),
        (vim.fault.Timedout(), errors.VCenterBusy),
        (vim.fault.MethodDisabled(), errors.VCenterBusy),
        (vmodl.fault.SystemError(), errors.ApiUnavailable),
        (vim.fault.InvalidState(), errors.PermanentError),
        (vim.fault.InvalidPowerState(), errors.PermanentError),
        (vim.fault.DuplicateName(), errors.Conflict),
        (vim.fault.NotFound(), errors.NotFound),
        (vim.fault.FileNotFound(), errors.NotFound),
        (vmodl.fault.ManagedObjectNotFound(), errors.NotFound),
        (vmodl.fault.InvalidArgument(), errors.PermanentError),
        (vim.fault.InsufficientResourcesFault(), errors.PermanentError),
    ],
)
def test_fault_table_decisions(fault: Exception, expected: type) -> None:
    mapped = map_exception(fault)
    assert type(mapped) is expected
    assert mapped is not None and type(fault).__name__.rsplit(".", 1)[-1] in str(mapped)


def test_transient_and_permanent_split() -> None:
    assert map_exception(vim.fault.TaskInProgress()).transient  # type: ignore[union-attr]
    assert not map_exception(vim.fault.InvalidState()).transient  # type: ignore[union-attr]


def test_table_is_ordered_specific_first() -> None:
    seen: list[type] = []
    for upstream, _, _ in FAULT_TABLE:
        for earlier in seen:
            assert not issubclass(upstream, earlier), f"{upstream} is shadowed by {earlier}"
        seen.append(upstream)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionResetError(104, "reset"), errors.ConnectionLost),
        (http.client.RemoteDisconnected("closed"), errors.ConnectionLost),
        (ConnectionRefusedError(111, "refused"), errors.ConnectionLost),
        (TimeoutError("timed out"), errors.ConnectionLost),
        (TimeoutError("timed out"), errors.ConnectionLost),
        (ssl.SSLEOFError(8, "EOF"), errors.ConnectionLost),
        (ssl.SSLCertVerificationError(1, "verify failed"), errors.Conflict),
        (socket.gaierror(socket.EAI_NONAME, "unknown"), errors.NotFound),
        (socket.gaierror(socket.EAI_AGAIN, "again"), errors.ConnectionLost),
        (http.client.HTTPException("503 Service Unavailable"), errors.ApiUnavailable),
        (http.client.HTTPException("502 Bad Gateway"), errors.ApiUnavailable),
        (http.client.HTTPException("429 Too Many Requests"), errors.ApiUnavailable),
        (http.client.HTTPException("401 Unauthorized"), errors.AuthenticationError),
        (http.client.HTTPException("404 Not Found"), errors.PermanentError),
        (http.client.IncompleteRead(b""), errors.ConnectionLost),
        (ExpatError("junk"), errors.ApiUnavailable),
        (OSError(101, "Network is unreachable"), errors.ConnectionLost),
    ],
)
def test_transport_errors(exc: Exception, expected: type) -> None:
    assert type(map_exception(exc)) is expected


def test_http_status_is_kept() -> None:
    mapped = map_exception(http.client.HTTPException("503 Service Unavailable"))
    assert isinstance(mapped, errors.ApiUnavailable) and mapped.status == 503


def test_boundary_maps_and_chains() -> None:
    with pytest.raises(errors.VCenterBusy) as info, boundary("G8", action="clone"):
        raise vim.fault.TaskInProgress(msg="busy")
    assert info.value.step_id == "G8"
    assert isinstance(info.value.__cause__, vim.fault.TaskInProgress)
    assert str(info.value).startswith("[G8] clone:")


def test_boundary_leaves_programming_errors_alone() -> None:
    with pytest.raises(TypeError), boundary():
        raise TypeError("a bug stays a bug")


def test_long_fault_messages_are_truncated() -> None:
    mapped = map_exception(vim.fault.InvalidState(msg="x" * 5000))
    assert mapped is not None and len(str(mapped)) < 700


def test_a_collector_gone_with_its_expired_session_is_transient() -> None:
    """The session expired while a watch used its pooled collector; the client logged in again and
    the call on the old collector got ManagedObjectNotFound. Before: NotFound, permanent ("the
    object no longer exists"), and the build failed (matrix cell expiry:G2:during). The watched VM
    is still there: log in again, new collector, retry."""
    pc = vmodl.query.PropertyCollector("session[abc]38d16e04")
    gone = vmodl.fault.ManagedObjectNotFound(obj=pc, msg="managed object not found")
    mapped = map_exception(gone, step_id="G6u")
    assert isinstance(mapped, errors.SessionExpired) and mapped.transient
    assert mapped.step_id == "G6u"
    by_text = vmodl.fault.ManagedObjectNotFound(
        msg="managed object not found: PropertyCollector:session[x]y"
    )
    assert isinstance(map_exception(by_text), errors.SessionExpired)
    vm_gone = vmodl.fault.ManagedObjectNotFound(obj=vim.VirtualMachine("vm-42"), msg="gone")
    mapped_vm = map_exception(vm_gone)
    assert isinstance(mapped_vm, errors.NotFound) and not mapped_vm.transient
