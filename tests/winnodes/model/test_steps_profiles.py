"""Step IDs and requirement profiles match docs/procedure.md."""

from __future__ import annotations

import pytest

from winnodes.model.profiles import (
    PROFILES,
    get_profile,
    os_build_ok,
    os_build_problem,
    parse_os_build,
    parse_wmco_version,
    tools_version_ok,
    wmco_supports,
)
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


@pytest.mark.parametrize(
    ("profile", "build", "ubr", "expected"),
    [
        ("current", 20348, 681, None),
        ("current", 20348, 169, "lacks KB5012637: profile current needs 20348.681 or later"),
        ("current", 17763, 737, "WMCO does not support Windows Server 2019 on vSphere"),
        ("current", 26100, 1742, None),  # whether the cluster's WMCO knows it: wmco_supports
        ("current", 19042, 1083, "not an image of profile current"),
        ("ocp-4.9", 19042, 1083, None),
        ("ocp-4.9", 19042, 330, "lacks KB4565351: profile ocp-4.9 needs 19042.450 or later"),
        ("ocp-4.9", 20348, 681, "not an image of profile ocp-4.9"),
    ],
)
def test_os_build_problem_names_pre2_found_and_required(
    profile: str, build: int, ubr: int, expected: str | None
) -> None:
    problem = os_build_problem(build, ubr, PROFILES[profile])
    if expected is None:
        assert problem is None
        return
    assert problem is not None and expected in problem
    assert problem.endswith("(PRE-2)") and f"build {build}.{ubr}" in problem
    if profile == "current" and build not in PROFILES[profile].builds:
        assert "Windows Server 2022 20348.681+ (KB5012637)" in problem
        assert "Windows Server 2025 26100.0+" in problem


@pytest.mark.parametrize(
    ("build", "wmco", "refused"),
    [
        (26100, (10, 22), False),
        (26100, (11, 0), False),
        (26100, (10, 21), True),
        (26100, None, True),  # unknown WMCO: not proven to support WS2025
        (20348, (10, 18), False),
        (20348, None, False),
        (19042, (4, 0), False),
    ],
)
def test_wmco_supports_ws2025_from_10_22(
    build: int, wmco: tuple[int, int] | None, refused: bool
) -> None:
    why = wmco_supports(build, wmco)
    assert (why is not None) is refused
    if why:
        assert why.endswith("(PRE-2)") and "10.22" in why


def test_parsers_of_recorded_versions() -> None:
    assert parse_wmco_version("10.18.1") == (10, 18)
    assert parse_wmco_version("v10.22.2") == (10, 22)
    assert parse_wmco_version(None) is None and parse_wmco_version("latest") is None
    assert parse_os_build("20348.681") == (20348, 681)
    assert parse_os_build("26100") == (26100, 0)
    assert parse_os_build("") is None and parse_os_build(None) is None
