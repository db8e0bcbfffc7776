"""The SSH fault family (benchmarks/faults_ssh.py): its command kinds and cells without servers, and
one seeded cell against a private lab (slow; replay with WINNODES_FAULT_SEED=<seed>)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from benchmarks import faults, faults_ssh


def test_kinds_come_from_the_record_grouped_by_the_step_that_first_sends_them() -> None:
    records = [{"text": t} for t in ("a", "b", "a", "c", "b", "d", "sftp")]
    marks = [("", 0), ("G4", 1), ("G5", 3), ("G9", 5)]
    kinds = faults_ssh.kinds_from_record(records, marks)
    assert [(k.label, k.text) for k in kinds] == [
        ("G4.1", "b"),
        ("G4.2", "a"),
        ("G5.1", "c"),
        ("G9.1", "d"),
        ("G9.2", "sftp"),
    ]
    assert kinds[0].pattern == "^b$"


def test_cells_cover_every_kind_fault_and_repetition() -> None:
    kinds = faults_ssh.recorded_kinds()
    cells = faults_ssh.cells()
    names = {c.name for c in cells}
    assert len(names) == len(cells)  # no cell twice
    assert {c.kind for c in cells} == {"ssh"}
    for k in kinds:
        for fault in faults_ssh.FAULTS:
            for times in faults.TIMES:
                assert f"ssh:{k.label}:{fault}:{times}" in names
    # "always" fails naming the step of the command, except where the session is expected to go
    failed = [c for c in cells if c.expect == "Failed"]
    assert failed and all(c.times == "always" and c.step for c in failed)
    down = [k for k in kinds if faults_ssh.GOES_DOWN.search(k.text)]
    assert down  # Restart-Computer (G6u) and sysprep (G9) are in a clean build
    for k in down:
        cell = next(c for c in cells if c.name == f"ssh:{k.label}:drop-after:always")
        assert cell.expect == "Completed"
    # pause + kill -9 in G5, G6, G7, G9 on the step's first command, re-run fresh
    pauses = [c for c in cells if c.fault == "pause" and c.times == "once"]
    assert sorted(c.step for c in pauses) == sorted(faults_ssh.PAUSE_STEPS)
    assert all(c.expect == "Killed" and c.target.endswith(".1") for c in pauses)
    # ... and on every command that takes the guest down, the killed build then resumed
    resumes = {c.target for c in cells if c.fault == "pause" and c.times == "resume"}
    assert resumes == {k.label for k in down}


def test_the_recorded_kinds_include_every_in_guest_step() -> None:
    steps = {k.step for k in faults_ssh.recorded_kinds()}
    assert {"G4", "G5", "G3a", "G3b", "G3c", "G6", "G6u", "G7", "G9"} <= steps


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from lab import cli

    with cli.private_lab(tmp_path_factory.mktemp("lab-faults-ssh") / "lab", faults_ssh.LAB) as ctx:
        yield dict(ctx.env)


@pytest.mark.lab
@pytest.mark.slow
def test_seeded_cell_of_the_ssh_family(env: dict[str, str], prefect_api: None) -> None:
    seed = int(os.environ.get("WINNODES_FAULT_SEED", faults_ssh.DEFAULT_SEED))
    print(f"\nSSH fault family sample: seed {seed} (replay: WINNODES_FAULT_SEED={seed})")
    outcomes, base = faults_ssh.run_family(env, n=1, seed=seed)
    print(faults.report(outcomes, seed, base))
    assert len(outcomes) == 1
    assert outcomes[0].passed, outcomes[0].problems
