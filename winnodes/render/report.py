"""The run report: one Markdown table row per step ID, for the Prefect artifact and the CLI.

A reader checks a run against docs/procedure.md by step ID, so every step appears, in procedure
order, even when it did not run (status "pending"), with what was checked and seen (evidence).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from winnodes.model.steps import StepId

STATUSES = ("ok", "repaired", "skipped", "failed", "pending", "running")


@dataclass(frozen=True)
class StepResult:
    step: StepId
    status: str  # one of STATUSES
    duration_s: float | None = None
    evidence: str = ""


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split()) or "—"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes} min {sec:02d} s"


def render_report(
    results: Iterable[StepResult], steps: Sequence[StepId] | None = None, title: str = "Run report"
) -> str:
    """A Markdown table, one row per step: `steps` in order (missing ones "pending"), then any other
    results in the order given. Evidence is flattened to one line and '|' escaped."""
    by_step: dict[StepId, StepResult] = {}
    for r in results:
        by_step[r.step] = r
    order = list(steps or []) + [s for s in by_step if not steps or s not in steps]
    lines = [
        f"## {title}",
        "",
        "| step | title | status | duration | evidence |",
        "|---|---|---|---|---|",
    ]
    for step in order:
        r = by_step.get(step, StepResult(step, "pending"))
        lines.append(
            f"| {step.value} | {_cell(step.summary)} | {r.status} | {_duration(r.duration_s)} | "
            f"{_cell(r.evidence)} |"
        )
    return "\n".join(lines) + "\n"
