"""validate_all collects every problem of a configuration (and its secrets) before anything runs."""

from __future__ import annotations

import pytest

from tests.winnodes.conftest import GOOD_PASSWORD, config_data
from winnodes.errors import ValidationError
from winnodes.model import PipelineConfig, parse_config
from winnodes.validate import collect_problems, validate_all


def test_a_good_configuration_passes(config: PipelineConfig, keys: dict[str, str]) -> None:
    validate_all(config, admin_password=GOOD_PASSWORD, private_key=keys["rsa-pkcs1"])


def test_every_problem_is_reported_at_once(keys: dict[str, str]) -> None:
    data = config_data()
    data["machineset"]["name"] = "winworker01"
    data["machineset"]["template"] = "golden-images/windows-golden-base"
    data["machineset"]["disk_gib"] = 64
    data["machineset"]["workspace"]["folder"] = "/other/vm/x"
    data["golden_image"]["hardware"] = {"hardware_version": "vmx-13"}
    data["golden_image"]["unattend"] = {"computer_name": "WIN_HOST"}
    data["golden_image"]["source"] = {"windows_iso": "windows.iso"}
    data["cluster"]["dns"] = {"zone": "other.org"}
    with pytest.raises(ValidationError) as info:
        validate_all(parse_config(data), admin_password="MyPassword", private_key=keys["dsa"])
    got = {(p.step_id, p.field, p.rule) for p in info.value.problems}
    assert got == {
        ("M2", "machineset.name", "max-length"),
        ("M7", "machineset.template", "not-base-vm"),
        ("M5", "machineset.disk_gib", "disk-not-below-template"),
        ("M9", "machineset.workspace.folder", "folder-under-datacenter-vm"),
        ("G1", "golden_image.hardware.hardware_version", "min-hardware-version"),
        ("G9", "golden_image.unattend.computer_name", "dns-1123-label"),
        ("G1", "golden_image.source.windows_iso", "datastore-path"),
        ("G2", "golden_image.source.tools_iso", "required"),
        ("DNS1", "cluster.dns.zone", "zone-contains-record"),
        ("G9", "windows_access.administrator_password", "not-placeholder"),
        ("PRE-3", "windows_access.ssh_private_key", "no-dsa"),
    }
    text = str(info.value)
    assert "machine set name 'winworker01' is 11 characters" in text
    assert "11 configuration problem(s)" in text


def test_workspace_and_network_required_unless_taken_from_linux_machineset() -> None:
    data = config_data()
    del data["machineset"]["workspace"]
    del data["machineset"]["network_name"]
    rules = {(p.step_id, p.rule) for p in collect_problems(parse_config(data))}
    assert rules == {("M6", "required"), ("M9", "required")}
    data["machineset"]["take_from_existing_linux_machineset"] = True
    assert collect_problems(parse_config(data)) == []


def test_base_vm_source_needs_no_isos() -> None:
    data = config_data()
    data["golden_image"]["source"] = {"mode": "base_vm"}
    assert collect_problems(parse_config(data)) == []


def test_placement_needs_cluster_or_pool() -> None:
    data = config_data()
    del data["golden_image"]["placement"]["cluster"]
    problems = collect_problems(parse_config(data))
    assert [(p.step_id, p.rule) for p in problems] == [("G1", "cluster-or-resource-pool")]
