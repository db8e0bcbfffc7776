"""The guest twin's SSH faults (lab.guest.faults) on a real OpenSSH sshd with the emulator as its
ForceCommand, driven with paramiko as a client would: drop before/after the command's effect,
refuse (TCP connection refused for a while), stall, pause/release, guest and command selection,
hit counts and the command record.

No vcsim: one guest disk and its sshd (lab.guest.sshd), and a stand-in for the guest supervisor on
the control socket that serves the control API and plays the service manager for "refuse" (stop
the listener, start it again after the fault's seconds), as the real supervisor does.
"""

from __future__ import annotations

import base64
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest

from lab.guest import faults, windows
from lab.guest.control import ControlServer
from lab.guest.sshd import GuestSshd
from lab.guest.state import GuestDisk
from lab.paths import LabPaths
from tests.lab.guest.emulator_helpers import make_guest, ps

pytestmark = pytest.mark.lab

MKDIR = r"New-Item -ItemType Directory -Path C:\fault-test -Force | Out-Null"
MARK = r"C:\fault-test"


@dataclass
class Guest:
    disk: GuestDisk
    ip: str
    key: paramiko.PKey
    client: faults.SshFaultClient
    sshd: GuestSshd

    def connect(self) -> paramiko.SSHClient:
        c = paramiko.SSHClient()
        c.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # host keys are not the point
        c.connect(
            self.ip,
            username="Administrator",
            pkey=self.key,
            timeout=10,
            allow_agent=False,
            look_for_keys=False,
        )
        return c

    def exec(self, c: paramiko.SSHClient, command: str, wait: float = 20.0) -> int | None:
        """The command's exit status, None when the connection ended without one."""
        transport = c.get_transport()
        assert transport is not None
        chan = transport.open_session(timeout=10)
        chan.exec_command(command)
        chan.status_event.wait(wait)
        return chan.exit_status if chan.exit_status_ready() and chan.exit_status >= 0 else None

    def marked(self) -> bool:
        return self.disk.host_path(MARK).exists()


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[Guest]:
    paths = LabPaths(tmp_path / "lab", tmp_path / "cache")
    paths.guests.mkdir(parents=True)
    disk = make_guest(paths.guests)  # <guests>/guest
    ip = f"127.82.{random.randint(200, 250)}.{random.randint(2, 250)}"
    sock = tmp_path / "sup.sock"
    rt = disk.runtime()
    rt.ip, rt.name, rt.supervisor_socket = ip, "fx-test-base", str(sock)
    disk.save_runtime(rt)
    key = paramiko.ECDSAKey.generate()
    line = f"{key.get_name()} {key.get_base64()}"
    r = ps(
        disk,
        f"New-Item -ItemType Directory -Path C:\\ProgramData\\ssh -Force | Out-Null; "
        f"Set-Content -Path C:\\ProgramData\\ssh\\administrators_authorized_keys -Value '{line}'; "
        "icacls C:\\ProgramData\\ssh\\administrators_authorized_keys /inheritance:r "
        "/grant 'Administrators:F' /grant 'SYSTEM:F'",
    )
    assert r.exit_code == 0, r.stderr
    keys = windows.ensure_host_keys(disk)
    sshd = GuestSshd(paths, "vm-42", disk.root)
    store = faults.Store(paths.guests)
    timers: list[threading.Timer] = []

    def handler(vm: str, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        if event in faults.CONTROL_EVENTS:
            return faults.handle_control(store, event, data)
        if event == "ssh-refuse":  # the supervisor's part: listener down, back after `seconds`
            sshd.stop(kill_sessions=False)
            timer = threading.Timer(float(data["seconds"]), sshd.start, (ip, keys))
            timers.append(timer)
            timer.start()
        return None

    server = ControlServer(sock, handler)
    server.start()
    sshd.start(ip, keys)
    try:
        yield Guest(disk, ip, key, faults.SshFaultClient(sock), sshd)
    finally:
        for t in timers:
            t.join()
        faults.Store(paths.guests).clear()
        sshd.stop()
        server.close()


def test_drop_before_cuts_the_connection_and_the_command_never_runs(guest: Guest) -> None:
    guest.client.add("drop", "fault-test", when="before", times=1)
    c = guest.connect()
    assert guest.exec(c, MKDIR) is None
    assert not guest.marked()
    transport = c.get_transport()
    assert transport is None or not transport.is_active()
    c = guest.connect()  # once: the next connection and command work
    assert guest.exec(c, MKDIR) == 0 and guest.marked()
    assert [r["hits"] for r in guest.client.rules()] == [1]


def test_drop_after_runs_the_command_but_sends_no_exit_status(guest: Guest) -> None:
    guest.client.add("drop", "fault-test", when="after", times=1)
    c = guest.connect()
    assert guest.exec(c, MKDIR) is None
    assert guest.marked()  # the effect happened; the client cannot know


def test_refuse_closes_the_port_then_sshd_comes_back(guest: Guest) -> None:
    guest.client.add("refuse", "fault-test", seconds=1.0, times=1)
    c = guest.connect()
    assert guest.exec(c, MKDIR) is None
    assert not guest.marked()
    with pytest.raises(ConnectionRefusedError):  # TCP level: nothing listens (RST)
        socket.create_connection((guest.ip, 22), timeout=2).close()
    # back after the fault's seconds (the supervisor restarts the listener)
    ok = threading.Event()

    def retry() -> None:
        for _ in range(100):
            try:
                socket.create_connection((guest.ip, 22), timeout=1).close()
            except OSError:
                threading.Event().wait(0.1)
                continue
            ok.set()
            return

    retry()
    assert ok.is_set()
    assert guest.exec(guest.connect(), MKDIR) == 0 and guest.marked()


def test_stall_for_good_says_nothing_and_never_runs(guest: Guest) -> None:
    guest.client.add("stall", "fault-test", seconds=0, times=1)
    c = guest.connect()
    transport = c.get_transport()
    assert transport is not None
    chan = transport.open_session(timeout=10)
    chan.exec_command(MKDIR)
    assert not chan.status_event.wait(1.0)  # no exit status: the client must time out itself
    assert not chan.recv_ready() and transport.is_active()
    c.close()  # the client gives up: the stalled command goes away without running
    assert guest.exec(guest.connect(), "Get-Date | Out-Null") == 0
    assert not guest.marked()


def test_stall_for_seconds_then_the_command_completes(guest: Guest) -> None:
    guest.client.add("stall", "fault-test", seconds=0.5, times=1)
    assert guest.exec(guest.connect(), MKDIR) == 0
    assert guest.marked()


def test_pause_holds_the_command_until_released(guest: Guest) -> None:
    rule = guest.client.add("pause", "fault-test", times=1)
    c = guest.connect()
    transport = c.get_transport()
    assert transport is not None
    chan = transport.open_session(timeout=10)
    chan.exec_command(MKDIR)
    for _ in range(200):
        if guest.client.paused():
            break
        threading.Event().wait(0.05)
    paused = guest.client.paused()
    assert [p["rule"] for p in paused] == [rule] and "fault-test" in paused[0]["text"]
    assert not guest.marked()
    c.close()  # the client dies while the command is in flight
    assert guest.client.release() == 1
    for _ in range(200):  # released: it completes on the guest, unseen
        if guest.marked():
            break
        threading.Event().wait(0.05)
    assert guest.marked()


def test_rules_select_by_guest_and_by_the_encoded_script(guest: Guest) -> None:
    guest.client.add("drop", "fault-test", guest="other-vm*", times=0)
    encoded = base64.b64encode(MKDIR.encode("utf-16-le")).decode()
    line = f"powershell.exe -NoProfile -NonInteractive -EncodedCommand {encoded}"
    c = guest.connect()
    assert guest.exec(c, line) == 0  # another guest's rule: no hit
    assert guest.client.hits() == 0
    guest.client.clear()
    guest.client.add("drop", r"^New-Item .*fault-test", guest="fx-test-*", times=0)
    assert guest.exec(c, line) is None  # the rule reads the decoded script
    assert guest.client.hits() == 1
    texts = [r["text"] for r in faults.Store(guest.disk.root.parent).recorded()]
    assert texts.count(MKDIR) == 2  # the twin's record of commands, decoded


def test_rule_validation() -> None:
    with pytest.raises(ValueError):
        faults.Rule("explode")
    with pytest.raises(ValueError):
        faults.Rule("refuse", seconds=0)
    with pytest.raises(ValueError):
        faults.Rule("drop", when="during")
    assert faults.decoded("ipconfig") == ""
