"""Sharing one vCenter session between the tasks of a flow run: the registry and the re-login stub,
without a server (thread-safety is the point: tasks of one run may run in threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from pyVmomi import vim

from winnodes.vsphere.session import SharedSessions, VSphereSession, _ReloginStub


class FakeSession:
    def __init__(self, name: str) -> None:
        self.name = name
        self.logouts = 0

    def logout(self) -> None:
        self.logouts += 1


def opener(session: Any) -> Callable[[], Any]:
    return lambda: session


def test_one_login_per_scope_and_identity_even_when_threads_race() -> None:
    reg = SharedSessions()
    opened: list[FakeSession] = []

    def open_session() -> Any:
        time.sleep(0.05)  # a slow login: the other threads must wait for it, not log in too
        opened.append(FakeSession(f"s{len(opened)}"))
        return opened[-1]

    got: list[Any] = []
    threads = [
        threading.Thread(target=lambda: got.append(reg.get("run-1", "id", open_session)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(opened) == 1 and all(s is opened[0] for s in got)
    other_creds = reg.get("run-1", "other-id", opener(FakeSession("x")))
    other_run = reg.get("run-2", "id", opener(FakeSession("y")))
    assert len({id(s) for s in (opened[0], other_creds, other_run)}) == 3
    assert len(reg) == 3


def test_close_logs_out_only_that_scope_and_is_idempotent() -> None:
    reg = SharedSessions()
    a, b, c = FakeSession("a"), FakeSession("b"), FakeSession("c")
    reg.get("run-1", "x", opener(a))
    reg.get("run-1", "y", opener(b))
    reg.get("run-2", "x", opener(c))
    assert reg.close("run-1") == 2
    assert (a.logouts, b.logouts, c.logouts) == (1, 1, 0)
    assert reg.close("run-1") == 0
    fresh = reg.get("run-1", "x", opener(FakeSession("new")))  # a closed scope starts over
    assert fresh is not a
    assert reg.close_all() == 2 and c.logouts == 1 and len(reg) == 0


class FakeSoap:
    """A SOAP stub whose session expires once: calls fail with NotAuthenticated until a Login."""

    version = "vim.version.version9"

    def __init__(self) -> None:
        self.valid = True
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def InvokeMethod(self, mo: Any, info: Any, args: Any, outer: Any) -> tuple[int, Any]:
        with self.lock:
            self.calls.append(info.wsdlName)
        time.sleep(0.01)
        if info.wsdlName == "Login":
            self.valid = True
            return 200, None
        if not self.valid:
            return 500, vim.fault.NotAuthenticated()
        return 200, info.wsdlName


def test_concurrent_calls_on_an_expired_session_log_in_once() -> None:
    soap = FakeSoap()
    stub = _ReloginStub(
        soap,
        lambda: stub.InvokeMethod(None, SimpleNamespace(wsdlName="Login"), ()),
    )
    stub._enabled = True
    soap.valid = False  # expired on the server
    results: list[Any] = []
    read = SimpleNamespace(wsdlName="RetrievePropertiesEx")
    threads = [
        threading.Thread(target=lambda: results.append(stub.InvokeMethod(None, read, ())))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["RetrievePropertiesEx"] * 6
    assert soap.calls.count("Login") == 1 and stub.relogins == 1 and stub.generation == 1


def test_memo_makes_each_value_once() -> None:
    session = VSphereSession("vc.example.com", "u", "p")
    assert session.memo("k", lambda: 1) == 1
    assert session.memo("k", lambda: 2) == 1  # made once
    session.forget("k")
    assert session.memo("k", lambda: 3) == 3
