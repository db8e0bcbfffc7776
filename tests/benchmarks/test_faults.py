"""The fault matrix (benchmarks/faults.py): its cells and sampling without servers, and a seeded
sample of cells against a private lab on every `make test` (replay a failure with
WINNODES_FAULT_SEED=<printed seed>, or `benchmarks/faults.py --sample 3 --seed <seed>`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import faults
from tests.winnodes.vsphere.lab_support import small_lab

METHODS = {
    "CloneVM_Task": "G8",
    "RetrievePropertiesEx": "",
    "MarkAsTemplate": "G10",
    "Login": "",
    "Logout": "",
}


def test_matrix_covers_every_method_mode_fault_and_repetition() -> None:
    cells = faults.matrix(METHODS)
    names = {c.name for c in cells}
    assert len(names) == len(cells)  # no cell twice
    for fault in faults.TRANSIENT:
        for times in faults.TIMES:
            assert f"fault:CloneVM_Task:{fault}:task:{times}" in names
            assert f"fault:CloneVM_Task:{fault}:call:{times}" in names
    # TaskInProgress only where vCenter can raise it (a method that starts a task)
    assert not any(n.startswith("fault:MarkAsTemplate:TaskInProgress") for n in names)
    # no "for good" fault where the product must survive it or where no step runs yet
    assert "fault:Logout:SystemError:call:always" not in names
    assert "fault:Login:SystemError:call:always" not in names
    assert "fault:Login:SystemError:call:three" in names
    failed = {c.name: c for c in cells if c.expect == "Failed"}
    assert failed["fault:MarkAsTemplate:NoPermission:call:always"].step == "G10"
    assert all(c.times == "always" for c in failed.values())
    kinds = {c.kind for c in cells}
    assert kinds == {"fault", "delay", "expiry", "kill"}


def test_every_kill_point_comes_back_fresh_and_by_a_retry_of_the_same_run() -> None:
    kills = [c for c in faults.matrix(METHODS) if c.kind == "kill"]
    points = {(c.target, c.mode) for c in kills}
    assert {("G1", "boundary"), ("G10", "boundary"), ("PowerOn", "mid-task")} <= points
    assert {("G2", "mid-wait"), ("G9", "mid-wait")} <= points  # inside the long guest waits
    names = {c.name for c in kills}
    for target, mode in points:
        assert {f"kill:{target}:{mode}:fresh", f"kill:{target}:{mode}:retry"} <= names
    assert len(kills) == 2 * len(points)
    assert all(c.expect == "Killed" for c in kills)


def test_kill_env_says_where_the_flow_run_process_dies_once(tmp_path: Path) -> None:
    once = tmp_path / "killed"
    boundary = faults._kill_env(faults.Cell("kill", "G8", mode="boundary", times="retry"), once)
    assert boundary == {
        "FAULTS_KILL_AT": "G8",
        "FAULTS_KILL_AFTER": "0.0",
        "FAULTS_KILL_ONCE": str(once),
    }
    wait = faults._kill_env(faults.Cell("kill", "G2", mode="mid-wait", times="fresh"), once)
    assert float(wait["FAULTS_KILL_AFTER"]) == faults.MID_WAIT_SECONDS
    # mid-task: the parent kills the process while vCenter runs the (delayed) task
    assert faults._kill_env(faults.Cell("kill", "CloneVm", mode="mid-task"), once) == {}


def test_sample_is_deterministic_for_a_seed() -> None:
    cells = faults.matrix(METHODS)
    assert faults.sample(cells, 3, 7) == faults.sample(cells, 3, 7)
    draws = {tuple(c.name for c in faults.sample(cells, 3, s)) for s in range(5)}
    assert len(draws) > 1  # the seed matters


def test_report_counts_cells_and_names_failures() -> None:
    ok = faults.Outcome(faults.Cell("fault", "CloneVM_Task", "Timedout", "task"), "Completed")
    ok.recovery = 2.5
    bad = faults.Outcome(
        faults.Cell("fault", "MarkAsTemplate", "SystemError", "call", "always", "Failed", "G10"),
        "Failed",
        failed_step="G1",
        report_step="G8",
        problems=["step G8 failed, expected G10"],
    )
    md = faults.report([ok, bad], 42, 30.0)
    assert "Cells: **2**, passed: **1**, failed: **1**; sample seed 42" in md
    assert "Slowest recovery: 2.5s (fault:CloneVM_Task:Timedout:task:once)" in md
    assert "| G8 (G1) |" in md and "| FAIL: step G8 failed, expected G10 |" in md


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from small_lab(tmp_path_factory.mktemp("lab-faults"))


@pytest.mark.lab
@pytest.mark.slow
def test_seeded_sample_of_the_fault_matrix(env: dict[str, str], prefect_api: None) -> None:
    seed = int(os.environ.get("WINNODES_FAULT_SEED", faults.DEFAULT_SEED))
    print(f"\nfault matrix sample: seed {seed} (replay: WINNODES_FAULT_SEED={seed})")
    outcomes, base = faults.run_matrix(env, n=3, seed=seed, skip_known=True)
    print(faults.report(outcomes, seed, base))
    assert len(outcomes) == 3
    assert [o.cell.name for o in outcomes if not o.passed] == []


def test_known_defects_name_cells_of_the_matrix() -> None:
    names = {c.name for c in faults.matrix(METHODS)}
    assert set(faults.KNOWN_DEFECTS) <= names
