"""What the lab's guest twin cannot show (its time passes instantly): a command that never ends, a
session that drops mid-command, a server that never says hello. A real SSH server on loopback
(paramiko's server side, in a thread) plays those parts."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import paramiko
import pytest
from paramiko.common import AUTH_FAILED, AUTH_SUCCESSFUL, OPEN_SUCCEEDED

from winnodes import errors
from winnodes.guest import connect_guest
from winnodes.guest.ssh import key_line


class _Server(paramiko.ServerInterface):
    def __init__(self, client_key: paramiko.PKey) -> None:
        self.client_key = client_key

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "Administrator" and key == self.client_key
        return AUTH_SUCCESSFUL if ok else AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED

    def check_channel_subsystem_request(self, channel: Any, name: str) -> bool:
        return True  # an sftp-server that never says its version (the matrix's SSH stall)

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        # Answer after the exec request is acknowledged, as a real server's child process does.
        threading.Thread(target=self._act, args=(channel, command.decode()), daemon=True).start()
        return True

    @staticmethod
    def _act(channel: Any, text: str) -> None:
        if text == "echo":
            channel.sendall(b"hello\r\n")
            channel.sendall_stderr(b"warn\r\n")
            channel.send_exit_status(0)
            channel.shutdown_write()  # EOF; no close: it could overtake the exec request's reply
        elif text == "held":  # a child process keeps the output open: no EOF
            channel.sendall(b"started\r\n")
            channel.send_exit_status(0)
        elif text == "late":
            # OpenSSH sends the exit status when the process exits, maybe before the rest of
            # its output it has not read from the pipe yet; then the output, then EOF.
            channel.send_exit_status(0)
            time.sleep(0.3)
            channel.sendall(b"late output\r\n")
            channel.shutdown_write()
        elif text == "drop":
            channel.sendall(b"partial")
            channel.get_transport().close()
        # "hang": say nothing, never exit


@pytest.fixture(scope="module")
def keys() -> dict[str, paramiko.PKey]:
    return {"host": paramiko.ECDSAKey.generate(), "client": paramiko.ECDSAKey.generate()}


@pytest.fixture
def server(keys: dict[str, paramiko.PKey]) -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(keys["host"])
            t.start_server(server=_Server(keys["client"]))
            transports.append(t)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()
    for t in transports:
        t.close()


def _pem(key: paramiko.PKey) -> str:
    buf = io.StringIO()
    key.write_private_key(buf)
    return buf.getvalue()


def _session(
    port: int, keys: dict[str, paramiko.PKey], *, connect: float = 5, command: float = 30
) -> Any:
    return connect_guest(
        "127.0.0.1",
        port=port,
        username="Administrator",
        private_key=_pem(keys["client"]),
        host_key=key_line(keys["host"]),
        connect_timeout=connect,
        command_timeout=command,
    )


def test_output_and_exit_code(server: int, keys: dict[str, paramiko.PKey]) -> None:
    with _session(server, keys) as g:
        r = g.run("echo")
        assert (r.exit_code, r.stdout, r.stderr) == (0, "hello\r\n", "warn\r\n")


def test_output_after_the_exit_status_is_not_lost(
    server: int, keys: dict[str, paramiko.PKey]
) -> None:
    """Before: the client stopped reading at the exit status, so output sent after it was lost
    (G7 read "no rule" right after creating one, in the fault matrix)."""
    with _session(server, keys) as g:
        r = g.run("late")
        assert (r.exit_code, r.stdout) == (0, "late output\r\n")


def test_exit_status_without_eof_ends_the_command_after_a_grace(
    server: int, keys: dict[str, paramiko.PKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that left a child holding its output open never sends EOF: the exit status ends
    it after a short grace, not at the command's deadline."""
    from winnodes.guest import ssh

    monkeypatch.setattr(ssh, "EOF_GRACE_SECONDS", 0.3)
    with _session(server, keys) as g:
        r = g.run("held", timeout=20)
        assert (r.exit_code, r.stdout) == (0, "started\r\n")


def test_a_silent_sftp_server_is_a_transient_drop_not_a_hang(
    server: int, keys: dict[str, paramiko.PKey]
) -> None:
    """Before: `open_sftp()` waited for the server's SFTP version with no timeout, and G9's upload
    hung the build for ever under the matrix's SSH stall."""
    with (
        _session(server, keys, command=0.5) as g,
        pytest.raises(errors.SSHDropped) as info,
    ):
        g.put_file(r"C:\Windows\Panther\unattend.xml", b"<unattend/>", step_id="G9")
    assert info.value.step_id == "G9" and info.value.transient


def test_command_deadline(server: int, keys: dict[str, paramiko.PKey]) -> None:
    with _session(server, keys) as g:
        with pytest.raises(errors.CommandTimeout) as info:
            g.run("hang", timeout=0.5, step_id="G4")
        # A hung command is retried on a new session (issue 11, SSH stall): the task's retries
        # bound the total; only a whole step's budget running out (WaitTimeout) is permanent.
        assert info.value.step_id == "G4" and info.value.transient
        assert not isinstance(info.value, errors.WaitTimeout)
        assert g.run("echo").ok  # the session survives a timed-out command


def test_drop_mid_command_is_transient(server: int, keys: dict[str, paramiko.PKey]) -> None:
    with _session(server, keys) as g:
        with pytest.raises(errors.SSHDropped) as info:
            g.run("drop", step_id="G9")
        assert info.value.step_id == "G9"
        with pytest.raises(errors.SSHDropped):
            g.run("echo")


def test_silent_server_times_out_as_transient(keys: dict[str, paramiko.PKey]) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with (
            pytest.raises(errors.SSHDropped),
            _session(port, keys, connect=0.5),
        ):
            pass
