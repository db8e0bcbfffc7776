"""The golden image flow (G1-G10): a Windows VM template that WMCO can turn into nodes.

The flow composes the tasks of `tasks.vsphere` and `tasks.guest` and decides; it calls no client.
Its parameters are the typed configuration and, inside it, block *names* (never secrets: a
deployment run stores its parameters in plain text).

Order: validate everything (configuration, and the secrets in the blocks) before the first side
effect -> plan the build ID -> if this build's template already exists, verify it and stop -> G1
preflight (every vCenter object and ISO exists) -> G1 base VM (from ISO with answer media, or reused)
-> G2 Tools and IPv4 -> G4 sshd answers (the first logon adds OpenSSH after Tools report) -> G1
answer media and Setup's answer file copies removed (they hold the Administrator password) -> G4 host
key (trust on first use, recorded on the VM; see `tasks.guest`) -> G4 sshd, G5 key, G3a/b/c, G6,
G6u Windows updates, PRE-2 (the build.UBR the updates left meets the profile; recorded at G10 for the
MachineSet side to check against WMCO), G7 on the base VM, each checked and repaired -> G8 clone -> G9 sysprep on the clone,
power-off awaited ->
G10 template, verification, provenance, retention.

Which build a run works on (the visible rule; `winnodes.model.naming.choose_build`):
- `build="new"` (the default, and what the golden-image-rebuild deployment, its schedule and
  `winnodes run --only golden-image` use): every run starts a new build, with a new ID and a new
  template; `"latest"` reuses the series' newest template and builds only when there is none (the
  end-to-end default); `"resume"` continues the unfinished build vCenter holds (the base VM's
  `winnodes.build.pending` marker, or a clone of the series that is no template yet); an explicit
  `build_id` continues (or verifies) that build.
- The decision is made once per flow run and stored with it: `plan the build ID` is cached under a
  key made of the *root* flow run's ID (persisted result), so a failed or crashed run retried from
  the UI gets the same build back and continues it, never a second one; a new run decides anew.
- The build ID is stored on the VMs (extraConfig `winnodes.build` from birth) and, while a build
  uses the base VM, in the base VM's `winnodes.build.pending` attribute (cleared by G10).

Resuming. A resumed build continues where the last attempt stopped and never makes a second VM or
template:
- every VM carries its build ID in extraConfig from birth; the tasks find "their" base VM, clone or
  template and converge instead of creating (`winnodes.vsphere.vms`); an in-flight clone task is
  remembered in a Prefect variable and waited on;
- G9's progress is marked on the clone (`winnodes.sysprep`), so a re-run never powers on a
  generalized clone and never re-uses a clone whose host keys are gone.
Transient errors are retried by the tasks (backoff + jitter); permanent ones fail at once. Each wait
gets one deadline from its step's configured time (`tasks.policy.deadline_after`), shared by retries. On failure
the build's clone (and a base VM this run created that never finished installing) is deleted unless
`keep_failed_build`; the base VM is kept once Windows is installed, so the next run continues.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow
from prefect.cache_policies import CachePolicy
from prefect.runtime import flow_run
from pydantic import BaseModel

from blocks.vsphere import VSphereCredentials
from blocks.windows import WindowsAccess
from flows import redaction
from flows.reporting import RunReport
from tasks import guest as gt
from tasks import vsphere as vt
from tasks.policy import deadline_after
from winnodes import errors
from winnodes.model.config import GoldenImageConfig
from winnodes.model.naming import template_name
from winnodes.model.steps import GOLDEN_IMAGE_STEPS, StepId
from winnodes.validate import golden_image_problems
from winnodes.validate.keys import check_private_key
from winnodes.validate.rules import check_admin_password


class GoldenImageResult(BaseModel):
    """What the build produced: the template MachineSets use (M7) and its provenance."""

    build_id: str
    template: str
    template_path: str
    template_moid: str
    base_vm: str
    ssh_fingerprint: str
    created: bool  # False: the template of this build already existed
    action: str = "built"  # "built" (this run made the template) or "reused" (it existed)


def _load_blocks(gi: GoldenImageConfig) -> WindowsAccess:
    """Load both blocks and check the secrets with the procedure's rules (no side effects)."""
    problems: list[errors.Problem] = []
    access: Any = None
    for field, cls, name in (
        (
            "golden_image.vsphere_credentials_block",
            VSphereCredentials,
            gi.vsphere_credentials_block,
        ),
        ("golden_image.windows_access_block", WindowsAccess, gi.windows_access_block),
    ):
        try:
            block = cls.load(name)
        except Exception as exc:  # missing block, or stored values that fail the block's rules
            reason = str(exc).splitlines()[0][:300]
            problems.append(
                errors.Problem(
                    "G1", field, "block", f"{field}: block {name!r} unusable: {reason} (G1)"
                )
            )
            continue
        redaction.protect(block)  # its secrets never reach a log, also when this flow runs alone
        if cls is WindowsAccess:
            access = block
    redaction.install()
    if access is not None:
        problems += check_admin_password(access.administrator_password.get_secret_value())
        problems += check_private_key(
            access.ssh_private_key.get_secret_value(), allow_non_rsa=access.allow_non_rsa_key
        )
    problems = golden_image_problems(gi) + problems
    if problems:
        raise errors.ValidationError(problems)
    return access  # type: ignore[no-any-return]


BuildMode = Literal["new", "resume", "latest"]


def _plan(gi: GoldenImageConfig, build: str) -> str:
    """The build ID, decided once per (root) flow run and persisted with it; see the docstring."""
    run_id = flow_run.root_flow_run_id or flow_run.get_id() or "local"
    key = f"winnodes-build-{run_id}-{_key(gi)}"
    policy = CachePolicy.from_cache_key_fn(lambda *_: key)  # replaces the task's NO_CACHE
    planner = vt.plan_build.with_options(cache_policy=policy, persist_result=True)
    plan = planner(gi, build, datetime.now(UTC).isoformat())
    print(f"build {plan.build_id}: {plan.action} (mode {build!r}; cached for flow run {run_id})")
    return plan.build_id


def _key(gi: GoldenImageConfig) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"golden-image-{gi.names.template_series}".lower()).strip(
        "-"
    )


@flow(name="golden-image", log_prints=True, **vt.VCENTER_SESSION_HOOKS)
def golden_image(
    config: GoldenImageConfig,
    build_id: str | None = None,
    build: BuildMode = "new",
    new_build: bool = False,
    openshift_block: str | None = None,
) -> GoldenImageResult:
    """Build (or resume building) the Windows golden image template, G1-G10.

    Args:
        config: the build's configuration (placement, source, hardware, profile, unattend, names,
            retention, timeouts, block names).
        build_id: continue (or verify) this build explicitly.
        build: "new" (default: a new build, new template), "resume" (the unfinished build in
            vCenter) or "latest" (reuse the newest template; build only if there is none). A retry
            of the same flow run always continues the build that run started.
        new_build: the same as build="new" (kept for older callers).
        openshift_block: the cluster whose MachineSets and Machines retention must not break
            (G10); without it retention deletes nothing.

    Returns:
        The template and its provenance.

    Raises:
        ValidationError: bad inputs, all listed, before anything was created.
        PermanentError subclasses (NotFound, Conflict, HostKeyMismatch, AuthenticationError,
            GuestCheckFailed...): the step ID is in the message.
        TransientError subclasses: still failing after the tasks' retries; a re-run resumes.
    """
    gi = config
    access = _load_blocks(gi)
    fingerprint = access.fingerprint()
    build_id = build_id or _plan(gi, "new" if new_build else build)
    name = template_name(gi.names, build_id)
    report = RunReport(f"Golden image {name} ({gi.profile})", GOLDEN_IMAGE_STEPS, _key(gi)).start()

    existing = vt.g10_find_template(gi, build_id)
    if existing is not None and existing.template:
        result = _already_built(gi, report, build_id, existing, fingerprint, openshift_block)
        report.publish()
        return result

    run = _Build(gi, report, build_id)
    try:
        _g1_base_vm(run)
        facts, hk = _g2_g4_first_boot(run)
        os_build = _g5_to_g7_base_vm(run, facts.ip, hk)
        clone = _g8_g9_clone_and_sysprep(run, hk)
        result = _finish(
            gi,
            report,
            build_id,
            clone,
            fingerprint,
            created=True,
            tools=facts,
            os_build=os_build,
            cluster=openshift_block,
        )
    except BaseException:
        _clean_up_failed_build(run)
        report.publish()
        raise
    report.publish()
    return result


@dataclass
class _Build:
    """What the phases of one build share, and what a failure's clean-up needs to know."""

    gi: GoldenImageConfig
    report: RunReport
    build_id: str
    base: vt.VmInfo | None = None
    base_created: bool = False  # this run created the base VM
    installed: bool = False  # Windows on the base VM reported Tools (never delete it after that)
    tools_repair: gt.Check | None = None

    @property
    def base_vm(self) -> vt.VmInfo:
        assert self.base is not None, "G1 ran first"
        return self.base


def _already_built(
    gi: GoldenImageConfig,
    report: RunReport,
    build_id: str,
    existing: vt.VmInfo,
    fingerprint: str,
    openshift_block: str | None,
) -> GoldenImageResult:
    """This build's template exists: every step is skipped, G10 verifies it and runs retention."""
    if gi.source.mode == "iso":  # a worker that died after G1 may have left it (password)
        stale = vt.g1_find_base_vm(gi)
        vt.g1_remove_answer_media(gi, stale.moid if stale is not None else None)
    name = template_name(gi.names, build_id)
    for step in GOLDEN_IMAGE_STEPS[:-1]:
        with report.step(step) as out:
            out.skipped(f"template {name} of build {build_id} already exists")
    return _finish(
        gi, report, build_id, existing, fingerprint, created=False, cluster=openshift_block
    )


def _g1_base_vm(run: _Build) -> None:
    """G1: the base VM, created from the ISO with the answer media, or the kept one powered on."""
    gi, report = run.gi, run.report
    with report.step(StepId.G1) as out:
        evidence = [vt.g1_preflight(gi)]
        run.base = vt.g1_find_base_vm(gi)
        if run.base is None:
            answer = vt.g1_upload_answer_media(gi)
            run.base = vt.g1_create_base_vm(gi, run.build_id, answer)
            run.base_created = run.base.created
            if run.base.created:
                report.created("VirtualMachine", run.base.name, "created", "base VM from ISO")
        else:
            if run.base.windows_never_ran and gi.source.mode == "iso":
                # setup never finished (and a failed run deleted the answer media): setup reads it
                # again at this boot; G4 removes it as after a first install
                vt.g1_upload_answer_media(gi)
            vt.g1_power_on(gi, run.base.moid)
        vt.mark_build_pending(gi, run.base.moid, run.build_id)
        evidence.append(run.base.evidence)
        out.ok("; ".join(evidence))
    if not run.base_created:  # a kept base VM whose VMTools was stopped: start it over SSH
        state = vt.g2_tools_state(gi, run.base.moid)
        if state["tools"] != "guestToolsRunning" and state["ip"] and state["host_key"]:
            run.tools_repair = gt.g3c_recover_vmtools(gi, state["ip"], state["host_key"])


def _g2_g4_first_boot(run: _Build) -> tuple[vt.GuestFacts, gt.HostKey]:
    """G2 Tools and IPv4, then G4: sshd answers (the first logon adds OpenSSH after Tools report),
    the answer media and Setup's answer file copies go (they hold the password), the host key is
    trusted and the OpenSSH server checked."""
    gi, report, base = run.gi, run.report, run.base_vm
    with report.step(StepId.G2) as out:
        facts = vt.g2_wait_for_tools(gi, base.moid, deadline_after(gi.timeouts.install_seconds))
        run.installed = True
        out.ok(facts.evidence)
    ip = facts.ip
    with report.step(StepId.G4) as out:
        ready = gt.g4_wait_for_sshd(gi, base.moid, ip)
        removal = vt.g1_remove_answer_media(gi, base.moid) if gi.source.mode == "iso" else ""
        hk = gt.g4_trust_host_key(gi, base.moid, ip)
        secrets = gt.g4_remove_setup_secrets(gi, ip, hk.key)
        check = gt.g4_openssh(gi, ip, hk.key)
        evidence = "; ".join(x for x in (ready, removal, hk.evidence, secrets.evidence) if x)
        _record(out, check, evidence)
    return facts, hk


def _g5_to_g7_base_vm(run: _Build, ip: str, hk: gt.HostKey) -> gt.OsBuild:
    """G5, G3a-c, G6, G6u, PRE-2, G7 on the base VM: each checked and repaired. Returns
    PRE-2's reading of the OS build (for the template's provenance)."""
    gi, report, base = run.gi, run.report, run.base_vm
    with report.step(StepId.G5) as out:
        _record(out, gt.g5_admin_key(gi, ip, hk.key))
    with report.step(StepId.G3a) as out:
        _record(out, gt.g3a_tools_conf(gi, ip, hk.key))
    with report.step(StepId.G3b) as out:
        _record(out, gt.g3b_ip_matches(gi, ip, hk.key))
    with report.step(StepId.G3c) as out:
        check = gt.g3c_vmtools_service(gi, ip, hk.key)
        if run.tools_repair is not None:
            check = run.tools_repair.model_copy(
                update={"evidence": f"{run.tools_repair.evidence}; then {check.evidence}"}
            )
        _record(out, check)
    with report.step(StepId.G6) as out:
        runtime = gt.g6_runtime(gi, ip, hk.key)
        evidence = [runtime.evidence]
        if runtime.restart_needed:
            deadline = deadline_after(gi.timeouts.install_seconds)
            ip = gt.restart_guest(gi, base.moid, ip, hk.key, deadline).ip
            runtime = gt.g6_runtime(gi, ip, hk.key)
            evidence.append(runtime.evidence)
            runtime = runtime.model_copy(update={"status": "repaired"})
        _record(out, gt.Check(status=runtime.status, evidence="; ".join(evidence)))
    with report.step(StepId.G6u) as out:
        ip = _windows_updates(gi, out, base.moid, ip, hk.key)
    with report.step(StepId.PRE2) as out:
        # judged on the build the updates left (refuses an image WMCO cannot use), recorded on the
        # template at G10 for the MachineSet side to check against the installed WMCO
        os_build = gt.pre2_os_build(gi, ip, hk.key)
        out.ok(os_build.evidence)
    with report.step(StepId.G7) as out:
        _record(out, gt.g7_firewall_rules(gi, ip, hk.key))
    return os_build


def _g8_g9_clone_and_sysprep(run: _Build, hk: gt.HostKey) -> vt.VmInfo:
    """G8 clone the base VM (it stays un-sysprepped for later rebuilds), G9 sysprep the clone and
    wait for its power-off. A clone whose sysprep already started is never powered on again."""
    gi, report, base = run.gi, run.report, run.base_vm
    with report.step(StepId.G8) as out:
        clone = vt.g8_clone(gi, base.moid, run.build_id)
        if clone.created:
            report.created("VirtualMachine", clone.name, "cloned", f"from {base.name}")
        out.ok(clone.evidence)
    with report.step(StepId.G9) as out:
        marker = vt.read_attributes(gi, clone.moid).get(vt.ATTR_SYSPREP)
        if marker == "started":
            done = "sysprep was already started by an earlier run"
        elif marker == "keys-removed" and gt.g9_sysprep_under_way(gi, clone.moid, hk.key):
            done = "an earlier run's sysprep command ran on after that run was lost"
        else:
            facts = vt.g2_wait_for_tools(
                gi, clone.moid, deadline_after(gi.timeouts.install_seconds)
            )
            done = gt.g9_sysprep(gi, clone.moid, facts.ip, hk.key).evidence
        off = vt.g9_wait_for_power_off(gi, clone.moid, deadline_after(gi.timeouts.sysprep_seconds))
        out.ok(f"{done}; {off}")
    return clone


def _clean_up_failed_build(run: _Build) -> None:
    """Delete the build's clone (and a base VM this run created that never finished installing)
    unless `keep_failed_build`; the answer media go too (they hold the password)."""
    gi = run.gi
    if gi.keep_failed_build:
        return
    base = run.base
    doomed = base.moid if base is not None and run.base_created and not run.installed else None
    for obj in vt.cleanup_failed_build(gi, run.build_id, doomed):
        run.report.created("VirtualMachine", obj, "deleted", "failed build cleaned up")
    if gi.source.mode == "iso":
        vt.g1_remove_answer_media(gi, base.moid if base is not None else None)


def _windows_updates(gi: GoldenImageConfig, out: Any, vm_moid: str, ip: str, host_key: str) -> str:
    """G6u: rounds of search -> download -> install until nothing is pending; each restart the
    updates need is waited for through vCenter (as G6's). Returns the guest's IP after the last
    restart. Evidence: the KBs installed per round and the OS build before -> after."""
    source = gi.windows_update.source
    if source == "off":
        out.skipped("windows_update.source is 'off'")
        return ip
    deadline = deadline_after(gi.timeouts.updates_seconds)
    before = gt.g6u_os_build(gi, ip, host_key)
    rounds: list[str] = []
    for number in range(1, gi.windows_update.max_rounds + 1):
        if datetime.now(UTC) >= deadline:
            break
        done = gt.g6u_install_round(gi, ip, host_key, number)
        rounds.append(done.evidence)
        if not done.installed:
            after = gt.g6u_os_build(gi, ip, host_key)
            what = f"{source}: OS build {before} -> {after}; " + "; ".join(rounds)
            if len(rounds) > 1:
                out.repaired(what)
            else:
                out.ok(what)
            return ip
        if done.reboot_required:
            ip = gt.restart_guest.with_options(name="G6u restart for the updates")(
                gi, vm_moid, ip, host_key, deadline, step_id="G6u"
            ).ip
    raise errors.WaitTimeout(
        f"Windows updates still pending after {len(rounds)} round(s) or "
        f"{gi.timeouts.updates_seconds}s (timeouts.updates_seconds, windows_update.max_rounds): "
        + "; ".join(rounds),
        step_id="G6u",
    )


def _record(out: Any, check: gt.Check, prefix: str = "") -> None:
    evidence = f"{prefix}; {check.evidence}" if prefix else check.evidence
    if check.status == "repaired":
        out.repaired(evidence)
    else:
        out.ok(evidence)


def _finish(
    gi: GoldenImageConfig,
    report: RunReport,
    build_id: str,
    vm: vt.VmInfo,
    fingerprint: str,
    *,
    created: bool,
    tools: vt.GuestFacts | None = None,
    os_build: gt.OsBuild | None = None,
    cluster: str | None = None,
) -> GoldenImageResult:
    """G10: template, verification, provenance, retention."""
    openshift_block = cluster
    source = (
        gi.source.windows_iso if gi.source.mode == "iso" else f"base VM {gi.names.base_vm}"
    ) or ""
    provenance = {
        vt.ATTR_BUILD: build_id,
        vt.ATTR_PROFILE: gi.profile,
        vt.ATTR_SOURCE: source,
        vt.ATTR_FINGERPRINT: fingerprint,
    }
    if tools is not None:  # an existing template keeps what its own build recorded
        provenance[vt.ATTR_TOOLS] = tools.tools_version
        provenance[vt.ATTR_FLOW_RUN] = str(flow_run.get_id() or "")
    if os_build is not None:  # PRE-2's reading, for the cluster side to check against WMCO
        provenance[vt.ATTR_OS_BUILD] = os_build.version
    with report.step(StepId.G10) as out:
        template = vt.g10_make_template(gi, vm.moid, build_id, provenance)
        retention = vt.g10_retention(gi, build_id, openshift_block)
        abandoned = vt.g10_remove_abandoned_clones(gi, build_id)
        deleted = retention.deleted + abandoned.deleted
        for name in deleted:
            report.created("VirtualMachine", name, "deleted", "retention")
        if created:
            report.created("VirtualMachine", template.name, "template", f"build {build_id}")
        evidence = f"; retention keeps {gi.keep_templates}: {retention.summary}"
        if abandoned.deleted or abandoned.kept:
            evidence += f"; clones of unfinished builds: {abandoned.summary}"
        out.ok(template.evidence + evidence)
    vt.clear_build_pending(gi, build_id)
    path = f"{gi.placement.folder.rstrip('/')}/{template.name}"
    report.emit("template.ready", StepId.G10, path, {"build_id": build_id})
    return GoldenImageResult(
        build_id=build_id,
        template=template.name,
        template_path=path,
        template_moid=template.moid,
        base_vm=gi.names.base_vm,
        ssh_fingerprint=fingerprint,
        created=created,
        action="built" if created else "reused",
    )
