"""The Windows MachineSet (M1-M9, C1) as a pure function of the typed configuration.

The seed document's YAML example is the reference: the same keys in the same order, every label of
M1-M4 (metadata, selector, template) and the providerSpec of M5-M9, with its placeholders replaced.
The rendered YAML can be shown (CLI, artifact) without touching the cluster.

C2 helper: `workspace_from_machineset` reads workspace, network and credentials secret from an
existing Linux compute MachineSet, so a site can take them from the cluster instead of configuring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from winnodes.errors import ConfigError, Problem
from winnodes.model.config import MachineSetConfig, Workspace

NAMESPACE = "openshift-machine-api"
LABEL_CLUSTER = "machine.openshift.io/cluster-api-cluster"
LABEL_MACHINESET = "machine.openshift.io/cluster-api-machineset"
LABEL_ROLE = "machine.openshift.io/cluster-api-machine-role"
LABEL_TYPE = "machine.openshift.io/cluster-api-machine-type"
LABEL_OS_ID = "machine.openshift.io/os-id"


@dataclass(frozen=True)
class Resolved:
    """The values that may come from configuration or from a Linux machine set (C2)."""

    workspace: Workspace
    network_name: str
    credentials_secret: str
    source: str = ""  # where C2 took them from, e.g. "machine lab-7xk2p-worker-abcde"


def render_machineset(
    ms: MachineSetConfig,
    *,
    infrastructure_id: str,
    template: str | None = None,
    resolved: Resolved | None = None,
) -> dict[str, Any]:
    """The MachineSet manifest as a dict (C1).

    `infrastructure_id` comes from the cluster (M1). `template` overrides `ms.template` (the
    template the golden image build produced, M7). `resolved` overrides workspace, network and
    credentials secret (taken from a Linux machine set, C2). Raises ConfigError naming the step when
    a value is missing from both."""
    problems: list[Problem] = []
    tpl = template or ms.template
    workspace = resolved.workspace if resolved else ms.workspace
    network = resolved.network_name if resolved else ms.network_name
    credentials = resolved.credentials_secret if resolved else ms.credentials_secret
    for value, step, field in (
        (infrastructure_id, "M1", "infrastructure_id"),
        (tpl, "M7", "machineset.template"),
        (network, "M6", "machineset.network_name"),
        (workspace, "M9", "machineset.workspace"),
    ):
        if not value:
            problems.append(
                Problem(
                    step,
                    field,
                    "required",
                    f"{field}: a value is required to render the MachineSet ({step})",
                )
            )
    if problems:
        raise ConfigError("; ".join(p.message for p in problems), problems=problems)
    assert workspace is not None and tpl and network

    role = ms.role
    ws: dict[str, Any] = {
        "datacenter": workspace.datacenter,
        "datastore": workspace.datastore,
        "folder": workspace.folder,
    }
    if workspace.resource_pool:
        ws["resourcePool"] = workspace.resource_pool
    ws["server"] = workspace.server
    return {
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "MachineSet",
        "metadata": {
            "labels": {LABEL_CLUSTER: infrastructure_id},
            "name": ms.name,
            "namespace": NAMESPACE,
        },
        "spec": {
            "replicas": ms.replicas,
            "selector": {
                "matchLabels": {
                    LABEL_CLUSTER: infrastructure_id,
                    LABEL_MACHINESET: ms.name,
                }
            },
            "template": {
                "metadata": {
                    "labels": {
                        LABEL_CLUSTER: infrastructure_id,
                        LABEL_ROLE: role,
                        LABEL_TYPE: role,
                        LABEL_MACHINESET: ms.name,
                        LABEL_OS_ID: "Windows",
                    }
                },
                "spec": {
                    "metadata": {"labels": {f"node-role.kubernetes.io/{role}": ""}},
                    "providerSpec": {
                        "value": {
                            "apiVersion": "vsphereprovider.openshift.io/v1beta1",
                            "credentialsSecret": {"name": credentials},
                            "diskGiB": ms.disk_gib,
                            "kind": "VSphereMachineProviderSpec",
                            "memoryMiB": ms.memory_mib,
                            "network": {"devices": [{"networkName": network}]},
                            "numCPUs": ms.num_cpus,
                            "numCoresPerSocket": ms.num_cores_per_socket,
                            "snapshot": "",
                            "template": tpl,
                            "userDataSecret": {"name": ms.user_data_secret},
                            "workspace": ws,
                        }
                    },
                },
            },
        },
    }


def machineset_yaml(manifest: dict[str, Any]) -> str:
    """The manifest as YAML, keys in the seed example's order."""
    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)


def workspace_from_machineset(obj: dict[str, Any]) -> Resolved:
    """C2: workspace, network and credentials secret of an existing (Linux) MachineSet.

    Raises ConfigError (C2) when the object lacks them (e.g. not a vSphere machine set)."""
    value = (
        obj.get("spec", {}).get("template", {}).get("spec", {}).get("providerSpec", {}).get("value")
        or {}
    )
    return _resolved(value, f"machine set {obj.get('metadata', {}).get('name', '?')}")


def workspace_from_machine(obj: dict[str, Any]) -> Resolved:
    """C2 as WMCO's hack/machineset.sh does it: the same values from a (Running, Linux worker)
    Machine's `spec.providerSpec.value`."""
    value = obj.get("spec", {}).get("providerSpec", {}).get("value") or {}
    return _resolved(value, f"machine {obj.get('metadata', {}).get('name', '?')}")


def _resolved(value: dict[str, Any], what_obj: str) -> Resolved:
    ws = value.get("workspace") or {}
    devices = (value.get("network") or {}).get("devices") or []
    missing = [k for k in ("datacenter", "datastore", "folder", "server") if not ws.get(k)]
    if missing or not devices or not devices[0].get("networkName"):
        what = ", ".join([f"workspace.{m}" for m in missing] + ([] if devices else ["network"]))
        raise ConfigError(f"{what_obj} has no vSphere {what} to take (C2)", step_id="C2")
    return Resolved(
        workspace=Workspace(
            datacenter=ws["datacenter"],
            datastore=ws["datastore"],
            folder=ws["folder"],
            resource_pool=ws.get("resourcePool") or None,
            server=ws["server"],
        ),
        network_name=devices[0]["networkName"],
        credentials_secret=(value.get("credentialsSecret") or {}).get("name")
        or "vsphere-cloud-credentials",
        source=what_obj,
    )


def is_linux_compute_machineset(obj: dict[str, Any]) -> bool:
    """C2: a compute (worker/infra) machine set whose machines are not Windows."""
    labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}
    return labels.get(LABEL_OS_ID) != "Windows" and labels.get(LABEL_ROLE) in ("worker", "infra")
