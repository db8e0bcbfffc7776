"""Rolling rotation of the Windows nodes onto a new template (ROT1-ROT4), then retention (G10).

A golden image is only worth rebuilding if the fleet ends up on it, and changing a MachineSet's
template affects only new Machines. This flow moves every Machine onto the MachineSet's template one
at a time with a surge of one, so there are never fewer Ready Windows nodes than before:

    ROT1  point the MachineSet at the template: the `windows-machineset` flow with wait=False
          (M1, C2, C1, M7 - a Windows template, provenance -, PRE-3, C3 server-side apply) at the
          set's live replica count
    loop, each round deciding from the real state (winnodes.plan.rotation.next_step):
    ROT2  record the baseline, scale to baseline + 1, wait until every Machine's Node is Ready (V1)
    ROT3  cordon and drain the oldest node still on an older template (eviction API, PDBs)
    ROT4  mark its Machine delete-machine, scale back to the baseline, wait until it is gone
    G10   retention, which never deletes a template a MachineSet or Machine still names

A crash anywhere leaves state the next run reads: the replica count, the baseline annotation, the
Machines' providerSpec templates, cordoned nodes and marked Machines. No step remembers anything.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import yaml
from prefect import flow
from pydantic import BaseModel, Field

from flows.machineset import machineset as machineset_flow
from flows.reporting import RunReport
from tasks import openshift as ocp
from tasks import rotation as rt
from tasks import vsphere as vt
from winnodes import errors
from winnodes.model.config import PipelineConfig
from winnodes.model.steps import ROTATION_STEPS, StepId
from winnodes.plan.rotation import RotationState, RotationStep, drift_summary, next_step


class RotationResult(BaseModel):
    """What the rotation did (also what the parent flow reports)."""

    machineset: str
    template: str = Field(description="The template every Machine runs now (M7).")
    replaced: list[str] = Field(default_factory=list, description="Machines retired (ROT4).")
    drained: list[str] = Field(default_factory=list, description="Nodes drained (ROT3).")
    seconds_per_node: list[float] = Field(default_factory=list, description="Surge to deletion.")
    ready: str = ""
    retention: str = ""


class _Rows:
    """One report row per step, whose evidence accumulates over the rounds."""

    def __init__(self, report: RunReport) -> None:
        self.report = report
        self.lines: dict[StepId, list[str]] = defaultdict(list)

    @contextlib.contextmanager
    def step(self, step: StepId) -> Iterator[list[str]]:
        with self.report.step(step) as out:
            lines = self.lines[step]
            yield lines
            out.ok("; ".join(lines))


def _target(config: PipelineConfig, template: str | None) -> str:
    target = template or config.machineset.template or rt.newest_template(config.golden_image)
    if not target:
        raise errors.ValidationError(
            [
                errors.Problem(
                    "ROT1",
                    "machineset.template",
                    "required",
                    "machineset.template: no template given and the series "
                    f"{config.golden_image.names.template_series!r} has none (ROT1)",
                )
            ]
        )
    return target


def _point(config: PipelineConfig, target: str, rows: _Rows) -> dict[str, Any]:
    """ROT1: the MachineSet names `target` (checked like any MachineSet: M7, PRE-3...), at the
    replica count it has now, so a re-run in the middle of a rotation changes no replicas."""
    ms, cl, gi = config.machineset, config.cluster, config.golden_image
    with rows.step(StepId.ROT1) as lines:
        state = rt.read_state(cl.openshift_block, ms.name)
        if state is None:
            raise errors.NotFound(
                f"machineset {ms.name} does not exist in openshift-machine-api: create it first "
                "(winnodes run --only machineset); a rotation replaces Machines of a set (ROT1)",
                step_id="ROT1",
            )
        applied = machineset_flow(
            cluster=cl,
            machineset=ms.model_copy(update={"replicas": state.replicas, "template": target}),
            waits=config.waits,
            vsphere_credentials_block=gi.vsphere_credentials_block,
            windows_access_block=gi.windows_access_block,
            template=target,
            base_vm=gi.names.base_vm,
            wait=False,
        )
        lines.append(f"machineset {ms.name} {applied.action}: template {applied.template}")
        if drift := drift_summary(state):
            lines.append(f"before: {drift}")
    manifest: dict[str, Any] = yaml.safe_load(applied.yaml)
    return manifest


def _surge(
    config: PipelineConfig, manifest: dict[str, Any], step: RotationStep, rows: _Rows
) -> str:
    """ROT2: scale to baseline + 1 (unless already there) and wait until every Node is Ready."""
    cl, ms = config.cluster, config.machineset
    with rows.step(StepId.ROT2) as lines:
        since = datetime.now(UTC)
        if step.kind == "surge":
            assert step.replicas is not None
            lines.append(rt.scale(cl.openshift_block, manifest, step.replicas, "ROT2"))
        r = ocp.v1_wait_ready(
            cl.openshift_block, ms.name, float(config.waits.machineset_ready_seconds), since
        )
        lines.append(r.summary)
    return r.summary


def _replace(
    config: PipelineConfig, manifest: dict[str, Any], step: RotationStep, rows: _Rows
) -> tuple[str | None, str]:
    """ROT3 + ROT4 for the step's victim: drain its node, retire its Machine."""
    cl, rot = config.cluster, config.rotation
    victim = step.victim
    assert victim is not None and step.replicas is not None
    with rows.step(StepId.ROT3) as lines:
        if victim.node:
            lines.append(
                rt.drain_node(cl.openshift_block, victim.node, float(rot.drain_seconds)).evidence()
            )
        else:
            lines.append(f"machine {victim.name} has no node: nothing to drain")
    with rows.step(StepId.ROT4) as lines:
        lines.append(
            rt.retire_machine(
                cl.openshift_block,
                manifest,
                victim.name,
                step.replicas,
                float(rot.machine_deleted_seconds),
            )
        )
    return victim.node, victim.name


def _rounds(
    config: PipelineConfig, manifest: dict[str, Any], rows: _Rows, out: RotationResult
) -> RotationState:
    """ROT2-ROT4 until next_step says done; each round starts from the real state."""
    cl, ms, rot = config.cluster, config.machineset, config.rotation
    started: float | None = None
    for _ in range(4 * (ms.replicas + 4)):
        state = rt.read_state(cl.openshift_block, ms.name)
        if state is None:
            raise errors.NotFound(
                f"machineset {ms.name} vanished during the rotation", step_id="ROT2"
            )
        step = next_step(state)
        if step.kind == "done":
            if state.baseline is not None:
                rt.record_baseline(cl.openshift_block, ms.name, None)
            return state
        if step.kind == "record-baseline":
            rt.record_baseline(cl.openshift_block, ms.name, step.replicas)
        elif step.kind == "await-deletion":
            for m in (m for m in state.machines if m.deleting):
                rt.await_deletion(cl.openshift_block, m.name, float(rot.machine_deleted_seconds))
        elif step.kind in ("surge", "await-ready"):
            started = started or time.monotonic()
            out.ready = _surge(config, manifest, step, rows)
        elif step.kind == "scale-back":
            assert step.replicas is not None
            with rows.step(StepId.ROT4) as lines:
                lines.append(rt.scale(cl.openshift_block, manifest, step.replicas, "ROT4"))
        else:
            started = started or time.monotonic()
            node, machine = _replace(config, manifest, step, rows)
            out.replaced.append(machine)
            out.drained += [node] if node else []
            out.seconds_per_node.append(round(time.monotonic() - started, 1))
            started = None
    raise errors.PermanentError(
        f"the rotation of {ms.name} did not converge; read the rotation report", step_id="ROT4"
    )


def _prune(config: PipelineConfig, rows: _Rows) -> str:
    """G10 retention after the rotation: old templates no Machine uses any more can go."""
    with rows.step(StepId.G10) as lines:
        result = vt.g10_retention(config.golden_image, None, config.cluster.openshift_block)
        lines.append(f"retention keeps {config.golden_image.keep_templates}: {result.summary}")
    return result.summary


@flow(name="rotate-windows-nodes", log_prints=True, **vt.VCENTER_SESSION_HOOKS)
def rotate(config: PipelineConfig, template: str | None = None) -> RotationResult:
    """Move every Windows Machine of the MachineSet onto `template`, one at a time (surge 1).

    Args:
        config: the pipeline's configuration (MachineSet, cluster, rotation deadlines, retention).
        template: the template to rotate onto; default machineset.template, else the newest
            template of the golden image series.

    Returns:
        RotationResult: Machines replaced, nodes drained, time per node, retention.

    Raises:
        ValidationError: the template is refused (M7: not Windows, missing, ...); nothing written.
        NotFound: the MachineSet does not exist (ROT1).
        DrainBlocked: a drain did not finish by its deadline (ROT3); nothing deleted.
        MachineSetFailed / MachineSetNotReady: the surge Machine did not become Ready (ROT2).
    """
    ms = config.machineset
    report = RunReport(f"Rotation of MachineSet {ms.name}", ROTATION_STEPS, f"rotation-{ms.name}")
    rows = _Rows(report.start())
    try:
        target = _target(config, template)
        manifest = _point(config, target, rows)
        out = RotationResult(machineset=f"openshift-machine-api/{ms.name}", template=target)
        final = _rounds(config, manifest, rows, out)
        for step in (StepId.ROT2, StepId.ROT3, StepId.ROT4):
            if step not in report.results:
                with report.step(step) as o:
                    o.skipped(f"every machine already runs {final.template}")
        out.retention = _prune(config, rows)
    finally:
        report.publish()
    return out
