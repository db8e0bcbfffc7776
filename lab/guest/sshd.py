"""A real OpenSSH server per Windows guest, configured from the guest's own disk.

Windows' OpenSSH cannot run here, but the SSH protocol is what the automation talks, so each powered-on
guest whose `sshd` service runs and whose firewall allows TCP 22 gets a real `sshd -D` on its own
loopback address. What Windows would decide is read from the guest's disk at every connection:

- host keys: the `ssh_host_*_key` files in `C:\\ProgramData\\ssh` of the guest's disk, so deleting them
  in the guest (before sysprep) really changes the key a clone presents;
- authorized keys: `AuthorizedKeysCommand` runs `python -m lab.guest.sshd authorized-keys <guest dir>`,
  which prints `administrators_authorized_keys` only when its ACL is what Windows' sshd accepts;
- every command (and the SFTP subsystem, via `SSH_ORIGINAL_COMMAND`) goes to the PowerShell emulator
  through `ForceCommand`.

The Linux account `Administrator` is a second name for uid 0 (scripts/system-deps.sh), so key
authentication only (`PermitRootLogin prohibit-password`, no passwords, no PAM).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lab.paths import LabPaths
from lab.process import LabError, log_tail, pid_alive

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
START_TIMEOUT = 10.0


def render_config(
    *,
    ip: str,
    host_keys: list[str],
    pid_file: Path,
    guest_dir: Path,
    python: str = sys.executable,
) -> str:
    """The sshd_config of one guest. Pure: the same inputs give the same text."""
    keys_cmd = f"{python} -m lab.guest.sshd authorized-keys {guest_dir}"
    force = f"{shlex.quote(python)} -m lab.guest.emulator --guest {shlex.quote(str(guest_dir))}"
    lines = [
        f"# guest {guest_dir.name}: written by lab.guest.sshd, rewritten at every start",
        f"ListenAddress {ip}:22",
        *(f"HostKey {k}" for k in host_keys),
        f"PidFile {pid_file}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "AllowUsers Administrator",
        "StrictModes no",
        "UseDNS no",
        "PermitTTY no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "PrintMotd no",
        "LogLevel VERBOSE",
        "SetEnv SHLVL=1",
        "AuthorizedKeysFile none",
        f"AuthorizedKeysCommand {keys_cmd}",
        "AuthorizedKeysCommandUser root",
        f"ForceCommand {force}",
        f"Subsystem sftp {SFTP_SERVER}",
    ]
    return "\n".join(lines) + "\n"


class GuestSshd:
    """The sshd of one guest: config, pid file and log named after the VM's moref."""

    def __init__(self, paths: LabPaths, vm: str, guest_dir: Path) -> None:
        self.paths = paths
        self.vm = vm
        self.guest_dir = Path(guest_dir)
        self.conf = paths.run / f"sshd-{vm}.conf"
        self.pid_file = paths.run / f"sshd-{vm}.pid"
        self.log = paths.logs / "guests" / f"{vm}-sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.ip = ""
        self.host_keys: list[str] = []

    def pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) and _is_sshd(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, ip: str, host_keys: list[str]) -> None:
        """(Re)start sshd for `ip` with `host_keys`; returns once it accepts TCP connections."""
        if self.running():
            if ip == self.ip and host_keys == self.host_keys:
                return
            self.stop(kill_sessions=False)
        if not host_keys:
            raise LabError(f"{self.vm}: sshd has no host key on the guest's disk")
        for key in host_keys:
            # sshd refuses private keys others can read; the guest's ACLs are modelled in its state.
            with contextlib.suppress(FileNotFoundError):
                os.chmod(key, 0o600)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        self.paths.run.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            render_config(
                ip=ip, host_keys=host_keys, pid_file=self.pid_file, guest_dir=self.guest_dir
            )
        )
        with open(self.log, "ab") as out:
            out.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} sshd on {ip}:22\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ip, self.host_keys = ip, list(host_keys)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LabError(
                    f"{self.vm}: sshd exited with status {self._proc.returncode}; "
                    f"last lines of {self.log}:\n{log_tail(self.log, 10)}"
                )
            with contextlib.suppress(OSError), socket.create_connection((ip, 22), timeout=0.5):
                return
            time.sleep(0.02)
        self.stop()
        raise LabError(f"{self.vm}: sshd did not listen on {ip}:22 within {START_TIMEOUT:.0f}s")

    def stop(self, kill_sessions: bool = True) -> bool:
        """Stop the listener; with `kill_sessions` also every open connection (a powered-off VM
        drops them; a stopped Windows service does not). True if something was running."""
        pid = self.pid()
        stopped = False
        if pid is not None:
            victims = _descendants(pid) if kill_sessions else []
            for p in [pid, *victims]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGTERM)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and any(pid_alive(p) for p in [pid, *victims]):
                if self._proc is not None and self._proc.pid == pid:
                    self._proc.poll()
                time.sleep(0.02)
            for p in [pid, *victims]:
                if pid_alive(p):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
            stopped = True
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1.0)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        self.ip, self.host_keys = "", []
        return stopped


def _is_sshd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    """All processes below `pid` (sshd's per-connection children call setsid, so a process group
    kill does not reach them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(") ", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _print_authorized_keys(guest_dir: str) -> int:
    from lab.guest import windows
    from lab.guest.state import GuestDisk

    for line in windows.authorized_keys_for_admin(GuestDisk(Path(guest_dir))):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "authorized-keys":
        return _print_authorized_keys(args[1])
    print("usage: python -m lab.guest.sshd authorized-keys <guest dir>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
