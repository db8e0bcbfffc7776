"""What the in-guest tasks do when the guest's SSH fails under them (issue 11, SSH faults), without a
lab: the task's body (`.fn`) with its SSH session and vCenter watch replaced by stand-ins that play
the fault. The same faults run for real in benchmarks/faults_ssh.py."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks import guest as gt
from tests.winnodes.conftest import config_data
from winnodes import errors
from winnodes.model import config as cfg


@pytest.fixture
def gi() -> Any:
    return cfg.parse_config(config_data()).golden_image


class _Session:
    def __init__(self, fail: BaseException | None) -> None:
        self.fail = fail
        self.sent: list[str] = []

    def run_checked(self, command: str, **_: Any) -> Any:
        self.sent.append(command)
        if self.fail is not None:
            raise self.fail
        return type("R", (), {"stdout": "", "stderr": "", "exit_code": 0})()


class _VCenter:
    def moref(self, kind: str, moid: str) -> str:
        return moid


def _patch(
    monkeypatch: pytest.MonkeyPatch, session: _Session, watch: Callable[..., Any]
) -> list[float]:
    timeouts: list[float] = []

    @contextlib.contextmanager
    def fake_guest(*_: Any, **__: Any) -> Iterator[_Session]:
        yield session

    @contextlib.contextmanager
    def fake_vcenter(*_: Any, **__: Any) -> Iterator[_VCenter]:
        yield _VCenter()

    def fake_watch(*_: Any, trigger: Callable[[], None], timeout: float, **kw: Any) -> Any:
        timeouts.append(timeout)
        trigger()
        return watch(timeout=timeout, **kw)

    monkeypatch.setattr(gt, "guest", fake_guest)
    monkeypatch.setattr(gt, "vcenter", fake_vcenter)
    monkeypatch.setattr(gt.waits, "watch_for_change", fake_watch)
    monkeypatch.setattr(
        gt.waits,
        "wait_for_guest_ip",
        lambda *a, **k: type("I", (), {"ip": "10.0.0.5", "tools_version": 12, "host_name": "w"})(),
    )
    _sshd(monkeypatch, refusals=0)
    return timeouts


def _sshd(monkeypatch: pytest.MonkeyPatch, refusals: int) -> list[str]:
    """The guest's sshd after the restart: refuses `refusals` handshakes (-1: all), then answers."""
    tried: list[str] = []

    def fetch(ip: str, port: int = 22, **_: Any) -> str:
        tried.append(ip)
        if refusals < 0 or len(tried) <= refusals:
            raise errors.SSHDropped(f"read the SSH host key of {ip}:{port}: Connection refused")
        return "ssh-ed25519 AAAA"

    access = type("A", (), {"ssh_proxy": None})()
    monkeypatch.setattr(gt, "fetch_host_key", fetch)
    monkeypatch.setattr(gt.WindowsAccess, "load", classmethod(lambda cls, name: access))
    monkeypatch.setattr(gt.time, "sleep", lambda s: None)
    return tried


def _never_changes(timeout: float, step_id: str | None = None, **_: Any) -> Any:
    raise errors.WaitTimeout(f"no change in {timeout}s", step_id=step_id)


def test_a_restart_whose_session_dropped_before_it_ran_is_sent_again(
    gi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SSH session is cut before Restart-Computer ran (lab fault drop:before): the guest never
    goes down. The wait for it is bounded by the command's own limit, and the task fails
    transiently (its retry sends the restart again) instead of waiting the step's whole budget
    and failing for good."""
    session = _Session(errors.SSHDropped("cut", step_id="G6u"))
    timeouts = _patch(monkeypatch, session, _never_changes)
    deadline = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(errors.SSHDropped) as info:
        gt.restart_guest.fn(gi, "vm-1", "10.0.0.5", "ssh-ed25519 AAAA", deadline, step_id="G6u")
    assert info.value.transient and info.value.step_id == "G6u"
    assert timeouts == [gi.timeouts.command_seconds]
    assert len(session.sent) == 1


def test_a_confirmed_restart_that_never_goes_down_is_a_timeout(
    gi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _Session(None)
    _patch(monkeypatch, session, _never_changes)
    deadline = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(errors.WaitTimeout):
        gt.restart_guest.fn(gi, "vm-1", "10.0.0.5", "ssh-ed25519 AAAA", deadline)


def test_a_restart_seen_going_down_waits_for_the_ip(
    gi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _Session(errors.SSHDropped("the guest went down"))
    _patch(monkeypatch, session, lambda **_: {"guest.toolsRunningStatus": "guestToolsNotRunning"})
    deadline = datetime.now(UTC) + timedelta(hours=2)
    facts = gt.restart_guest.fn(gi, "vm-1", "10.0.0.5", "ssh-ed25519 AAAA", deadline)
    assert facts.ip == "10.0.0.5"


def test_a_restart_is_over_when_sshd_answers_not_when_tools_report(
    gi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tools report the IP before sshd (another automatic service) listens: the restart waits for
    the SSH handshake, so the next command is not refused and does not spend a retry (before the
    fix G6u's next round hit "Connection refused" and retried)."""
    session = _Session(errors.SSHDropped("the guest went down"))
    _patch(monkeypatch, session, lambda **_: {"guest.toolsRunningStatus": "guestToolsNotRunning"})
    tried = _sshd(monkeypatch, refusals=3)
    deadline = datetime.now(UTC) + timedelta(hours=2)
    facts = gt.restart_guest.fn(gi, "vm-1", "10.0.0.5", "ssh-ed25519 AAAA", deadline, step_id="G6u")
    assert tried == ["10.0.0.5"] * 4
    assert "sshd answered" in facts.evidence


def test_sshd_that_never_answers_after_a_restart_is_a_timeout_of_the_step(
    gi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _Session(errors.SSHDropped("the guest went down"))
    _patch(monkeypatch, session, lambda **_: {"guest.toolsRunningStatus": "guestToolsNotRunning"})
    _sshd(monkeypatch, refusals=-1)
    deadline = datetime.now(UTC) + timedelta(seconds=0.3)
    with pytest.raises(errors.WaitTimeout) as info:
        gt.restart_guest.fn(gi, "vm-1", "10.0.0.5", "ssh-ed25519 AAAA", deadline, step_id="G6u")
    assert info.value.step_id == "G6u" and "Connection refused" in str(info.value)


class _G9Session(_Session):
    """The clone's SSH session: the command that starts sysprep is cut before it ran (lab fault
    drop:before), so the host keys are still there for the next session."""

    def __init__(self, keys: list[bool]) -> None:
        super().__init__(None)
        self.keys = keys

    def run_checked(self, command: str, **_: Any) -> Any:
        import base64

        script = base64.b64decode(command.rsplit(" ", 1)[1]).decode("utf-16-le")
        self.sent.append(script)
        if "sysprep.exe" in script:
            raise errors.SSHDropped("cut before the command ran", step_id="G9")
        if script.rstrip().endswith("-Force") and "ssh_host_" in script:
            self.keys[0] = False  # a separate Remove-Item of the host keys ran
        out = str(self.keys[0]) if "Test-Path" in script else ""
        return type("R", (), {"stdout": out, "stderr": "", "exit_code": 0})()

    def put_file(self, *_: Any, **__: Any) -> None:
        pass


def test_g9_a_session_cut_before_sysprep_ran_is_retried_not_taken_for_sysprep(
    gi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the host keys were removed by one command and sysprep started by another; a session
    cut before the sysprep command ran was taken for "sysprep shut the clone down", the flow
    waited for a power-off that never came and G9 failed (and a cut after the key removal left a
    clone no session could reach). Now the point of no return is one command, and a lost session
    is resolved by whether a new session opens and finds the keys: here it does, so the task
    fails transiently (its retry sends everything again)."""
    keys = [True]

    @contextlib.contextmanager
    def fake_guest(*_: Any, **__: Any) -> Iterator[_G9Session]:
        yield _G9Session(keys)

    @contextlib.contextmanager
    def fake_vcenter(*_: Any, **__: Any) -> Iterator[_VCenter]:
        yield _VCenter()

    monkeypatch.setattr(gt, "guest", fake_guest)
    monkeypatch.setattr(gt, "vcenter", fake_vcenter)
    marks: list[str] = []
    monkeypatch.setattr(
        gt.vms,
        "set_custom_attributes",
        lambda s, vm, attrs, **k: marks.append(attrs[gt.ATTR_SYSPREP]),
    )
    password = type("P", (), {"get_secret_value": lambda self: "Passw0rd!x"})()
    access = type("A", (), {"administrator_password": password})()
    monkeypatch.setattr(gt.WindowsAccess, "load", classmethod(lambda cls, name: access))
    with pytest.raises(errors.SSHDropped) as info:
        gt.g9_sysprep.fn(gi, "vm-2", "10.0.0.6", "ssh-ed25519 AAAA")
    assert info.value.step_id == "G9" and info.value.transient
    assert keys == [True]  # the keys are still there: a retry can reach the clone
    assert "started" not in marks


@pytest.mark.parametrize(
    ("power", "ip", "keys_there", "under_way"),
    [
        ("poweredOff", "", None, True),  # sysprep ran and shut the clone down
        ("poweredOn", "", None, True),  # Windows going down: Tools no longer report
        ("poweredOn", "10.0.0.9", False, True),  # no host keys: the command ran, sysprep runs
        ("poweredOn", "10.0.0.9", True, False),  # host keys still there: it never ran
    ],
)
def test_an_interrupted_sysprep_command_is_found_out_not_cloned_again(
    gi: Any,
    monkeypatch: pytest.MonkeyPatch,
    power: str,
    ip: str,
    keys_there: bool | None,
    under_way: bool,
) -> None:
    """A run killed while G9's one command (remove host keys + sysprep) was in flight leaves the
    clone marked keys-removed. Before: G8 destroyed such a clone and cloned again (a wasted clone,
    a running sysprep killed; the matrix's kill:G9 :retry cells saw two clone tasks). Now G9 asks
    what became of it."""

    @contextlib.contextmanager
    def fake_vcenter(*_: Any, **__: Any) -> Iterator[_VCenter]:
        yield _VCenter()

    asked: list[str] = []

    def keys(gi_: Any, address: str, host_key: str, *_: Any) -> bool:
        asked.append(address)
        assert keys_there is not None, "no SSH check when the clone is off or has no IP"
        return keys_there

    monkeypatch.setattr(gt, "vcenter", fake_vcenter)
    monkeypatch.setattr(
        gt.inventory,
        "properties",
        lambda *a, **k: {"runtime.powerState": power, "guest.ipAddress": ip},
    )
    monkeypatch.setattr(gt, "_host_keys_still_there", keys)
    assert gt.g9_sysprep_under_way.fn(gi, "vm-7", "ssh-ed25519 AAAA") is under_way
    assert asked == ([ip] if keys_there is not None else [])


class _KeysSession:
    def __init__(self, there: bool) -> None:
        self.there = there

    def run_checked(self, command: str, **_: Any) -> Any:
        return type("R", (), {"stdout": str(self.there), "stderr": "", "exit_code": 0})()


def _refused_drop() -> errors.SSHDropped:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as cause:
        err = errors.SSHDropped("SSH to 10.0.0.9:22: ConnectionRefusedError", step_id="G9")
        err.__cause__ = cause
        return err


@pytest.mark.parametrize(
    ("answers", "going_down", "there"),
    [
        # sshd restarting (the matrix's SSH refuse on G9's command): refused, then the keys are
        # found. Before: the first refusal was taken for "sysprep under way" and G9 waited its
        # whole budget for a power-off that never came.
        (["refused", "refused", "keys"], False, True),
        (["refused", "refused"], True, False),  # refused while vCenter shows it going down
        (["handshake failed"], False, False),  # no host keys: the handshake fails
    ],
)
def test_g9_tells_a_restarting_sshd_from_sysprep(
    gi: Any,
    monkeypatch: pytest.MonkeyPatch,
    answers: list[str],
    going_down: bool,
    there: bool,
) -> None:
    todo = list(answers)

    @contextlib.contextmanager
    def fake_guest(*_: Any, **__: Any) -> Iterator[_KeysSession]:
        answer = todo.pop(0)
        if answer == "refused":
            raise _refused_drop()
        if answer == "handshake failed":
            raise errors.SSHDropped("SSH to 10.0.0.9:22: EOFError", step_id="G9")
        yield _KeysSession(True)

    monkeypatch.setattr(gt, "guest", fake_guest)
    monkeypatch.setattr(gt, "_going_down", lambda *_: going_down)
    monkeypatch.setattr(gt.time, "sleep", lambda s: None)
    assert gt._host_keys_still_there(gi, "10.0.0.9", "ssh-ed25519 AAAA", "vm-7") is there
    assert todo == ([] if not going_down else ["refused"])


def test_guest_sessions_bound_sftp_by_the_steps_command_time(
    gi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SFTP transfers use the session's command limit: the block's default (900 s) held G9 for 15
    minutes on a silent sftp-server (fault matrix); the step's `timeouts.command_seconds` now."""
    seen: dict[str, Any] = {}

    class Access:
        @contextlib.contextmanager
        def ssh(self, host: str, host_key: str, **kw: Any) -> Iterator[str]:
            seen.update(kw)
            yield "session"

    monkeypatch.setattr(gt.WindowsAccess, "load", classmethod(lambda cls, name: Access()))
    with gt.guest(gi, "10.0.0.9", "ssh-ed25519 AAAA", "G9") as s:
        assert s == "session"
    assert seen["command_timeout"] == gi.timeouts.command_seconds
    assert seen["step_id"] == "G9"
