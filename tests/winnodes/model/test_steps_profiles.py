"""Step IDs and requirement profiles match docs/procedure.md."""

from __future__ import annotations

import pytest

from winnodes.model.profiles import PROFILES, get_profile, os_build_ok, tools_version_ok
from winnodes.model.steps import GOLDEN_IMAGE_STEPS, STEP_TITLES, StepId


def test_every_documented_step_has_an_id_and_a_title() -> None:
    ids = {s.value for s in StepId}
    expected = {f"G{i}" for i in range(1, 11)} | {"G3a", "G3b", "G3c"}
    expected |= {"DNS1", "V1"} | {f"PRE-{i}" for i in range(1, 5)}
    expected |= {f"M{i}" for i in range(1, 10)} | {f"C{i}" for i in range(1, 4)}
    assert expected <= ids
    assert set(STEP_TITLES) == set(StepId)
    assert StepId("G3a").summary.startswith("tools.conf")


def test_golden_image_steps_are_in_procedure_order() -> None:
    assert GOLDEN_IMAGE_STEPS[0] is StepId.G1 and GOLDEN_IMAGE_STEPS[-1] is StepId.G10


def test_profiles_table() -> None:
    old, cur = PROFILES["ocp-4.9"], PROFILES["current"]
    assert old.runtime == "docker" and old.firewall_ports == (10250,)
    assert cur.runtime == "none" and cur.firewall_ports == (10250, 9182)
    assert old.hotfix == "KB4565351" and cur.hotfix == "KB5012637"
    assert old.min_tools_version == cur.min_tools_version == (11, 0, 6)
    assert old.firewall[0].display_name == "ContainerLogsPort"


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"ocp-4\.9"):
        get_profile("4.10")


@pytest.mark.parametrize(
    ("version", "ok"),
    [((11, 0, 6), True), ((12, 1, 5), True), ((11, 0, 5), False), ((10, 3, 10), False)],
)
def test_tools_version(version: tuple[int, int, int], ok: bool) -> None:
    assert tools_version_ok(version, PROFILES["current"]) is ok


@pytest.mark.parametrize(
    ("profile", "build", "ubr", "ok"),
    [
        ("current", 20348, 681, True),
        ("current", 20348, 680, False),
        ("current", 26100, 1, True),
        ("current", 17763, 9999, False),  # WS2019 is not supported on vSphere
        ("ocp-4.9", 19042, 1083, True),
        ("ocp-4.9", 20348, 681, False),
    ],
)
def test_os_build(profile: str, build: int, ubr: int, ok: bool) -> None:
    assert os_build_ok(build, ubr, PROFILES[profile]) is ok
