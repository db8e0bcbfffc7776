"""Safe retention (G10): the newest N, this build and anything referenced are kept, with reasons."""

from __future__ import annotations

import pytest

from winnodes.plan.retention import (
    TemplateRef,
    UnfinishedClone,
    plan_retention,
    references_by_template,
    superseded_clones,
)

T = [TemplateRef(f"tpl-{i}", str(i)) for i in range(1, 5)]  # oldest first


@pytest.mark.parametrize(
    ("keep", "refs", "protect", "deleted", "kept_reasons"),
    [
        (1, {}, (), ["tpl-1", "tpl-2", "tpl-3"], {"tpl-4": "newest"}),
        (2, {}, (), ["tpl-1", "tpl-2"], {"tpl-3": "newest", "tpl-4": "newest"}),
        (
            1,
            references_by_template([("Machine w-abcde", "imgs/tpl-2"), ("MachineSet w", "tpl-2")]),
            (),
            ["tpl-1", "tpl-3"],
            {"tpl-2": "Machine w-abcde, MachineSet w", "tpl-4": "newest"},
        ),
        (1, {}, ("tpl-3",), ["tpl-1", "tpl-2"], {"tpl-3": "this build"}),
        (1, None, (), [], {"tpl-1": "unknown", "tpl-4": "newest"}),
        (9, {}, (), [], {"tpl-1": "newest"}),
    ],
)
def test_plan_retention(
    keep: int,
    refs: dict[str, list[str]] | None,
    protect: tuple[str, ...],
    deleted: list[str],
    kept_reasons: dict[str, str],
) -> None:
    plan = plan_retention(T, keep, refs, protect)
    assert plan.delete == deleted
    reasons = {k.name: k.reason for k in plan.kept}
    assert set(reasons) | set(plan.delete) == {t.name for t in T}
    for name, fragment in kept_reasons.items():
        assert fragment in reasons[name]


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError):
        plan_retention(T, 0, {})


# -- clones of abandoned builds (G10) ---------------------------------------------------------------


def test_a_clone_of_an_older_build_whose_run_is_over_goes() -> None:
    # the matrix's kill:G9:boundary:fresh: killed after its clone existed, then a new build
    clones = [
        UnfinishedClone("win-20261208010000", "20261208010000", "run-killed"),
        UnfinishedClone("win-20261208010100", "20261208010100", "run-failed"),
        UnfinishedClone("win-20261208010200", "20261208010200", "run-gone"),
    ]
    states = {"run-killed": "CRASHED", "run-failed": "FAILED", "run-gone": None}
    delete, kept = superseded_clones(clones, "20261208020000", states)
    assert delete == [c.name for c in clones] and kept == []


def test_a_clone_whose_run_still_runs_or_that_names_no_run_stays() -> None:
    clones = [
        UnfinishedClone("win-20261208010000", "20261208010000", "run-live"),
        UnfinishedClone("win-20261208010100", "20261208010100", None),
        UnfinishedClone("win-20261208030000", "20261208030000", "run-newer"),
        UnfinishedClone("win-20261208020000", "20261208020000", "run-me"),  # this build's own
    ]
    states = {"run-live": "RUNNING", "run-newer": "CRASHED"}
    delete, kept = superseded_clones(clones, "20261208020000", states)
    assert delete == []
    reasons = {k.name: k.reason for k in kept}
    assert reasons == {
        "win-20261208010000": "its flow run run-live is running",
        "win-20261208010100": "no flow run recorded on the clone",
        "win-20261208030000": "a newer or unordered build",
    }
