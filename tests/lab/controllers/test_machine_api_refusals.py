"""machine-api and WMCO simulator rules that docs/lab-fidelity.md listed without a test (no servers).

The vSphere provider refuses to shrink the template's disk (openshift/machine-api-operator
pkg/controller/vsphere/reconciler.go, InvalidMachineConfiguration); WMCO acts only on Machines with the
Windows os-id label (controllers/windowsmachine_controller.go).
"""

from __future__ import annotations

from typing import Any

import pytest
from pyVmomi import vim

from lab.controllers import machine_api, wmco

GIB_KB = 1024 * 1024
MACHINE: dict[str, Any] = {"metadata": {"name": "winworker-abcde", "uid": "0f4c-uid"}}
PLACEMENT = machine_api.Placement(
    datacenter=None, template=None, folder=None, datastore=None, pool=None, networks=[]
)


def _template_disk(gib: int) -> Any:
    return vim.vm.device.VirtualDisk(key=2000, capacityInKB=gib * GIB_KB)


def test_a_disk_smaller_than_the_templates_is_invalid_configuration() -> None:
    with pytest.raises(machine_api.InvalidConfiguration, match="can't resize template disk down"):
        machine_api.clone_spec(MACHINE, {"diskGiB": 30}, PLACEMENT, [_template_disk(40)])


def test_a_larger_disk_is_resized_in_the_clone() -> None:
    spec = machine_api.clone_spec(MACHINE, {"diskGiB": 50}, PLACEMENT, [_template_disk(40)])
    (change,) = [
        c for c in spec.config.deviceChange if isinstance(c.device, vim.vm.device.VirtualDisk)
    ]
    assert change.operation == "edit" and change.device.capacityInKB == 50 * GIB_KB


def test_wmco_acts_only_on_machines_labelled_windows() -> None:
    def machine(labels: dict[str, str]) -> dict[str, Any]:
        return {"metadata": {"name": "m", "labels": labels}}

    assert wmco.is_windows_machine(machine({wmco.OS_ID_LABEL: "Windows"}))
    assert not wmco.is_windows_machine(machine({wmco.OS_ID_LABEL: "Linux"}))
    assert not wmco.is_windows_machine(machine({}))
