"""What happens between a VM's power-on and Windows' services running: setup, OOBE or a normal boot.

The guest supervisor decides *when* a guest boots; this module decides *what* the boot does to the
guest's disk, the way the firmware and Windows would:

- no OS on the disk: Windows setup runs only from an attached installation ISO *and* an answer file
  (`autounattend.xml` at the root of any attached CD). Setup installs the edition the ISO carries,
  applies the answer file's specialize/oobeSystem settings, and at first logon runs its
  FirstLogonCommands in order through the PowerShell emulator. Whatever they do not install is not
  there. Without media the firmware finds no OS; without an answer file setup waits for a human;
  either way nothing installs and Tools never report.
- a generalized (sysprep'd) disk: OOBE applies the pending unattend (computer name, time zone,
  password), makes a new machine SID and clears `generalized`. Host keys are not touched here: sshd
  regenerates them at its start only if they are missing (as Windows' sshd does).
- an installed disk: a pending rename takes effect, Automatic services start, the others are stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.guest.state import AUTOMATIC, RUNNING, STOPPED, GuestDisk, GuestState
from lab.guest.windows import new_machine_sid, random_computer_name
from lab.media import Iso

Log = Callable[[str], None]


@dataclass
class BootHost:
    """The `GuestHost` given to the emulator for commands the boot itself runs (FirstLogonCommands):
    their notifications are collected and handled by the supervisor once the boot is over."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def notify(self, event: str, **data: Any) -> None:
        self.events.append((event, data))


@dataclass
class BootOutcome:
    running: bool  # Windows is up (services started)
    kind: str  # "setup" | "oobe" | "boot" | "no-os" | "setup-waits"
    reason: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Media:
    """What the attached CDs offer, by drive letter."""

    installer: tuple[str, dict[str, Any]] | None = None  # (letter, LAB_MEDIA.JSON of the ISO)
    answer_file: tuple[str, str] | None = None  # (letter, autounattend.xml text)
    unreadable: list[str] = field(default_factory=list)


def scan_media(cdroms: dict[str, str]) -> Media:
    media = Media()
    for letter in sorted(cdroms):
        try:
            with Iso(cdroms[letter]) as iso:
                info = iso.info()
                if media.installer is None and info and info.get("kind") == "windows-installer":
                    media.installer = (letter, info)
                if media.answer_file is None and iso.exists("/autounattend.xml"):
                    text = iso.read("/autounattend.xml").decode("utf-8-sig", errors="replace")
                    media.answer_file = (letter, text)
        except Exception as exc:  # not an ISO 9660 image, or missing file
            media.unreadable.append(f"{letter}: {cdroms[letter]} ({exc})")
    return media


def boot(disk: GuestDisk, log: Log) -> BootOutcome:
    """Boot the guest on `disk` (its runtime.json already holds the CD-ROMs); log each step."""
    state = disk.load()
    if not state.installed:
        return _setup(disk, log)
    if state.generalized:
        _oobe(disk, log)
        outcome = _normal_boot(disk, log)
        outcome.kind = "oobe"
        return outcome
    return _normal_boot(disk, log)


def _setup(disk: GuestDisk, log: Log) -> BootOutcome:
    from lab.guest import emulator, unattend, windows

    media = scan_media(disk.runtime().cdroms)
    for bad in media.unreadable:
        log(f"CD-ROM not readable: {bad}")
    if media.installer is None:
        reason = "Operating System not found: the disk is empty and no Windows installation ISO is attached"
        return BootOutcome(False, "no-os", reason)
    letter, info = media.installer
    if media.answer_file is None:
        reason = (
            f"Windows Setup from {letter}: is waiting for input: no autounattend.xml at the root of "
            "any attached CD, so nothing installs and VMware Tools never start"
        )
        return BootOutcome(False, "setup-waits", reason)
    ans_letter, text = media.answer_file
    answer = unattend.parse(text)
    name = (answer.computer_name or "").strip()
    if not name or name == "*":
        name = random_computer_name()
    log(
        f"Windows Setup from {letter}: ({info.get('product_name')} {info.get('display_version')} "
        f"build {info.get('build')}.{info.get('ubr')}) with {ans_letter}:\\autounattend.xml; "
        f"computer name {name}"
    )
    windows.fresh_install(disk, info, name)
    password = getattr(answer.admin_password, "value", "")
    if not password:
        # Windows Server's OOBE asks for the built-in Administrator's password unless the answer
        # file's oobeSystem pass sets one: nobody logs on, so FirstLogonCommands never run.
        reason = (
            "Windows installed, but OOBE is waiting for the Administrator password (no "
            "UserAccounts/AdministratorPassword in the answer file): FirstLogonCommands do not run"
        )
        with disk.edit() as state:
            state.log.append("setup: " + reason)
        return BootOutcome(False, "oobe-waits", reason)
    with disk.edit() as state:
        _apply_settings(state, answer, "setup")
        _start_automatic_services(state)
        state.boot_count += 1
        state.log.append(
            f"setup: installed from {letter}: with answer file {ans_letter}:\\autounattend.xml"
        )
    host = BootHost()
    commands = sorted(answer.first_logon_commands, key=lambda c: int(c[0]))
    if not commands:
        log("FirstLogonCommands: none in the answer file")
    for order, command_line, description in commands:
        result = emulator.run_command(disk, command_line, host)
        out = (result.stdout or "").strip()
        err = (result.stderr or "").strip()
        line = f"FirstLogonCommand {order} ({description or 'no description'}): exit {result.exit_code}"
        log(
            f"{line}: {command_line}"
            + (f"\n  stdout: {out}" if out else "")
            + (f"\n  stderr: {err}" if err else "")
        )
        with disk.edit() as state:
            state.log.append(f"{line}" + (f"; stderr: {err[:500]}" if err else ""))
    return BootOutcome(True, "setup", f"Windows installed as {name}", host.events)


def _apply_settings(state: GuestState, answer: Any, when: str) -> None:
    """Specialize/oobeSystem settings every answer file can carry (fields the state may not model
    are kept in its log)."""
    tz = getattr(answer, "time_zone", None)
    if tz:
        if hasattr(state, "time_zone"):
            state.time_zone = tz
        state.log.append(f"{when}: time zone {tz}")
    password = getattr(answer, "admin_password", None)
    if password is not None:
        if hasattr(state, "admin_password"):
            state.admin_password = password
        state.log.append(f"{when}: Administrator password set")


def _oobe(disk: GuestDisk, log: Log) -> None:
    from lab.guest import unattend

    state = disk.load()
    answer = None
    if state.pending_unattend:
        try:
            path = disk.host_path(state.pending_unattend)
            answer = unattend.parse(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            log(
                f"OOBE: pending unattend {state.pending_unattend} unreadable ({exc}); defaults apply"
            )
        except Exception as exc:  # the parser's own error type
            log(f"OOBE: pending unattend {state.pending_unattend} invalid ({exc}); defaults apply")
    name = (getattr(answer, "computer_name", "") or "").strip()
    if not name or name == "*":
        name = random_computer_name()
    with disk.edit() as state:
        state.computer_name = name
        state.machine_sid = new_machine_sid()
        if answer is not None:
            _apply_settings(state, answer, "oobe")
        state.generalized = False
        state.log.append(
            f"oobe: specialize applied from {state.pending_unattend or '(none)'}; computer name {name}"
        )
        state.pending_unattend = ""
    log(f"OOBE: computer name {name}, new machine SID")


def _start_automatic_services(state: GuestState) -> None:
    for svc in state.services.values():
        svc.status = RUNNING if svc.start_type == AUTOMATIC else STOPPED


def _normal_boot(disk: GuestDisk, log: Log) -> BootOutcome:
    from lab.guest.emulator import wua

    with disk.edit() as state:
        finished = wua.finish_pending(state)
        if finished:
            log(f"updates {', '.join(finished)} completed: build {state.build}.{state.ubr}")
        pending = getattr(state, "pending_computer_name", "")
        if pending:
            log(f"pending rename {state.computer_name} -> {pending} takes effect")
            state.computer_name = pending
            with contextlib.suppress(AttributeError):
                state.pending_computer_name = ""  # type: ignore[attr-defined]
        _start_automatic_services(state)
        state.boot_count += 1
        running = sorted(s.name for s in state.services.values() if s.status == RUNNING)
    log(f"Windows up as {state.computer_name}; running services: {', '.join(running) or 'none'}")
    return BootOutcome(True, "boot", f"booted as {state.computer_name}")


def guest_log_path(logs: Path, vm: str) -> Path:
    return logs / "guests" / f"{vm}.log"
