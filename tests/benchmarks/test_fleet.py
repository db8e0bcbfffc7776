"""The fleet benchmark's pure arithmetic: the critical path of the lab's simulated waits."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _fleet() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fleet", ROOT / "benchmarks" / "fleet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fleet", module)
    spec.loader.exec_module(module)
    return module


def _task(name: str, entity: str, start: int, end: int | None) -> dict[str, object]:
    return {
        "name": name,
        "entity": entity,
        "started": f"2026-12-07T23:00:{start:02d}Z",
        "completed": None if end is None else f"2026-12-07T23:00:{end:02d}Z",
    }


def test_critical_path_is_the_longest_build_chain_of_tasks_and_boots() -> None:
    fleet = _fleet()
    names = {"vm-1": "a-base", "vm-2": "a-20261207", "vm-3": "b-base", "vm-4": "other"}
    tasks = [
        _task("CreateVm", "vm-1", 0, 1),
        _task("PowerOnVm", "vm-1", 1, 2),
        _task("CloneVm", "vm-2", 10, 13),  # a: 1 + 1 + 3 s of tasks, 1 boot
        _task("PowerOnVm", "vm-3", 5, 6),  # b: 1 s, 1 boot
        _task("CloneVm", "vm-4", 0, 50),  # not a build of the fleet
        _task("PowerOnVm", "vm-3", 7, None),  # still running: no duration
    ]
    got = fleet.critical_path(tasks, names, ["a", "b"], boot=0.5, efi=2.0)
    assert got == 5 + 1 * 0.5 + 2.0
    assert fleet.critical_path([], names, ["a"], boot=0.5, efi=2.0) == 2.0
