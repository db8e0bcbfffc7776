"""What happens between a VM's power-on and Windows' services running: setup, OOBE or a normal boot.

The guest supervisor decides *when* a guest boots; this module decides *what* the boot does to the
guest's disk, the way the firmware and Windows would:

- no OS on the disk: Windows setup runs only from an attached installation ISO *and* an answer file
  (`autounattend.xml` at the root of any attached CD). Setup installs the edition the ISO carries,
  applies the answer file's specialize/oobeSystem settings, keeps a copy of the answer file in
  C:\\Windows\\Panther, runs SetupComplete.cmd if there is one, and hands the FirstLogonCommands to
  the supervisor, which runs them (`run_first_logon`) *while* Windows runs: VMware Tools report as
  soon as a command installed them, later commands take their time. Whatever they do not install
  is not there. Without media the firmware finds no OS; without an answer file setup waits for a
  human; either way nothing installs and Tools never report.
- a generalized (sysprep'd) disk: OOBE applies the pending unattend (computer name, time zone,
  password), makes a new machine SID and clears `generalized`, then SetupComplete.cmd runs. Host keys are not touched here: sshd
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
from lab.guest.timing import Timing, spend
from lab.guest.windows import new_machine_sid, random_computer_name
from lab.media import Iso

Log = Callable[[str], None]
#: Windows Setup caches the answer file it used here (and keeps it; passwords included, see
#: docs/lab-fidelity.md).
PANTHER_UNATTEND = "C:\\Windows\\Panther\\unattend.xml"
SETUP_COMPLETE = "C:\\Windows\\Setup\\Scripts\\SetupComplete.cmd"


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
    first_logon: list[tuple[int, str, str]] = field(default_factory=list)


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
        host = BootHost()
        run_setup_complete(disk, host, log)
        outcome.events = host.events
        return outcome
    return _normal_boot(disk, log)


def _setup(disk: GuestDisk, log: Log) -> BootOutcome:
    from lab.guest import unattend, windows

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
    refused = windows_pe_refuses(info, answer, disk.runtime().boot_disk_controller, disk)
    if refused is not None:
        kind, reason = refused
        return BootOutcome(False, kind, f"Windows Setup from {letter}: {reason}")
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
    panther = disk.host_path(PANTHER_UNATTEND)
    panther.parent.mkdir(parents=True, exist_ok=True)
    panther.write_text(text, encoding="utf-8")  # Windows Setup's cached copy, kept after setup
    host = BootHost()
    run_setup_complete(disk, host, log)
    commands = sorted(answer.first_logon_commands, key=lambda c: int(c[0]))
    if not commands:
        log("FirstLogonCommands: none in the answer file")
    return BootOutcome(
        True, "setup", f"Windows installed as {name}", host.events, first_logon=commands
    )


def run_first_logon(
    disk: GuestDisk,
    commands: list[tuple[int, str, str]],
    host: Any,
    log: Log,
    timing: Timing,
    go_on: Callable[[], bool],
) -> None:
    """The Administrator's first logon: FirstLogonCommands one after the other, in Order, while
    Windows' services (VMware Tools once command N installs them) already run. Each command takes
    the time its work takes (the emulator spends the timing profile's durations), so Tools report
    the IP long before a later command (the OpenSSH capability) is done. `go_on()` False (the VM
    went down) stops before the next command."""
    from lab.guest import emulator

    for order, command_line, description in commands:
        if not go_on() or not spend(timing, "command"):
            log(f"FirstLogonCommand {order}: not run (Windows went down)")
            return
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
        host.notify("changed")


def run_setup_complete(disk: GuestDisk, host: Any, log: Log) -> bool:
    """%WINDIR%\\Setup\\Scripts\\SetupComplete.cmd, as Windows Setup runs it after setup and after
    a generalized image's OOBE, before the logon screen, as SYSTEM; exit codes are not checked;
    logged in C:\\Windows\\Panther\\UnattendGC\\setupact.log. The lab runs each line that starts a
    program (cmd.exe and PowerShell parse those alike); other cmd.exe syntax is refused in the log."""
    from lab.guest import emulator

    try:
        script = disk.host_path(SETUP_COMPLETE)
    except ValueError:
        return False
    if not script.is_file():
        return False
    raw = script.read_bytes()
    text = raw.decode("utf-8-sig", errors="replace")
    gc_log = disk.host_path("C:\\Windows\\Panther\\UnattendGC")
    gc_log.mkdir(parents=True, exist_ok=True)
    lines = [f"Info [SetupComplete] running {SETUP_COMPLETE}"]
    for ln in text.splitlines():
        cmd = ln.strip()
        low = cmd.lower()
        if not cmd or low.startswith(("rem ", "::", "@echo")) or low == "rem":
            continue
        result = emulator.run_command(disk, cmd.lstrip("@"), host)
        lines.append(f"Info [SetupComplete] {cmd[:120]}: exit {result.exit_code}")
        if result.stderr.strip():
            lines.append(f"Info [SetupComplete] stderr: {result.stderr.strip()[:500]}")
    with open(gc_log / "setupact.log", "a", encoding="utf-8", newline="\r\n") as fh:
        fh.write("\n".join(lines) + "\n")
    log(f"SetupComplete.cmd ran as SYSTEM ({len(lines) - 1} commands)")
    return True


#: Boot-disk controllers Windows PE (Windows Server 2016-2025 media) has no inbox driver for: the
#: disk is invisible to setup unless DriverPaths give one. VMware KB 1010398 (PVSCSI needs the driver
#: from the Tools ISO during installation); BusLogic has had no Windows driver since Server 2008.
NEEDS_DRIVER = {"pvscsi": "pvscsi.inf", "buslogic": "buslogic.inf"}

LICENSE_TERMS_ERROR = (
    "Windows cannot find the Microsoft Software License Terms. Make sure the installation sources "
    "are valid and restart the installation."
)
DISK_CONFIGURATION_ERROR = (
    "Windows could not apply the unattend answer file's <DiskConfiguration> setting."
)


def windows_pe_refuses(
    info: dict[str, Any], answer: Any, controller: str, disk: GuestDisk
) -> tuple[str, str] | None:
    """What Windows PE stops at before anything is written to the disk, as (kind, reason), or None.

    - image selection: without ImageInstall/OSImage/InstallFrom/MetaData and more than one image in
      install.wim, setup waits on "Select the operating system you want to install"; a /IMAGE/NAME
      (or /IMAGE/INDEX) that names no image of this ISO fails with the License Terms error;
    - the boot disk: on a controller without an inbox driver (PVSCSI), the disk is visible only if a
      DriverPaths entry points at a folder holding the driver on an attached CD, by the letter
      Windows PE really gave that CD (D:, E:, ... in controller/unit order); otherwise DiskID 0 does
      not exist and setup fails with the DiskConfiguration error."""
    images = [str(i) for i in info.get("images") or []]
    meta = {k.strip().upper(): v for k, v in getattr(answer, "image_metadata", [])}
    if images:
        if "/IMAGE/NAME" in meta:
            if meta["/IMAGE/NAME"] not in images:
                return "setup-failed", (
                    f"{LICENSE_TERMS_ERROR} (the answer file's /IMAGE/NAME "
                    f"{meta['/IMAGE/NAME']!r} is not an image of install.wim, which holds: "
                    f"{', '.join(images)})"
                )
        elif "/IMAGE/INDEX" in meta:
            idx = meta["/IMAGE/INDEX"].strip()
            if not idx.isdigit() or not 1 <= int(idx) <= len(images):
                return "setup-failed", (
                    f"{LICENSE_TERMS_ERROR} (the answer file's /IMAGE/INDEX {idx!r} is not an "
                    f"index of install.wim, which holds {len(images)} images)"
                )
        elif len(images) > 1:
            return "setup-waits", (
                "is waiting on 'Select the operating system you want to install': the answer "
                "file's windowsPE pass selects no image (ImageInstall/OSImage/InstallFrom/MetaData) "
                f"and install.wim holds {len(images)}: {', '.join(images)}"
            )
    driver = NEEDS_DRIVER.get(controller)
    if driver is None:
        return None
    cdroms = disk.runtime().cdroms
    seen: list[str] = []
    for path in getattr(answer, "driver_paths", []):
        letter = path[:1].upper()
        if len(path) < 2 or path[1] != ":" or letter not in cdroms:
            seen.append(f"{path} (no drive {letter}: in Windows PE)")
            continue
        folder = path[2:].replace("\\", "/").rstrip("/") or "/"
        try:
            with Iso(cdroms[letter]) as iso:
                if iso.exists(f"{folder}/{driver}"):
                    return None
        except Exception as exc:  # not an ISO
            seen.append(f"{path} ({letter}: unreadable: {exc})")
            continue
        seen.append(f"{path} (no {driver} there on {letter}: {Path(cdroms[letter]).name})")
    return "setup-failed", (
        f"{DISK_CONFIGURATION_ERROR} (setuperr.log: Failed to query disk [0] status. Error code "
        f"is [0x80042405]: the boot disk is on a {controller} controller, Windows PE has no driver "
        "for it, and "
        + (
            f"no DriverPaths entry reaches {driver}: {'; '.join(seen)}"
            if seen
            else "the answer file has no Microsoft-Windows-PnpCustomizationsWinPE DriverPaths"
        )
        + f"; CD-ROMs: {', '.join(f'{k}:={Path(v).name}' for k, v in sorted(cdroms.items())) or 'none'})"
    )


def needs_boot_key(disk: GuestDisk) -> bool:
    """An EFI VM with no OS on its disk starts the Windows ISO's boot loader, which shows "Press any
    key to boot from CD or DVD" and falls through when nobody presses one (BIOS boots the CD at
    once; an installed disk boots Windows when the prompt times out, which is its purpose)."""
    rt = disk.runtime()
    if rt.firmware != "efi" or disk.load().installed:
        return False
    return scan_media(rt.cdroms).installer is not None


def key_in_window(keys: list[dict[str, Any]], prompt_at: float, window: float) -> float | None:
    """Seconds after the prompt of the first key event that arrived while it showed, else None.
    Keys sent before the prompt (during firmware start-up) are not seen by the boot loader."""
    for k in keys:
        at = float(k.get("at", 0))
        if prompt_at <= at <= prompt_at + window:
            return at - prompt_at
    return None


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
