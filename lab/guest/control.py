"""The channel from a guest's emulator processes to the guest supervisor.

A command run over SSH (`Stop-Service VMTools`, `Restart-Computer`, `sysprep.exe ... /shutdown`) changes
the guest's disk, but what follows belongs to the machine, not to the command: VMware Tools stop
reporting to vCenter, sshd stops listening, the VM reboots or powers off. The emulator runs in a
short-lived process under sshd, so it tells the long-running supervisor over a unix socket, one JSON
line per notification:

    request:  {"vm": "vm-57", "event": "changed", "data": {...}}\\n
    reply:    {"ok": true}\\n           (or {"ok": false, "error": "..."})

The supervisor only queues the notification before it replies, so a notification never waits for a
reboot; the caller's timeout is short. The event "ping" (any vm) is the readiness check. The same
socket is the lab's control API for SSH faults (`lab.guest.faults`: "ssh-fault-*" events, whose
reply carries data: rules, hit counts, paused commands).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# How long a client waits for the supervisor's reply; the supervisor answers after queueing only.
NOTIFY_TIMEOUT = 5.0
MAX_LINE = 1 << 20

Handler = Callable[[str, str, dict[str, Any]], dict[str, Any] | None]


class ControlError(RuntimeError):
    """The supervisor did not take the notification (not running, refused, or no reply in time)."""


class SupervisorClient:
    """Client side: what the emulator (B) and the tests use."""

    def __init__(self, socket_path: str | Path, timeout: float = NOTIFY_TIMEOUT) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def notify(self, vm: str, event: str, **data: Any) -> None:
        """Send one notification and wait for the supervisor's acknowledgement.

        Raises:
            ControlError: no supervisor listening, no reply within the timeout, or a refusal.
        """
        reply = self._call({"vm": vm, "event": event, "data": data})
        if not reply.get("ok"):
            raise ControlError(f"supervisor refused {event!r} for {vm}: {reply.get('error')}")

    def call(self, event: str, vm: str = "", **data: Any) -> dict[str, Any]:
        """A control request that answers with data (e.g. the SSH fault rules and their hits).

        Raises:
            ControlError: as `notify`.
        """
        reply = self._call({"vm": vm, "event": event, "data": data})
        if not reply.get("ok"):
            raise ControlError(f"supervisor refused {event!r}: {reply.get('error')}")
        return reply

    def ping(self) -> bool:
        """True when a supervisor answers on the socket."""
        try:
            return bool(self._call({"vm": "", "event": "ping", "data": {}}).get("ok"))
        except ControlError:
            return False

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        line = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self.socket_path)
                s.sendall(line)
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as exc:
            raise ControlError(f"guest supervisor at {self.socket_path}: {exc}") from exc
        try:
            reply: dict[str, Any] = json.loads(buf)
        except ValueError as exc:
            raise ControlError(
                f"guest supervisor at {self.socket_path}: bad reply {buf[:200]!r}"
            ) from exc
        return reply


class _RequestHandler(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        self.request.settimeout(NOTIFY_TIMEOUT)
        try:
            line = self.rfile.readline(MAX_LINE)
            msg = json.loads(line)
            vm, event, data = str(msg.get("vm", "")), str(msg["event"]), dict(msg.get("data") or {})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._reply({"ok": False, "error": f"bad request: {exc}"})
            return
        result: dict[str, Any] | None = None
        try:
            if event != "ping":
                result = self.server.handler(vm, event, data)
        except Exception as exc:  # report to the caller, keep serving
            self._reply({"ok": False, "error": str(exc)})
            return
        self._reply({**(result or {}), "ok": True})

    def _reply(self, body: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write((json.dumps(body) + "\n").encode())


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Server side, run by the supervisor in a background thread. `handler(vm, event, data)` must
    only queue the work and return quickly; an exception becomes `{"ok": false}`."""

    daemon_threads = True

    def __init__(self, socket_path: str | Path, handler: Handler) -> None:
        self.socket_path = Path(socket_path)
        self.handler = handler
        if len(os.fsencode(self.socket_path)) > 107:  # sun_path holds 108 bytes with the NUL
            raise ControlError(
                f"unix socket path too long ({self.socket_path}); choose a shorter lab run "
                "directory with WINNODES_LAB_DIR"
            )
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            if SupervisorClient(self.socket_path, timeout=1.0).ping():
                raise ControlError(
                    f"another guest supervisor already answers on {self.socket_path}"
                )
            self.socket_path.unlink()
        super().__init__(str(self.socket_path), _RequestHandler)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.socket_path.unlink(missing_ok=True)
