"""What every run leaves behind: a report with one row per procedure step, progress while it runs,
a table of the objects it created or changed, and Prefect events for milestones.

Flows wrap each step in `report.step(StepId.X)`; the recorder times it, records "ok", "repaired",
"skipped" or "failed" with its evidence (what was checked and seen), moves the progress artifact,
and on failure emits `winnodes.step.failed` (so a Prefect automation can notify) before re-raising.
The evidence strings come from tasks, which build them from adapter results, never from secrets.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.events import emit_event

from winnodes.errors import ValidationError, WinNodesError
from winnodes.model.steps import StepId
from winnodes.render.report import StepResult, render_report

EVENT_PREFIX = "winnodes"


@dataclass
class StepOutcome:
    """Filled in by the flow inside `report.step(...)`."""

    status: str = "ok"
    evidence: str = ""

    def repaired(self, evidence: str) -> None:
        self.status, self.evidence = "repaired", evidence

    def skipped(self, evidence: str) -> None:
        self.status, self.evidence = "skipped", evidence

    def ok(self, evidence: str) -> None:
        self.status, self.evidence = "ok", evidence


@dataclass
class RunReport:
    """A run's step results and created objects, published as Prefect artifacts."""

    title: str
    steps: Sequence[StepId]
    key: str  # artifact key prefix, lower-case letters, digits and dashes
    results: dict[StepId, StepResult] = field(default_factory=dict)
    objects: list[dict[str, str]] = field(default_factory=list)
    _progress: UUID | None = None

    def start(self) -> RunReport:
        self._progress = _maybe(
            create_progress_artifact,
            progress=0.0,
            key=f"{self.key}-progress",
            description=f"{self.title}: steps done",
        )
        return self

    @contextlib.contextmanager
    def step(self, step: StepId, resource: str | None = None) -> Iterator[StepOutcome]:
        outcome = StepOutcome()
        t0 = time.monotonic()
        try:
            yield outcome
        except BaseException as exc:
            if (
                isinstance(exc, WinNodesError)
                and not isinstance(exc, ValidationError)  # its problems name their steps
                and exc.step_id is None
            ):
                exc.step_id = step.value  # an adapter call made without one: name the step here
            self.results[step] = StepResult(step, "failed", time.monotonic() - t0, _describe(exc))
            self.emit("step.failed", step, resource, {"error": _describe(exc)})
            self._update_progress()
            raise
        self.results[step] = StepResult(
            step, outcome.status, time.monotonic() - t0, outcome.evidence
        )
        self._update_progress()

    def created(self, kind: str, name: str, action: str, detail: str = "") -> None:
        """Remember an object the run created, changed or found already in place."""
        self.objects.append({"kind": kind, "name": name, "action": action, "detail": detail})

    def emit(
        self,
        what: str,
        step: StepId | None,
        resource: str | None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """A Prefect event `winnodes.<what>` about `resource` (e.g. a template's inventory path)."""
        res_id = f"{EVENT_PREFIX}.{resource or self.key}"
        related = (
            [
                {
                    "prefect.resource.id": f"{EVENT_PREFIX}.step.{step.value}",
                    "prefect.resource.role": "step",
                }
            ]
            if step
            else []
        )
        _maybe(
            emit_event,
            event=f"{EVENT_PREFIX}.{what}",
            resource={"prefect.resource.id": res_id, "prefect.resource.name": resource or self.key},
            related=related,
            payload=payload or {},
        )

    def markdown(self) -> str:
        return render_report(self.results.values(), self.steps, self.title)

    def publish(self) -> None:
        _maybe(
            create_markdown_artifact,
            markdown=self.markdown(),
            key=f"{self.key}-report",
            description=self.title,
        )
        if self.objects:
            _maybe(
                create_table_artifact,
                table=self.objects,
                key=f"{self.key}-objects",
                description=f"{self.title}: objects created or changed",
            )

    def _update_progress(self) -> None:
        if self._progress is None or not self.steps:
            return
        done = sum(1 for s in self.steps if s in self.results)
        _maybe(
            update_progress_artifact,
            artifact_id=self._progress,
            progress=100.0 * done / len(self.steps),
        )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _maybe(fn: Any, **kwargs: Any) -> Any:
    """Artifacts and events need a flow run context; outside one (unit tests of pure helpers) they
    are skipped rather than failing the work they describe."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return None
    return fn(**kwargs)
