"""Safe retention of the golden image's templates (G10), as a pure decision.

Retention keeps the newest `keep` templates of a series and deletes the older ones, except:
- a template that any MachineSet or Machine in openshift-machine-api names in
  `providerSpec.value.template` (a Machine still running it, or a MachineSet that would clone it
  for its next Machine: deleting it makes every scale-up fail), and
- the template of the build that is running (`protect`).
References are matched by the template's name (the last path element), which is conservative: a
same-named template in another folder is kept too. When the references could not be read
(`references is None`), nothing is deleted: not knowing is not permission.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TemplateRef:
    name: str
    build_id: str | None = None
    created: str = ""  # ISO 8601, for display and ordering


@dataclass(frozen=True)
class Kept:
    name: str
    reason: str


@dataclass(frozen=True)
class RetentionPlan:
    delete: list[str]
    kept: list[Kept]

    def summary(self) -> str:
        deleted = ", ".join(self.delete) or "none"
        kept = "; ".join(f"{k.name} ({k.reason})" for k in self.kept) or "none"
        return f"deleted: {deleted}; kept: {kept}"


def template_key(path: str) -> str:
    """A template reference's name: the last element of an inventory path."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def references_by_template(users: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(user, template path) pairs, e.g. ('MachineSet winworker', 'imgs/windows-golden-1'), grouped
    by template name."""
    out: dict[str, list[str]] = {}
    for user, path in users:
        if path:
            out.setdefault(template_key(path), []).append(user)
    return out


def plan_retention(
    templates: Sequence[TemplateRef],
    keep: int,
    references: Mapping[str, Sequence[str]] | None,
    protect: Iterable[str] = (),
) -> RetentionPlan:
    """Which of the series' `templates` (oldest first) to delete and why the others are kept."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the newest template is the one in use")
    protected = set(protect)
    newest = {t.name for t in templates[max(0, len(templates) - keep) :]}
    delete: list[str] = []
    kept: list[Kept] = []
    for t in templates:
        users = (references or {}).get(t.name) or []
        if t.name in newest:
            kept.append(Kept(t.name, f"one of the newest {keep}"))
        elif t.name in protected:
            kept.append(Kept(t.name, "the template of this build"))
        elif users:
            kept.append(Kept(t.name, "referenced by " + ", ".join(sorted(users))))
        elif references is None:
            kept.append(Kept(t.name, "references in openshift-machine-api unknown"))
        else:
            delete.append(t.name)
    return RetentionPlan(delete, kept)


# -- clones of builds that will never finish ------------------------------------------------------
#: Prefect state types of a flow run that will not touch its clone again.
FINISHED_RUN_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


@dataclass(frozen=True)
class UnfinishedClone:
    """A clone of the series that is not a template: a build that stopped between G8 and G10."""

    name: str
    build_id: str
    flow_run: str | None  # the flow run that made it (recorded in the clone spec at G8)


def superseded_clones(
    clones: Iterable[UnfinishedClone],
    current_build: str,
    run_states: Mapping[str, str | None],
) -> tuple[list[str], list[Kept]]:
    """Which unfinished clones the build `current_build`, which has just made its template, removes.

    A clone is removed when its build is older than the current one and the flow run that made it
    is over: its Prefect state is final (a killed run is Crashed once the zombie-run automation saw
    its heartbeats stop) or the run is unknown to this Prefect server (`run_states[run] is None`).
    A clone whose run still runs is kept (that build may still finish), and so is one that names no
    flow run (made before runs were recorded, or by hand): nothing proves it is abandoned.
    """
    delete: list[str] = []
    kept: list[Kept] = []
    for clone in clones:
        if clone.build_id == current_build:
            continue
        if not (clone.build_id.isdigit() and current_build.isdigit()) or int(clone.build_id) > int(
            current_build
        ):
            kept.append(Kept(clone.name, "a newer or unordered build"))
            continue
        if not clone.flow_run:
            kept.append(Kept(clone.name, "no flow run recorded on the clone"))
            continue
        state = run_states.get(clone.flow_run, "UNREAD")
        if state is None or state in FINISHED_RUN_STATES:
            delete.append(clone.name)
        else:
            kept.append(Kept(clone.name, f"its flow run {clone.flow_run} is {state.lower()}"))
    return delete, kept
