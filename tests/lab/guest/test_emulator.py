"""The PowerShell emulator: parsing, errors, exit codes, output shapes, and each command's effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.guest import windows
from lab.guest.emulator import run_script
from lab.guest.state import SYSPREP_LIMIT, GuestDisk
from lab.media import TOOLS_MEDIA, build_iso, build_tools_iso
from tests.lab.guest.emulator_helpers import FakeHost, make_guest, ps

GOOD_UNATTEND = """<?xml version="1.0" encoding="UTF-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <ComputerName>{name}</ComputerName>
    </component>
  </settings>
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <AutoLogon><Enabled>{autologon}</Enabled></AutoLogon>
      <TimeZone>Eastern Standard Time</TimeZone>
      <UserAccounts><AdministratorPassword><Value>{password}</Value><PlainText>true</PlainText></AdministratorPassword></UserAccounts>
    </component>
  </settings>
</unattend>
"""


@pytest.fixture
def disk(tmp_path: Path) -> GuestDisk:
    return make_guest(tmp_path)


def install_openssh(disk: GuestDisk) -> None:
    r = ps(
        disk, "Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0; Start-Service sshd"
    )
    assert r.exit_code == 0, r.stderr


# ---- language and errors ------------------------------------------------------------------------
def test_unknown_cmdlet_fails_like_powershell(disk: GuestDisk) -> None:
    r = ps(disk, "Get-Servic sshd")
    assert r.exit_code == 1
    assert r.stderr.startswith(
        "Get-Servic : The term 'Get-Servic' is not recognized as the name of a cmdlet, function, "
        "script file, or operable program."
    )
    assert "At line:1 char:1" in r.stderr
    assert (
        "+ CategoryInfo          : ObjectNotFound: (Get-Servic:String) [], CommandNotFoundException"
        in r.stderr
    )
    assert "+ FullyQualifiedErrorId : CommandNotFoundException" in r.stderr


def test_unquoted_space_in_path_is_a_positional_parameter_error(disk: GuestDisk) -> None:
    r = ps(disk, r"Get-Content C:\Program Files\x.txt")
    assert r.exit_code == 1
    assert (
        "A positional parameter cannot be found that accepts argument 'Files\\x.txt'." in r.stderr
    )
    assert "PositionalParameterNotFound,Microsoft.PowerShell.Commands.GetContentCommand" in r.stderr


def test_parse_error_runs_nothing(disk: GuestDisk) -> None:
    host = FakeHost()
    r = ps(disk, "New-Item C:\\x -ItemType Directory; if (", host)
    assert r.exit_code == 1
    assert "ParserError" in r.stderr
    assert not disk.host_path("C:\\x").exists()


def test_unknown_and_ambiguous_parameters(disk: GuestDisk) -> None:
    r = ps(disk, "Get-Service -Nme sshd")
    assert "A parameter cannot be found that matches parameter name 'Nme'." in r.stderr
    r = ps(disk, "Get-Service -D W32Time")
    assert "is ambiguous. Possible matches include:" in r.stderr
    r = ps(disk, "Get-Service -Na W32Time")  # unique prefix
    assert r.exit_code == 0 and "W32Time" in r.stdout


def test_non_terminating_error_continues_and_exit_code_follows_last_statement(
    disk: GuestDisk,
) -> None:
    r = ps(disk, "Get-Service nope; Write-Output after")
    assert r.stdout.strip() == "after"
    assert r.exit_code == 0
    assert "Cannot find any service with service name 'nope'." in r.stderr
    assert ps(disk, "Write-Output before; Get-Service nope").exit_code == 1


def test_error_action_stop_terminates(disk: GuestDisk) -> None:
    r = ps(disk, "$ErrorActionPreference = 'Stop'; Get-Service nope; Write-Output unreachable")
    assert r.exit_code == 1
    assert "unreachable" not in r.stdout
    r = ps(
        disk,
        'try { Get-Service nope -ErrorAction Stop } catch { Write-Output "caught: $($_.Exception.Message)" }',
    )
    assert r.exit_code == 0
    assert r.stdout.strip() == "caught: Cannot find any service with service name 'nope'."


def test_variables_strings_if_and_property_access(disk: GuestDisk) -> None:
    script = (
        "$name = 'W32Time'; $s = Get-Service -Name $name\n"
        "if ($s.Status -eq 'Stopped' -and -not ($s.StartType -ne 'Manual')) { \"$name is `\"$($s.Status)`\"\" } else { 'no' }"
    )
    r = ps(disk, script)
    assert r.stdout.strip() == 'W32Time is "Stopped"'
    assert ps(disk, "'a','b' -contains 'B'").stdout.strip() == "True"
    assert ps(disk, "'sshd-x' -like 'sshd*'").stdout.strip() == "True"
    assert ps(disk, "$env:ProgramData").stdout.strip() == "C:\\ProgramData"
    assert ps(disk, "(Get-Service W32Time).Status").stdout.strip() == "Stopped"


def test_where_and_foreach_script_blocks(disk: GuestDisk) -> None:
    r = ps(
        disk, "Get-Service | Where-Object {$_.Name -like 'Lanman*'} | ForEach-Object { $_.Name }"
    )
    assert r.stdout.split() == ["LanmanServer", "LanmanWorkstation"]


def test_exit_statement_and_throw(disk: GuestDisk) -> None:
    assert ps(disk, "exit 7").exit_code == 7
    r = ps(disk, "throw 'boom'")
    assert r.exit_code == 1 and r.stderr.startswith("boom")


# ---- output shapes --------------------------------------------------------------------------------
def test_get_service_default_table(disk: GuestDisk) -> None:
    r = ps(disk, "Get-Service W32Time")
    assert r.stdout == (
        "\nStatus   Name               DisplayName\n"
        "------   ----               -----------\n"
        "Stopped  W32Time            Windows Time\n\n"
    )


def test_convertto_json_writes_enums_as_numbers(disk: GuestDisk) -> None:
    install_openssh(disk)
    r = ps(disk, "Get-Service sshd | Select-Object Status, StartType | ConvertTo-Json -Compress")
    assert json.loads(r.stdout) == {"Status": 4, "StartType": 3}
    pretty = ps(disk, "Get-Service sshd | Select Name, Status | ConvertTo-Json").stdout
    assert pretty == '{\r\n    "Name":  "sshd",\r\n    "Status":  4\r\n}\n'
    r = ps(disk, "Get-Service sshd, ssh-agent | Select Name, StartType | ConvertTo-Json -Compress")
    assert json.loads(r.stdout) == [
        {"Name": "sshd", "StartType": 3},
        {"Name": "ssh-agent", "StartType": 4},
    ]


def test_format_list_and_select(disk: GuestDisk) -> None:
    r = ps(disk, "Get-Service W32Time | Format-List Name, Status")
    assert "Name   : W32Time\nStatus : Stopped" in r.stdout
    r = ps(disk, "Get-Service W32Time | Select-Object -ExpandProperty DisplayName")
    assert r.stdout == "Windows Time\n"


# ---- services -------------------------------------------------------------------------------------
def test_services_start_stop_set(disk: GuestDisk) -> None:
    host = FakeHost()
    assert ps(disk, "Get-Service sshd").exit_code == 1  # not installed on a fresh system
    install_openssh(disk)
    r = ps(
        disk,
        "Set-Service -Name sshd -StartupType Automatic; Set-Service ssh-agent -StartupType Automatic -Status Running",
        host,
    )
    assert r.exit_code == 0, r.stderr
    st = disk.load()
    assert (st.services["sshd"].status, st.services["sshd"].start_type) == ("Running", "Automatic")
    assert (st.services["ssh-agent"].status, st.services["ssh-agent"].start_type) == (
        "Running",
        "Automatic",
    )
    assert "changed" in host.names()
    ps(disk, "Stop-Service sshd")
    assert disk.load().services["sshd"].status == "Stopped"
    assert "Cannot find any service with service name 'x'." in ps(disk, "Start-Service x").stderr


def test_disabled_service_cannot_start(disk: GuestDisk) -> None:
    r = ps(disk, "Start-Service ssh-agent")
    assert r.exit_code == 1
    assert "cannot be started" in r.stderr
    assert disk.load().services["ssh-agent"].status == "Stopped"


def test_starting_sshd_generates_host_keys(disk: GuestDisk) -> None:
    install_openssh(disk)
    for kind in ("rsa", "ecdsa", "ed25519"):
        assert disk.host_path(f"C:\\ProgramData\\ssh\\ssh_host_{kind}_key").is_file()
    cfg = disk.host_path("C:\\ProgramData\\ssh\\sshd_config").read_text()
    assert "Match Group administrators" in cfg
    assert "__PROGRAMDATA__/ssh/administrators_authorized_keys" in cfg


def test_capability_adds_service_and_firewall_rule(disk: GuestDisk) -> None:
    r = ps(
        disk,
        "Get-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0 | Select -ExpandProperty State",
    )
    assert r.stdout.strip() == "NotPresent"
    ps(disk, "Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0")
    st = disk.load()
    assert st.capabilities["OpenSSH.Server~~~~0.0.1.0"] == "Installed"
    assert (st.services["sshd"].status, st.services["sshd"].start_type) == ("Stopped", "Manual")
    assert st.allows_inbound_tcp(22)
    ps(disk, "Remove-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0")
    assert "sshd" not in disk.load().services


# ---- files ------------------------------------------------------------------------------------------
def test_file_cmdlets(disk: GuestDisk) -> None:
    r = ps(disk, "New-Item -ItemType Directory -Force -Path 'C:\\ProgramData\\VMware\\VMware Tools' | Out-Null\n"
                 "Set-Content -Path 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf' -Value '[guestinfo]','exclude-nics='\n"
                 "Add-Content -Path 'C:\\programdata\\vmware\\vmware tools\\TOOLS.CONF' -Value '# end'\n"
                 "Get-Content 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf'")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == ["[guestinfo]", "exclude-nics=", "# end"]
    assert (
        disk.host_path("C:\\ProgramData\\VMware\\VMware Tools\\tools.conf").read_bytes()
        == b"[guestinfo]\r\nexclude-nics=\r\n# end\r\n"
    )
    assert (
        ps(disk, "Test-Path 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf'").stdout.strip()
        == "True"
    )
    ps(
        disk,
        "Copy-Item 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf' C:\\Windows\\Temp\\t.conf",
    )
    assert disk.host_path("C:\\Windows\\Temp\\t.conf").is_file()
    r = ps(disk, "Get-Content C:\\nope.txt")
    assert (
        r.exit_code == 1
        and "Cannot find path 'C:\\nope.txt' because it does not exist." in r.stderr
    )


def test_out_file_and_redirection_write_utf16(disk: GuestDisk) -> None:
    ps(disk, "'ssh-rsa AAAA' > C:\\k1.txt; 'ssh-rsa AAAA' | Out-File C:\\k2.txt -Encoding ascii")
    assert disk.host_path("C:\\k1.txt").read_bytes().startswith(b"\xff\xfe")
    assert disk.host_path("C:\\k2.txt").read_bytes() == b"ssh-rsa AAAA\r\n"


def test_wildcard_removal_of_host_keys(disk: GuestDisk) -> None:
    install_openssh(disk)
    r = ps(
        disk,
        "Remove-Item C:\\ProgramData\\ssh\\ssh_host_* -Force; Get-ChildItem C:\\ProgramData\\ssh -Name",
    )
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == ["sshd_config"]
    before = disk.host_path("C:\\ProgramData\\ssh\\sshd_config").read_bytes()
    assert before  # config stays


def test_cd_drive_is_read_only(disk: GuestDisk, tmp_path: Path) -> None:
    iso = tmp_path / "answer.iso"
    build_iso(iso, {"/setup.ps1": b"Write-Output 'from cd'\r\nexit 3\r\n"}, "ANSWER")
    rt = disk.runtime()
    rt.cdroms = {"D": str(iso)}
    disk.save_runtime(rt)
    assert (
        ps(disk, "Get-Content D:\\SETUP.ps1 -TotalCount 1").stdout.strip()
        == "Write-Output 'from cd'"
    )
    r = ps(disk, "Set-Content D:\\x.txt -Value 1")
    assert r.exit_code == 1 and "Access to the path 'D:\\x.txt' is denied." in r.stderr
    r = ps(disk, "powershell -NoProfile -ExecutionPolicy Bypass -File D:\\setup.ps1")
    assert (r.exit_code, r.stdout.strip()) == (3, "from cd")
    assert "Cannot find drive" in ps(disk, "Get-ChildItem E:\\").stderr


# ---- firewall ---------------------------------------------------------------------------------------
def test_new_firewall_rule_twice_makes_two_rules(disk: GuestDisk) -> None:
    cmd = ('New-NetFirewallRule -DisplayName "ContainerLogsPort" -LocalPort 10250 -Enabled True -Direction Inbound '
           "-Protocol TCP -Action Allow -EdgeTraversalPolicy Allow")  # fmt: skip
    assert ps(disk, cmd).exit_code == 0
    assert ps(disk, cmd).exit_code == 0
    rules = [r for r in disk.load().firewall_rules if r.display_name == "ContainerLogsPort"]
    assert len(rules) == 2 and rules[0].name != rules[1].name and rules[0].name.startswith("{")
    assert disk.load().allows_inbound_tcp(10250)
    r = ps(
        disk,
        "Get-NetFirewallRule -DisplayName ContainerLogsPort | Get-NetFirewallPortFilter | Select-Object -ExpandProperty LocalPort",
    )
    assert r.stdout.split() == ["10250", "10250"]
    ps(disk, "Remove-NetFirewallRule -DisplayName ContainerLogsPort")
    assert not disk.load().allows_inbound_tcp(10250)


def test_firewall_rule_names_errors_and_set(disk: GuestDisk) -> None:
    ok = ps(
        disk, "New-NetFirewallRule -Name metrics -DisplayName m -LocalPort 9182,10250 -Protocol TCP"
    )
    assert ok.exit_code == 0
    dup = ps(disk, "New-NetFirewallRule -Name metrics -DisplayName m2 -LocalPort 1 -Protocol TCP")
    assert (
        dup.exit_code == 1 and "Cannot create a file when that file already exists." in dup.stderr
    )
    r = ps(disk, "Get-NetFirewallRule -Name nope")
    assert r.exit_code == 1
    assert "No MSFT_NetFirewallRule objects found with property 'Name' equal to 'nope'." in r.stderr
    assert "CmdletizationQuery_NotFound_Name,Get-NetFirewallRule" in r.stderr
    ps(disk, "Set-NetFirewallRule -Name metrics -Enabled False")
    assert not disk.load().allows_inbound_tcp(9182)
    js = ps(
        disk,
        "Get-NetFirewallRule -Name metrics | Select Enabled, Direction, Action | ConvertTo-Json -Compress",
    )
    assert json.loads(js.stdout) == {"Enabled": 2, "Direction": 1, "Action": 2}


# ---- ACLs and authorized keys ---------------------------------------------------------------------------
def test_icacls_and_authorized_keys_acl_rule(disk: GuestDisk) -> None:
    install_openssh(disk)
    key = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC lab"
    ps(
        disk,
        f"Add-Content -Force -Path $env:ProgramData\\ssh\\administrators_authorized_keys -Value '{key}'",
    )
    r = ps(disk, "icacls C:\\ProgramData\\ssh\\administrators_authorized_keys")
    assert "BUILTIN\\Users:(I)(RX)" in r.stdout
    assert windows.authorized_keys_for_admin(disk) == []  # inherited Users read: sshd refuses
    r = ps(
        disk,
        'icacls.exe "C:\\ProgramData\\ssh\\administrators_authorized_keys" /inheritance:r /grant "Administrators:F" /grant "SYSTEM:F"',
    )
    assert r.exit_code == 0, r.stderr
    assert "Successfully processed 1 files; Failed processing 0 files" in r.stdout
    assert windows.authorized_keys_for_admin(disk) == [key]
    ps(disk, 'icacls C:\\ProgramData\\ssh\\administrators_authorized_keys /grant "Users:R"')
    assert windows.authorized_keys_for_admin(disk) == []
    ps(disk, "icacls C:\\ProgramData\\ssh\\administrators_authorized_keys /remove Users")
    assert windows.authorized_keys_for_admin(disk) == [key]
    assert ps(disk, "icacls C:\\nope").exit_code != 0


def test_authorized_keys_missing_or_utf16(disk: GuestDisk) -> None:
    assert windows.authorized_keys_for_admin(disk) == []
    install_openssh(disk)
    ps(disk, "'ssh-ed25519 AAAAC3 lab' > C:\\ProgramData\\ssh\\administrators_authorized_keys; "
             "icacls C:\\ProgramData\\ssh\\administrators_authorized_keys /inheritance:r /grant SYSTEM:F /grant Administrators:F")  # fmt: skip
    assert windows.authorized_keys_for_admin(disk) == []  # UTF-16 from `>` is unreadable to sshd


# ---- network, identity ---------------------------------------------------------------------------
def test_ipconfig_and_hns_network_moves_ip(disk: GuestDisk) -> None:
    r = ps(disk, "ipconfig")
    assert "Ethernet adapter Ethernet0:" in r.stdout
    assert "IPv4 Address. . . . . . . . . . . : 127.77.0.5" in r.stdout
    assert windows.reports_ip(disk)
    ps(
        disk,
        "New-HnsNetwork -Type Overlay -Name OVNKubernetesHybridOverlayNetwork -AddressPrefix 10.132.0.0/24 -Gateway 10.132.0.1",
    )
    r = ps(
        disk,
        "Get-NetIPAddress -AddressFamily IPv4 | Where-Object IPAddress -eq 127.77.0.5 | Select -ExpandProperty InterfaceAlias",
    )
    assert r.stdout.strip() == "vEthernet (Ethernet0)"
    assert not windows.reports_ip(disk)  # Tools' default exclude-nics hides vEthernet*
    ps(disk, "New-Item -ItemType Directory -Force 'C:\\ProgramData\\VMware\\VMware Tools' | Out-Null; "
             "Set-Content 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf' -Value '[guestinfo]','exclude-nics='")  # fmt: skip
    assert windows.reports_ip(disk)
    ps(
        disk,
        "Set-Content 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf' -Value '[guestinfo]','exclude-nics=vEthernet*'",
    )
    assert not windows.reports_ip(disk)


def test_hotfix_computerinfo_registry_hostname(disk: GuestDisk) -> None:
    assert "KB5012637" in ps(disk, "Get-HotFix -Id KB5012637").stdout
    r = ps(disk, "Get-HotFix -Id KB4565351")
    assert r.exit_code == 1 and "GetHotFixNoEntriesFound" in r.stderr
    r = ps(
        disk,
        "Get-ComputerInfo -Property WindowsProductName, OsBuildNumber, CsName | ConvertTo-Json -Compress",
    )
    assert json.loads(r.stdout) == {
        "WindowsProductName": "Windows Server 2022 Datacenter",
        "OsBuildNumber": "20348",
        "CsName": "winhost",
    }
    r = ps(
        disk,
        "Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion' | Select CurrentBuild, UBR, DisplayVersion, EditionID | ConvertTo-Json -Compress",
    )
    assert json.loads(r.stdout) == {
        "CurrentBuild": "20348",
        "UBR": 681,
        "DisplayVersion": "21H2",
        "EditionID": "ServerDatacenter",
    }
    assert ps(disk, "hostname").stdout == "winhost\n"


def test_rename_takes_effect_after_restart(disk: GuestDisk) -> None:
    host = FakeHost()
    r = ps(disk, "Rename-Computer -NewName win-abc12 -Force -Restart", host)
    assert r.exit_code == 0
    assert disk.load().pending_computer_name == "win-abc12"
    assert ps(disk, "hostname").stdout.strip() == "winhost"
    assert "restart" in host.names()
    assert ps(disk, "Rename-Computer -NewName this-name-is-far-too-long").exit_code == 1


def test_restart_and_stop_computer_notify(disk: GuestDisk) -> None:
    host = FakeHost()
    ps(disk, "Restart-Computer -Force; Stop-Computer", host)
    assert host.names() == ["restart", "shutdown"]


# ---- VMware Tools, Docker -----------------------------------------------------------------------------
@pytest.fixture
def tools_cd(disk: GuestDisk, tmp_path: Path) -> GuestDisk:
    iso = tmp_path / "tools.iso"
    build_tools_iso(iso, TOOLS_MEDIA["current"])
    rt = disk.runtime()
    rt.cdroms = {"D": str(iso)}
    disk.save_runtime(rt)
    return disk


def test_tools_install_from_cd(tools_cd: GuestDisk) -> None:
    disk = tools_cd
    host = FakeHost()
    r = ps(disk, 'D:\\setup64.exe /s /v "/qn REBOOT=R"', host)
    assert r.exit_code == 0, r.stderr
    st = disk.load()
    assert st.tools_version == "12.1.5"
    assert (st.services["vmtools"].status, st.services["vmtools"].start_type) == (
        "Running",
        "Automatic",
    )
    assert "restart" not in host.names()
    assert not disk.host_path(windows.TOOLS_CONF).exists()  # Tools install no tools.conf
    assert disk.host_path("C:\\ProgramData\\VMware\\VMware Tools\\tools.conf.example").exists()
    r = ps(disk, "& 'C:\\Program Files\\VMware\\VMware Tools\\VMwareToolboxCmd.exe' -v")
    assert r.stdout.strip() == "12.1.5.20735 (build-20735119)"
    r = ps(disk, "Get-Service -Name VMTools | Select Status, StartType | ConvertTo-Json -Compress")
    assert json.loads(r.stdout) == {"Status": 4, "StartType": 2}


def test_tools_install_start_process_and_interactive(tools_cd: GuestDisk) -> None:
    disk = tools_cd
    assert ps(disk, "D:\\setup64.exe").exit_code == 1602  # the wizard waits for a click
    assert disk.load().tools_version == ""
    r = ps(
        disk, "Start-Process -FilePath D:\\setup64.exe -ArgumentList '/s /v \"/qn REBOOT=R\"' -Wait"
    )
    assert r.exit_code == 0, r.stderr
    assert disk.load().tools_version == "12.1.5"
    assert ps(disk, "VMwareToolboxCmd.exe -v").exit_code == 1  # not on PATH


def test_docker_install_needs_restart(disk: GuestDisk) -> None:
    host = FakeHost()
    r = ps(disk, "Install-WindowsFeature -Name Containers; "
                 "Install-Module -Name DockerMsftProvider -Repository PSGallery -Force; "
                 "Install-Package -Name docker -ProviderName DockerMsftProvider -Force", host)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "You must restart this server" in r.stdout
    st = disk.load()
    assert st.container_runtime == "docker" and st.services["docker"].start_type == "Automatic"
    assert ps(disk, "Start-Service docker").exit_code == 1  # Containers feature pending
    with disk.edit() as s:  # what a reboot does (supervisor): boot_count advances
        s.boot_count += 1
    assert ps(disk, "Start-Service docker").exit_code == 0
    assert (
        "Installed"
        in ps(disk, "Get-WindowsFeature Containers | Select -ExpandProperty InstallState").stdout
    )


def test_install_package_without_provider_fails(disk: GuestDisk) -> None:
    r = ps(disk, "Install-Package -Name docker -ProviderName DockerMsftProvider -Force")
    assert r.exit_code == 1 and "Unable to find package provider 'DockerMsftProvider'" in r.stderr


# ---- sysprep ----------------------------------------------------------------------------------------
def put_unattend(disk: GuestDisk, text: str) -> None:
    disk.host_path("C:\\Windows\\Temp\\unattend.xml").write_text(text)


SYSPREP = "C:\\Windows\\System32\\Sysprep\\sysprep.exe /generalize /oobe /shutdown /unattend:C:\\Windows\\Temp\\unattend.xml"


def test_sysprep_success(disk: GuestDisk) -> None:
    install_openssh(disk)
    put_unattend(disk, GOOD_UNATTEND.format(name="winhost", autologon="false", password="S3cret!x"))
    host = FakeHost()
    r = ps(
        disk,
        "& 'C:\\Windows\\System32\\Sysprep\\sysprep.exe' /generalize /oobe /shutdown /unattend:C:\\Windows\\Temp\\unattend.xml",
        host,
    )
    assert r.exit_code == 0, (r.stdout, r.stderr)
    st = disk.load()
    assert st.generalized and st.sysprep_count == 1 and st.machine_sid == ""
    assert st.computer_name.startswith("WIN-") and len(st.computer_name) == 15
    assert st.pending_unattend == "C:\\Windows\\Panther\\unattend.xml"
    assert disk.host_path(st.pending_unattend).is_file()
    assert disk.host_path("C:\\ProgramData\\ssh\\ssh_host_rsa_key").is_file()  # host keys stay
    assert "sysprep" in host.names()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("<unattend", "not well-formed"),
        (
            GOOD_UNATTEND.format(name="WinHost", autologon="false", password="x1!"),
            "not a valid Kubernetes name",
        ),
        (
            GOOD_UNATTEND.format(name="a-very-long-hostname", autologon="false", password="x1!"),
            "at most 15",
        ),
        (
            GOOD_UNATTEND.format(name="winhost", autologon="true", password="x1!"),
            "AutoLogon/Enabled",
        ),
        (GOOD_UNATTEND.format(name="winhost", autologon="false", password=""), "empty password"),
        (
            GOOD_UNATTEND.format(name="winhost", autologon="false", password="MyPassword"),
            "placeholder",
        ),
    ],
)
def test_sysprep_validation_failures(disk: GuestDisk, text: str, needle: str) -> None:
    put_unattend(disk, text)
    host = FakeHost()
    r = ps(disk, SYSPREP, host)
    assert r.exit_code != 0
    err = disk.host_path("C:\\Windows\\System32\\Sysprep\\Panther\\setuperr.log").read_text()
    assert needle in err
    st = disk.load()
    assert not st.generalized and st.sysprep_count == 0
    assert "sysprep" not in host.names()


def test_sysprep_limit(disk: GuestDisk) -> None:
    put_unattend(disk, GOOD_UNATTEND.format(name="winhost", autologon="false", password="S3cret!x"))
    with disk.edit() as st:
        st.sysprep_count = SYSPREP_LIMIT
    r = ps(disk, SYSPREP)
    assert r.exit_code != 0
    assert (
        "0xC004D307"
        in disk.host_path("C:\\Windows\\System32\\Sysprep\\Panther\\setuperr.log").read_text()
    )
    assert disk.load().sysprep_count == SYSPREP_LIMIT


def test_sysprep_not_on_path_and_missing_unattend(disk: GuestDisk) -> None:
    assert "is not recognized" in ps(disk, "sysprep.exe /generalize").stderr
    assert ps(disk, SYSPREP).exit_code != 0  # no unattend file written


# ---- scripts, nested shells, entry point ----------------------------------------------------------------
def test_run_script_multiline(disk: GuestDisk) -> None:
    script = """
$ErrorActionPreference = 'Stop'
foreach ($p in 10250, 9182) {
    New-NetFirewallRule -DisplayName "port $p" -LocalPort $p -Protocol TCP -Direction Inbound -Action Allow | Out-Null
}
Get-NetFirewallRule -DisplayName 'port *' | Measure-Object | Select -ExpandProperty Count
"""
    r = run_script(disk, script, FakeHost())
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "2"


def test_cmd_and_powershell_command(disk: GuestDisk) -> None:
    assert ps(disk, "cmd /c exit 5").exit_code == 5
    assert ps(disk, "cmd /c echo hi").stdout.strip() == "hi"
    r = ps(
        disk,
        'powershell.exe -NoProfile -Command "Get-Service W32Time | Select -ExpandProperty Status"',
    )
    assert (r.exit_code, r.stdout.strip()) == (0, "Stopped")
    assert (
        ps(disk, "sc config W32Time start= auto").exit_code == 1
    )  # sc is Set-Content in PowerShell
    assert ps(disk, "sc.exe config W32Time start= auto").exit_code == 0
    assert disk.load().services["w32time"].start_type == "Automatic"


def _entry(disk: GuestDisk, command: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SSH_ORIGINAL_COMMAND", None)
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    return subprocess.run([sys.executable, "-m", "lab.guest.emulator", "--guest", str(disk.root)],
                          env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[3])  # fmt: skip


def test_main_entry_point(disk: GuestDisk) -> None:
    p = _entry(disk, "Get-Service W32Time | Select -ExpandProperty Status; hostname")
    assert (p.returncode, p.stdout, p.stderr) == (0, "Stopped\nwinhost\n", "")
    p = _entry(disk, "Get-Service nope")
    assert p.returncode == 1 and "NoServiceFoundForGivenName" in p.stderr
    p = _entry(disk, "cmd /c exit 3")
    assert p.returncode == 3
    p = _entry(disk, None)
    assert p.returncode == 1 and "no interactive shell" in p.stderr
    p = _entry(disk, "Restart-Computer -Force")  # no supervisor socket: logged, not printed
    assert p.returncode == 0 and p.stderr == ""
    assert "not sent" in (disk.root / "emulator.log").read_text()


def test_main_sftp_subsystem(disk: GuestDisk) -> None:
    if not Path("/usr/lib/openssh/sftp-server").exists():
        pytest.skip("openssh sftp-server not installed")
    # An SFTP client speaks first; with no input the server exits cleanly.
    p = _entry(disk, "/usr/lib/openssh/sftp-server")
    assert p.returncode == 0 and "Get-Service" not in p.stderr
