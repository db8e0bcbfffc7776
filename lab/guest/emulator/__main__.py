"""The sshd ForceCommand of a lab guest: `python -m lab.guest.emulator --guest <guest dir>`.

sshd runs this for every exec request (and for subsystem requests, since a global ForceCommand
overrides them; the requested subsystem is in $SSH_ORIGINAL_COMMAND). SFTP is handed to the real
`sftp-server` rooted at the guest's disk, so "C:/ProgramData/..." paths resolve inside it. Everything
else is one PowerShell command line. Output uses LF line endings (Windows OpenSSH would send CRLF;
clients that split lines handle both). Start-up is kept light: this runs once per SSH command.
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


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--guest":
        sys.stderr.write("usage: python -m lab.guest.emulator --guest <guest dir>\n")
        return 2
    guest_dir = Path(args[1])
    command = os.environ.get("SSH_ORIGINAL_COMMAND")
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
    rt_file = guest_dir / "runtime.json"
    vm, sock = "", ""
    if rt_file.exists():
        try:
            rt = json.loads(rt_file.read_text())
            vm, sock = str(rt.get("vm", "")), str(rt.get("supervisor_socket", ""))
        except (OSError, ValueError):
            pass
    result = run_command(disk, command, SupervisorHost(guest_dir, vm, sock))
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    return result.exit_code & 0xFF if result.exit_code >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
