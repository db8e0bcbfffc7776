"""The MachineSet equals the seed's example modulo placeholders (M1-M9, C1), and C2 extraction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from winnodes.errors import ConfigError
from winnodes.model.config import MachineSetConfig, Workspace
from winnodes.render.machineset import (
    Resolved,
    is_linux_compute_machineset,
    machineset_yaml,
    render_machineset,
    workspace_from_machine,
    workspace_from_machineset,
)

SEED = Path(__file__).parent / "data" / "machineset-seed.yaml"
VALUES = {
    "<infrastructure_id>": "lab-7xk2p",
    "<windows_machine_set_name>": "winworker",
    "<vm_network_name>": "VM Network",
    "<windows_vm_template_name>": "golden-images/windows-golden-1",
    "<vcenter_datacenter_name>": "dc1",
    "<vcenter_datastore_name>": "datastore1",
    "<vcenter_vm_folder_path>": "/dc1/vm/lab-7xk2p",
    "<vsphere_resource_pool>": "/dc1/host/cluster1/Resources",
    "<vcenter_server_ip>": "10.0.0.10",
}


def _seed() -> dict[str, Any]:
    text = SEED.read_text()
    for k, v in VALUES.items():
        text = text.replace(k, v)
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _config(**kw: Any) -> MachineSetConfig:
    base: dict[str, Any] = {
        "name": "winworker",
        "network_name": "VM Network",
        "template": "golden-images/windows-golden-1",
        "workspace": Workspace(
            datacenter="dc1",
            datastore="datastore1",
            folder="/dc1/vm/lab-7xk2p",
            resource_pool="/dc1/host/cluster1/Resources",
            server="10.0.0.10",
        ),
    }
    base.update(kw)
    return MachineSetConfig(**base)


def test_equals_the_seed_example() -> None:
    manifest = render_machineset(_config(), infrastructure_id="lab-7xk2p")
    assert manifest == _seed()


def test_yaml_keeps_the_seed_key_order_and_round_trips() -> None:
    manifest = render_machineset(_config(), infrastructure_id="lab-7xk2p")
    text = machineset_yaml(manifest)
    assert yaml.safe_load(text) == manifest
    seed_keys = [line.split(":")[0].strip() for line in SEED.read_text().splitlines()[1:]]
    got_keys = [line.split(":")[0].strip() for line in text.splitlines()]
    assert [k for k in got_keys if k in seed_keys] == [k for k in seed_keys if k in got_keys]
    assert "node-role.kubernetes.io/worker: ''" in text
    assert "snapshot: ''" in text


def test_infra_role_and_no_resource_pool() -> None:
    ws = _config().workspace
    assert ws is not None
    ms = _config(role="infra", replicas=0, workspace=ws.model_copy(update={"resource_pool": None}))
    m = render_machineset(ms, infrastructure_id="x")
    labels = m["spec"]["template"]["metadata"]["labels"]
    assert labels["machine.openshift.io/cluster-api-machine-role"] == "infra"
    assert labels["machine.openshift.io/cluster-api-machine-type"] == "infra"
    assert m["spec"]["template"]["spec"]["metadata"]["labels"] == {
        "node-role.kubernetes.io/infra": ""
    }
    assert m["spec"]["replicas"] == 0
    assert "resourcePool" not in m["spec"]["template"]["spec"]["providerSpec"]["value"]["workspace"]


def test_overrides_from_build_and_linux_machineset() -> None:
    linux = render_machineset(_config(), infrastructure_id="lab-7xk2p")
    linux["spec"]["template"]["metadata"]["labels"]["machine.openshift.io/os-id"] = "rhcos"
    linux["spec"]["template"]["spec"]["providerSpec"]["value"]["credentialsSecret"]["name"] = (
        "creds"
    )
    resolved = workspace_from_machineset(linux)
    assert resolved.network_name == "VM Network" and resolved.credentials_secret == "creds"
    assert resolved.workspace.resource_pool == "/dc1/host/cluster1/Resources"
    ms = MachineSetConfig(take_from_existing_linux_machineset=True)
    m = render_machineset(ms, infrastructure_id="i", template="t/new", resolved=resolved)
    value = m["spec"]["template"]["spec"]["providerSpec"]["value"]
    assert value["template"] == "t/new" and value["credentialsSecret"] == {"name": "creds"}
    assert is_linux_compute_machineset(linux)
    assert not is_linux_compute_machineset(m)


def test_missing_values_name_their_steps() -> None:
    with pytest.raises(ConfigError) as info:
        render_machineset(MachineSetConfig(), infrastructure_id="")
    assert {p.step_id for p in info.value.problems} == {"M1", "M6", "M7", "M9"}


def test_c2_refuses_a_machineset_without_vsphere_values() -> None:
    with pytest.raises(ConfigError, match=r"C2"):
        workspace_from_machineset({"metadata": {"name": "aws"}, "spec": {}})


def test_c2_from_a_machine_reads_its_provider_spec() -> None:
    """As WMCO's hack/machineset.sh: `.spec.providerSpec.value` of a Linux worker Machine."""
    linux = render_machineset(_config(), infrastructure_id="lab-7xk2p")
    value = linux["spec"]["template"]["spec"]["providerSpec"]["value"]
    machine = {
        "metadata": {"name": "lab-7xk2p-worker-abcde"},
        "spec": {"providerSpec": {"value": value}},
    }
    from_machine = workspace_from_machine(machine)
    assert from_machine.source == "machine lab-7xk2p-worker-abcde"
    assert from_machine.workspace == workspace_from_machineset(linux).workspace
    with pytest.raises(ConfigError, match=r"machine m .*\(C2\)"):
        workspace_from_machine({"metadata": {"name": "m"}, "spec": {}})


def test_resolved_is_plain_data() -> None:
    ws = Workspace(datacenter="d", datastore="s", folder="/d/vm", server="v")
    assert Resolved(ws, "n", "c").workspace.server == "v"
