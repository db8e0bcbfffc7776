"""tasks/vsphere.py without servers: names of the Prefect variables that carry in-flight vCenter
tasks from a killed run to its re-run."""

from __future__ import annotations

import copy

from prefect.client.schemas.actions import VariableCreate

from tasks.vsphere import task_variable
from tests.winnodes.conftest import config_data
from winnodes.model import parse_config

BUILD = "20261208005318"  # build IDs are timestamps to the second


def _gi(series: str, folder: str = "/dc1/vm/golden-images") -> object:
    data = copy.deepcopy(config_data())
    data["golden_image"]["names"] = {"base_vm": f"{series}-base", "template_series": series}
    data["golden_image"]["placement"]["folder"] = folder
    return parse_config(data).golden_image


def test_series_started_in_the_same_second_do_not_share_a_clone_variable() -> None:
    # The scale-out test's failure: four series started at once, two got the same build ID and
    # one build's G8 read, overwrote and deleted the other's variable.
    a = task_variable(_gi("win2022"), BUILD, "g8")  # type: ignore[arg-type]
    b = task_variable(_gi("win2025"), BUILD, "g8")  # type: ignore[arg-type]
    assert a != b


def test_the_same_build_in_another_folder_has_its_own_variable() -> None:
    a = task_variable(_gi("win2022"), BUILD, "g8")  # type: ignore[arg-type]
    b = task_variable(_gi("win2022", "/dc1/vm/other"), BUILD, "g8")  # type: ignore[arg-type]
    assert a != b


def test_a_rerun_of_the_build_finds_its_variable_and_prefect_accepts_the_name() -> None:
    name = task_variable(_gi("Win-2022.Core"), BUILD, "g8")  # type: ignore[arg-type]
    assert name == task_variable(_gi("Win-2022.Core"), BUILD, "g8")  # type: ignore[arg-type]
    assert VariableCreate(name=name, value="task-42").name == name
    assert "win_2022_core" in name and BUILD in name
