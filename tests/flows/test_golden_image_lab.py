"""The golden image flow end to end against the lab (vcsim + the Windows guest twin).

Each test builds through the real flow (Prefect test harness, blocks saved by name, pyvmomi over
HTTPS to vcsim, paramiko to the guests' real sshd) and checks the end state in vCenter and in the
guest, independently of the product where it matters (the lab's own `scenario` helpers).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.golden_image import GoldenImageResult, golden_image
from lab import scenario
from lab.pipeline import hardware, placement
from lab.vcsim import VcsimControl
from tests.flows.cluster_lab import save_vcenter_and_windows_blocks, vcenter
from tests.winnodes.vsphere.lab_support import small_lab
from winnodes import errors
from winnodes.model.config import GoldenImageConfig
from winnodes.vsphere import inventory, vms

pytestmark = pytest.mark.lab

VC_BLOCK = "golden-vsphere"
WIN_BLOCK = "golden-windows"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from small_lab(tmp_path_factory.mktemp("lab-golden"))


@pytest.fixture(scope="module")
def blocks(env: dict[str, str], prefect_api: None) -> None:
    save_vcenter_and_windows_blocks(env, VC_BLOCK, WIN_BLOCK)


def make_config(env: dict[str, str], profile: str = "current", **over: Any) -> GoldenImageConfig:
    tag = uuid.uuid4().hex[:5]
    data: dict[str, Any] = {
        "profile": profile,
        "vsphere_credentials_block": VC_BLOCK,
        "windows_access_block": WIN_BLOCK,
        "placement": placement(env),
        "source": {
            "windows_iso": env[
                "LAB_WINDOWS_ISO_OCP49" if profile == "ocp-4.9" else "LAB_WINDOWS_ISO_CURRENT"
            ],
            "tools_iso": env["LAB_TOOLS_ISO"],
        },
        "hardware": hardware(),
        "unattend": {"computer_name": "winworker"},
        "names": {"base_vm": f"gi-base-{tag}", "template_series": f"gi-{tag}"},
        "keep_templates": 2,
        "timeouts": {
            "vcenter_task_seconds": 60,
            "install_seconds": 60,
            "ssh_seconds": 20,
            "command_seconds": 60,
            "sysprep_seconds": 60,
        },
    }
    for key, value in over.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return GoldenImageConfig.model_validate(data)


@pytest.fixture
def session(env: dict[str, str]) -> Iterator[Any]:
    with vcenter(env) as s:
        yield s


def vm_names(session: Any, env: dict[str, str], prefix: str) -> list[str]:
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    found = inventory.contents(session, folder, vms.vim.VirtualMachine, ["name"], recursive=False)
    return sorted(f.props["name"] for f in found if f.props["name"].startswith(prefix))


def assert_valid_template(
    session: Any, env: dict[str, str], gi: GoldenImageConfig, result: GoldenImageResult
) -> None:
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    ref = vms.find_vm(session, folder, result.template)
    assert ref is not None and ref.template and ref.power_state == "poweredOff"
    attrs = vms.custom_attributes(session, ref.obj)
    assert attrs["winnodes.build"] == result.build_id
    assert attrs["winnodes.profile"] == gi.profile
    assert attrs["winnodes.ssh.fingerprint"] == result.ssh_fingerprint
    assert attrs["winnodes.tools.version"] == "12.1.5"
    assert attrs["winnodes.flow.run"]
    # PRE-2's reading of the guest's registry after G6u, for the cluster side to check against
    # WMCO: a build the profile accepts (WS2022 >= 20348.681 or WS2025; 20H2 for ocp-4.9).
    build, _, ubr = attrs["winnodes.os.build"].partition(".")
    if gi.profile == "ocp-4.9":
        assert build == "19042" and int(ubr) >= 450, attrs["winnodes.os.build"]
    else:
        assert (build == "20348" and int(ubr) >= 681) or build == "26100", attrs[
            "winnodes.os.build"
        ]
    # The base VM stays un-sysprepped, and the answer media (Administrator password) is gone.
    base = vms.find_vm(session, folder, gi.names.base_vm)
    assert base is not None and not base.template and base.power_state == "poweredOn"
    assert not inventory.datastore_file_exists(
        session, f"[{gi.placement.datastore}] winnodes/{gi.names.base_vm}-answers.iso"
    )


@pytest.mark.parametrize(
    ("profile", "firmware", "controller"),
    [
        ("current", "efi", "pvscsi"),
        ("ocp-4.9", "efi", "pvscsi"),
        ("current", "bios", "lsilogic-sas"),
        ("ocp-4.9", "bios", "lsilogic-sas"),
    ],
)
def test_full_build_per_profile(
    env: dict[str, str], blocks: None, session: Any, profile: str, firmware: str, controller: str
) -> None:
    gi = make_config(env, profile, hardware={"firmware": firmware, "disk_controller": controller})
    t0 = time.monotonic()
    result = golden_image(gi)
    print(f"\nbuild {profile} {firmware}+{controller}: {time.monotonic() - t0:.1f}s wall")
    assert result.created
    assert_valid_template(session, env, gi, result)
    base = vms.find_vm(
        session, inventory.folder(session, env["LAB_VSPHERE_FOLDER"]), gi.names.base_vm
    )
    assert base is not None
    props = inventory.properties(session, base.obj, ["config.firmware", "config.hardware.device"])
    assert props["config.firmware"] == firmware
    kinds = {type(d).__name__.rsplit(".", 1)[-1] for d in props["config.hardware.device"]}
    assert {"pvscsi": "ParaVirtualSCSIController", "lsilogic-sas": "VirtualLsiLogicSASController"}[
        controller
    ] in kinds


def test_windows_server_2025_from_its_iso(env: dict[str, str], blocks: None, session: Any) -> None:
    gi = make_config(
        env,
        "current",
        source={
            "windows_iso": env["LAB_WINDOWS_ISO_2025"],
            "image_name": "Windows Server 2025 SERVERDATACENTERCORE",
        },
    )
    result = golden_image(gi)
    assert_valid_template(session, env, gi, result)


def test_efi_install_resumes_with_boot_keys_after_a_failed_g1(
    env: dict[str, str], blocks: None, session: Any
) -> None:
    """The vCenter user lacks VirtualMachine.Interact.PutUsbScanCodes: G1 fails (permanent, G1),
    the VM sits at the EFI prompt's fall-through, no Tools. Once the privilege is granted, a re-run
    powers the powered-off base VM on again and presses the key, and the build completes."""
    from lab.vcsim import VcsimControl

    control = VcsimControl(env["LAB_VCSIM_CONTROL_URL"])
    gi = make_config(env, "current")
    control.add_fault("PutUsbScanCodes", "NoPermission", message="missing privilege")
    try:
        with pytest.raises(errors.WinNodesError) as err:
            golden_image(gi)
        assert err.value.step_id == "G1"
    finally:
        control.clear_faults()
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    base = vms.find_vm(session, folder, gi.names.base_vm)
    assert base is not None  # created; Windows never started
    vms.power_off(session, base.obj)  # e.g. an operator stopped it
    result = golden_image(gi)
    assert_valid_template(session, env, gi, result)


def test_a_failed_power_on_of_the_new_base_vm_is_retried_with_the_boot_key(
    env: dict[str, str], blocks: None, session: Any
) -> None:
    """Found by the fault matrix (fault:PowerOnVM_Task:HostCommunication:task:once): the power-on
    task of the new base VM failed once; the task's retry found the VM (created=False), powered it
    on without pressing the EFI boot key, setup never started and G2 timed out."""
    control = VcsimControl(env["LAB_VCSIM_CONTROL_URL"])
    gi = make_config(env, "current")
    control.add_fault("PowerOnVM_Task", "HostCommunication", mode="task", max_count=1)
    try:
        result = golden_image(gi)
    finally:
        control.clear_faults()
    assert_valid_template(session, env, gi, result)


def _resets(control: VcsimControl, moid: str) -> int:
    """ResetVM_Task tasks on `moid` in the lab vCenter's task timeline (read independently)."""
    tasks = control.stats()["tasks"]
    return sum(1 for t in tasks if t["entity"] == moid and "reset" in t["type"].lower())


def test_a_base_vm_left_on_without_the_boot_key_is_reset_and_gets_it(
    env: dict[str, str], blocks: None, session: Any
) -> None:
    """Found by the fault matrix (kill:PowerOn:mid-task): a run stopped between the base VM's
    power-on and the EFI boot key (killed, or the key failed for good); the VM stays on at the
    prompt's fall-through, Windows never ran. The re-run used to leave the running VM alone (setup
    may be running), nobody pressed the key, G2 timed out. Now it resets the VM (its boot never got
    the key) and presses the key as after a power-on."""
    control = VcsimControl(env["LAB_VCSIM_CONTROL_URL"])
    gi = make_config(env, "current")
    control.add_fault("PutUsbScanCodes", "NoPermission", message="missing privilege")
    try:
        with pytest.raises(errors.WinNodesError) as err:
            golden_image(gi)
        assert err.value.step_id == "G1"
    finally:
        control.clear_faults()
    base = vms.find_vm(
        session, inventory.folder(session, env["LAB_VSPHERE_FOLDER"]), gi.names.base_vm
    )
    assert base is not None and base.power_state == "poweredOn"  # left on, Windows never ran
    result = golden_image(gi)
    assert_valid_template(session, env, gi, result)
    assert _resets(control, base.moid) == 1


def test_a_base_vm_whose_boot_got_the_key_is_not_reset(
    env: dict[str, str], blocks: None, session: Any, guests: Path
) -> None:
    """The other side of the rule: G1 finds the base VM on, Windows not run yet, but this boot got
    the EFI boot key (setup is running, Tools not installed yet): it is left alone, not reset."""
    from lab.guest import timing
    from tasks import vsphere as vt

    control = VcsimControl(env["LAB_VCSIM_CONTROL_URL"])
    timing.set_lab_timing(guests, timing.Timing("fast", overrides={"setup": 30.0}))
    gi = make_config(env, "current")
    answer = vt.g1_upload_answer_media(gi)
    base = vt.g1_create_base_vm(gi, "b-keyed", answer)
    try:
        assert vt.g1_power_on(gi, base.moid) is False  # on already, setup running
        assert vt.g1_find_base_vm(gi).windows_never_ran  # type: ignore[union-attr]
        assert _resets(control, base.moid) == 0
    finally:
        vt.g1_remove_answer_media(gi, base.moid)
        vms.destroy(session, session.moref("VirtualMachine", base.moid))


def test_a_permanent_fault_before_the_first_step_names_a_step(
    env: dict[str, str], blocks: None
) -> None:
    """Found by the fault matrix (fault:FindChild:InvalidArgument:call:always): the lookups before
    the first step (the build's plan, this build's template) failed the run with an error naming
    no step ID. The plan looks for the base VM first: G1."""
    control = VcsimControl(env["LAB_VCSIM_CONTROL_URL"])
    control.add_fault("FindChild", "InvalidArgument")
    try:
        with pytest.raises(errors.PermanentError) as err:
            golden_image(make_config(env, "current"))
    finally:
        control.clear_faults()
    assert err.value.step_id == "G1"


def test_wrong_image_name_fails_at_g1_before_any_vm(
    env: dict[str, str], blocks: None, session: Any
) -> None:
    gi = make_config(env, source={"image_name": "Windows Server 2022 Datacenter"})
    with pytest.raises(errors.ValidationError) as err:
        golden_image(gi)
    text = str(err.value)
    assert "golden_image.source.image_name" in text and "(G1)" in text
    assert "Windows Server 2022 SERVERDATACENTERCORE" in text  # what the profile's ISOs carry
    assert vm_names(session, env, gi.names.base_vm) == []


# -- vCenter sessions, counted by the lab's vCenter (GET /stats), not by the product --------------
def _logins(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The sessions that logged in since the count started (the test's own logged in before)."""
    return [s for s in stats["sessions"] if s["logins"]]


def test_build_logs_in_once_per_flow_run_and_out_at_the_end(
    env: dict[str, str], blocks: None
) -> None:
    """Every task of the build shares the flow run's session: one Login for the whole build (a
    session per task made 15), and the completion hook logs it out."""
    control = VcsimControl.from_env(env)
    gi = make_config(env)
    control.reset_stats()
    result = golden_image(gi)
    stats = control.stats()
    assert result.created
    assert stats["methods"]["Login"] == 1, stats["methods"]
    (run_session,) = _logins(stats)
    assert run_session["logins"] == 1 and run_session["logged_out"]
    assert run_session["methods"]["CreateVM_Task"] == 1
    assert run_session["methods"]["CloneVM_Task"] == 1
    # Lookups by SearchIndex, not a view per lookup (a view per lookup made 33): views only to list
    # the series (build planning, resume, G10 retention, G10's clones of abandoned builds).
    assert stats["methods"].get("CreateContainerView", 0) <= 5, stats["methods"]


def test_failed_build_logs_out_too(env: dict[str, str], blocks: None) -> None:
    control = VcsimControl.from_env(env)
    gi = make_config(env, source={"windows_iso": "[LocalDS_0] iso/no-such.iso"})
    control.reset_stats()
    with pytest.raises(errors.NotFound):
        golden_image(gi)
    stats = control.stats()
    (run_session,) = _logins(stats)
    assert run_session["logged_out"]  # by the flow's failure hook
    assert stats["methods"]["Login"] == 1


# -- one base VM shared by the re-run, resume and repair tests ----------------------------------------
@pytest.fixture(scope="module")
def built(env: dict[str, str], blocks: None) -> tuple[GoldenImageConfig, GoldenImageResult]:
    gi = make_config(env, "current")
    return gi, golden_image(gi)


@pytest.fixture
def site(env: dict[str, str]) -> scenario.Site:
    return scenario.Site.from_env(env)


def on_base(site: scenario.Site, gi: GoldenImageConfig, *commands: str) -> list[str]:
    """Run PowerShell on the base VM by the lab's own means (host key read from the guest's disk)."""
    outputs = []
    with scenario.connect(site) as si:
        vm = scenario.vm_by_name(si, site, gi.names.base_vm)
        ip = scenario.wait_for_ip(si, vm)
        with scenario.ssh(ip, site_key(site), scenario.host_keys(site, vm)) as client:
            for command in commands:
                rc, out, err = scenario.run(client, command)
                assert rc == 0, err
                outputs.append(out)
    return outputs


def site_key(site: scenario.Site) -> str:
    return str(Path(site.guests_dir).parent / "ssh" / "id_rsa")


def test_rerun_creates_nothing_new(
    env: dict[str, str], session: Any, built: tuple[GoldenImageConfig, GoldenImageResult]
) -> None:
    gi, first = built
    before = vm_names(session, env, "gi-")
    again = golden_image(gi, build_id=first.build_id)
    assert again.build_id == first.build_id and again.template == first.template
    assert not again.created and again.action == "reused"
    latest = golden_image(gi, build="latest")
    assert (latest.template, latest.action) == (first.template, "reused")
    assert vm_names(session, env, "gi-") == before
    assert_valid_template(session, env, gi, again)


def test_every_new_run_builds_a_new_template_with_updates(
    env: dict[str, str],
    session: Any,
    site: scenario.Site,
    built: tuple[GoldenImageConfig, GoldenImageResult],
) -> None:
    """Two plain runs (the schedule's) rebuild from the kept base VM: two new templates, counted
    with pyvmomi; G6u brought the base VM from the ISO's 20348.681 to 20348.768 (KB5014678)."""
    gi, first = built
    before = [n for n in vm_names(session, env, gi.names.template_series + "-")]
    one = golden_image(gi)
    two = golden_image(gi)
    assert one.created and two.created and one.action == two.action == "built"
    assert len({first.build_id, one.build_id, two.build_id}) == 3
    after = vm_names(session, env, gi.names.template_series + "-")
    assert sorted(set(after) - set(before)) == sorted([one.template, two.template])
    (build,) = on_base(
        site,
        gi,
        "Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion' | "
        "Select-Object -Property CurrentBuildNumber, UBR | ConvertTo-Json -Compress",
    )
    assert '"UBR":768' in build.replace(" ", "")
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    base = vms.find_vm(session, folder, gi.names.base_vm)
    assert base is not None
    assert not vms.custom_attributes(session, base.obj).get("winnodes.build.pending")


def test_a_new_build_removes_the_clone_of_a_build_whose_run_is_over(
    env: dict[str, str], session: Any, built: tuple[GoldenImageConfig, GoldenImageResult]
) -> None:
    """Found by the fault matrix (kill:G9:boundary:fresh and three more): a build that stopped
    after G8 and was followed by a new build (not a resume) left its clone, not a template, for
    good. Here the build fails at G10 with `keep_failed_build` (its clone stays, its flow run is
    Failed); the next new build completes and removes it, and only it."""
    gi, first = built
    control = VcsimControl(env["LAB_VCSIM_CONTROL_URL"])
    control.add_fault("MarkAsTemplate", "NoPermission", max_count=0)
    try:
        with pytest.raises(errors.WinNodesError) as failed:
            golden_image(gi.model_copy(update={"keep_failed_build": True}))
    finally:
        control.clear_faults()
    assert "[G10]" in str(failed.value)
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    left = [
        r
        for r in vms.list_vms(session, folder)
        if r.name.startswith(gi.names.template_series + "-") and not r.template
    ]
    assert len(left) == 1 and left[0].flow_run, left  # the failed build's clone names its run
    second = golden_image(gi)
    names = vm_names(session, env, "gi-")
    assert left[0].name not in names
    assert {first.template, second.template, gi.names.base_vm} <= set(names)
    assert_valid_template(session, env, gi, second)


def test_failure_at_g7_then_resume(
    env: dict[str, str],
    session: Any,
    site: scenario.Site,
    built: tuple[GoldenImageConfig, GoldenImageResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing firewall rule whose repair fails (injected: the guest runs a failing command)
    stops the build at G7 with nothing left behind; the next run of the same configuration resumes
    the same build and repairs the rule, with no extra VMs."""
    gi, first = built
    on_base(site, gi, "Remove-NetFirewallRule -DisplayName 'ContainerLogsPort'")
    from winnodes.render import powershell

    monkeypatch.setattr(
        powershell, "ensure_firewall_rule_command", lambda port: "Write-Error 'injected'; exit 7"
    )
    before = vm_names(session, env, "gi-")
    with pytest.raises(errors.GuestCommandFailed) as failed:
        golden_image(gi)
    assert "[G7]" in str(failed.value)
    assert vm_names(session, env, "gi-") == before  # no clone left behind
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    base = vms.find_vm(session, folder, gi.names.base_vm)
    assert base is not None
    pending = vms.custom_attributes(session, base.obj)["winnodes.build.pending"]
    monkeypatch.undo()

    resumed = golden_image(gi, build="resume")
    assert resumed.created and resumed.build_id == pending != first.build_id
    now = vm_names(session, env, "gi-")
    assert set(now) - set(before) == {resumed.template}  # one template more (retention may prune)
    assert gi.names.base_vm in now
    assert_valid_template(session, env, gi, resumed)
    (rules,) = on_base(
        site,
        gi,
        "Get-NetFirewallRule | Where-Object { $_.DisplayName -eq 'ContainerLogsPort' } | "
        "Select-Object -Property Name | ConvertTo-Json -Compress",
    )
    assert rules.count("Name") == 1  # repaired once, not added twice


def test_broken_guest_is_repaired(
    env: dict[str, str],
    session: Any,
    site: scenario.Site,
    built: tuple[GoldenImageConfig, GoldenImageResult],
) -> None:
    """A wrong tools.conf and a stopped VMTools (so vCenter sees no IP) on the base VM: the next
    build reaches the guest at its recorded IP with the pinned host key and repairs both."""
    gi, _ = built
    on_base(
        site,
        gi,
        "Set-Content -Path 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf' "
        "-Value '[guestinfo]','exclude-nics=vEthernet*'",
        "Stop-Service -Name 'VMTools'",
    )
    result = golden_image(gi, new_build=True)
    assert_valid_template(session, env, gi, result)
    (conf, svc) = on_base(
        site,
        gi,
        "Get-Content -Path 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf'",
        "Get-Service -Name 'VMTools' | Select-Object -Property Status | ConvertTo-Json -Compress",
    )
    assert "exclude-nics=\r\n" in conf or conf.rstrip().endswith("exclude-nics=")
    assert "vEthernet" not in conf
    assert '"Status":4' in svc.replace(" ", "") or "Running" in svc


def test_bad_inputs_fail_before_any_vm(env: dict[str, str], session: Any, blocks: None) -> None:
    before = vm_names(session, env, "gi-")
    bad = make_config(
        env,
        hardware={"hardware_version": "vmx-13"},
        unattend={"computer_name": "Not_A_Valid_Name_Too_Long"},
        windows_access_block="no-such-block",
    )
    with pytest.raises(errors.ValidationError) as invalid:
        golden_image(bad)
    text = str(invalid.value)
    for needle in ("hardware_version", "computer_name", "windows_access_block", "G1", "G9"):
        assert needle in text
    missing_iso = make_config(env, source={"windows_iso": "[LocalDS_0] iso/no-such.iso"})
    with pytest.raises(errors.NotFound) as nf:
        golden_image(missing_iso)
    assert "[G1]" in str(nf.value) and "no-such.iso" in str(nf.value)
    assert vm_names(session, env, "gi-") == before


# -- first boot, offline and proxied sites, secrets (issue 9) ------------------------------------------
@pytest.fixture
def guests(env: dict[str, str]) -> Iterator[Path]:
    """The lab's guest directory; the timing profile and the guest network are reset afterwards."""
    from lab.guest import timing, windows

    path = Path(env["LAB_GUESTS_DIR"])
    yield path
    timing.set_lab_timing(path, None)
    windows.set_network(path, internet=True)


def _guest_log(guests: Path, session: Any, env: dict[str, str], name: str) -> str:
    ref = vms.find_vm(session, inventory.folder(session, env["LAB_VSPHERE_FOLDER"]), name)
    assert ref is not None
    return (guests.parent / "logs" / "guests" / f"{ref.moid}.log").read_text()


@pytest.mark.parametrize("profile", ["current", "ocp-4.9"])
def test_realistic_timing_tools_report_before_sshd(
    env: dict[str, str], blocks: None, session: Any, guests: Path, profile: str
) -> None:
    """Real order: Tools report the IP, then the first logon adds OpenSSH; G4 waits for sshd."""
    from lab.guest import timing

    timing.set_lab_timing(guests, timing.Timing("realistic", 0.01))
    gi = make_config(env, profile, timeouts={"install_seconds": 120, "ssh_seconds": 60})
    t0 = time.monotonic()
    result = golden_image(gi)
    print(f"\nrealistic-proportion build {profile}: {time.monotonic() - t0:.1f}s wall")
    assert_valid_template(session, env, gi, result)
    lines = _guest_log(guests, session, env, gi.names.base_vm).splitlines()
    first = {
        what: next(i for i, line in enumerate(lines) if what in line)
        for what in ("tools report", "sshd started", "FirstLogonCommand 3")
    }
    # (the old lab ran every first-logon command before Tools reported)
    assert first["tools report"] < first["FirstLogonCommand 3"], lines
    assert first["tools report"] < first["sshd started"], lines


def test_g4_names_the_pending_first_logon_command(
    env: dict[str, str], blocks: None, guests: Path
) -> None:
    from lab.guest import timing

    # The OpenSSH download takes far longer than the SSH budget.
    timing.set_lab_timing(guests, timing.Timing("fast", overrides={"capability": 60.0}))
    gi = make_config(env, "current", timeouts={"ssh_seconds": 2})
    with pytest.raises(errors.WaitTimeout) as info:
        golden_image(gi)
    msg = str(info.value)
    assert msg.startswith("[G4]") and "did not answer the SSH handshake within 2s" in msg
    assert "last completed first-logon command: 2 (G2 install VMware Tools)" in msg
    assert "pending: 3 (G4/G5 OpenSSH and admin key)" in msg


def test_offline_site_builds_with_the_openssh_msi(
    env: dict[str, str], blocks: None, session: Any, guests: Path
) -> None:
    from lab.guest import windows

    windows.set_network(guests, internet=False)
    gi = make_config(
        env, "current", source={"offline": True, "openssh_msi": env["LAB_OPENSSH_MSI"]}
    )
    result = golden_image(gi)
    assert_valid_template(session, env, gi, result)
    assert "0x800f0954" not in _guest_log(guests, session, env, gi.names.base_vm)


def test_proxied_site_builds_ocp49_through_winhttp(
    env: dict[str, str], blocks: None, session: Any, guests: Path
) -> None:
    """No direct internet, a site proxy: OpenSSH (Windows Update) and Docker (PSGallery) come
    through the WinHTTP proxy the first logon sets."""
    from lab.guest import windows

    windows.set_network(guests, internet=False, proxy="proxy.lab.test:3128")
    gi = make_config(
        env, "ocp-4.9", source={"offline": True, "winhttp_proxy": "proxy.lab.test:3128"}
    )
    result = golden_image(gi)
    assert_valid_template(session, env, gi, result)


def test_offline_site_without_openssh_media_fails_before_any_vm(
    env: dict[str, str], blocks: None, session: Any
) -> None:
    gi = make_config(env, "current", source={"offline": True})
    with pytest.raises(errors.ValidationError) as info:
        golden_image(gi)
    msg = str(info.value)
    assert "golden_image.source.openssh_msi" in msg and "(G4)" in msg
    assert vm_names(session, env, gi.names.base_vm) == []


def test_answer_media_of_a_worker_that_died_after_g1_is_removed(
    env: dict[str, str], blocks: None, session: Any
) -> None:
    """A worker killed between G1 and G2 leaves the answer ISO (Administrator password) attached
    and on the datastore; the next run removes both."""
    from tasks import vsphere as vt

    gi = make_config(env, "current")
    answer = vt.g1_upload_answer_media.fn(gi)
    vt.g1_create_base_vm.fn(gi, "20000101000000", answer)  # ... and the worker dies here
    assert inventory.datastore_file_exists(session, answer)
    result = golden_image(gi, build_id="20000101000000")
    assert_valid_template(session, env, gi, result)  # checks the ISO is gone
    base = vms.find_vm(
        session, inventory.folder(session, env["LAB_VSPHERE_FOLDER"]), gi.names.base_vm
    )
    assert base is not None
    devices = inventory.properties(session, base.obj, ["config.hardware.device"])[
        "config.hardware.device"
    ]
    assert not [d for d in devices if answer in str(getattr(d.backing, "fileName", ""))]


def test_base_mode_rebuilds_from_the_kept_base_vm(
    env: dict[str, str], session: Any, built: tuple[GoldenImageConfig, GoldenImageResult]
) -> None:
    """`source.mode: base` needs no ISO: the kept base VM is powered on, updated (G6u) and
    re-verified, then cloned; a missing base VM fails at G1 before anything is created."""
    gi, _ = built
    base_gi = gi.model_copy(update={"source": gi.source.model_copy(update={"mode": "base"})})
    result = golden_image(base_gi)
    assert result.created and result.action == "built"
    assert_valid_template(session, env, base_gi, result)
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    ref = vms.find_vm(session, folder, result.template)
    assert ref is not None
    assert vms.custom_attributes(session, ref.obj)["winnodes.source"].startswith("base VM")
    missing = base_gi.model_copy(
        update={"names": base_gi.names.model_copy(update={"base_vm": "gi-no-such-base"})}
    )
    before = vm_names(session, env, "gi-")
    with pytest.raises(errors.NotFound) as failed:
        golden_image(missing)
    assert "[G1]" in str(failed.value) and "gi-no-such-base" in str(failed.value)
    assert vm_names(session, env, "gi-") == before


def test_unreachable_wsus_fails_g6u_with_the_windows_hresult(
    env: dict[str, str], session: Any, built: tuple[GoldenImageConfig, GoldenImageResult]
) -> None:
    gi, _ = built
    wsus = gi.model_copy(
        update={
            "windows_update": gi.windows_update.model_copy(
                update={"source": "wsus", "wsus_server": "http://wsus.invalid:8530"}
            )
        }
    )
    before = vm_names(session, env, "gi-")
    with pytest.raises(errors.GuestCheckFailed) as failed:
        golden_image(wsus)
    text = str(failed.value)
    assert text.startswith("[G6u]") and "0x8024402C" in text and "does not resolve" in text
    assert vm_names(session, env, "gi-") == before  # nothing cloned


# -- last: it breaks the shared base VM ---------------------------------------------------------------
def test_missing_ssh_key_fails_naming_g5(
    env: dict[str, str],
    session: Any,
    site: scenario.Site,
    built: tuple[GoldenImageConfig, GoldenImageResult],
) -> None:
    """Runs last on the shared base: without the administrator key nobody can log in to repair it."""
    gi, _ = built
    on_base(
        site,
        gi,
        "Set-Content -Path 'C:\\ProgramData\\ssh\\administrators_authorized_keys' -Value ''",
    )
    before = vm_names(session, env, "gi-")
    with pytest.raises(errors.AuthenticationError) as refused:
        golden_image(gi, new_build=True)
    assert "[G5]" in str(refused.value)
    assert vm_names(session, env, "gi-") == before
