"""The rendered answer media and guest commands, run by the lab's Windows twin (no servers: its boot
and PowerShell emulator on a temporary disk). A product/lab disagreement about PowerShell shows up
here instead of in a twenty-minute flow run. Skipped when the twin is not in this checkout."""

from __future__ import annotations

from typing import Any

import pytest

from tests.winnodes.conftest import GOOD_PASSWORD, config_data
from winnodes.model import parse_config
from winnodes.model.profiles import PROFILES, os_build_problem
from winnodes.render import answer_media as am
from winnodes.render import powershell as ps
from winnodes.render.unattend import render_unattend

boot = pytest.importorskip("lab.guest.boot")
emulator = pytest.importorskip("lab.guest.emulator")
media = pytest.importorskip("lab.media")
state = pytest.importorskip("lab.guest.state")
timing = pytest.importorskip("lab.guest.timing")
windows = pytest.importorskip("lab.guest.windows")

PUBKEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7twin winnodes"


class _Host:
    def __init__(self) -> None:
        self.events: list[str] = []

        self.details: list[tuple[str, dict[str, Any]]] = []

    def notify(self, event: str, **data: Any) -> None:
        self.events.append(event)
        self.details.append((event, data))


@pytest.fixture(scope="module", params=["current", "ocp-4.9"])
def installed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, str]:
    """One installed guest per profile (the checks test reads it; the G7/G9 test then changes it)."""
    profile: str = request.param
    tmp_path = tmp_path_factory.mktemp(f"twin-{profile}")
    data = config_data()
    data["golden_image"]["profile"] = profile
    gi = parse_config(data).golden_image
    win, tools, answer = tmp_path / "win.iso", tmp_path / "tools.iso", tmp_path / "answer.iso"
    media.build_windows_iso(win, media.WINDOWS_MEDIA[profile])
    media.build_tools_iso(tools, media.TOOLS_MEDIA["current"])
    answer.write_bytes(am.render_answer_iso(am.answer_media_files(gi, GOOD_PASSWORD, PUBKEY)))
    disk = state.GuestDisk(tmp_path / "guest")
    disk.create()
    # The CDs in the order G1 attaches them (Windows D:, Tools E:, answers F:); the system disk on
    # the configured controller (PVSCSI by default: the DriverPaths must reach the Tools CD).
    by_role = {"windows": str(win), "tools": str(tools), "answer": str(answer)}
    cdroms = {am.cd_letter(role): by_role[role] for role in am.INSTALL_CDS}
    assert gi.hardware.disk_controller == "pvscsi"
    disk.save_runtime(
        state.Runtime(
            vm="vm-1",
            name="base",
            ip="127.9.0.2",
            powered_on=True,
            cdroms=cdroms,
            firmware=gi.hardware.firmware,
            boot_disk_controller=gi.hardware.disk_controller,
        )
    )
    log: list[str] = []
    outcome = boot.boot(disk, log.append)
    assert outcome.running, log
    host = _Host()
    boot.run_first_logon(disk, outcome.first_logon, host, log.append, timing.Timing(), lambda: True)
    assert not [line for line in log if "exit 0" not in line and "FirstLogonCommand" in line], log
    # The scripts report their progress through Tools' rpctool, in order.
    assert [d["value"].split()[:2] for e, d in host.details if e == "guestinfo"] == [
        ["2", "done"],
        ["3", "started"],
        ["3", "done"],
    ]
    return disk, profile


def _first_logon_offline(tmp_path: Any, files: Any, ip: str) -> tuple[Any, _Host, list[str]]:
    """A guest on a network without internet, installed from the current media with these answer
    media files, through its first logon: (its disk, the Tools host it reported to, the log)."""
    win, tools, answer = tmp_path / "win.iso", tmp_path / "tools.iso", tmp_path / "answer.iso"
    media.build_windows_iso(win, media.WINDOWS_MEDIA["current"])
    media.build_tools_iso(tools, media.TOOLS_MEDIA["current"])
    answer.write_bytes(am.render_answer_iso(files))
    disk = state.GuestDisk(tmp_path / "guests" / "vm-1")
    disk.create()
    windows.set_network(disk.root.parent, internet=False)
    cdroms = {"D": str(win), "E": str(tools), "F": str(answer)}  # as G1 attaches them
    disk.save_runtime(state.Runtime(vm="vm-1", name="base", ip=ip, powered_on=True, cdroms=cdroms))
    log: list[str] = []
    outcome = boot.boot(disk, log.append)
    host = _Host()
    boot.run_first_logon(disk, outcome.first_logon, host, log.append, timing.Timing(), lambda: True)
    return disk, host, log


def test_offline_site_installs_openssh_from_the_msi_on_the_answer_media(
    tmp_path: Any,
) -> None:
    data = config_data()
    data["golden_image"]["source"]["offline"] = True
    data["golden_image"]["source"]["openssh_msi"] = "[LocalDS_0] iso/OpenSSH-Win64-v9.5.0.0.msi"
    gi = parse_config(data).golden_image
    files = am.answer_media_files(gi, GOOD_PASSWORD, PUBKEY, openssh_msi=media.OPENSSH_MSI_BYTES)
    disk, host, log = _first_logon_offline(tmp_path, files, "127.9.0.3")
    st = disk.load()
    assert st.service("sshd") is not None and st.service("sshd").status == "Running", log
    assert [d["value"].split()[:2] for e, d in host.details if e == "guestinfo"][-1] == [
        "3",
        "done",
    ]


def test_offline_site_without_offline_media_stops_at_the_openssh_command(tmp_path: Any) -> None:
    """What the PRE check prevents: the capability download fails, the marker stays 'started'."""
    gi = parse_config(config_data()).golden_image
    files = am.answer_media_files(gi, GOOD_PASSWORD, PUBKEY)
    disk, host, log = _first_logon_offline(tmp_path, files, "127.9.0.4")
    assert disk.load().service("sshd") is None
    last = [d["value"] for e, d in host.details if e == "guestinfo"][-1]
    progress = am.first_logon_progress(last)
    assert progress.pending is not None and progress.pending.order == 3
    assert "pending: 3 (G4/G5 OpenSSH and admin key)" in progress.describe()
    assert any("0x800f0954" in line for line in log)


def _run(disk: Any, command: str) -> Any:
    return emulator.run_command(disk, ps.powershell_command_line(command), _Host())


def test_first_logon_leaves_a_guest_that_passes_every_check(installed: tuple[Any, str]) -> None:
    disk, profile = installed
    assert ps.parse_tools_conf(_run(disk, ps.tools_conf_read_command()).stdout).exclude_nics_empty
    assert ps.parse_services(_run(disk, ps.vmtools_status_command()).stdout)[
        "vmtools"
    ].running_automatic
    version = ps.parse_tools_version(_run(disk, ps.tools_version_command()).stdout)
    assert version >= PROFILES[profile].min_tools_version
    ssh = ps.parse_services(_run(disk, ps.openssh_status_command()).stdout)
    assert ssh["sshd"].running_automatic and ssh["ssh-agent"].running_automatic
    assert ps.key_present(_run(disk, ps.authorized_keys_read_command()).stdout, PUBKEY)
    assert (
        ps.acl_problems(ps.parse_icacls(_run(disk, ps.authorized_keys_acl_command()).stdout)) == []
    )
    ips = ps.parse_ipconfig_ipv4(_run(disk, "ipconfig").stdout)
    assert ips and all(ps.is_usable_ipv4(ip) for ip in ips)


def test_g7_is_idempotent_and_g9_sysprep_accepts_the_unattend(installed: tuple[Any, str]) -> None:
    disk, profile = installed
    prof = PROFILES[profile]
    names = [p.display_name for p in prof.firewall]
    before = ps.parse_firewall_rules(_run(disk, ps.firewall_rules_command(names)).stdout)
    assert ps.missing_firewall_ports(prof, before) == list(prof.firewall)
    for _ in range(2):
        for port in prof.firewall:
            assert _run(disk, ps.ensure_firewall_rule_command(port)).exit_code == 0
    after = ps.parse_firewall_rules(_run(disk, ps.firewall_rules_command(names)).stdout)
    assert len(after) == len(prof.firewall)
    assert ps.missing_firewall_ports(prof, after) == []

    unattend_file = disk.host_path(ps.UNATTEND_PATH)
    unattend_file.parent.mkdir(parents=True, exist_ok=True)
    gi = parse_config(config_data()).golden_image
    unattend_file.write_text(render_unattend(gi.unattend, GOOD_PASSWORD))
    host = _Host()
    # G9's point of no return is one command: host keys removed and checked, sysprep started
    result = emulator.run_command(disk, ps.powershell_command_line(ps.generalize_command()), host)
    assert result.exit_code == 0, result.stderr
    assert "sysprep" in host.events
    assert _run(disk, f"Test-Path -Path {ps.ps_quote(ps.HOST_KEYS_GLOB)}").stdout.strip() == "False"


@pytest.mark.parametrize(
    ("iso", "profile", "refused"),
    [
        ("current", "current", None),
        ("current-2025", "current", None),
        ("ws2022-rtm", "current", "lacks KB5012637"),
        ("ws2019", "current", "Windows Server 2019"),
        ("ocp-4.9", "ocp-4.9", None),
        ("ocp-4.9", "current", "not an image of profile current"),
    ],
)
def test_pre2_reads_the_build_each_iso_installs(
    tmp_path: Any, iso: str, profile: str, refused: str | None
) -> None:
    """The registry of a guest installed from each stand-in ISO reports that release's build.UBR,
    and PRE-2 accepts or refuses it per profile."""
    spec = media.WINDOWS_MEDIA[iso]
    disk = state.GuestDisk(tmp_path / "guest")
    disk.create()
    windows = pytest.importorskip("lab.guest.windows")
    windows.fresh_install(disk, spec.info(), "winworker")
    found = ps.parse_os_version(_run(disk, ps.os_version_command()).stdout)
    assert (found.build, found.ubr) == (spec.build, spec.ubr)
    problem = os_build_problem(found.build, found.ubr, PROFILES[profile])
    assert (problem is None) if refused is None else (problem and refused in problem)


def test_no_answer_file_copy_survives_setup_and_oobe(tmp_path: Any) -> None:
    """The base VM's Panther copy of autounattend.xml is removed by the G4 cleanup command; the
    clone's unattend.xml (sysprep) by SetupComplete.cmd when a node finishes OOBE."""
    gi = parse_config(config_data()).golden_image
    win, tools, answer = tmp_path / "win.iso", tmp_path / "tools.iso", tmp_path / "answer.iso"
    media.build_windows_iso(win, media.WINDOWS_MEDIA["current"])
    media.build_tools_iso(tools, media.TOOLS_MEDIA["current"])
    answer.write_bytes(am.render_answer_iso(am.answer_media_files(gi, GOOD_PASSWORD, PUBKEY)))
    disk = state.GuestDisk(tmp_path / "guests" / "vm-1")
    disk.create()
    cdroms = {"D": str(win), "E": str(tools), "F": str(answer)}  # as G1 attaches them
    disk.save_runtime(
        state.Runtime(vm="vm-1", name="base", ip="127.9.0.5", powered_on=True, cdroms=cdroms)
    )
    log: list[str] = []
    outcome = boot.boot(disk, log.append)
    boot.run_first_logon(
        disk, outcome.first_logon, _Host(), log.append, timing.Timing(), lambda: True
    )

    def hits() -> list[str]:
        root = disk.disk
        return [
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and GOOD_PASSWORD.encode() in p.read_bytes()
        ]

    assert hits(), "Windows Setup keeps its answer file copy (the lab models it)"
    r = _run(disk, ps.remove_setup_secrets_command())
    assert r.exit_code == 0 and r.stdout.strip() == "", r.stderr
    assert hits() == []
    # G9 on the clone: SetupComplete.cmd and the unattend.xml, then sysprep and a node's OOBE.
    scripts = disk.host_path(ps.SETUP_COMPLETE)
    scripts.parent.mkdir(parents=True, exist_ok=True)
    scripts.write_bytes(ps.setup_complete_cmd().encode("ascii"))
    disk.host_path(ps.UNATTEND_PATH).write_text(render_unattend(gi.unattend, GOOD_PASSWORD))
    host = _Host()
    assert _run(disk, ps.remove_host_keys_command()).exit_code == 0
    result = emulator.run_command(disk, ps.powershell_command_line(ps.sysprep_command()), host)
    assert result.exit_code == 0, result.stderr
    assert hits() == [str(disk.host_path(ps.UNATTEND_PATH).relative_to(disk.disk))]  # the template
    node = boot.boot(disk, log.append)
    assert node.kind == "oobe"
    assert hits() == [] and not scripts.exists()
