"""The rotation's next step from the real state, table-tested (ROT1-ROT4, crash points included)."""

from __future__ import annotations

from typing import Any

import pytest

from winnodes.plan.rotation import (
    BASELINE_ANNOTATION,
    DELETE_MACHINE_ANNOTATION,
    MachineView,
    RotationState,
    drift_summary,
    next_step,
    plan_text,
    rotation_state,
)

A, B = "imgs/tpl-a", "imgs/tpl-b"


def m(name: str, tpl: str, created: str, **kw: object) -> MachineView:
    defaults: dict[str, object] = {"node": name, "node_ready": True, "phase": "Running"}
    defaults.update(kw)
    return MachineView(name, created, tpl, **defaults)  # type: ignore[arg-type]


OLD3 = (m("w-a", A, "1"), m("w-b", A, "2"), m("w-c", A, "3"))


@pytest.mark.parametrize(
    ("replicas", "baseline", "machines", "kind", "victim", "to"),
    [
        # nothing old, no rotation: done
        (3, None, (m("w-x", B, "1"),) * 1, "done", None, None),
        # start: record the baseline first (before any surge)
        (3, None, OLD3, "record-baseline", None, 3),
        # baseline recorded: surge to 4
        (3, 3, OLD3, "surge", None, 4),
        # crash after the surge, new machine still provisioning: wait
        (4, 3, (*OLD3, m("w-d", B, "4", node=None, node_ready=False)), "await-ready", None, None),
        # machine-api has not created it yet: wait
        (4, 3, OLD3, "await-ready", None, None),
        # new node Ready: replace the oldest old one, back to 3
        (4, 3, (*OLD3, m("w-d", B, "4")), "replace", "w-a", 3),
        # crash during ROT3: the cordoned one is drained first, not the oldest
        (
            4,
            3,
            (m("w-a", A, "1"), m("w-b", A, "2", cordoned=True), m("w-c", A, "3"), m("w-d", B, "4")),
            "replace",
            "w-b",
            3,
        ),
        # crash after marking (before the scale-down): the marked one again
        (
            4,
            3,
            (
                m("w-a", A, "1", cordoned=True),
                m("w-b", A, "2", marked=True),
                m("w-c", A, "3"),
                m("w-d", B, "4"),
            ),
            "replace",
            "w-b",
            3,
        ),
        # scaled back, old machine being deleted: wait for it
        (
            3,
            3,
            (m("w-a", A, "1", deleting=True), m("w-b", A, "2"), m("w-d", B, "4")),
            "await-deletion",
            None,
            None,
        ),
        # all on B, annotation still there: done (the flow removes the annotation)
        (3, 3, (m("w-d", B, "4"), m("w-e", B, "5"), m("w-f", B, "6")), "done", None, None),
        # all on B but above the baseline (old one deleted by someone): scale back
        (4, 3, (m("w-d", B, "4"), m("w-e", B, "5")), "scale-back", None, 3),
    ],
)
def test_next_step(
    replicas: int,
    baseline: int | None,
    machines: tuple[MachineView, ...],
    kind: str,
    victim: str | None,
    to: int | None,
) -> None:
    step = next_step(RotationState("w", B, replicas, baseline, machines))
    assert step.kind == kind
    assert (step.victim.name if step.victim else None) == victim
    assert step.replicas == to


def test_state_from_api_json_reads_templates_nodes_and_marks() -> None:
    def machine(name: str, tpl: str, node: str, **meta: object) -> dict[str, object]:
        return {
            "metadata": {
                "name": name,
                "creationTimestamp": f"2026-01-0{name[-1]}T00:00:00Z",
                **meta,
            },
            "spec": {"providerSpec": {"value": {"template": tpl}}},
            "status": {"phase": "Running", "nodeRef": {"name": node}},
        }

    ms = {
        "metadata": {"name": "w", "annotations": {BASELINE_ANNOTATION: "2"}},
        "spec": {"replicas": 3, "template": {"spec": {"providerSpec": {"value": {"template": B}}}}},
    }
    nodes: dict[str, Any] = {
        "n1": {
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        },
        "n2": {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
    }
    s = rotation_state(
        ms,
        [
            machine("w-1", A, "n1", annotations={DELETE_MACHINE_ANNOTATION: "true"}),
            machine("w-2", B, "n2"),
        ],
        nodes,
    )
    assert (s.template, s.replicas, s.baseline) == (B, 3, 2)
    one, two = s.machines
    assert one.template == A and one.cordoned and one.marked and one.node_ready
    assert two.template == B and not two.node_ready and not two.cordoned
    assert drift_summary(s).startswith("1 of 2 machine(s) on a previous template (imgs/tpl-a)")


def test_plan_text_one_round_per_old_machine() -> None:
    s = RotationState("w", B, 3, None, (*OLD3[:2], m("w-d", B, "4")))
    lines = plan_text(s)
    assert len(lines) == 2 and "scale w to 4" in lines[0] and "w-a" in lines[0]
    assert plan_text(RotationState("w", B, 1, None, (m("w-d", B, "4"),)))[0].startswith("nothing")
