"""The Windows guest twin's PowerShell: what runs when automation sends a command over SSH.

A real Windows guest answers SSH commands with PowerShell (OpenSSH's default shell there). The lab's
guests run a real OpenSSH sshd whose ForceCommand is this emulator (`python -m lab.guest.emulator`),
so paramiko, host keys and authentication are real and only Windows is simulated. The emulator
interprets the subset of PowerShell that provisioning automation uses — with PowerShell's parsing,
parameter binding, error output and exit codes — against the guest's state directory
(`lab.guest.state.GuestDisk`). Side effects beyond the disk (restart, shutdown, sysprep power-off,
"state changed") go to the supervisor through a `GuestHost`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from lab.guest.state import GuestDisk


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


class GuestHost(Protocol):
    """Side effects beyond the disk, done by the supervisor. Events: "changed" (state changed:
    reconcile sshd / Tools reporting / firewall), "restart" (Restart-Computer), "shutdown"
    (Stop-Computer), "sysprep" (sysprep succeeded with /shutdown: power off through vCenter)."""

    def notify(self, event: str, **data: Any) -> None: ...


def _run(disk: GuestDisk, text: str, host: GuestHost, script_name: str = "") -> Result:
    from lab.guest.emulator import cmdlets, natives  # noqa: F401  (registers commands)
    from lab.guest.emulator.interp import Interp

    interp = Interp(disk, host, text, script_name=script_name)
    code = interp.run_script()
    return Result(code, "".join(interp.stdout), "".join(interp.stderr))


def run_command(disk: GuestDisk, command: str, host: GuestHost) -> Result:
    """One SSH exec request's command line, interpreted as `powershell -Command` would."""
    return _run(disk, command, host)


def run_script(disk: GuestDisk, script_text: str, host: GuestHost) -> Result:
    """A .ps1 file's content."""
    return _run(disk, script_text, host)
