"""Prefect tasks of the rolling rotation (ROT1-ROT4): one adapter call each, named by step ID.

Every task reads or converges real state, so none is cached (`NO_CACHE`): the rotation reads the
state again each round and must never get an earlier round's answer back from Prefect's cache. The
drain and the waits are not retried by Prefect: their deadlines come from the configuration, and a
re-run of the flow continues from the real state.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.openshift import OpenShiftCredentials
from tasks.policy import transient_retries
from tasks.vsphere import vcenter
from winnodes.cluster import drain as drain_adapter
from winnodes.cluster import rotation
from winnodes.cluster.drain import DrainResult
from winnodes.model.config import GoldenImageConfig
from winnodes.plan.rotation import RotationState
from winnodes.vsphere import inventory, vms


def _creds(block: str) -> Any:
    return OpenShiftCredentials.load(block)


@task(
    name="ROT read the MachineSet, its Machines and Nodes",
    **transient_retries(),
)
def read_state(openshift_block: str, name: str) -> RotationState | None:
    """The rotation's real state (None when the MachineSet does not exist)."""
    with _creds(openshift_block).get_client() as api:
        return rotation.read_state(api, name)


@task(name="ROT1 newest template of the series", **transient_retries())
def newest_template(gi: GoldenImageConfig) -> str | None:
    """The name of the series' newest template (what a rotation moves to by default)."""
    with vcenter(gi) as session:
        folder = inventory.find_by_path(session, gi.placement.folder)
        series = vms.list_templates(session, folder, gi.names.template_series)
    return series[-1].name if series else None


@task(name="ROT2 record the rotation's baseline", **transient_retries())
def record_baseline(openshift_block: str, name: str, replicas: int | None) -> None:
    """Annotate the MachineSet with the replica count to return to (None: remove it)."""
    with _creds(openshift_block).get_client() as api:
        rotation.set_baseline(api, name, replicas)


@task(name="ROT2 scale the MachineSet", **transient_retries())
def scale(openshift_block: str, manifest: dict[str, Any], replicas: int, step_id: str) -> str:
    """Apply the MachineSet's manifest with `replicas` (server-side apply, field manager winnodes)."""
    with _creds(openshift_block).get_client() as api:
        rotation.scale(api, manifest, replicas, step_id)
    return f"machineset {manifest['metadata']['name']} scaled to {replicas}"


@task(name="ROT3 cordon and drain the node", cache_policy=NO_CACHE)
def drain_node(openshift_block: str, node: str, timeout_seconds: float) -> DrainResult:
    """Cordon, evict every pod (PodDisruptionBudgets respected) and wait until they are gone.
    Raises DrainBlocked at the deadline (nothing deleted, the node stays cordoned)."""
    with _creds(openshift_block).get_client() as api:
        return drain_adapter.drain(api, node, timeout_seconds)


@task(name="ROT4 delete the Machine and scale back", cache_policy=NO_CACHE)
def retire_machine(
    openshift_block: str,
    manifest: dict[str, Any],
    machine: str,
    baseline: int,
    timeout_seconds: float,
) -> str:
    """Mark the Machine `delete-machine`, scale the set back to `baseline` (machine-api deletes
    the marked Machine, its VM and Node) and wait until it is gone."""
    with _creds(openshift_block).get_client() as api:
        rotation.mark_for_deletion(api, machine)
        rotation.scale(api, manifest, baseline, "ROT4")
        waited = rotation.wait_machine_gone(api, machine, timeout_seconds)
    return f"machine {machine} deleted {waited:.1f}s after scaling back to {baseline}"


@task(name="ROT4 wait for a deleted Machine", cache_policy=NO_CACHE)
def await_deletion(openshift_block: str, machine: str, timeout_seconds: float) -> str:
    with _creds(openshift_block).get_client() as api:
        waited = rotation.wait_machine_gone(api, machine, timeout_seconds)
    return f"machine {machine} gone after {waited:.1f}s"
