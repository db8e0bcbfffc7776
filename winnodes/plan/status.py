"""`winnodes status`: the series' templates, the Windows MachineSet, its nodes and what a rotation
would do, rendered from what the adapters read (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from winnodes.plan.retention import TemplateRef, references_by_template, template_key
from winnodes.plan.rotation import RotationState, drift_summary, plan_text


@dataclass(frozen=True)
class StatusInput:
    series: str
    templates: Sequence[TemplateRef]  # oldest first
    rotation: RotationState | None  # None when the MachineSet does not exist
    users: Sequence[tuple[str, str]]  # (MachineSet/Machine name, template path) in the namespace


def status_text(s: StatusInput) -> str:
    refs = references_by_template(s.users)
    lines = [f"templates of series {s.series!r} (oldest first):"]
    if not s.templates:
        lines.append("  none")
    for t in s.templates:
        used = ", ".join(sorted(refs.get(t.name, []))) or "not used"
        lines.append(f"  {t.name}  build {t.build_id or '-'}  {t.created or '-'}  used by: {used}")
    foreign = sorted(set(refs) - {t.name for t in s.templates})
    for name in foreign:
        lines.append(f"  {name}  (not in the series)  used by: {', '.join(sorted(refs[name]))}")
    r = s.rotation
    if r is None:
        lines.append("machineset: does not exist")
        return "\n".join(lines) + "\n"
    lines.append(f"machineset {r.name}: template {template_key(r.template)}, replicas {r.replicas}")
    if r.baseline is not None:
        lines.append(f"  a rotation is under way (returns to {r.baseline} replica(s))")
    for m in sorted(r.machines, key=lambda m: (m.created, m.name)):
        state = "Ready" if m.node_ready else "not Ready"
        flags = [f for f, on in (("cordoned", m.cordoned), ("deleting", m.deleting)) if on]
        extra = f" ({', '.join(flags)})" if flags else ""
        lines.append(
            f"  machine {m.name}  node {m.node or '-'} {state}{extra}  template "
            f"{template_key(m.template)}"
            + ("" if m.template == r.template else "  <- previous template")
        )
    drift = drift_summary(r)
    lines.append(f"drift: {drift}" if drift else "drift: none")
    lines.append("a rotation would:")
    lines += [f"  {line}" for line in plan_text(r)]
    return "\n".join(lines) + "\n"
