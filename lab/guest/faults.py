"""SSH faults of the lab's Windows guests, injected where the guest answers: in sshd's ForceCommand.

Why. A real guest's SSH misbehaves in a few well-known ways, and automation that talks to it must
survive each: the connection is cut in the middle of a command (network blip, sshd killed, guest
reset), sshd refuses connections for a while (the service restarts: TCP RST, "connection refused"),
a command hangs without output (a stuck cmdlet, a modal installer), or a command is simply still in
flight when the automation's own process dies. The lab's guests run a real OpenSSH sshd whose
ForceCommand is the PowerShell emulator (`lab.guest.emulator`), so the faults act there, on real SSH
connections, and the product under test cannot tell them from the real thing.

A rule selects a guest (VM moref, VM name or guest IP, `fnmatch` pattern; "" = every guest) and a
command (Python regex, `re.search`, on the command line *and* on the script an
`-EncodedCommand` carries, so a rule can name the PowerShell the product sends; `sftp` selects the
SFTP subsystem), and says what happens to a matching command:

- `drop`  when=before: the SSH connection is cut before the command runs (no effect);
          when=after:  the command runs (its effect is on the disk), then the connection is cut
          before its output and exit status are sent: the client cannot know it ran;
- `refuse`: the connection is cut before the command runs and the guest's sshd stops listening
          for `seconds` (connections are refused at TCP level), then listens again (the supervisor
          restarts it, as the Windows service manager restarts sshd);
- `stall`: no output, the connection stays open, for `seconds` (then the command runs normally) or
          for good (`seconds` 0: until the client gives up and the connection closes; the command
          never runs);
- `pause`: the command blocks until `release` (control API), then runs normally: the benchmark
          kills the automation's process while a guest command is in flight.

`times`: the rule acts on the first N matching commands (0: on every one); `hits` counts them.

The rules, hit counts, paused commands and the lab-wide record of every command a guest received
(`ssh-commands.jsonl`: time, VM, name, IP, command text) live in the lab's guests directory, shared
by the ForceCommand processes (one per SSH command) under a lock. The guest supervisor's control
socket serves them (`SshFaultClient`), so tests and benchmarks never touch the files.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import fnmatch
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ACTIONS = ("drop", "refuse", "stall", "pause")
FAULTS_FILE = "ssh-faults.json"
COMMANDS_FILE = "ssh-commands.jsonl"
LOCK_FILE = "ssh-faults.lock"
POLL = 0.05  # how often a paused or stalled command looks for its release / its connection

_ENCODED = re.compile(r"-(?:EncodedCommand|enc|ec|e)\s+([A-Za-z0-9+/=]+)", re.IGNORECASE)


@dataclass
class Rule:
    action: str
    pattern: str = ""
    guest: str = ""
    when: str = "before"  # drop: before | after the command's effect
    seconds: float = 0.0  # refuse: how long; stall: how long (0: for good)
    times: int = 1  # 0: always
    hits: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown SSH fault {self.action!r} (known: {', '.join(ACTIONS)})")
        if self.when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', not {self.when!r}")
        if self.action == "refuse" and self.seconds <= 0:
            raise ValueError("a refuse fault needs seconds > 0")
        re.compile(self.pattern)

    def matches(self, names: tuple[str, ...], texts: tuple[str, ...]) -> bool:
        if self.times and self.hits >= self.times:
            return False
        if self.guest and not any(fnmatch.fnmatchcase(n, self.guest) for n in names if n):
            return False
        return any(re.search(self.pattern, t) for t in texts)


def decoded(command: str) -> str:
    """The script an `-EncodedCommand <base64 UTF-16LE>` carries ("" when there is none)."""
    m = _ENCODED.search(command)
    if not m:
        return ""
    try:
        return base64.b64decode(m.group(1), validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def command_text(command: str) -> str:
    """What a human (and a rule) reads: the decoded script, or the command line itself."""
    return decoded(command) or command


class Store:
    """The lab-wide fault state in the guests directory (see the module docstring)."""

    def __init__(self, guests_dir: Path) -> None:
        self.dir = Path(guests_dir)
        self.file = self.dir / FAULTS_FILE
        self.commands = self.dir / COMMANDS_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.file.read_text()) if self.file.exists() else {}
            except ValueError:
                data = {}
            data.setdefault("rules", [])
            data.setdefault("paused", {})
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                tmp = self.file.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1))
                os.replace(tmp, self.file)

    # -- control side ------------------------------------------------------------------------------
    def add(self, rule: Rule) -> Rule:
        with self._locked() as data:
            data["rules"].append(asdict(rule))
        return rule

    def rules(self) -> list[Rule]:
        with self._locked() as data:
            return [Rule(**r) for r in data["rules"]]

    def clear(self) -> None:
        """Remove every rule and release every paused command."""
        with self._locked() as data:
            data["rules"] = []
            for p in data["paused"].values():
                p["released"] = True

    def paused(self) -> list[dict[str, Any]]:
        with self._locked() as data:
            return [dict(p, token=k) for k, p in data["paused"].items() if not p.get("released")]

    def release(self, rule_id: str = "") -> int:
        """Release the paused commands (of one rule, or all); returns how many."""
        n = 0
        with self._locked() as data:
            for p in data["paused"].values():
                if not p.get("released") and (not rule_id or p["rule"] == rule_id):
                    p["released"] = True
                    n += 1
        return n

    def recorded(self) -> list[dict[str, Any]]:
        """Every command the guests received, oldest first."""
        if not self.commands.exists():
            return []
        return [json.loads(line) for line in self.commands.read_text().splitlines() if line]

    # -- guest side (the ForceCommand process) -------------------------------------------------------
    def take(self, names: tuple[str, ...], command: str) -> Rule | None:
        """Record the command; the first rule it triggers (its hit counted), if any."""
        text = command_text(command)
        vm, name, ip = ((*names, "", "", ""))[:3]
        with self._locked() as data:
            with open(self.commands, "a") as fh:
                fh.write(
                    json.dumps({"t": time.time(), "vm": vm, "name": name, "ip": ip, "text": text})
                    + "\n"
                )
            for raw in data["rules"]:
                rule = Rule(**raw)
                if rule.matches(names, (command, text)):
                    raw["hits"] = rule.hits + 1
                    rule.hits += 1
                    return rule
        return None

    def pause(self, rule: Rule, names: tuple[str, ...], command: str) -> str:
        token = uuid.uuid4().hex[:8]
        with self._locked() as data:
            data["paused"][token] = {
                "rule": rule.id,
                "vm": names[0] if names else "",
                "name": names[1] if len(names) > 1 else "",
                "text": command_text(command)[:500],
                "pid": os.getpid(),
                "since": time.time(),
                "released": False,
            }
        return token

    def released(self, token: str) -> bool:
        with self._locked() as data:
            p = data["paused"].get(token)
            if p is None or p.get("released"):
                data["paused"].pop(token, None)
                return True
            return False


# -- what the ForceCommand process does -------------------------------------------------------------
def connection_processes(pid: int | None = None) -> list[int]:
    """The sshd processes that carry this command's SSH connection: the ancestors named sshd, less
    the topmost one, the listener (its proctitle is rewritten, so it is found by position), which
    keeps running: other connections stay up."""
    out: list[int] = []
    cur = os.getppid() if pid is None else pid
    while cur > 1:
        try:
            comm = Path(f"/proc/{cur}/comm").read_text().strip()
            stat = Path(f"/proc/{cur}/stat").read_text()
        except OSError:
            break
        if comm.startswith("sshd"):
            out.append(cur)
        elif out:
            break  # above the sshd chain
        cur = int(stat.rsplit(") ", 1)[1].split()[1])
    return out[:-1]


def cut_connection(procs: list[int] | None = None) -> None:
    """Kill the processes of this SSH connection (`connection_processes()`, read while the listener
    runs): the kernel closes its TCP socket, and the client sees the connection end without an exit
    status (as when the network or the guest goes)."""
    for p in connection_processes() if procs is None else procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def connection_alive(procs: list[int]) -> bool:
    return bool(procs) and all(Path(f"/proc/{p}").exists() for p in procs)


def wait_while_connected(seconds: float, procs: list[int]) -> bool:
    """Stall: True when `seconds` (0: for good) passed with the connection still open, False when
    the client went away first."""
    end = time.monotonic() + seconds if seconds > 0 else None
    while connection_alive(procs):
        if end is not None and time.monotonic() >= end:
            return True
        time.sleep(POLL)
    return False


def wait_for_release(store: Store, token: str) -> None:
    """Pause: block until released. A client that goes away meanwhile (its process killed) does not
    end the command: as on a real guest, it completes once it may (released), unseen."""
    while not store.released(token):
        time.sleep(POLL)


# -- the control API: through the guest supervisor's socket --------------------------------------------
CONTROL_EVENTS = {"ssh-fault-add", "ssh-fault-list", "ssh-fault-clear", "ssh-fault-release"}


def handle_control(store: Store, event: str, data: dict[str, Any]) -> dict[str, Any]:
    """The supervisor's handler for the control events (no queue: they only touch the store)."""
    if event == "ssh-fault-add":
        rule = store.add(Rule(**{k: v for k, v in data.items() if k != "hits"}))
        return {"rule": asdict(rule)}
    if event == "ssh-fault-list":
        return {
            "rules": [asdict(r) for r in store.rules()],
            "paused": store.paused(),
        }
    if event == "ssh-fault-clear":
        store.clear()
        return {}
    if event == "ssh-fault-release":
        return {"released": store.release(str(data.get("rule", "")))}
    raise ValueError(f"unknown event {event!r}")


class SshFaultClient:
    """What tests and benchmarks use: the guest supervisor's control socket
    (`LAB_SUPERVISOR_SOCKET`)."""

    def __init__(self, socket_path: str | Path) -> None:
        from lab.guest.control import SupervisorClient

        self.client = SupervisorClient(socket_path)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SshFaultClient:
        return cls((env or dict(os.environ))["LAB_SUPERVISOR_SOCKET"])

    def add(
        self,
        action: str,
        pattern: str = "",
        *,
        guest: str = "",
        when: str = "before",
        seconds: float = 0.0,
        times: int = 1,
    ) -> str:
        """Add a rule; returns its id."""
        reply = self.client.call(
            "ssh-fault-add",
            action=action,
            pattern=pattern,
            guest=guest,
            when=when,
            seconds=seconds,
            times=times,
        )
        return str(reply["rule"]["id"])

    def rules(self) -> list[dict[str, Any]]:
        return list(self.client.call("ssh-fault-list")["rules"])

    def hits(self) -> int:
        return sum(int(r["hits"]) for r in self.rules())

    def paused(self) -> list[dict[str, Any]]:
        return list(self.client.call("ssh-fault-list")["paused"])

    def release(self, rule: str = "") -> int:
        return int(self.client.call("ssh-fault-release", rule=rule)["released"])

    def clear(self) -> None:
        self.client.call("ssh-fault-clear")
