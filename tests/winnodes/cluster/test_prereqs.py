"""PRE-1's reading of the installed WMCO version from OLM's ClusterServiceVersions (no server)."""

from __future__ import annotations

from typing import Any

from winnodes.cluster.prereqs import installed_wmco_version


def _csv(name: str, phase: str, version: str | None = None) -> dict[str, Any]:
    spec = {"version": version} if version else {}
    return {"metadata": {"name": name}, "spec": spec, "status": {"phase": phase}}


def test_the_succeeded_wmco_csv_gives_the_version() -> None:
    csvs = [
        _csv("some-other-operator.v1.0.0", "Succeeded", "1.0.0"),
        _csv("windows-machine-config-operator.v10.17.0", "Replacing", "10.17.0"),
        _csv("windows-machine-config-operator.v10.18.1", "Succeeded", "10.18.1"),
    ]
    assert installed_wmco_version(csvs) == "10.18.1"


def test_the_name_is_used_when_spec_version_is_missing() -> None:
    assert installed_wmco_version(
        [_csv("windows-machine-config-operator.v10.22.2", "Succeeded")]
    ) == ("10.22.2")


def test_no_succeeded_wmco_csv_means_unknown() -> None:
    assert installed_wmco_version([]) is None
    assert (
        installed_wmco_version([_csv("windows-machine-config-operator.v10.22.2", "Failed")]) is None
    )
