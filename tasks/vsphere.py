"""The golden image's vCenter steps (G1, G2, G8, G9's wait, G10) as Prefect tasks.

Each task is thin: it loads the `VSphereCredentials` block *by name* (secrets never travel as
parameters, see field notes), uses the flow run's shared session (`vcenter`), reads the real state
and converges with one or two `winnodes.vsphere` calls, and returns a small result plus an evidence
string for the run report. Idempotence comes from vCenter itself: every VM the build creates carries
its build ID in extraConfig from birth (`winnodes.vsphere.vms`), so a re-run finds "its" base VM,
clone or template instead of making a second one. Retries: transient errors only (`tasks.policy`);
permanent ones fail at once.

VMs travel between tasks as managed object IDs (`vm-42`): small, JSON-serialisable, persistable.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run
from prefect.variables import Variable
from pydantic import BaseModel

from blocks.vsphere import VSphereCredentials
from blocks.windows import WindowsAccess
from tasks.policy import seconds_left, transient_retries
from winnodes import errors
from winnodes.model.config import GoldenImageConfig
from winnodes.model.naming import NothingToResume, build_id_of, choose_build, template_name
from winnodes.model.profiles import MIN_HARDWARE_VERSION, get_profile
from winnodes.model.steps import StepId
from winnodes.render.answer_media import INSTALL_CDS, answer_media_files, render_answer_iso
from winnodes.vsphere import VSphereSession, inventory, media, vms, waits
from winnodes.vsphere.session import SharedSessions
from winnodes.vsphere.tools import ToolsVersion

#: Custom attributes the build writes (G4 trust, G9 progress, G10 provenance).
ATTR_HOST_KEY = "winnodes.ssh.hostkey"
ATTR_GUEST_IP = "winnodes.guest.ip"
ATTR_SYSPREP = "winnodes.sysprep"
ATTR_FINGERPRINT = "winnodes.ssh.fingerprint"
ATTR_BUILD = "winnodes.build"
ATTR_PROFILE = "winnodes.profile"
ATTR_SOURCE = "winnodes.source"
ATTR_TOOLS = "winnodes.tools.version"
ATTR_FLOW_RUN = "winnodes.flow.run"
ATTR_OS_BUILD = "winnodes.os.build"  # "20348.681": PRE-2's build.UBR, read back by the M checks
#: On the base VM: the build that uses it and has not reached G10 yet (what `resume` continues).
ATTR_PENDING = "winnodes.build.pending"
#: On the base VM: its boot time (`summary.runtime.bootTime`) when G1 last pressed the EFI boot key,
#: written after the presses: a boot without it got no key (G1 resets the VM and presses it).
ATTR_BOOT_KEY = "winnodes.bootkey"
#: Where G1 puts the answer media, relative to the placement datastore.
ANSWER_DIR = "winnodes"


class VmInfo(BaseModel):
    """A VM as the tasks hand it on."""

    moid: str
    name: str
    created: bool = False
    build_id: str | None = None
    power_state: str | None = None
    template: bool = False
    evidence: str = ""
    windows_never_ran: bool = False  # vCenter has never seen its Tools (setup never finished)


class BuildPlan(BaseModel):
    """The build a run works on: its ID, and "new", "resumed" or "reused" (`choose_build`)."""

    build_id: str
    action: str
    unfinished: list[str] = []


class GuestFacts(BaseModel):
    """What VMware Tools report (G2/G3b)."""

    ip: str
    tools_version: str
    host_name: str | None = None
    evidence: str = ""


#: The vCenter sessions of the flow runs in this process, one per run and credentials.
_SESSIONS = SharedSessions()
atexit.register(_SESSIONS.close_all)  # a process that ends without the flow's hooks (last resort)


@contextlib.contextmanager
def vcenter(gi: GoldenImageConfig) -> Iterator[VSphereSession]:
    """The flow run's vCenter session for the credentials block the configuration names.

    Inside a flow run, every task of the run (in this process, in any thread) shares one logged-in
    session: one Login per run instead of one per task, re-login on expiry (`VSphereSession`),
    logged out by the flow's `close_vcenter_sessions` hooks when the run ends, however it ends.
    Outside a flow run (a task called on its own) the session is logged out on exit."""
    creds: Any = VSphereCredentials.load(gi.vsphere_credentials_block)
    run_id = flow_run.get_id()
    if run_id is None:
        with creds.connect() as session:
            yield session
    else:
        yield _SESSIONS.get(str(run_id), creds.identity(), creds.login)


def close_vcenter_sessions(flow: Any, run: Any, state: Any) -> None:
    """Flow hook (on_completion, on_failure, on_crashed, on_cancellation): log out the sessions
    `vcenter()` opened for this flow run."""
    _SESSIONS.close(str(run.id))


#: What a flow that runs these tasks passes to `@flow(...)`: its vCenter sessions end with it.
VCENTER_SESSION_HOOKS: dict[str, Any] = {
    hook: [close_vcenter_sessions]
    for hook in ("on_completion", "on_failure", "on_crashed", "on_cancellation")
}


def _vm(session: VSphereSession, moid: str) -> Any:
    return session.moref("VirtualMachine", moid)


def _info(ref: vms.VmRef, evidence: str = "") -> VmInfo:
    return VmInfo(
        moid=ref.moid,
        name=ref.name,
        created=ref.created,
        build_id=ref.build_id,
        power_state=ref.power_state,
        template=ref.template,
        evidence=evidence,
    )


def _placement(session: VSphereSession, gi: GoldenImageConfig) -> vms.Placement:
    """The placement's managed objects, resolved once per session (so once per flow run; they do
    not move during a build) and handed to every later task of the run by reference."""
    pl = gi.placement
    return session.memo(  # type: ignore[no-any-return]
        ("placement", pl.model_dump_json()),
        lambda: vms.resolve_placement(
            session,
            datacenter=pl.datacenter,
            folder=pl.folder,
            datastore=pl.datastore,
            network=pl.network,
            cluster=pl.cluster,
            resource_pool=pl.resource_pool,
        ),
    )


def answer_media_path(gi: GoldenImageConfig) -> str:
    """`[datastore] winnodes/<base VM>-answers.iso` (one per base VM: a re-run overwrites it)."""
    return f"[{gi.placement.datastore}] {ANSWER_DIR}/{gi.names.base_vm}-answers.iso"


def _hw_version(text: str | None) -> int:
    try:
        return int((text or "").removeprefix("vmx-"))
    except ValueError:
        return 0


# -- G1 ----------------------------------------------------------------------------------------------
@task(name="G1 preflight: placement, media and base VM", **transient_retries())
def g1_preflight(gi: GoldenImageConfig) -> str:
    """Check everything G1 needs exists before anything is created: datacenter, folder, pool or
    cluster, datastore, network, the Windows and Tools ISOs (mode 'iso') or the base VM ('base').

    Raises:
        NotFound / Conflict (G1, G2): a missing or ambiguous object, named.
    """
    with vcenter(gi) as session:
        pl = _placement(session, gi)
        seen = [f"placement {gi.placement.datacenter}:{gi.placement.folder} resolved"]
        if gi.source.mode == "iso":
            for step, path in (
                (StepId.G1, gi.source.windows_iso),
                (StepId.G2, gi.source.tools_iso),
                (StepId.G4, gi.source.openssh_msi),
            ):
                if path is None:  # validated: only the optional offline OpenSSH source
                    continue
                if not inventory.datastore_file_exists(session, path):
                    raise errors.NotFound(f"{path} does not exist", step_id=step.value)
                seen.append(f"{path} present")
        elif vms.find_vm(session, pl.folder, gi.names.base_vm) is None:
            raise errors.NotFound(
                f"base VM {gi.names.base_vm!r} not found in {gi.placement.folder} (source.mode "
                f"is {gi.source.mode!r}: rebuild from the kept base VM; use 'iso' to install one)",
                step_id="G1",
            )
        return "; ".join(seen)


@task(name="G1 find base VM", **transient_retries())
def g1_find_base_vm(gi: GoldenImageConfig) -> VmInfo | None:
    """The base VM if it exists (its hardware version checked), else None."""
    with vcenter(gi) as session:
        ref = vms.find_vm(session, _placement(session, gi).folder, gi.names.base_vm)
        if ref is None:
            return None
        _check_base(ref)
        info = _info(ref, f"base VM {ref.name} ({ref.moid}, {ref.hardware_version}) reused")
        return info.model_copy(update={"windows_never_ran": _windows_never_ran(session, ref.obj)})


def _windows_never_ran(session: VSphereSession, vm: Any) -> bool:
    seen = inventory.properties(session, vm, ["guest.toolsVersion"])["guest.toolsVersion"]
    return str(seen or "0") == "0"  # vCenter shows "0" until Tools first report


def _check_base(ref: vms.VmRef) -> None:
    if ref.template:
        raise errors.Conflict(
            f"{ref.name} is a template, not an un-sysprepped base VM", step_id="G1"
        )
    if _hw_version(ref.hardware_version) < MIN_HARDWARE_VERSION:
        raise errors.Conflict(
            f"base VM {ref.name} has hardware version {ref.hardware_version}; OpenShift needs "
            f"vmx-{MIN_HARDWARE_VERSION} or later (upgrade it or build from ISO)",
            step_id="G1",
        )


@task(name="G1 upload answer media", **transient_retries())
def g1_upload_answer_media(gi: GoldenImageConfig) -> str:
    """Render autounattend.xml and the first-logon scripts (plus the Win32-OpenSSH MSI of
    `source.openssh_msi`, read from the datastore), pack them as an ISO and upload it to the
    datastore, into its directory (`winnodes/`, made with FileManager.MakeDirectory when missing: a
    datastore does not create directories on upload). Returns its datastore path. Overwrites
    (idempotent)."""
    access = WindowsAccess.load(gi.windows_access_block)
    path = answer_media_path(gi)
    with vcenter(gi) as session:
        msi = None
        if gi.source.openssh_msi:  # offline site: OpenSSH from the Win32-OpenSSH MSI (G4)
            msi = vms.download_file(
                session, gi.placement.datacenter, gi.source.openssh_msi, step_id="G4"
            )
        files = answer_media_files(
            gi,
            access.administrator_password.get_secret_value(),  # type: ignore[union-attr]
            access.public_key("winnodes"),  # type: ignore[union-attr]
            openssh_msi=msi,
        )
        iso = render_answer_iso(files)
        vms.upload_file(session, gi.placement.datacenter, path, iso, step_id="G1")
    return path


def _boot_keys(gi: GoldenImageConfig, session: VSphereSession, vm: Any) -> str:
    """EFI only: answer "Press any key to boot from CD or DVD" right after this run's power-on (or
    reset), then record on the VM which boot got the key (`ATTR_BOOT_KEY`)."""
    hw = gi.hardware
    if hw.firmware != "efi":
        return "BIOS boots the CD without a key"
    n = vms.press_boot_key(
        session,
        vm,
        presses=hw.boot_key_presses,
        interval=hw.boot_key_interval_seconds,
        timeout=gi.timeouts.vcenter_task_seconds,
    )
    vms.set_custom_attributes(
        session, vm, {ATTR_BOOT_KEY: vms.boot_time(session, vm)}, step_id="G1"
    )
    return (
        f"EFI boot prompt answered: {n} spacebar presses, "
        f"{hw.boot_key_interval_seconds:g}s apart, from power-on"
    )


def _start_setup(gi: GoldenImageConfig, session: VSphereSession, vm: Any, powered: bool) -> str:
    """A base VM whose Windows never ran must boot the ISO with the boot key (EFI).

    `powered`: this call powered it on (the prompt is showing now): press the key. Already on: an
    earlier run powered it on; if that boot got the key (`ATTR_BOOT_KEY` holds its boot time),
    setup may be running and the VM is left alone; if it did not (the run died or failed between
    the power-on and the key), the prompt fell through long ago and setup never started: reset
    the VM (its firmware starts again and shows the prompt) and press the key as after a power-on.
    """
    if powered:
        return _boot_keys(gi, session, vm)
    if gi.hardware.firmware != "efi":
        return ""  # BIOS booted the CD without a key
    boot = vms.boot_time(session, vm)
    keyed = vms.custom_attributes(session, vm).get(ATTR_BOOT_KEY)
    if not vms.boot_key_missing(boot, keyed):
        return "running since a boot that got the EFI boot key: left alone (setup may be running)"
    vms.reset(session, vm, timeout=gi.timeouts.vcenter_task_seconds, step_id="G1")
    keys = _boot_keys(gi, session, vm)
    return f"on since {boot} without the EFI boot key, Windows never ran: reset; {keys}"


@task(name="G1 create base VM from ISO", **transient_retries())
def g1_create_base_vm(gi: GoldenImageConfig, build_id: str, answer_iso: str) -> VmInfo:
    """Create the base VM (hardware version, system disk on the configured controller, NIC,
    CD-ROMs in `INSTALL_CDS` order: Windows ISO D:, Tools ISO E:, answer media F:) and power it
    on; on EFI, press the boot key while the ISO's boot loader asks for one. Windows setup then
    runs unattended. An existing base VM is reused (and never gets keys: it may be installing)."""
    profile = get_profile(gi.profile)
    hw = gi.hardware
    assert gi.source.windows_iso and gi.source.tools_iso  # validated (mode 'iso')
    by_role = {"windows": gi.source.windows_iso, "tools": gi.source.tools_iso, "answer": answer_iso}
    spec = vms.VmSpec(
        name=gi.names.base_vm,
        guest_id=hw.guest_id or profile.guest_id,
        hardware_version=hw.hardware_version,
        firmware=hw.firmware,
        num_cpus=hw.num_cpus,
        num_cores_per_socket=hw.num_cores_per_socket,
        memory_mib=hw.memory_mib,
        disk_gib=hw.disk_gib,
        isos=tuple(by_role[role] for role in INSTALL_CDS),
        disk_controller=hw.disk_controller,
        annotation=f"winnodes golden image base VM ({gi.profile}); never sysprep, never a template",
    )
    with vcenter(gi) as session:
        ref = vms.create_vm(
            session,
            _placement(session, gi),
            spec,
            build_id=build_id,
            require_same_build=False,
            timeout=gi.timeouts.vcenter_task_seconds,
        )
        _check_base(ref)
        powered = vms.power_on(session, ref.obj, timeout=gi.timeouts.vcenter_task_seconds)
        # A retry after a failed power-on finds the VM its first attempt created (created=False):
        # its Windows never ran either, so the boot prompt needs the key all the same.
        fresh = ref.created or _windows_never_ran(session, ref.obj)
        keys = _start_setup(gi, session, ref.obj, powered) if fresh else ""
        what = "created" if ref.created else "reused"
        return _info(
            ref,
            f"{ref.name} ({ref.moid}) {what}: {hw.hardware_version}, {hw.firmware}, "
            f"{hw.disk_controller} disk, {hw.num_cpus} vCPU, {hw.memory_mib} MiB, "
            f"{hw.disk_gib} GiB, NIC on {gi.placement.network}; "
            f"{'powered on' if powered else 'already on'}" + (f"; {keys}" if keys else ""),
        )


@task(name="G1 power on base VM", **transient_retries())
def g1_power_on(gi: GoldenImageConfig, vm_moid: str) -> bool:
    """A reused base VM must run for the checks (G2-G7). True when this call powered it on.

    A base VM whose Windows never ran (vCenter has never seen its Tools: an earlier run stopped
    between power-on and the end of setup) boots the ISO again: on EFI it needs the boot key, which
    this call then presses. A running one is left alone (setup may be in progress) unless its boot
    never got the key: then it is reset and gets it (`_start_setup`)."""
    with vcenter(gi) as session:
        vm = _vm(session, vm_moid)
        fresh = _windows_never_ran(session, vm)
        powered = vms.power_on(session, vm, timeout=gi.timeouts.vcenter_task_seconds, step_id="G1")
        if fresh and gi.source.mode == "iso":
            _start_setup(gi, session, vm, powered)
        return powered


@task(name="G1 remove answer media", **transient_retries())
def g1_remove_answer_media(gi: GoldenImageConfig, vm_moid: str | None) -> str:
    """Detach the answer ISO from the base VM and delete it from the datastore: it holds the
    Administrator password. Idempotent (nothing attached / already deleted is fine)."""
    path = answer_media_path(gi)
    with vcenter(gi) as session:
        detached = False
        if vm_moid:
            with contextlib.suppress(errors.NotFound):
                detached = media.detach_iso(
                    session, _vm(session, vm_moid), path, timeout=gi.timeouts.vcenter_task_seconds
                )
        dc = inventory.datacenter(session, gi.placement.datacenter)
        deleted = media.delete_datastore_file(
            session, dc, path, timeout=gi.timeouts.vcenter_task_seconds
        )
    return (
        f"answer media {path}: {'detached' if detached else 'not attached'}, "
        f"{'deleted' if deleted else 'already gone'}"
    )


# -- G2 ----------------------------------------------------------------------------------------------
@task(name="G2 wait for VMware Tools and IPv4", **transient_retries())
def g2_wait_for_tools(gi: GoldenImageConfig, vm_moid: str, deadline: datetime) -> GuestFacts:
    """Wait (WaitForUpdatesEx) until Tools run and report a usable IPv4 (not APIPA, not
    link-local), then check the Tools version against the profile (>= 11.0.6). `deadline` bounds
    the wait across retries (`tasks.policy.deadline_after(install_seconds)`, computed by the flow).

    Raises:
        WaitTimeout (G2): not reached before `deadline` (permanent; a new flow run resumes).
        GuestCheckFailed (G2): Tools are older than the profile's minimum or report no version.
    """
    profile = get_profile(gi.profile)
    left = seconds_left(deadline, step_id="G2", what="VMware Tools and IPv4")
    with vcenter(gi) as session:
        info = waits.wait_for_guest_ip(session, _vm(session, vm_moid), timeout=left, step_id="G2")
    minimum = ToolsVersion(*profile.min_tools_version)
    if info.tools_version is None:
        raise errors.GuestCheckFailed(
            "G2",
            "VMware Tools run but vCenter reports no version (unmanaged Tools?); the image needs "
            f"VMware Tools {minimum} or later",
        )
    if info.tools_version < minimum:
        raise errors.GuestCheckFailed(
            "G2",
            f"VMware Tools {info.tools_version} is older than {minimum}: upgrade Tools on the base "
            "VM (or build from ISO with a newer Tools ISO)",
            evidence=f"guest.toolsVersion={info.tools_version}",
        )
    return GuestFacts(
        ip=info.ip,
        tools_version=str(info.tools_version),
        host_name=info.host_name,
        evidence=f"Tools {info.tools_version} {info.tools_running_status} (>= {minimum}); "
        f"IPv4 {info.ip}; host name {info.host_name}",
    )


@task(name="G2 read Tools state", **transient_retries())
def g2_tools_state(gi: GoldenImageConfig, vm_moid: str) -> dict[str, str | None]:
    """One read of what vCenter sees now: Tools running status and the recorded guest IP and
    host key (custom attributes set at G4)."""
    with vcenter(gi) as session:
        vm = _vm(session, vm_moid)
        props = inventory.properties(session, vm, ["guest.toolsRunningStatus"])
        attrs = vms.custom_attributes(session, vm)
    return {
        "tools": props["guest.toolsRunningStatus"],
        "ip": attrs.get(ATTR_GUEST_IP),
        "host_key": attrs.get(ATTR_HOST_KEY),
    }


# -- custom attributes (G4 trust record, G9 marker) ----------------------------------------------------
@task(name="record custom attributes", **transient_retries())
def record_attributes(gi: GoldenImageConfig, vm_moid: str, values: dict[str, str]) -> list[str]:
    """Set custom attributes on a VM or template (only the ones that differ). Returns their names."""
    with vcenter(gi) as session:
        return list(vms.set_custom_attributes(session, _vm(session, vm_moid), values, step_id=None))


@task(name="read custom attributes", **transient_retries())
def read_attributes(gi: GoldenImageConfig, vm_moid: str) -> dict[str, str]:
    with vcenter(gi) as session:
        return vms.custom_attributes(session, _vm(session, vm_moid))


# -- G8 ----------------------------------------------------------------------------------------------
def task_variable(gi: GoldenImageConfig, build_id: str, step: str) -> str:
    """The Prefect variable that holds the ID of `step`'s vCenter task while it runs.

    Named after the VM the task makes (series + build ID) and the folder it goes to: build IDs are
    timestamps to the second, so two series started in the same second share one, and a variable
    named after the build ID alone was read, overwritten and deleted by the other series' build
    (a resumed clone of the wrong VM, and Prefect's `Variable.set` failing with AttributeError when
    the other build deleted the variable between its read and its update)."""
    where = hashlib.sha1(
        f"{gi.placement.datacenter}/{gi.placement.folder}".encode(), usedforsecurity=False
    ).hexdigest()[:8]
    vm = re.sub(r"[^a-z0-9_]+", "_", template_name(gi.names, build_id).lower())
    return f"winnodes_task_{step}_{where}_{vm}"[:255]


def _remember(variable: str, task_id: str) -> None:
    Variable.set(variable, task_id, overwrite=True)


@task(name="G8 clone the base VM", **transient_retries())
def g8_clone(gi: GoldenImageConfig, base_moid: str, build_id: str) -> VmInfo:
    """Clone the base VM to this build's template name, powered on (the base stays un-sysprepped).

    An existing clone of this build is the result; a clone G9 marked (its sysprep command sent,
    or started) is never powered on again: G9 finds out what became of it
    (`tasks.guest.g9_sysprep_under_way`). The clone task's ID is kept in a Prefect variable while
    it runs, so a re-run after a killed process waits on it instead of starting a second clone."""
    name = template_name(gi.names, build_id)
    variable = task_variable(gi, build_id, "g8")
    with vcenter(gi) as session:
        pl = _placement(session, gi)
        # Global concurrency limit "vcenter-clone" (deployments/register.py creates it): clones are
        # the heaviest vCenter operation, so every flow shares a few slots.
        with concurrency("vcenter-clone", occupy=1):
            ref = vms.clone_vm(
                session,
                _vm(session, base_moid),
                name,
                folder=pl.folder,
                pool=pl.pool,
                build_id=build_id,
                power_on=True,
                annotation=f"winnodes golden image {name} (build {build_id}, {gi.profile})",
                resume_task=Variable.get(variable, default=None),  # type: ignore[arg-type]
                on_task=lambda task_id: _remember(variable, task_id),
                timeout=gi.timeouts.vcenter_task_seconds,
                flow_run=str(flow_run.get_id() or "") or None,
            )
        Variable.unset(variable)
        if ref.template:
            return _info(ref, f"{name} ({ref.moid}) is already a template")
        sysprep_started = bool(vms.custom_attributes(session, ref.obj).get(ATTR_SYSPREP))
        powered = False
        if not sysprep_started:
            powered = vms.power_on(session, ref.obj, timeout=gi.timeouts.vcenter_task_seconds)
        ref = vms.get_vm(session, ref.obj)
    what = "cloned" if ref.created or powered else "exists"
    note = "; sysprep already started" if sysprep_started else ""
    return _info(ref, f"{name} ({ref.moid}) {what} from base {base_moid}, {ref.power_state}{note}")


# -- G9 ----------------------------------------------------------------------------------------------
@task(name="G9 wait for power-off after sysprep", **transient_retries())
def g9_wait_for_power_off(gi: GoldenImageConfig, vm_moid: str, deadline: datetime) -> str:
    """Sysprep shuts the clone down: wait for `poweredOff` (WaitForUpdatesEx), until `deadline`."""
    left = seconds_left(deadline, step_id="G9", what="power-off after sysprep")
    with vcenter(gi) as session:
        waits.wait_for_power_off(session, _vm(session, vm_moid), timeout=left, step_id="G9")
    return f"{vm_moid} powered off by sysprep /shutdown"


# -- G10 ---------------------------------------------------------------------------------------------
@task(name="G10 find this build's template", **transient_retries())
def g10_find_template(gi: GoldenImageConfig, build_id: str) -> VmInfo | None:
    """The template (or clone) of this build if it exists (Conflict if the name is someone else's)."""
    name = template_name(gi.names, build_id)
    try:
        with vcenter(gi) as session:
            ref = vms.find_vm(session, _placement(session, gi).folder, name)
    except errors.WinNodesError as exc:  # the flow calls this before its first step
        exc.step_id = exc.step_id or "G10"
        raise
    if ref is None:
        return None
    if ref.build_id != build_id:
        raise errors.Conflict(
            f"{name} exists but belongs to build {ref.build_id or '<not winnodes>'}",
            step_id="G10",
        )
    return _info(ref)


@task(name="G10 convert to template and record provenance", **transient_retries())
def g10_make_template(
    gi: GoldenImageConfig, vm_moid: str, build_id: str, provenance: dict[str, str]
) -> VmInfo:
    """Mark the powered-off clone as a template, verify it (a template, powered off, this build),
    and record provenance as custom attributes. Idempotent (an existing template is verified and
    its attributes converge)."""
    with vcenter(gi) as session:
        vm = _vm(session, vm_moid)
        ref = vms.mark_as_template(session, vm)
        if not ref.template or ref.power_state != "poweredOff" or ref.build_id != build_id:
            raise errors.GuestCheckFailed(
                "G10",
                f"{ref.name} is not a powered-off template of build {build_id}",
                evidence=f"template={ref.template} power={ref.power_state} build={ref.build_id}",
            )
        written = vms.set_custom_attributes(session, vm, provenance)
        attrs = vms.custom_attributes(session, vm)
    missing = {k: v for k, v in provenance.items() if attrs.get(k) != v}
    if missing:
        raise errors.GuestCheckFailed(
            "G10", f"provenance not recorded on {ref.name}: {', '.join(sorted(missing))}"
        )
    return _info(
        ref,
        f"{ref.name} ({ref.moid}) is a powered-off template of build {build_id}; provenance "
        f"{'written' if written else 'already recorded'}: "
        + ", ".join(f"{k}={v}" for k, v in sorted(provenance.items())),
    )


class RetentionResult(BaseModel):
    """What G10 retention deleted and what it kept, with the reason for each."""

    deleted: list[str]
    kept: list[tuple[str, str]]

    @property
    def summary(self) -> str:
        kept = "; ".join(f"{n} ({why})" for n, why in self.kept) or "none"
        return f"deleted {', '.join(self.deleted) or 'nothing'}; kept {kept}"


@task(name="G10 retention", **transient_retries())
def g10_retention(
    gi: GoldenImageConfig, keep_build_id: str | None, openshift_block: str | None = None
) -> RetentionResult:
    """Delete the series' templates beyond the newest `keep_templates`, never this build's and never
    one that a MachineSet or Machine in openshift-machine-api names (read through
    `openshift_block`; without it nothing is deleted: unknown references are not permission)."""
    from blocks.openshift import OpenShiftCredentials
    from winnodes.cluster.rotation import all_machine_templates
    from winnodes.plan.retention import TemplateRef, plan_retention, references_by_template

    references = None
    creds: Any = None
    if openshift_block:
        try:
            creds = OpenShiftCredentials.load(openshift_block)
        except ValueError:  # no such block (e.g. a golden-image-only site): references unknown
            log = get_run_logger()
            log.warning("G10 retention: block %r not found; nothing is deleted", openshift_block)
    if creds is not None:
        with creds.get_client() as api:
            references = references_by_template(all_machine_templates(api, "G10"))
    with vcenter(gi) as session:
        folder = inventory.find_by_path(session, gi.placement.folder)
        series = vms.list_templates(session, folder, gi.names.template_series)
        protect = [t.name for t in series if keep_build_id and t.build_id == keep_build_id]
        refs = [
            TemplateRef(t.name, t.build_id, t.created.isoformat() if t.created else "")
            for t in series
        ]
        plan = plan_retention(refs, gi.keep_templates, references, protect)
        doomed = [t for t in series if t.name in plan.delete]
        for t in doomed:
            vms.destroy(session, t.obj, timeout=gi.timeouts.vcenter_task_seconds, step_id="G10")
    return RetentionResult(
        deleted=[t.name for t in doomed], kept=[(k.name, k.reason) for k in plan.kept]
    )


def _run_states(run_ids: set[str]) -> dict[str, str | None]:
    """Prefect state type of each flow run (None: this server does not know it)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    states: dict[str, str | None] = {}
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            try:
                run = client.read_flow_run(UUID(run_id))
            except (ObjectNotFound, ValueError):
                states[run_id] = None
                continue
            states[run_id] = run.state.type.value if run.state is not None else "PENDING"
    return states


@task(name="G10 remove clones of abandoned builds", **transient_retries())
def g10_remove_abandoned_clones(gi: GoldenImageConfig, build_id: str) -> RetentionResult:
    """Delete the series' clones that are not templates and will never become one: builds older
    than this one whose flow run is over (a run killed after G8, then a new build instead of a
    retry). Their flow run is read from the clone (G8 records it) and from Prefect; see
    `winnodes.plan.retention.superseded_clones` for the rule."""
    from winnodes.plan.retention import UnfinishedClone, superseded_clones

    with vcenter(gi) as session:
        folder = _placement(session, gi).folder
        clones = {
            ref.name: ref
            for ref in vms.list_vms(session, folder)
            if not ref.template
            and ref.build_id
            and ref.name != gi.names.base_vm
            and build_id_of(gi.names, ref.name) == ref.build_id
        }
        unfinished = [
            UnfinishedClone(r.name, r.build_id or "", r.flow_run) for r in clones.values()
        ]
        runs = {c.flow_run for c in unfinished if c.flow_run and c.build_id != build_id}
        delete, kept = superseded_clones(unfinished, build_id, _run_states(runs))
        for name in delete:
            vms.destroy(
                session, clones[name].obj, timeout=gi.timeouts.vcenter_task_seconds, step_id="G10"
            )
    return RetentionResult(deleted=delete, kept=[(k.name, k.reason) for k in kept])


# -- cleanup -------------------------------------------------------------------------------------------
@task(name="clean up a failed build", **transient_retries())
def cleanup_failed_build(gi: GoldenImageConfig, build_id: str, base_moid: str | None) -> list[str]:
    """Delete what a failed build leaves: its clone (never a template of another build) and a base
    VM this build created that never finished installing (`base_moid`). The answer media is
    removed separately (`g1_remove_answer_media`)."""
    removed: list[str] = []
    with vcenter(gi) as session:
        folder = _placement(session, gi).folder
        clone = vms.find_vm(session, folder, template_name(gi.names, build_id))
        mine = clone is not None and clone.build_id == build_id
        if (
            mine
            and clone
            and vms.destroy(session, clone.obj, timeout=gi.timeouts.vcenter_task_seconds)
        ):
            removed.append(clone.name)
        if base_moid:
            base = vms.get_vm(session, _vm(session, base_moid))
            if base.build_id == build_id and vms.destroy(
                session, base.obj, timeout=gi.timeouts.vcenter_task_seconds
            ):
                removed.append(base.name)
    return removed


# -- the build ID --------------------------------------------------------------------------------------
def _unfinished_builds(session: VSphereSession, gi: GoldenImageConfig) -> list[str]:
    """Build IDs started but not finished, newest first: the base VM's pending marker (set when a
    build starts using it, cleared by G10), then clones of the series that are not templates yet."""
    folder = _placement(session, gi).folder
    found: list[str] = []
    base = vms.find_vm(session, folder, gi.names.base_vm)
    if base is not None and not base.template:
        marker = vms.custom_attributes(session, base.obj).get(ATTR_PENDING, "")
        if marker:
            found.append(marker)
    clones = [
        ref
        for ref in vms.list_vms(session, folder)
        if not ref.template
        and ref.build_id
        and build_id_of(gi.names, ref.name) == ref.build_id
        and ref.name != gi.names.base_vm
    ]
    for ref in sorted(clones, key=lambda r: int(r.build_id or 0), reverse=True):
        if ref.build_id not in found:
            found.append(ref.build_id or "")
    return found


@task(name="plan the build ID", **transient_retries())
def plan_build(gi: GoldenImageConfig, mode: str, now: str) -> BuildPlan:
    """The build this run works on (`winnodes.model.naming.choose_build`): a new ID, the unfinished
    build found in vCenter ("resume"), or the newest template ("latest"). The flow caches this
    task's result per flow run (`flows.golden_image`), so a retry of the same run gets the same
    build back, while every new run decides again from vCenter's real state.

    Raises:
        NotFound (G1): "resume" was asked for, but no unfinished build exists.
    """
    try:
        with vcenter(gi) as session:
            folder = _placement(session, gi).folder
            templates = [
                t.name for t in vms.list_templates(session, folder, gi.names.template_series)
            ]
            unfinished = _unfinished_builds(session, gi)
    except errors.WinNodesError as exc:  # the flow plans before its first step
        exc.step_id = exc.step_id or "G1"
        raise
    try:
        build_id, action = choose_build(
            gi.names,
            mode,
            now=datetime.fromisoformat(now),
            templates=templates,
            unfinished=unfinished,
        )
    except NothingToResume as exc:
        raise errors.NotFound(
            f"{exc}: nothing to resume (start a new build instead)", step_id="G1"
        ) from None
    return BuildPlan(build_id=build_id, action=action, unfinished=unfinished)


@task(name="mark the build pending on the base VM", **transient_retries())
def mark_build_pending(gi: GoldenImageConfig, base_moid: str, build_id: str) -> None:
    """Record on the base VM which build uses it until G10 (`resume` finds it there)."""
    with vcenter(gi) as session:
        vms.set_custom_attributes(
            session, _vm(session, base_moid), {ATTR_PENDING: build_id}, step_id="G1"
        )


@task(name="clear the base VM's pending build", **transient_retries())
def clear_build_pending(gi: GoldenImageConfig, build_id: str) -> bool:
    """G10 done: the base VM no longer carries this build as unfinished. True when cleared."""
    with vcenter(gi) as session:
        base = vms.find_vm(session, _placement(session, gi).folder, gi.names.base_vm)
        if base is None or base.template:
            return False
        if vms.custom_attributes(session, base.obj).get(ATTR_PENDING) != build_id:
            return False
        vms.set_custom_attributes(session, base.obj, {ATTR_PENDING: ""}, step_id="G10")
        return True
