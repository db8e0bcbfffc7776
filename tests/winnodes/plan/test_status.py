"""`winnodes status` text from read state (pure)."""

from __future__ import annotations

from winnodes.plan.retention import TemplateRef
from winnodes.plan.rotation import MachineView, RotationState
from winnodes.plan.status import StatusInput, status_text


def test_status_shows_templates_users_nodes_drift_and_plan() -> None:
    state = RotationState(
        "winworker",
        "imgs/tpl-2",
        3,
        None,
        (
            MachineView("winworker-a", "1", "imgs/tpl-1", "Running", "winworker-a", True),
            MachineView("winworker-b", "2", "imgs/tpl-1", "Running", "winworker-b", True),
            MachineView("winworker-c", "3", "imgs/tpl-2", "Running", "winworker-c", True),
        ),
    )
    users = [
        ("MachineSet winworker", "imgs/tpl-2"),
        ("Machine winworker-a", "imgs/tpl-1"),
        ("Machine winworker-b", "imgs/tpl-1"),
        ("Machine winworker-c", "imgs/tpl-2"),
        ("MachineSet lin", "x-rhcos"),
    ]
    text = status_text(
        StatusInput(
            "tpl",
            [TemplateRef("tpl-1", "1", "2026-01-01"), TemplateRef("tpl-2", "2", "2026-01-08")],
            state,
            users,
        )
    )
    assert "tpl-1  build 1  2026-01-01  used by: Machine winworker-a, Machine winworker-b" in text
    assert "x-rhcos  (not in the series)" in text
    assert (
        "machine winworker-a  node winworker-a Ready  template tpl-1  <- previous template" in text
    )
    assert "drift: 2 of 3 machine(s) on a previous template (imgs/tpl-1)" in text
    assert text.count("round ") == 2


def test_status_without_machineset() -> None:
    text = status_text(StatusInput("tpl", [], None, []))
    assert "none" in text and "machineset: does not exist" in text
