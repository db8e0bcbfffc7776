"""Guest twin rules that docs/lab-fidelity.md listed without a test.

Each test fails if the emulator, the Tools installer stand-in or Windows setup accepts what Windows
refuses, or reports what VMware Tools would not. No servers: the emulator runs against a guest disk in
a temporary directory, setup against stand-in ISOs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab import media
from lab.guest import boot
from lab.guest.state import GuestDisk, GuestState, Runtime
from lab.guest.supervisor import guest_os_identity
from tests.lab.guest.emulator_helpers import FakeHost, make_guest, ps


@pytest.fixture
def disk(tmp_path: Path) -> GuestDisk:
    return make_guest(tmp_path)


# ---- firewall, capabilities, features, PowerShellGet ----------------------------------------------
def test_a_local_port_needs_tcp_or_udp(disk: GuestDisk) -> None:
    r = ps(
        disk, "New-NetFirewallRule -DisplayName sshd -LocalPort 22 -Direction Inbound -Action Allow"
    )
    assert r.exit_code == 1
    assert "The port is only valid for TCP or UDP protocols." in r.stderr
    assert not any(rule.display_name == "sshd" for rule in disk.load().firewall_rules)
    assert not disk.load().allows_inbound_tcp(22)


def test_unknown_capability_and_missing_online_are_refused(disk: GuestDisk) -> None:
    r = ps(disk, "Add-WindowsCapability -Online -Name OpenSSH.Serverr~~~~0.0.1.0")
    assert r.exit_code == 1 and "Error code = 0x800f0950" in r.stderr
    r = ps(disk, "Add-WindowsCapability -Name OpenSSH.Server~~~~0.0.1.0")
    assert r.exit_code == 1 and "Parameter set cannot be resolved" in r.stderr
    st = disk.load()
    assert st.capabilities["OpenSSH.Server~~~~0.0.1.0"] == "NotPresent"
    assert st.service("sshd") is None


def test_unknown_windows_feature_is_refused(disk: GuestDisk) -> None:
    r = ps(disk, "Install-WindowsFeature -Name Containerz")
    assert r.exit_code == 1
    assert "The role, role service, or feature name is not valid: 'Containerz'" in r.stderr
    assert disk.load().features == {}


def test_powershellget_without_force_fails_in_a_non_interactive_session(disk: GuestDisk) -> None:
    r = ps(disk, "Install-Module -Name DockerMsftProvider -Repository PSGallery")
    assert r.exit_code == 1 and "NonInteractive mode" in r.stderr
    assert "module:DockerMsftProvider" not in disk.load().packages
    assert ps(disk, "Install-Module -Name DockerMsftProvider -Force").exit_code == 0
    r = ps(disk, "Install-Package -Name docker -ProviderName DockerMsftProvider")
    assert r.exit_code == 1 and "NonInteractive mode" in r.stderr
    assert disk.load().container_runtime == ""


# ---- computer name, sysprep, .NET --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("12345", "because the new name is not valid"),
        ("win_host", "because the new name is not valid"),
        ("win.host", "because the new name is not valid"),
        ("winhost", "because the new name is the same as the current name"),
    ],
)
def test_rename_computer_refuses_invalid_and_unchanged_names(
    disk: GuestDisk, name: str, needle: str
) -> None:
    host = FakeHost()
    r = ps(disk, f"Rename-Computer -NewName {name} -Force -Restart", host)
    assert r.exit_code == 1 and needle in r.stderr
    assert disk.load().pending_computer_name == ""
    assert host.names() == []


def test_sysprep_with_an_unknown_argument_does_nothing(disk: GuestDisk) -> None:
    host = FakeHost()
    r = ps(
        disk,
        "& 'C:\\Windows\\System32\\Sysprep\\sysprep.exe' /generalize /oobe /shutdown /force",
        host,
    )
    assert r.exit_code != 0
    err = disk.host_path("C:\\Windows\\System32\\Sysprep\\Panther\\setuperr.log").read_text()
    assert "invalid command line argument(s): /force" in err
    st = disk.load()
    assert not st.generalized and st.sysprep_count == 0
    assert host.names() == []


def test_an_unknown_dotnet_method_fails_instead_of_guessing(disk: GuestDisk) -> None:
    r = ps(disk, "'abc'.Frobnicate()")
    assert r.exit_code == 1
    assert "Method invocation failed because [" in r.stderr
    assert "does not contain a method named 'Frobnicate'." in r.stderr


# ---- VMware Tools ------------------------------------------------------------------------------------
def test_tools_installer_restarts_the_guest_without_reboot_r(
    disk: GuestDisk, tmp_path: Path
) -> None:
    iso = tmp_path / "tools.iso"
    media.build_tools_iso(iso, media.TOOLS_MEDIA["current"])
    rt = disk.runtime()
    rt.cdroms = {"D": str(iso)}
    disk.save_runtime(rt)
    host = FakeHost()
    r = ps(disk, 'D:\\setup64.exe /S /v "/qn"', host)
    assert r.exit_code == 0, r.stderr
    assert "restart" in host.names()


@pytest.mark.parametrize(
    ("build", "full_name", "guest_id"),
    [
        (26100, "Microsoft Windows Server 2025 (64-bit)", "windows2022srvNext_64Guest"),
        (20348, "Microsoft Windows Server 2022 (64-bit)", "windows2019srvNext_64Guest"),
        (17763, "Microsoft Windows Server 2019 (64-bit)", "windows2019srv_64Guest"),
    ],
)
def test_tools_report_the_guest_os_of_the_installed_build(
    build: int, full_name: str, guest_id: str
) -> None:
    state = GuestState()
    state.build = build
    assert guest_os_identity(state) == (full_name, guest_id)


# ---- setup ------------------------------------------------------------------------------------------
STAR_ANSWER = """<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend" xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State">
  <settings pass="windowsPE">
    <component name="Microsoft-Windows-Setup"><ImageInstall><OSImage><InstallFrom><MetaData wcm:action="add"><Key>/IMAGE/NAME</Key><Value>Windows Server 2022 SERVERDATACENTERCORE</Value></MetaData></InstallFrom></OSImage></ImageInstall></component>
  </settings>
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup"><ComputerName>*</ComputerName></component>
  </settings>
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup">
      <UserAccounts><AdministratorPassword><Value>Passw0rd!</Value><PlainText>true</PlainText></AdministratorPassword></UserAccounts>
    </component>
  </settings>
</unattend>
"""


def test_setup_with_a_star_computer_name_picks_a_random_one(tmp_path: Path) -> None:
    windows_iso, answer_iso = tmp_path / "win.iso", tmp_path / "answer.iso"
    media.build_windows_iso(windows_iso, media.WINDOWS_MEDIA["current"])
    media.build_iso(answer_iso, {"/autounattend.xml": STAR_ANSWER.encode()}, "A")
    disk = GuestDisk(tmp_path / "vm-1")
    disk.create()
    disk.save_runtime(Runtime(vm="vm-1", name="t", ip="127.0.0.9", powered_on=True,
                              cdroms={"D": str(windows_iso), "E": str(answer_iso)}))  # fmt: skip
    out = boot.boot(disk, lambda _msg: None)
    assert (out.running, out.kind) == (True, "setup")
    assert re.fullmatch(r"WIN-[A-Z0-9]{11}", disk.load().computer_name)
