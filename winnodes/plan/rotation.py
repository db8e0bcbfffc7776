"""The rolling rotation as a pure decision over the real state (ROT1-ROT4).

A rotation replaces every Machine whose `providerSpec.value.template` differs from its MachineSet's,
one at a time with a surge of one: scale to baseline + 1 and wait until the new Node is Ready (ROT2),
cordon and drain the oldest Machine still on an older template (ROT3), mark it for deletion and scale
back to the baseline (ROT4; machine-api deletes a Machine annotated `delete-machine` first). The
flow never remembers where it was: each round it reads the MachineSet, its Machines and their Nodes,
and `next_step` says what to do, so a re-run after a crash at any point continues with no extra or
missing Machine. The baseline (the replica count before the rotation) is recorded on the MachineSet
as an annotation before the first surge, because a set at baseline + 1 cannot tell it otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Obj = dict[str, Any]

#: machine-api deletes Machines with this annotation first when a MachineSet scales down
#: (OpenShift docs, "Manually scaling a compute machine set").
DELETE_MACHINE_ANNOTATION = "machine.openshift.io/delete-machine"
#: The replica count a rotation returns to, recorded on the MachineSet while it runs.
BASELINE_ANNOTATION = "winnodes.openshift.io/rotation-baseline-replicas"

StepKind = Literal[
    "done", "record-baseline", "await-deletion", "surge", "await-ready", "replace", "scale-back"
]


@dataclass(frozen=True)
class MachineView:
    """One Machine of the set, as the rotation needs it."""

    name: str
    created: str  # creationTimestamp (RFC 3339 sorts as text)
    template: str
    phase: str = ""
    node: str | None = None
    node_ready: bool = False
    cordoned: bool = False
    deleting: bool = False
    marked: bool = False  # annotated delete-machine


@dataclass(frozen=True)
class RotationState:
    name: str
    template: str  # the MachineSet's template (what every Machine should run)
    replicas: int
    baseline: int | None  # recorded baseline, None when no rotation is under way
    machines: tuple[MachineView, ...] = field(default_factory=tuple)

    @property
    def live(self) -> list[MachineView]:
        return [m for m in self.machines if not m.deleting]

    @property
    def outdated(self) -> list[MachineView]:
        """Live Machines on another template: the ones being drained or marked first, then oldest."""
        old = [m for m in self.live if m.template != self.template]
        return sorted(old, key=lambda m: (not m.marked, not m.cordoned, m.created, m.name))

    @property
    def ready_nodes(self) -> int:
        return sum(1 for m in self.live if m.node_ready)


@dataclass(frozen=True)
class RotationStep:
    kind: StepKind
    reason: str
    replicas: int | None = None  # the replica count to apply (record-baseline, surge, replace)
    victim: MachineView | None = None  # replace: the Machine to drain and retire


def machine_view(machine: Obj, nodes: dict[str, Obj]) -> MachineView:
    """A Machine (API JSON) and the Nodes by name -> MachineView."""
    meta = machine.get("metadata") or {}
    status = machine.get("status") or {}
    value = (((machine.get("spec") or {}).get("providerSpec") or {}).get("value")) or {}
    node_name = (status.get("nodeRef") or {}).get("name")
    node = nodes.get(node_name) if node_name else None
    conds = ((node or {}).get("status") or {}).get("conditions") or []
    return MachineView(
        name=str(meta.get("name") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        template=str(value.get("template") or ""),
        phase=str(status.get("phase") or ""),
        node=str(node_name) if node_name else None,
        node_ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds),
        cordoned=bool(((node or {}).get("spec") or {}).get("unschedulable")),
        deleting=bool(meta.get("deletionTimestamp")),
        marked=bool((meta.get("annotations") or {}).get(DELETE_MACHINE_ANNOTATION)),
    )


def machineset_template(ms: Obj) -> str:
    spec = ((ms.get("spec") or {}).get("template") or {}).get("spec") or {}
    return str(((spec.get("providerSpec") or {}).get("value") or {}).get("template") or "")


def rotation_state(ms: Obj, machines: Sequence[Obj], nodes: dict[str, Obj]) -> RotationState:
    """The state from the API's JSON: the MachineSet, its Machines, the Nodes by name."""
    raw = (ms.get("metadata", {}).get("annotations") or {}).get(BASELINE_ANNOTATION)
    baseline = int(raw) if raw is not None and str(raw).isdigit() else None
    replicas = (ms.get("spec") or {}).get("replicas")
    return RotationState(
        name=str(ms["metadata"]["name"]),
        template=machineset_template(ms),
        replicas=1 if replicas is None else int(replicas),
        baseline=baseline,
        machines=tuple(machine_view(m, nodes) for m in machines),
    )


def next_step(state: RotationState) -> RotationStep:
    """What the rotation does next, from the real state alone (idempotent, crash-safe)."""
    outdated = state.outdated
    deleting = [m for m in state.machines if m.deleting]
    baseline = state.baseline
    if deleting:
        names = ", ".join(m.name for m in deleting)
        return RotationStep("await-deletion", f"machine(s) {names} being deleted (ROT4)")
    if baseline is None:
        if not outdated:
            return RotationStep("done", f"all {len(state.live)} machine(s) run {state.template}")
        return RotationStep(
            "record-baseline",
            f"{len(outdated)} of {len(state.live)} machine(s) on an older template; the rotation "
            f"returns to {state.replicas} replica(s)",
            replicas=state.replicas,
        )
    if not outdated:
        if state.replicas != baseline:
            # Nothing old is left but the set is not at its baseline (the last old Machine was
            # deleted by someone else after the surge): return to the baseline.
            return RotationStep(
                "scale-back",
                f"no machine on an older template; scale back to {baseline} (ROT4)",
                replicas=baseline,
            )
        return RotationStep("done", f"all {len(state.live)} machine(s) run {state.template}")
    if state.replicas < baseline + 1:
        return RotationStep(
            "surge",
            f"{len(outdated)} machine(s) on an older template; scale to {baseline + 1} (ROT2)",
            replicas=baseline + 1,
        )
    fresh = [m for m in state.live if m.template == state.template]
    if len(state.live) < state.replicas or not all(m.node_ready for m in fresh):
        return RotationStep(
            "await-ready", f"waiting for {state.replicas} machine(s) with Ready nodes (V1)"
        )
    victim = outdated[0]
    return RotationStep(
        "replace",
        f"drain and retire {victim.name} (template {victim.template}, node {victim.node or '-'})",
        replicas=baseline,
        victim=victim,
    )


def drift_summary(state: RotationState) -> str:
    """'2 of 3 machines on a previous template (a, b)', or '' when every Machine is current."""
    old = state.outdated
    if not old:
        return ""
    templates = ", ".join(sorted({m.template for m in old}))
    return (
        f"{len(old)} of {len(state.live)} machine(s) on a previous template ({templates}); "
        f"the MachineSet's is {state.template}"
    )


def plan_text(state: RotationState) -> list[str]:
    """What a rotation would do from this state, one line per round (for `winnodes status`)."""
    old = state.outdated
    if not old:
        return [f"nothing to rotate: every machine of {state.name} runs {state.template}"]
    base = state.baseline if state.baseline is not None else state.replicas
    lines = []
    for i, m in enumerate(old, 1):
        lines.append(
            f"round {i}: scale {state.name} to {base + 1}, wait for the new node Ready, cordon and "
            f"drain {m.node or m.name}, delete machine {m.name} ({m.template}), scale back to {base}"
        )
    return lines
