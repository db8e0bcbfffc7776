"""Safe retention (G10): the newest N, this build and anything referenced are kept, with reasons."""

from __future__ import annotations

import pytest

from winnodes.plan.retention import TemplateRef, plan_retention, references_by_template

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
