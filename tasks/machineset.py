"""Prefect tasks of the MachineSet flow that are not cluster calls: C1 (render, artifact) and the
vCenter checks of M6, M7 and M9 (one adapter call: `winnodes.vsphere.machineset_checks`)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from blocks.vsphere import VSphereCredentials
from tasks.policy import transient_retries
from winnodes.model.config import MachineSetConfig, Workspace
from winnodes.render.machineset import Resolved, machineset_yaml, render_machineset
from winnodes.vsphere.machineset_checks import PlacementReport, check_placement


@task(name="C1 render MachineSet")
def c1_render(
    ms: MachineSetConfig, infrastructure_id: str, template: str | None, resolved: Resolved | None
) -> dict[str, Any]:
    """The manifest (pure), published as a markdown artifact with its YAML."""
    manifest = render_machineset(
        ms, infrastructure_id=infrastructure_id, template=template, resolved=resolved
    )
    create_markdown_artifact(
        markdown=f"```yaml\n{machineset_yaml(manifest)}```",
        key=f"machineset-{ms.name}-yaml",
        description=f"MachineSet {ms.name} as applied (C1)",
    )
    return manifest


@task(name="M6 M7 M9 vCenter objects of the MachineSet", **transient_retries())
def m7_check_vcenter(
    vsphere_credentials_block: str,
    workspace: Workspace,
    network: str,
    template: str,
    base_vm: str | None,
    require_provenance: bool = False,
) -> PlacementReport:
    """Template (exists, is a template, powered off, a Windows guest, not the base VM, winnodes
    provenance), network, datastore, folder and resource pool, resolved as machine-api resolves
    them; every problem at once. A template without provenance is a warning in the evidence (and
    the log) unless `require_provenance`."""
    creds: Any = VSphereCredentials.load(vsphere_credentials_block)
    with creds.connect() as session:
        report = check_placement(
            session,
            workspace=workspace,
            network=network,
            template=template,
            base_vm=base_vm,
            require_provenance=require_provenance,
        )
    for line in report.evidence:
        if line.startswith("WARNING"):
            get_run_logger().warning(line)
    return report
