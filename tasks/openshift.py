"""Prefect tasks for the cluster side: one step each, named by its step ID, one adapter call each.

Tasks load their block by name (parameters never carry secrets) and retry transient failures only
(`tasks.policy`). V1's wait is not retried: its deadline is the configuration's, and a timeout is
reported with a diagnosis; a re-run resumes waiting (the apply before it changes nothing).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from blocks.openshift import OpenShiftCredentials
from blocks.windows import WindowsAccess
from tasks.policy import LIVE_STATE, transient_retries
from winnodes.cluster import machinesets, prereqs, wait
from winnodes.cluster.machinesets import ApplyResult
from winnodes.cluster.prereqs import KeySecretAction, PrerequisiteReport
from winnodes.errors import Problem
from winnodes.render.diagnosis import Readiness, readiness
from winnodes.render.machineset import Resolved, workspace_from_machine, workspace_from_machineset


def _creds(block: str) -> OpenShiftCredentials:
    return OpenShiftCredentials.load(block)  # type: ignore[return-value]


@task(name="PRE-1 PRE-4 cluster prerequisites", **transient_retries())
def pre_prerequisites(openshift_block: str) -> PrerequisiteReport:
    """Platform vSphere, WMCO installed (PRE-1), hybrid overlay (PRE-4): every missing item."""
    with _creds(openshift_block).get_client() as api:
        return prereqs.check_prerequisites(api)


@task(name="PRE-1 installed WMCO version", **transient_retries())
def pre1_wmco_version(openshift_block: str) -> str | None:
    """The version of the WMCO that OLM installed (its Succeeded CSV), for PRE-2's cluster side."""
    with _creds(openshift_block).get_client() as api:
        return prereqs.wmco_version(api)


@task(name="PRE-3 key secret cloud-private-key", **transient_retries())
def pre3_key_secret(openshift_block: str, windows_access_block: str) -> KeySecretAction:
    """Ensure Secret cloud-private-key/private-key.pem holds the WindowsAccess block's key (the
    block validated it with WMCO's rules when it loaded)."""
    access: Any = WindowsAccess.load(windows_access_block)
    with _creds(openshift_block).get_client() as api:
        return prereqs.ensure_key_secret(api, access.ssh_private_key.get_secret_value())


@task(name="M1 infrastructure ID", **transient_retries())
def m1_infrastructure_id(openshift_block: str) -> str:
    """`oc get infrastructure cluster -o jsonpath='{.status.infrastructureName}'`."""
    with _creds(openshift_block).get_client() as api:
        return prereqs.infrastructure_id(api)


@task(name="C2 values from a Linux compute MachineSet", **transient_retries())
def c2_from_linux_machineset(openshift_block: str, name: str | None) -> Resolved:
    """Workspace, network and credentials secret of an existing Linux compute MachineSet, read as
    WMCO's hack/machineset.sh reads them: from a Running Linux worker Machine of that set (what
    machine-api really used), else from the set's template."""
    with _creds(openshift_block).get_client() as api:
        ms = prereqs.linux_compute_machineset(api, name)
        running = prereqs.running_linux_worker_machine(api, ms["metadata"]["name"])
        if running is not None:
            return workspace_from_machine(running)
        return workspace_from_machineset(ms)


@task(name="M5 credentials secret of the MachineSet", **transient_retries())
def m5_check_credentials_secret(openshift_block: str, secret: str, server: str) -> list[Problem]:
    """The credentials secret exists in openshift-machine-api with `<server>.username` and
    `<server>.password` (what machine-api's vSphere provider reads); every problem, nothing written."""
    with _creds(openshift_block).get_client() as api:
        return prereqs.credentials_secret_problems(api, secret, server)


@task(name="C3 server-side dry run", **transient_retries())
def c3_dry_run(openshift_block: str, manifest: dict[str, Any]) -> str:
    """The apply with dryRun=All: the API server's schema and admission checks, nothing written."""
    with _creds(openshift_block).get_client() as api:
        machinesets.dry_run(api, manifest)
    return f"dry run of machineset {manifest['metadata']['name']} accepted by the API server"


@task(name="C3 apply MachineSet", **transient_retries())
def c3_apply(openshift_block: str, manifest: dict[str, Any]) -> ApplyResult:
    """Create the MachineSet or converge it (server-side apply); 'unchanged' when it already is."""
    with _creds(openshift_block).get_client() as api:
        return machinesets.apply_machineset(api, manifest)


@task(name="V1 wait until the MachineSet is ready", **LIVE_STATE)
def v1_wait_ready(
    openshift_block: str, name: str, timeout_seconds: float, since: datetime | None = None
) -> Readiness:
    """Watch until DESIRED = CURRENT = READY = AVAILABLE and every Windows Node is Ready, moving a
    progress artifact. Raises MachineSetNotReady (deadline) or MachineSetFailed (a cause waiting
    cannot cure), both with `.diagnosis`."""
    progress: Any = create_progress_artifact(
        progress=0.0, key=f"v1-{name}", description=f"machineset {name}: Windows nodes Ready"
    )

    def on_progress(r: Readiness) -> None:
        update_progress_artifact(
            artifact_id=progress, progress=100.0 * r.fraction, description=r.summary
        )

    with _creds(openshift_block).get_client() as api:
        snap = wait.wait_until_ready(
            api, name, timeout=timeout_seconds, since=since, on_progress=on_progress
        )
    r = readiness(snap)
    on_progress(r)
    return r
