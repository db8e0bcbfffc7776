"""The golden image's in-guest steps (G3a, G3b, G3c, G4, G5, G6, G6u, G7, G9) as Prefect tasks.

Each task opens one verified SSH session (`WindowsAccess` block loaded by name, secrets never passed
as parameters), runs the check from `winnodes.render.powershell`, repairs what can be repaired, checks
again, and returns a `Check` (ok | repaired, evidence). What cannot be repaired raises
`GuestCheckFailed` naming the step. Commands go through `powershell_command_line` (-EncodedCommand),
so they survive cmd.exe as Windows OpenSSH's default shell.

Where the trusted SSH host key comes from (G4). Trust on first use, at the one moment it is sound:
G1 installed the base VM from *our* answer media on the network we chose, and vCenter (over verified
TLS, authenticated) tells us the IP its Tools report. `g4_trust_host_key` reads the key the guest
offers at that IP once and records it, with the IP, as custom attributes of the base VM
(`winnodes.ssh.hostkey`, `winnodes.guest.ip`): in vCenter, next to the VM, surviving a killed run and
visible to auditors. Every later connection, including those of re-runs and to the clone (a disk copy
with the same keys until G9 removes them), verifies against that record; a different key raises
`HostKeyMismatch` (permanent), never silently accepted. Machines created from the template get new
keys at their first boot (G9 removed the old ones so clones do not share them); those are learned
once by whoever first connects after that boot (WMCO pins them on first use the same way), which is
acceptable because the machine was created moments before from our template by the cluster's own
machine-api, and the key is pinned from then on.

Why G9 is one task with one session: Windows' sshd re-reads its host keys for every new connection,
so after `ssh_host_*` is removed no new session is possible. Removing the keys, and starting sysprep,
therefore happen in the same session, and progress is marked on the clone (`winnodes.sysprep`:
`keys-removed`, then `started`) so that a re-run knows what the clone went through.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from prefect import task
from pydantic import BaseModel

from blocks.windows import WindowsAccess
from tasks.policy import seconds_left, transient_retries
from tasks.vsphere import ATTR_GUEST_IP, ATTR_HOST_KEY, ATTR_SYSPREP, GuestFacts, vcenter
from winnodes import errors
from winnodes.guest import GuestSession, Result, fetch_host_key, host_key_fingerprint
from winnodes.model.config import GoldenImageConfig
from winnodes.model.profiles import get_profile, os_build_problem
from winnodes.render import powershell as ps
from winnodes.render import windows_update as wu
from winnodes.render.answer_media import PROGRESS_KEY, first_logon_progress
from winnodes.render.unattend import render_unattend
from winnodes.vsphere import inventory, vms, waits

SSH_PORT = 22


class Check(BaseModel):
    """The outcome of one in-guest step, for the run report."""

    status: str  # "ok" | "repaired"
    evidence: str


class HostKey(BaseModel):
    key: str  # OpenSSH public key line of the guest
    fingerprint: str
    learned: bool  # True: first contact in this run (TOFU); False: verified against the record
    evidence: str


@contextlib.contextmanager
def guest(
    gi: GoldenImageConfig, ip: str, host_key: str, step: str, port: int = SSH_PORT
) -> Iterator[GuestSession]:
    """A verified SSH session. A refused key is a G5 problem whichever step connects. Its SFTP
    transfers are bounded by `timeouts.command_seconds` (commands pass their own limits): with the
    block's default (900 s) a silent sftp-server held G9 for 15 minutes."""
    access = WindowsAccess.load(gi.windows_access_block)
    try:
        with access.ssh(  # type: ignore[union-attr]
            ip, host_key, port=port, step_id=step, command_timeout=gi.timeouts.command_seconds
        ) as session:
            yield session
    except errors.AuthenticationError as exc:
        raise errors.AuthenticationError(
            f"the guest at {ip} refused the administrator key: the public key of block "
            f"{gi.windows_access_block!r} is not (or no longer) in {ps.AUTHORIZED_KEYS} "
            f"({exc.message})",
            step_id="G5",
        ) from exc


def _ps(session: GuestSession, script: str, step: str, timeout: float) -> Result:
    return session.run_checked(ps.powershell_command_line(script), step_id=step, timeout=timeout)


# -- G4 sshd answers ---------------------------------------------------------------------------------
#: Bounds of one wait between two SSH handshake attempts (the guest's progress marker wakes it early).
SSHD_RETRY_FIRST, SSHD_RETRY_MAX = 1.0, 15.0
#: after a restart, sshd usually answers within a second of Tools: first retry sooner
HANDSHAKE_RETRY_FIRST = 0.2


@task(name="G4 wait for sshd to answer", **transient_retries())
def g4_wait_for_sshd(gi: GoldenImageConfig, vm_moid: str, ip: str) -> str:
    """Tools report the IP as soon as the VMTools service starts, while the first logon is still
    adding OpenSSH (a Features-on-Demand download of minutes): wait until sshd completes an SSH
    handshake (not only a TCP connect) and, when the guest reports first-logon progress, its last
    command is done (sshd starts before that script writes the key), within `timeouts.ssh_seconds`.

    Between attempts the task waits on the base VM's first-logon progress variable
    (`guestinfo.winnodes.progress`, set by the answer media's scripts through Tools' rpctool) with
    WaitForUpdatesEx, so a finished OpenSSH script wakes it at once; otherwise it tries again after
    a bounded, growing interval.

    Raises:
        WaitTimeout (G4): no handshake in time; names the last completed and the pending
            first-logon command.
    """
    proxy = WindowsAccess.load(gi.windows_access_block).ssh_proxy  # type: ignore[union-attr]
    budget = float(gi.timeouts.ssh_seconds)
    start = time.monotonic()
    deadline = start + budget
    interval = SSHD_RETRY_FIRST
    last_error = ""
    with vcenter(gi) as session:
        vm = session.moref("VirtualMachine", vm_moid)
        progress = waits.guest_variable(
            inventory.properties(session, vm, ["config.extraConfig"])["config.extraConfig"],
            PROGRESS_KEY,
        )
        while True:
            left = deadline - time.monotonic()
            try:
                fetch_host_key(ip, SSH_PORT, timeout=max(1.0, min(10.0, left)), proxy=proxy)
            except errors.SSHDropped as exc:
                last_error = exc.message
            else:
                state = first_logon_progress(progress)
                if not state.raw or state.pending is None:
                    took = time.monotonic() - start
                    return (
                        f"sshd at {ip}:{SSH_PORT} answered the SSH handshake after {took:.1f}s "
                        f"({state.describe()})"
                    )
                # sshd starts in the middle of the OpenSSH script: the key (G5) comes after it.
                last_error = "sshd answers, but the first logon has not finished"
            left = deadline - time.monotonic()
            if left <= 0:
                break
            progress = waits.wait_for_guest_variable_change(
                session, vm, PROGRESS_KEY, progress, timeout=min(interval, left), step_id="G4"
            )
            interval = min(interval * 2, SSHD_RETRY_MAX)
    raise errors.WaitTimeout(
        f"sshd at {ip}:{SSH_PORT} did not answer the SSH handshake within {budget:.0f}s "
        f"(timeouts.ssh_seconds; last error: {last_error}); "
        f"{first_logon_progress(progress).describe()}",
        step_id="G4",
    )


# -- secrets Windows Setup leaves on the base VM ----------------------------------------------------
@task(name="G4 remove the answer file copies from the base VM", **transient_retries())
def g4_remove_setup_secrets(gi: GoldenImageConfig, ip: str, host_key: str) -> Check:
    """Windows Setup keeps the answer file it used (autounattend.xml, with the Administrator
    password in plain text) in C:\\Windows\\Panther. Once the first logon is done nothing needs it:
    remove every copy from the base VM before it is cloned (G8), and check they are gone."""
    t = gi.timeouts.command_seconds
    with guest(gi, ip, host_key, "G4") as s:
        left = _ps(s, ps.remove_setup_secrets_command(), "G4", t).stdout.split()
    if left:
        raise errors.GuestCheckFailed(
            "G4", f"answer file copies could not be removed: {', '.join(left)}"
        )
    return Check(
        status="ok",
        evidence="no answer file copy left (" + ", ".join(ps.SETUP_SECRET_FILES[:3]) + ", ...)",
    )


# -- G4 host key -----------------------------------------------------------------------------------
@task(name="G4 trust the SSH host key", **transient_retries())
def g4_trust_host_key(gi: GoldenImageConfig, vm_moid: str, ip: str) -> HostKey:
    """The base VM's trusted host key: the recorded one, or learned now (TOFU) and recorded on the
    VM. The recorded IP follows the guest (DHCP may change it); the key never changes silently."""
    with vcenter(gi) as session:
        vm = session.moref("VirtualMachine", vm_moid)
        attrs = vms.custom_attributes(session, vm)
        recorded = attrs.get(ATTR_HOST_KEY)
        proxy = WindowsAccess.load(gi.windows_access_block).ssh_proxy  # type: ignore[union-attr]
        key = recorded or fetch_host_key(ip, SSH_PORT, timeout=gi.timeouts.ssh_seconds, proxy=proxy)
        updates = {ATTR_HOST_KEY: key, ATTR_GUEST_IP: ip}
        vms.set_custom_attributes(session, vm, updates, step_id="G4")
    fp = host_key_fingerprint(key)
    how = "verified against the key recorded on the VM" if recorded else "learned at first contact"
    return HostKey(key=key, fingerprint=fp, learned=not recorded, evidence=f"host key {fp} {how}")


# -- PRE-2 -----------------------------------------------------------------------------------------
class OsBuild(Check):
    build: int
    ubr: int

    @property
    def version(self) -> str:
        return f"{self.build}.{self.ubr}"


@task(name="PRE-2 Windows build and patch level", **transient_retries())
def pre2_os_build(gi: GoldenImageConfig, ip: str, host_key: str) -> OsBuild:
    """Read the installed Windows' build and UBR from the registry and refuse an image the profile
    (and so WMCO) does not accept: current needs WS2022 20348.681+ (KB5012637) or WS2025; WS2019
    is refused on vSphere; ocp-4.9 needs SAC 20H2 with KB4565351. Nothing to repair: the ISO (or
    the base VM's updates) must change.

    Raises:
        GuestCheckFailed (PRE-2): the build found and the builds required."""
    profile = get_profile(gi.profile)
    with guest(gi, ip, host_key, "PRE-2") as s:
        out = _ps(s, ps.os_version_command(), "PRE-2", gi.timeouts.command_seconds).stdout
    try:
        found = ps.parse_os_version(out)
    except ValueError as exc:
        raise errors.GuestCheckFailed(
            "PRE-2", "the guest's registry gave no Windows build number", evidence=out
        ) from exc
    problem = os_build_problem(found.build, found.ubr, profile)
    if problem is not None:
        raise errors.GuestCheckFailed(
            "PRE-2", f"{problem}; the registry says {found}", evidence=out
        )
    return OsBuild(
        status="ok",
        evidence=f"PRE-2: {found} meets profile {gi.profile}",
        build=found.build,
        ubr=found.ubr,
    )


# -- G3 --------------------------------------------------------------------------------------------
@task(name="G3c start VMTools over SSH", **transient_retries())
def g3c_recover_vmtools(gi: GoldenImageConfig, ip: str, host_key: str) -> Check:
    """Tools are silent on a running base VM: VMTools is stopped, so vCenter sees no IP. Reach the
    guest at its recorded IP (the pinned host key proves it is the same machine) and start it."""
    t = gi.timeouts.command_seconds
    with guest(gi, ip, host_key, "G3c") as s:
        before = ps.parse_services(_ps(s, ps.vmtools_status_command(), "G3c", t).stdout)
        _ps(s, ps.ensure_service_running_command("VMTools"), "G3c", t)
        after = ps.parse_services(_ps(s, ps.vmtools_status_command(), "G3c", t).stdout)
    vm_tools = after.get("vmtools")
    if vm_tools is None or not vm_tools.running_automatic:
        raise errors.GuestCheckFailed("G3c", "VMTools could not be started", evidence=str(after))
    was = before.get("vmtools")
    return Check(
        status="repaired",
        evidence=f"VMTools was {was.status if was else 'missing'}/"
        f"{was.start_type if was else '-'}; started over SSH at recorded {ip}",
    )


@task(name="G3a tools.conf exclude-nics", **transient_retries())
def g3a_tools_conf(gi: GoldenImageConfig, ip: str, host_key: str) -> Check:
    """tools.conf exists with an empty `exclude-nics=` in [guestinfo]; repaired (other settings
    kept) and VMTools restarted so it reads the file."""
    t = gi.timeouts.command_seconds
    with guest(gi, ip, host_key, "G3a") as s:
        raw = _ps(s, ps.tools_conf_read_command(), "G3a", t).stdout
        state = ps.parse_tools_conf(raw)
        if state.exclude_nics_empty:
            return Check(status="ok", evidence=f"{ps.TOOLS_CONF}: exclude-nics= (empty)")
        _ps(s, ps.tools_conf_write_command(ps.repaired_tools_conf(raw)), "G3a", t)
        _ps(s, "Restart-Service -Name 'VMTools'", "G3a", t)
        again = ps.parse_tools_conf(_ps(s, ps.tools_conf_read_command(), "G3a", t).stdout)
    if not again.exclude_nics_empty:
        raise errors.GuestCheckFailed("G3a", "tools.conf could not be repaired", evidence=raw)
    before = "missing" if not state.exists else f"exclude-nics={state.exclude_nics_value!r}"
    return Check(status="repaired", evidence=f"tools.conf was {before}; now exclude-nics= (empty)")


@task(name="G3b ipconfig agrees with vCenter", **transient_retries())
def g3b_ip_matches(gi: GoldenImageConfig, ip: str, host_key: str) -> Check:
    """The IPv4 vCenter reports is one `ipconfig` shows in the guest."""
    with guest(gi, ip, host_key, "G3b") as s:
        out = s.run_checked("ipconfig", step_id="G3b", timeout=gi.timeouts.command_seconds).stdout
    seen = ps.parse_ipconfig_ipv4(out)
    if ip not in seen:
        raise errors.GuestCheckFailed(
            "G3b", f"vCenter reports {ip}, ipconfig shows {seen or 'no IPv4'}", evidence=out
        )
    return Check(status="ok", evidence=f"vCenter {ip}; ipconfig {', '.join(seen)}")


@task(name="G3c VMTools running and automatic", **transient_retries())
def g3c_vmtools_service(gi: GoldenImageConfig, ip: str, host_key: str) -> Check:
    """`Get-Service VMTools`: Running and Automatic; repaired otherwise."""
    t = gi.timeouts.command_seconds
    with guest(gi, ip, host_key, "G3c") as s:
        svc = ps.parse_services(_ps(s, ps.vmtools_status_command(), "G3c", t).stdout).get("vmtools")
        if svc is not None and svc.running_automatic:
            return Check(status="ok", evidence="VMTools Running/Automatic")
        if svc is None:
            raise errors.GuestCheckFailed("G3c", "the VMTools service is not installed")
        _ps(s, ps.ensure_service_running_command("VMTools"), "G3c", t)
        after = ps.parse_services(_ps(s, ps.vmtools_status_command(), "G3c", t).stdout)
    fixed = after.get("vmtools")
    if fixed is None or not fixed.running_automatic:
        raise errors.GuestCheckFailed("G3c", "VMTools could not be started", evidence=str(after))
    return Check(
        status="repaired",
        evidence=f"VMTools was {svc.status}/{svc.start_type}; now Running/Automatic",
    )


# -- G4, G5 ----------------------------------------------------------------------------------------
@task(name="G4 OpenSSH server", **transient_retries())
def g4_openssh(gi: GoldenImageConfig, ip: str, host_key: str) -> Check:
    """sshd and ssh-agent Running and Automatic, inbound TCP 22 rule present; repaired otherwise.
    (That the session opened at all shows sshd runs and port 22 is reachable.)"""
    t = gi.timeouts.command_seconds
    rule = ps.ps_quote(ps.SSH_FIREWALL_RULE)
    rule_cmd = f"Get-NetFirewallRule | Where-Object {{ $_.Name -eq {rule} }} | " + (
        "Select-Object -Property Name, DisplayName, Enabled, Direction, Action | ConvertTo-Json -Compress"
    )
    with guest(gi, ip, host_key, "G4") as s:

        def problems() -> list[str]:
            svcs = ps.parse_services(_ps(s, ps.openssh_status_command(), "G4", t).stdout)
            out = [
                f"{n}: {svcs[n].status}/{svcs[n].start_type}" if n in svcs else f"{n}: missing"
                for n in ("sshd", "ssh-agent")
                if n not in svcs or not svcs[n].running_automatic
            ]
            if not ps.parse_firewall_rules(_ps(s, rule_cmd, "G4", t).stdout):
                out.append(f"firewall rule {ps.SSH_FIREWALL_RULE} missing")
            return out

        found = problems()
        if not found:
            return Check(
                status="ok",
                evidence=f"sshd, ssh-agent Running/Automatic; rule {ps.SSH_FIREWALL_RULE} (TCP 22)",
            )
        _ps(s, ps.openssh_repair_command(), "G4", t)
        left = problems()
    if left:
        raise errors.GuestCheckFailed("G4", f"OpenSSH could not be repaired: {'; '.join(left)}")
    return Check(status="repaired", evidence=f"was: {'; '.join(found)}; now all in place")


@task(name="G5 administrator key and ACL", **transient_retries())
def g5_admin_key(gi: GoldenImageConfig, ip: str, host_key: str) -> Check:
    """The block's public key in administrators_authorized_keys, ACL Administrators + SYSTEM only;
    repaired otherwise. (A guest that refuses the key cannot be reached to repair it: that fails
    at connect, naming G5.)"""
    access = WindowsAccess.load(gi.windows_access_block)
    public = access.public_key("winnodes")  # type: ignore[union-attr]
    fp = access.fingerprint()  # type: ignore[union-attr]
    t = gi.timeouts.command_seconds
    with guest(gi, ip, host_key, "G5") as s:

        def problems() -> list[str]:
            keys = _ps(s, ps.authorized_keys_read_command(), "G5", t).stdout
            if keys.strip() == ps.MISSING_MARKER:
                return [f"{ps.AUTHORIZED_KEYS} missing"]
            out = [] if ps.key_present(keys, public) else [f"key {fp} not in the file"]
            acl = s.run_checked(ps.authorized_keys_acl_command(), step_id="G5", timeout=t).stdout
            return out + ps.acl_problems(ps.parse_icacls(acl))

        found = problems()
        if not found:
            return Check(status="ok", evidence=f"key {fp} present; ACL Administrators, SYSTEM")
        _ps(s, ps.authorized_keys_write_command(public), "G5", t)
        left = problems()
    if left:
        raise errors.GuestCheckFailed(
            "G5", f"the key file could not be repaired: {'; '.join(left)}"
        )
    return Check(status="repaired", evidence=f"was: {'; '.join(found)}; key {fp} and ACL set")


# -- G6 --------------------------------------------------------------------------------------------
class RuntimeCheck(Check):
    restart_needed: bool = False


@task(name="G6 container runtime per profile", **transient_retries())
def g6_runtime(gi: GoldenImageConfig, ip: str, host_key: str) -> RuntimeCheck:
    """ocp-4.9: Docker installed, Running and Automatic (installed here when missing; the
    Containers feature needs a restart: `restart_guest`).
    current: no runtime preinstalled (WMCO installs containerd itself); a present one fails."""
    profile = get_profile(gi.profile)
    t = gi.timeouts.command_seconds
    with guest(gi, ip, host_key, "G6") as s:
        svcs = ps.parse_services(_ps(s, ps.runtime_status_command(), "G6", t).stdout)
        found = ps.runtime_problems(profile, svcs)
        if not found:
            what = "docker Running/Automatic" if profile.runtime == "docker" else "no runtime"
            return RuntimeCheck(status="ok", evidence=f"{gi.profile}: {what}")
        if profile.runtime != "docker":
            raise errors.GuestCheckFailed(
                "G6",
                f"profile {gi.profile}: the image must not carry a container runtime: "
                + "; ".join(found),
            )
        if "docker" not in svcs:
            for cmd in ps.install_docker_commands():
                _ps(s, cmd, "G6", t)
            return RuntimeCheck(
                status="repaired",
                evidence="docker installed (Containers feature, DockerMsftProvider); restart needed",
                restart_needed=True,
            )
        _ps(s, ps.ensure_service_running_command("docker"), "G6", t)
        left = ps.runtime_problems(
            profile, ps.parse_services(_ps(s, ps.runtime_status_command(), "G6", t).stdout)
        )
    if left:
        raise errors.GuestCheckFailed("G6", "; ".join(left))
    return RuntimeCheck(status="repaired", evidence=f"was: {'; '.join(found)}; docker started")


# -- restarts (G6, G6u) ----------------------------------------------------------------------------
@task(name="restart the guest and wait for it", **transient_retries())
def restart_guest(
    gi: GoldenImageConfig,
    vm_moid: str,
    ip: str,
    host_key: str,
    deadline: datetime,
    step_id: str = "G6",
) -> GuestFacts:
    """`Restart-Computer` over SSH, then wait through vCenter until the guest went down and reports
    Tools and an IPv4 again. The watch on `guest.toolsRunningStatus` starts *before* the restart, so
    a guest that is back before a separate wait could begin is still seen to have restarted (a wait
    started afterwards would wait for a "going down" that is already over). Every wait and every
    retry share the budget that ends at `deadline`."""
    what = "the guest's restart"
    t = gi.timeouts.command_seconds
    dropped: list[errors.SSHDropped] = []

    def restart() -> None:
        with guest(gi, ip, host_key, step_id) as s:
            try:
                _ps(s, "Restart-Computer -Force", step_id, t)
            except errors.SSHDropped as exc:  # the guest going down, or a cut before it ran
                dropped.append(exc)

    with vcenter(gi) as session:
        vm = session.moref("VirtualMachine", vm_moid)
        try:
            # The guest starts going down within the command's own limit, or the restart did not
            # happen: a session cut *before* Restart-Computer ran looks like the guest going
            # down, and waiting the step's whole budget for it would hang the step.
            waits.watch_for_change(
                session,
                vm,
                "guest.toolsRunningStatus",
                trigger=restart,
                timeout=min(seconds_left(deadline, step_id=step_id, what=what), t),
                step_id=step_id,
                what="the guest going down for its restart",
            )
        except errors.WaitTimeout as exc:
            if not dropped:
                raise
            raise errors.SSHDropped(
                f"the SSH session dropped before Restart-Computer answered and the guest did not "
                f"go down within {t}s (timeouts.command_seconds): the restart is sent again",
                step_id=step_id,
            ) from exc
        left = seconds_left(deadline, step_id=step_id, what=what)
        info = waits.wait_for_guest_ip(session, vm, timeout=left, step_id=step_id)
    # Tools report the IP as soon as the VMTools service starts; sshd, another automatic service,
    # may start later: the restart is over when sshd completes a handshake, not when the next
    # command is refused and costs a retry of its own.
    took = _wait_for_handshake(gi, info.ip, deadline, step_id)
    return GuestFacts(
        ip=info.ip,
        tools_version=str(info.tools_version),
        host_name=info.host_name,
        evidence=f"restarted; IPv4 {info.ip}; sshd answered {took:.1f}s after Tools",
    )


def _wait_for_handshake(gi: GoldenImageConfig, ip: str, deadline: datetime, step_id: str) -> float:
    """Until sshd at `ip` completes an SSH handshake, within the step's `deadline`; seconds taken.
    There is no event for a service starting inside the guest: attempts at growing intervals
    (each attempt itself blocks until refused or answered), the last one at the deadline.

    Raises:
        WaitTimeout (step_id): no handshake before the deadline, with the last error.
    """
    proxy = WindowsAccess.load(gi.windows_access_block).ssh_proxy  # type: ignore[union-attr]
    start = time.monotonic()
    interval = HANDSHAKE_RETRY_FIRST
    while True:
        left = (deadline - datetime.now(UTC)).total_seconds()
        try:
            fetch_host_key(ip, SSH_PORT, timeout=max(1.0, min(10.0, left)), proxy=proxy)
            return time.monotonic() - start
        except errors.SSHDropped as exc:
            left = (deadline - datetime.now(UTC)).total_seconds()
            if left <= 0:
                raise errors.WaitTimeout(
                    f"sshd at {ip}:{SSH_PORT} did not answer the SSH handshake after the restart "
                    f"within the step's time (last error: {exc.message})",
                    step_id=step_id,
                ) from exc
        time.sleep(min(interval, left))
        interval = min(interval * 2, SSHD_RETRY_MAX)


# -- G7 --------------------------------------------------------------------------------------------
@task(name="G7 firewall rules", **transient_retries())
def g7_firewall_rules(gi: GoldenImageConfig, ip: str, host_key: str) -> Check:
    """The profile's inbound TCP rules (10250; current also 9182), each created only if no rule of
    its display name exists (New-NetFirewallRule twice makes two rules)."""
    profile = get_profile(gi.profile)
    names = [p.display_name for p in profile.firewall]
    t = gi.timeouts.command_seconds
    with guest(gi, ip, host_key, "G7") as s:
        rules = ps.parse_firewall_rules(_ps(s, ps.firewall_rules_command(names), "G7", t).stdout)
        missing = ps.missing_firewall_ports(profile, rules)
        for port in missing:
            _ps(s, ps.ensure_firewall_rule_command(port), "G7", t)
        after = ps.parse_firewall_rules(_ps(s, ps.firewall_rules_command(names), "G7", t).stdout)
    left = ps.missing_firewall_ports(profile, after)
    if left:
        raise errors.GuestCheckFailed(
            "G7", f"firewall rules missing after repair: {', '.join(p.display_name for p in left)}"
        )
    dupes = sorted(
        {r.display_name for r in after if sum(x.display_name == r.display_name for x in after) > 1}
    )
    ports = ", ".join(f"{p.display_name} TCP {p.port}" for p in profile.firewall)
    note = f" (duplicates found: {', '.join(dupes)})" if dupes else ""
    if missing:
        added = ", ".join(p.display_name for p in missing)
        return Check(status="repaired", evidence=f"added {added}; now {ports}{note}")
    return Check(status="ok", evidence=f"{ports} inbound allow{note}")


# -- G9 --------------------------------------------------------------------------------------------
@task(name="G9 remove host keys, upload unattend.xml, sysprep", **transient_retries())
def g9_sysprep(gi: GoldenImageConfig, vm_moid: str, ip: str, host_key: str) -> Check:
    """On the clone, in one SSH session: write SetupComplete.cmd (removes the unattend.xml on every
    node after its OOBE), upload the rendered unattend.xml, then in ONE command remove
    `C:\\ProgramData\\ssh\\ssh_host_*` (checked) and run `sysprep /generalize /oobe /shutdown`
    (`ps.generalize_command`): a session lost there is resolved by whether a new session opens.
    The clone is marked before each irreversible part (`winnodes.sysprep`). The power-off is
    waited for by `g9_wait_for_power_off`."""
    access = WindowsAccess.load(gi.windows_access_block)
    password = access.administrator_password.get_secret_value()  # type: ignore[union-attr]
    unattend = render_unattend(gi.unattend, password).encode("utf-8")
    t = gi.timeouts.command_seconds
    with vcenter(gi) as vc, guest(gi, ip, host_key, "G9") as s:
        vm = vc.moref("VirtualMachine", vm_moid)
        # Every node runs SetupComplete.cmd after its OOBE: it removes the unattend.xml (password).
        scripts = ps.ps_quote(ps.SETUP_COMPLETE.rsplit("\\", 1)[0])
        _ps(s, f"New-Item -ItemType Directory -Path {scripts} -Force | Out-Null", "G9", t)
        s.put_file(ps.SETUP_COMPLETE, ps.setup_complete_cmd().encode("ascii"), step_id="G9")
        s.put_file(ps.UNATTEND_PATH, unattend, step_id="G9")
        vms.set_custom_attributes(vc, vm, {ATTR_SYSPREP: "keys-removed"}, step_id="G9")
        try:
            _ps(s, ps.generalize_command(), "G9", gi.timeouts.sysprep_seconds)
            how = "sysprep exited 0"
        except (errors.SSHDropped, errors.CommandTimeout) as exc:
            # Lost around the point of no return: sysprep shutting the clone down, or a cut (or a
            # hang) before the command ran. Only the second leaves the host keys, so only then
            # does a new session open: then the command is sent again (task retry).
            if _host_keys_still_there(gi, ip, host_key, vm_moid):
                raise errors.SSHDropped(
                    "the session was lost before sysprep started (the clone still has its SSH "
                    f"host keys): {exc.message}",
                    step_id="G9",
                ) from exc
            how = "the session dropped as sysprep shut the clone down"
        vms.set_custom_attributes(vc, vm, {ATTR_SYSPREP: "started"}, step_id="G9")
    return Check(
        status="ok",
        evidence=f"host keys removed; unattend.xml ({gi.unattend.computer_name}, AutoLogon off) "
        f"at {ps.UNATTEND_PATH}, removed on each node by {ps.SETUP_COMPLETE}; "
        f"sysprep /generalize /oobe /shutdown: {how}",
    )


@task(name="G9 find out what became of an interrupted sysprep command", **transient_retries())
def g9_sysprep_under_way(gi: GoldenImageConfig, vm_moid: str, host_key: str) -> bool:
    """The clone is marked `keys-removed`: an earlier run sent (or was about to send) the one
    command that removes the host keys and starts sysprep, and was killed before it answered. A
    Windows process started by sshd outlives its client, so the command may have run on: True
    when sysprep is under way or done (the clone is off or going down, or no SSH session opens
    because the host keys are gone); False when the clone still has its host keys (the command
    never ran: G9 sends it again). Re-cloning instead wasted a clone and killed a running sysprep."""
    with vcenter(gi) as session:
        now = inventory.properties(
            session,
            session.moref("VirtualMachine", vm_moid),
            ["runtime.powerState", "guest.ipAddress"],
        )
    ip = now.get("guest.ipAddress") or ""
    if now.get("runtime.powerState") != "poweredOn" or not ip:
        return True  # sysprep shut it down, or Windows is going down
    return not _host_keys_still_there(gi, ip, host_key, vm_moid)


def _host_keys_still_there(
    gi: GoldenImageConfig, ip: str, host_key: str, vm_moid: str | None = None
) -> bool:
    """After G9's command was lost: does the clone still have its SSH host keys? A session that
    opens proves it (sshd reads them for every connection: none, no handshake) and the check
    inside confirms it. A handshake that fails: the keys are gone, the command ran, sysprep is
    under way. A connection *refused* says neither (sshd restarting, or Windows going down): ask
    again, at growing intervals, until sshd answers, vCenter shows the clone going down, or
    `timeouts.ssh_seconds` (at most REFUSED_BUDGET) pass; then sysprep is taken to be under way
    (a wrong guess ends in G9's power-off wait, not in a second sysprep)."""
    deadline = time.monotonic() + min(float(gi.timeouts.ssh_seconds), REFUSED_BUDGET)
    pause = HANDSHAKE_RETRY_FIRST
    while True:
        try:
            with guest(gi, ip, host_key, "G9") as s:
                out = _ps(
                    s,
                    f"Test-Path -Path {ps.ps_quote(ps.HOST_KEYS_GLOB)}",
                    "G9",
                    gi.timeouts.command_seconds,
                )
        except errors.CommandTimeout:
            return False
        except errors.SSHDropped as exc:
            if not _refused(exc) or time.monotonic() >= deadline:
                return False
            if vm_moid is not None and _going_down(gi, vm_moid):
                return False
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 4.0)
            continue
        return out.stdout.strip().lower() == "true"


#: How long a refused connection may keep G9 from telling "sshd restarting" from "going down".
REFUSED_BUDGET = 30.0


def _refused(exc: BaseException) -> bool:
    """The TCP connection was refused (no listener), as opposed to a handshake that failed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "Connection refused" in str(exc)


def _going_down(gi: GoldenImageConfig, vm_moid: str) -> bool:
    """vCenter shows the clone off or its Tools stopped (Windows shutting down)."""
    with vcenter(gi) as session:
        now = inventory.properties(
            session,
            session.moref("VirtualMachine", vm_moid),
            ["runtime.powerState", "guest.toolsRunningStatus"],
        )
    return (
        now.get("runtime.powerState") != "poweredOn"
        or now.get("guest.toolsRunningStatus") != "guestToolsRunning"
    )


# -- G6u -------------------------------------------------------------------------------------------
class UpdateRound(BaseModel):
    """One G6u round: the KBs it installed and whether Windows needs a restart to finish them."""

    number: int
    found: list[str] = []
    installed: list[str] = []
    reboot_required: bool = False
    evidence: str = ""


@task(name="G6u read the OS build", **transient_retries())
def g6u_os_build(gi: GoldenImageConfig, ip: str, host_key: str) -> str:
    """CurrentBuildNumber.UBR from the registry, read as PRE-2 reads it, e.g. '20348.681' ('?.?'
    when the registry gives no build number: G6u only reports it)."""
    with guest(gi, ip, host_key, "G6u") as s:
        out = _ps(s, ps.os_version_command(), "G6u", gi.timeouts.command_seconds).stdout
    try:
        return ps.parse_os_version(out).version
    except ValueError:
        return "?.?"


@task(name="G6u search, download and install updates", **transient_retries())
def g6u_install_round(gi: GoldenImageConfig, ip: str, host_key: str, number: int) -> UpdateRound:
    """One round through the Windows Update Agent API from the configured source (WSUS policy
    written first when the source is 'wsus'). When the updates need a restart, the flow restarts
    the guest with `restart_guest`.

    Raises:
        GuestCheckFailed (G6u): the source is unreachable (HRESULT 0x8024402C, 0x80072EE2 ...,
            explained) or the installation failed (result code and HRESULT).
    """
    cfg = gi.windows_update
    t = gi.timeouts.command_seconds
    with guest(gi, ip, host_key, "G6u") as s:
        _ps(s, wu.source_policy_command(cfg.source, cfg.wsus_server), "G6u", t)
        result = wu.parse_round(_ps(s, wu.install_round_command(cfg.source), "G6u", t).stdout)
    if result.failed:
        raise errors.GuestCheckFailed(
            "G6u",
            result.problem(cfg.source if cfg.source != "wsus" else f"WSUS {cfg.wsus_server}"),
            evidence=f"round {number}: found {', '.join(result.found) or 'nothing'}",
        )
    if not result.found:
        evidence = f"round {number}: no update pending"
    else:
        evidence = f"round {number}: installed {', '.join(result.installed) or 'nothing'}" + (
            ", restart required" if result.reboot_required else ""
        )
    return UpdateRound(
        number=number,
        found=result.found,
        installed=result.installed,
        reboot_required=result.reboot_required,
        evidence=evidence,
    )
