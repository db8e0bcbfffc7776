"""Shared helpers for the emulator tests: a fresh guest disk and a GuestHost that records events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.guest import windows
from lab.guest.emulator import Result, run_command
from lab.guest.state import GuestDisk

MEDIA_CURRENT = {
    "kind": "windows-installer",
    "product_name": "Windows Server 2022 Datacenter",
    "edition_id": "ServerDatacenter",
    "display_version": "21H2",
    "build": 20348,
    "ubr": 681,
    "hotfixes": ["KB5012637"],
}
MEDIA_OCP49 = {
    "kind": "windows-installer",
    "product_name": "Windows Server Datacenter",
    "edition_id": "ServerDatacenterACor",
    "display_version": "20H2",
    "build": 19042,
    "ubr": 1083,
    "hotfixes": ["KB4565351"],
}


class FakeHost:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def notify(self, event: str, **data: Any) -> None:
        self.events.append((event, data))

    def names(self) -> list[str]:
        return [e for e, _ in self.events]


def make_guest(tmp: Path, media: dict[str, Any] | None = None, ip: str = "127.77.0.5") -> GuestDisk:
    disk = GuestDisk(tmp / "guest")
    windows.fresh_install(disk, media or MEDIA_CURRENT, "winhost")
    rt = disk.runtime()
    rt.ip = ip
    rt.vm = "vm-42"
    disk.save_runtime(rt)
    return disk


def ps(disk: GuestDisk, command: str, host: FakeHost | None = None) -> Result:
    return run_command(disk, command, host or FakeHost())
