"""benchmarks/fault_matrix.py without servers: jobs and shards, the JSON rows jobs hand back, and
the merged report."""

from __future__ import annotations

import pytest

from benchmarks import fault_matrix as fm
from benchmarks import faults
from benchmarks.faults import Cell, Outcome


def test_every_family_module_offers_what_the_runner_calls() -> None:
    for name in fm.FAMILIES:
        mod = fm.family(name)
        assert callable(mod.run_family) and callable(mod.cells), name
        assert mod.LAB, name
        assert all(c.name for c in mod.cells()), name


def test_unknown_family_is_refused_by_name() -> None:
    with pytest.raises(SystemExit, match="unknown family 'ntp'"):
        fm.jobs(["ntp"], {})


def test_shards_cover_a_family_exactly_once() -> None:
    cells = [Cell("fault", f"M{i}") for i in range(11)]
    parts = [fm.shard(cells, i, 3) for i in range(3)]
    assert sorted(c.target for p in parts for c in p) == sorted(c.target for c in cells)
    assert {len(p) for p in parts} == {3, 4}
    todo = fm.jobs(["vcenter", "dns"], {"vcenter": 3})
    assert [j.label for j in todo] == ["vcenter:1/3", "vcenter:2/3", "vcenter:3/3", "dns"]
    assert fm.Job.parse("vcenter:2/3") == fm.Job("vcenter", 1, 3)
    assert fm.Job.parse("dns") == fm.Job("dns")


def test_a_job_row_round_trips_into_the_same_outcome() -> None:
    o = Outcome(
        Cell("fault", "CloneVM_Task", "SystemError", "task", "always", "Failed", "G8"),
        state="Failed",
        failed_step="G8",
        report_step="G8",
        seconds=12.34,
        recovery=5.0,
        hits=5,
    )
    back = fm.outcome(fm.row(o))
    assert back.cell == o.cell
    assert (back.state, back.failed_step, back.hits, back.passed) == ("Failed", "G8", 5, True)


def test_report_sums_families_and_keeps_every_cell() -> None:
    ok = Outcome(Cell("dns", "update", "slow", "", "once"), "Completed", recovery=3.0)
    bad = Outcome(
        Cell("kube", "list:machines", "500", "", "once"), "Failed", problems=["ended Failed"]
    )
    md = fm.report({"dns": [ok], "kube": [bad]}, {"dns": ["dns: clean run 20s"]})
    assert "Cells run: **2**, passed: **1**, failed: **1**" in md
    assert "| dns | " in md and "| 1 | 1 | 0 | 3.0 | dns: clean run 20s |" in md
    assert "## kube:" in md and "FAIL: ended Failed" in md
    assert "clean build 0.0s" not in md
    assert md.count("| fault point |") == 2  # each family's own table
    assert faults.TIMES  # the runner reuses the vCenter family's table
