"""The sshd ForceCommand of a lab guest: `python -m lab.guest.emulator --guest <guest dir>`.

sshd runs this for every exec request (and for subsystem requests, since a global ForceCommand
overrides them; the requested subsystem is in $SSH_ORIGINAL_COMMAND). SFTP is handed to the real
`sftp-server` rooted at the guest's disk, so "C:/ProgramData/..." paths resolve inside it. Everything
else is one PowerShell command line. Output uses LF line endings (Windows OpenSSH would send CRLF;
clients that split lines handle both). Start-up is kept light: this runs once per SSH command.

Before anything runs, the command is recorded and matched against the lab's SSH fault rules
(`lab.guest.faults`): a rule may cut the connection before or after the command, make sshd refuse
connections for a while, stall the command, or hold it until released.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

SFTP_SERVER = "/usr/lib/openssh/sftp-server"


class SupervisorHost:
    """Sends notifications to the guest supervisor; logs (never prints) when it is unreachable,
    because stderr goes to the SSH client."""

    def __init__(self, guest_dir: Path, vm: str, socket_path: str) -> None:
        self.guest_dir = guest_dir
        self.vm = vm
        self.socket_path = socket_path

    def notify(self, event: str, **data: Any) -> None:
        if not self.socket_path or not os.path.exists(self.socket_path):
            self._log(
                f"no supervisor socket ({self.socket_path or 'unset'}); event {event} {data} not sent"
            )
            return
        try:
            from lab.guest.control import SupervisorClient

            SupervisorClient(self.socket_path).notify(self.vm, event, **data)
        except Exception as exc:
            self._log(f"event {event} {data} not delivered: {exc!r}")

    def _log(self, msg: str) -> None:
        try:
            with open(self.guest_dir / "emulator.log", "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")
        except OSError:
            pass


def is_sftp(command: str) -> bool:
    c = command.strip()
    return (
        c == "internal-sftp"
        or c.endswith("/sftp-server")
        or c == "sftp-server"
        or c.endswith("sftp-server.exe")
        or c == "sftp"
    )


def _before_command(
    store: Any, rule: Any, names: tuple[str, str, str], command: str, host: SupervisorHost
) -> bool:
    """Apply a fault rule before the command runs; False: the command must not run (the connection
    is gone)."""
    import socket

    from lab.guest import faults

    host._log(f"SSH fault {rule.id}: {rule.action} ({rule.when}, {rule.seconds}s): {command[:80]}")
    if rule.action == "drop" and (rule.when == "before" or is_sftp(command)):
        faults.cut_connection()
        return False
    if rule.action == "refuse":
        procs = faults.connection_processes()  # while the listener still tops the chain
        host.notify("ssh-refuse", seconds=rule.seconds)
        ip = names[2]
        until = time.monotonic() + 5.0  # the listener is gone before this connection is cut
        while ip and time.monotonic() < until:
            try:
                with socket.create_connection((ip, 22), timeout=0.5):
                    pass
            except OSError:
                break
            time.sleep(faults.POLL)
        faults.cut_connection(procs)
        return False
    if rule.action == "stall":
        return faults.wait_while_connected(rule.seconds, faults.connection_processes())
    if rule.action == "pause":
        faults.wait_for_release(store, store.pause(rule, names, command))
    return True


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--guest":
        sys.stderr.write("usage: python -m lab.guest.emulator --guest <guest dir>\n")
        return 2
    guest_dir = Path(args[1])
    command = os.environ.get("SSH_ORIGINAL_COMMAND")
    rt_file = guest_dir / "runtime.json"
    vm, sock, name, ip = "", "", "", ""
    if rt_file.exists():
        try:
            rt = json.loads(rt_file.read_text())
            vm, sock = str(rt.get("vm", "")), str(rt.get("supervisor_socket", ""))
            name, ip = str(rt.get("name", "")), str(rt.get("ip", ""))
        except (OSError, ValueError):
            pass
    host = SupervisorHost(guest_dir, vm, sock)
    rule = None
    if command:  # lab.guest.faults: record the command, apply an SSH fault rule it triggers
        from lab.guest import faults

        store = faults.Store(guest_dir.parent)
        rule = store.take((vm, name, ip), command)
        if rule is not None and not _before_command(store, rule, (vm, name, ip), command, host):
            return 255
    if command is not None and is_sftp(command):
        os.execv(SFTP_SERVER, [SFTP_SERVER, "-d", str(guest_dir / "disk")])
    if not command:
        sys.stderr.write(
            "The lab's Windows guest has no interactive shell: send a command (ssh host 'Get-Service sshd').\n"
        )
        return 1
    from lab.guest.emulator import run_command
    from lab.guest.state import GuestDisk

    disk = GuestDisk(guest_dir)
    result = run_command(disk, command, host)
    if rule is not None and rule.action == "drop" and rule.when == "after":
        from lab.guest import faults

        host._log(f"SSH fault {rule.id}: drop after the command: {command[:80]}")
        faults.cut_connection()
        return 255
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    return result.exit_code & 0xFF if result.exit_code >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
