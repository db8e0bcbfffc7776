"""The run report table."""

from __future__ import annotations

from winnodes.model.steps import GOLDEN_IMAGE_STEPS, StepId
from winnodes.render.report import StepResult, render_report


def test_one_row_per_step_in_procedure_order() -> None:
    results = [
        StepResult(StepId.G7, "repaired", 2.25, "added ContainerLogsPort | 9182\nsecond line"),
        StepResult(StepId.G1, "ok", 754.0, "reused base VM"),
    ]
    text = render_report(results, GOLDEN_IMAGE_STEPS, title="Golden image")
    lines = text.splitlines()
    assert lines[0] == "## Golden image"
    rows = [line for line in lines if line.startswith(("| G", "| PRE"))]
    assert [r.split("|")[1].strip() for r in rows] == [s.value for s in GOLDEN_IMAGE_STEPS]
    g1 = rows[0]
    assert "| ok | 12 min 34 s | reused base VM |" in g1
    g7 = next(r for r in rows if r.startswith("| G7 "))
    assert "added ContainerLogsPort \\| 9182 second line" in g7 and "2.2 s" in g7
    g8 = next(r for r in rows if r.startswith("| G8 "))
    assert "| pending | — | — |" in g8


def test_results_outside_the_step_list_are_appended() -> None:
    text = render_report(
        [StepResult(StepId.DNS1, "failed", None, "api-int missing")], [StepId.PRE1]
    )
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["PRE-1", "DNS1"]
