"""The Windows MachineSet (M1-M9, C1-C3, V1): render, validate, apply, wait, diagnose.

Composes `tasks.openshift` and `tasks.machineset`, decides, reports; calls no client. Usable on its
own or from the parent flow. Order, so that bad input never writes anything:
validate the configuration (M2 name, sizes, replicas, workspace paths) and load the blocks -> M1
infrastructure ID -> C2 (optional) values from a Linux compute MachineSet -> C1 render (artifact)
-> M6/M7/M9 every vCenter object exists in the vCenter `workspace.server` names, the template is a
powered-off template, not the base VM, and (M5) the credentials secret holds that server's
`<server>.username`/`.password` keys -> PRE-3 the template's recorded SSH key fingerprint equals
the WindowsAccess key's (a mismatch makes WMCO delete and re-create machines forever) -> C3 server-side dry run -> C3 apply (create or
converge; a re-run is 'unchanged') -> V1 wait with watches until Ready, or a diagnosis naming the
prerequisite at fault.

`render_only=True` stops after C1 (the CLI-ready path: `render_machineset_yaml` below needs no
cluster at all when the infrastructure ID and values are given).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from blocks.openshift import OpenShiftCredentials
from blocks.vsphere import VSphereCredentials
from blocks.windows import WindowsAccess
from flows.cluster_prep import load_blocks
from flows.reporting import RunReport
from tasks import machineset as mst
from tasks import openshift as ocp
from tasks.vsphere import ATTR_FINGERPRINT, ATTR_OS_BUILD
from winnodes import errors
from winnodes.cluster.machinesets import ApplyResult
from winnodes.cluster.wait import MachineSetFailed, MachineSetNotReady
from winnodes.model.config import ClusterConfig, MachineSetConfig, Names, Waits
from winnodes.model.profiles import parse_os_build, parse_wmco_version, wmco_supports
from winnodes.model.steps import StepId
from winnodes.render.machineset import Resolved, machineset_yaml, render_machineset
from winnodes.validate import machineset_run_problems
from winnodes.vsphere.machineset_checks import PlacementReport

STEPS: tuple[StepId, ...] = (
    StepId.M1,
    StepId.C2,
    StepId.C1,
    StepId.M7,
    StepId.PRE3,
    StepId.C3,
    StepId.V1,
)


def _template_os_supported(tpl: str, attributes: dict[str, str], wmco: str | None) -> str:
    """PRE-1/PRE-2 on the cluster side: the template's Windows build (recorded at G10) must be one
    the installed WMCO configures (WS2025 from WMCO 10.22); a WMCO that cannot would leave every
    Machine without a Node."""
    recorded = attributes.get(ATTR_OS_BUILD)
    build = parse_os_build(recorded)
    if build is None:
        return (
            f"template {tpl} has no recorded Windows build ({ATTR_OS_BUILD}); not built by the "
            f"golden image flow, so PRE-2 cannot be checked against WMCO {wmco or '(unknown)'}"
        )
    why = wmco_supports(build[0], parse_wmco_version(wmco))
    if why is not None:
        raise errors.Conflict(f"template {tpl}: {why}", step_id="PRE-2")
    return f"template Windows build {recorded} supported by WMCO {wmco or '(unknown)'}"


class MachineSetResult(BaseModel):
    name: str
    infrastructure_id: str
    template: str
    action: str  # created / updated / unchanged / rendered
    replicas: int
    ready: str  # V1 summary ('' when not waited)
    yaml: str


def render_machineset_yaml(
    ms: MachineSetConfig, infrastructure_id: str, template: str | None = None
) -> str:
    """C1 without a cluster (CLI): the YAML for this configuration and infrastructure ID."""
    return machineset_yaml(
        render_machineset(ms, infrastructure_id=infrastructure_id, template=template)
    )


def _input_problems(ms: MachineSetConfig, template: str | None, base_vm: str | None) -> list[Any]:
    return machineset_run_problems(ms, template=template, base_vm=base_vm)


@flow(name="windows-machineset", log_prints=True)
def machineset(
    cluster: ClusterConfig,
    machineset: MachineSetConfig,
    waits: Waits | None = None,
    vsphere_credentials_block: str = "vsphere-credentials",
    windows_access_block: str = "windows-access",
    template: str | None = None,
    base_vm: str | None = Names().base_vm,
    wait: bool = True,
    render_only: bool = False,
) -> MachineSetResult:
    """Create or converge the Windows MachineSet and wait until its Windows nodes are Ready.

    Args:
        cluster: cluster name/domain and the OpenShift block's name.
        machineset: the MachineSet's configuration (name, replicas, sizes, network, workspace,
            template, C2 switch).
        waits: V1's deadline (machineset_ready_seconds).
        vsphere_credentials_block: block for the vCenter checks of M6/M7/M9.
        windows_access_block: block whose key fingerprint the template must carry (PRE-3).
        template: overrides machineset.template (e.g. the golden image flow's result).
        base_vm: the un-sysprepped base VM's name, which must never be the template (M7).
        wait: run V1 (default); False returns right after C3.
        render_only: stop after C1 (no vCenter checks, nothing written).

    Raises:
        ValidationError: bad inputs, unusable blocks, or vCenter objects missing (all listed);
            nothing written.
        Conflict: the template's recorded key fingerprint differs (PRE-3); nothing written.
        ConfigError: the API server refused the dry run; nothing written.
        MachineSetFailed: V1 found a cause waiting cannot cure (`.diagnosis`).
        MachineSetNotReady: V1's deadline passed (`.diagnosis`); a re-run resumes.
    """
    ms = machineset
    access = _validate(
        cluster, ms, template, base_vm, vsphere_credentials_block, windows_access_block
    )
    report = RunReport(f"Windows MachineSet {ms.name}", STEPS, f"machineset-{ms.name}").start()
    run = _Run(cluster, ms, report)
    try:
        _m1_c2_c1_render(run, template)
        if render_only:
            return _skip_after_render(run)
        _m7_vcenter_and_secret(run, vsphere_credentials_block, base_vm)
        _pre3_template_key(run, access)
        applied, since = _c3_apply(run)
        ready = _v1_wait(run, waits or Waits(), since) if wait else _v1_not_waited(run)
    finally:
        report.publish()
    return run.result(applied.action, applied.replicas, ready)


def _validate(
    cluster: ClusterConfig,
    ms: MachineSetConfig,
    template: str | None,
    base_vm: str | None,
    vsphere_credentials_block: str,
    windows_access_block: str,
) -> WindowsAccess:
    """Before the first side effect: the configuration (M2 name, sizes, replicas, workspace
    paths), then every block loads (C3); all problems listed at once."""
    problems = _input_problems(ms, template, base_vm)
    if problems:
        raise errors.ValidationError(problems)
    _, _, access = load_blocks(
        [
            ("cluster.openshift_block", OpenShiftCredentials, cluster.openshift_block),
            ("vsphere_credentials_block", VSphereCredentials, vsphere_credentials_block),
            ("windows_access_block", WindowsAccess, windows_access_block),
        ],
        "C3",
    )
    return access  # type: ignore[no-any-return]


@dataclass
class _Run:
    """What the phases of one MachineSet run share."""

    cluster: ClusterConfig
    ms: MachineSetConfig
    report: RunReport
    infra_id: str = ""
    resolved: Resolved | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    placement: PlacementReport | None = None

    @property
    def value(self) -> dict[str, Any]:
        """The manifest's providerSpec value (C1 ran first)."""
        return self.manifest["spec"]["template"]["spec"]["providerSpec"]["value"]  # type: ignore[no-any-return]

    @property
    def template(self) -> str:
        return str(self.value["template"])

    def result(self, action: str, replicas: int, ready: str) -> MachineSetResult:
        return MachineSetResult(
            name=self.ms.name,
            infrastructure_id=self.infra_id,
            template=self.template,
            action=action,
            replicas=replicas,
            ready=ready,
            yaml=machineset_yaml(self.manifest),
        )


def _m1_c2_c1_render(run: _Run, template: str | None) -> None:
    """M1 the infrastructure ID, C2 (optional) workspace and network from a Linux compute
    MachineSet, C1 the manifest (published as an artifact)."""
    cluster, ms, report = run.cluster, run.ms, run.report
    with report.step(StepId.M1) as out:
        run.infra_id = ocp.m1_infrastructure_id(cluster.openshift_block)
        out.ok(f"infrastructure ID {run.infra_id}")
    with report.step(StepId.C2) as out:
        if ms.take_from_existing_linux_machineset:
            resolved = ocp.c2_from_linux_machineset(cluster.openshift_block, ms.linux_machineset)
            run.resolved = resolved
            out.ok(
                f"from {resolved.source}: network {resolved.network_name!r}, folder "
                f"{resolved.workspace.folder}, datastore {resolved.workspace.datastore}"
            )
        else:
            out.skipped("workspace and network from the configuration")
    with report.step(StepId.C1) as out:
        run.manifest = mst.c1_render(ms, run.infra_id, template, run.resolved)
        out.ok(f"rendered MachineSet {ms.name} (artifact machineset-{ms.name}-yaml)")


def _skip_after_render(run: _Run) -> MachineSetResult:
    """render_only: M7, PRE-3, C3 and V1 are skipped; the result carries the rendered YAML."""
    for step in (StepId.M7, StepId.PRE3, StepId.C3, StepId.V1):
        with run.report.step(step) as out:
            out.skipped("render only")
    return run.result("rendered", run.ms.replicas, "")


def _m7_vcenter_and_secret(run: _Run, vsphere_credentials_block: str, base_vm: str | None) -> None:
    """M6/M7/M9 every vCenter object exists (the template is a powered-off template, not the base
    VM), M5 the credentials secret holds the server's keys (all problems at once), and PRE-1/PRE-2
    the installed WMCO configures the template's recorded Windows build."""
    cluster, ms, tpl, value = run.cluster, run.ms, run.template, run.value
    with run.report.step(StepId.M7) as out:
        workspace = run.resolved.workspace if run.resolved else ms.workspace
        assert workspace is not None  # validated above
        network = value["network"]["devices"][0]["networkName"]
        placement = mst.m7_check_vcenter(
            vsphere_credentials_block, workspace, network, tpl, base_vm, ms.require_provenance
        )
        run.placement = placement
        secret = value["credentialsSecret"]["name"]
        secret_problems = ocp.m5_check_credentials_secret(
            cluster.openshift_block, secret, workspace.server
        )
        if placement.problems or secret_problems:
            raise errors.ValidationError([*placement.problems, *secret_problems])
        assert placement.template is not None
        wmco = ocp.pre1_wmco_version(cluster.openshift_block)
        os_note = _template_os_supported(tpl, placement.template.attributes, wmco)
        out.ok(
            "; ".join(
                [
                    *placement.evidence,
                    f"secret {secret} has the keys of server {workspace.server}",
                    os_note,
                ]
            )
        )


def _pre3_template_key(run: _Run, access: WindowsAccess) -> None:
    """PRE-3: the template's recorded SSH key fingerprint equals the WindowsAccess key's (a
    mismatch makes WMCO delete and re-create machines forever); unknown on a foreign template."""
    tpl = run.template
    with run.report.step(StepId.PRE3) as out:
        assert run.placement is not None and run.placement.template is not None
        recorded = run.placement.template.attributes.get(ATTR_FINGERPRINT)
        ours = access.fingerprint()
        if recorded is None:
            out.skipped(
                f"template {tpl} has no recorded key fingerprint ({ATTR_FINGERPRINT}); it was "
                "not built by the golden image flow, so the key cannot be compared"
            )
        elif recorded != ours:
            raise errors.Conflict(
                f"template {tpl} was built for SSH key {recorded}, but the cloud-private-key "
                f"(windows access block) is {ours}: WMCO would fail to log in, delete the "
                "machines and re-create them forever; rebuild the template or use the "
                "template's key",
                step_id="PRE-3",
            )
        else:
            out.ok(f"template key fingerprint {recorded} matches the WMCO key")


def _c3_apply(run: _Run) -> tuple[ApplyResult, datetime]:
    """C3: server-side dry run, then apply (create or converge; a re-run is 'unchanged').
    Returns the result and the time before the apply (V1 judges events since then)."""
    cluster, ms, report = run.cluster, run.ms, run.report
    with report.step(StepId.C3) as out:
        dry = ocp.c3_dry_run(cluster.openshift_block, run.manifest)
        since = datetime.now(UTC)
        applied = ocp.c3_apply(cluster.openshift_block, run.manifest)
        evidence = (
            f"{dry}; machineset {ms.name} {applied.action} (generation "
            f"{applied.generation}, replicas {applied.replicas}, template {applied.template})"
        )
        if applied.action == "unchanged":
            out.ok(evidence)
        else:
            out.repaired(evidence)
            report.created("MachineSet", ms.name, applied.action, f"replicas {ms.replicas}")
            report.emit(
                "machineset.applied",
                StepId.C3,
                f"machineset.{ms.name}",
                {"action": applied.action, "replicas": applied.replicas},
            )
    return applied, since


def _v1_not_waited(run: _Run) -> str:
    """V1 skipped (wait=False)."""
    with run.report.step(StepId.V1) as out:
        out.skipped("not waited (wait=False)")
    return ""


def _v1_wait(run: _Run, waits: Waits, since: datetime) -> str:
    """V1: wait with watches until the Windows nodes are Ready, or publish a diagnosis naming
    the prerequisite at fault and raise. Returns the readiness summary."""
    cluster, ms, report = run.cluster, run.ms, run.report
    with report.step(StepId.V1) as out:
        try:
            r = ocp.v1_wait_ready(
                cluster.openshift_block, ms.name, float(waits.machineset_ready_seconds), since
            )
        except (MachineSetFailed, MachineSetNotReady) as exc:
            create_markdown_artifact(
                markdown=exc.diagnosis.markdown(),
                key=f"machineset-{ms.name}-diagnosis",
                description=f"Why machineset {ms.name} is not ready (V1)",
            )
            raise
        out.ok(r.summary)
        report.created("Nodes", f"Windows nodes of {ms.name}", "ready", r.summary)
        report.emit(
            "nodes.ready",
            StepId.V1,
            f"machineset.{ms.name}",
            {"nodes_ready": r.nodes_ready, "desired": r.desired},
        )
    return r.summary
