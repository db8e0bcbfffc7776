"""Guest commands per step and the parsers of their output (Windows PowerShell 5.1 shapes)."""

from __future__ import annotations

import base64

import pytest

from winnodes.model.profiles import CONTAINER_LOGS, PROFILES, WINDOWS_EXPORTER
from winnodes.render import powershell as ps


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ('$env:X `n "q"', "'$env:X `n \"q\"'"),
        ("smart\u2019quote", "'smart\u2019\u2019quote'"),
        ("", "''"),
    ],
)
def test_ps_quote(value: str, quoted: str) -> None:
    assert ps.ps_quote(value) == quoted


def _decoded(line: str) -> str:
    assert line.split()[-2] == "-EncodedCommand"
    return base64.b64decode(line.split()[-1]).decode("utf-16-le")


def test_command_line_wrapper_survives_cmd_and_powershell_parents() -> None:
    script = 'Get-Service | Where-Object { $_.Name -like "ssh*" }; echo 100%'
    line = ps.powershell_command_line(script)
    assert line.startswith(
        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
    )
    assert not set(line) & set("$\"'%&|<>^")  # nothing any shell would interpret
    assert _decoded(line) == f"$ProgressPreference = 'SilentlyContinue'; {script}"
    bare = ps.powershell_command_line("x", extra="", quiet_progress=False)
    assert bare.startswith("powershell.exe -NoProfile -ExecutionPolicy Bypass -Enc")
    assert _decoded(bare) == "x"


def _all_commands() -> list[str]:
    cur = PROFILES["current"]
    return [
        ps.tools_version_command(),
        ps.tools_conf_read_command(),
        ps.tools_conf_write_command(ps.repaired_tools_conf(None)),
        ps.vmtools_status_command(),
        ps.openssh_status_command(),
        ps.ensure_service_running_command("VMTools"),
        ps.install_openssh_command(),
        ps.openssh_repair_command(),
        ps.authorized_keys_read_command(),
        ps.authorized_keys_acl_command(),
        ps.authorized_keys_write_command("ssh-rsa AAAA c"),
        ps.runtime_status_command(),
        ps.firewall_rules_command([p.display_name for p in cur.firewall]),
        *(ps.ensure_firewall_rule_command(p) for p in cur.firewall),
        ps.remove_host_keys_command(),
        ps.sysprep_command(),
        ps.os_version_command(),
    ]


@pytest.mark.parametrize("command", _all_commands())
def test_every_ssh_command_is_one_line_in_the_subset(command: str) -> None:
    assert "\n" not in command and "%" not in command
    assert _decoded(ps.powershell_command_line(command)).endswith(command)
    for banned in ("function ", "try {", "catch", "foreach (", "while (", "::", "-or ", "-and "):
        assert banned not in command


def test_documented_g7_command() -> None:
    assert ps.new_firewall_rule_command(CONTAINER_LOGS) == (
        "New-NetFirewallRule -DisplayName 'ContainerLogsPort' -LocalPort 10250 -Enabled True "
        "-Direction Inbound -Protocol TCP -Action Allow -EdgeTraversalPolicy Allow"
    )
    ensure = ps.ensure_firewall_rule_command(WINDOWS_EXPORTER)
    assert ensure.startswith(
        "if (-not (Get-NetFirewallRule | Where-Object { $_.DisplayName -eq 'WindowsExporterMetricsPort' }))"
    )
    assert "-LocalPort 9182" in ensure


def test_g9_commands() -> None:
    assert (
        ps.remove_host_keys_command()
        == "Remove-Item -Path 'C:\\ProgramData\\ssh\\ssh_host_*' -Force"
    )
    assert ps.sysprep_command("C:\\u.xml") == (
        "& 'C:\\Windows\\System32\\Sysprep\\sysprep.exe' /generalize /oobe /shutdown '/unattend:C:\\u.xml'"
    )


# ---- parsers -------------------------------------------------------------------------------------
def test_parse_services_ps51_integers_and_ps7_strings() -> None:
    out = '[{"Name":"sshd","Status":4,"StartType":2},{"Name":"ssh-agent","Status":1,"StartType":4}]\r\n'
    s = ps.parse_services(out)
    assert s["sshd"].running_automatic
    assert (s["ssh-agent"].status, s["ssh-agent"].start_type) == ("Stopped", "Disabled")
    single = ps.parse_services('{"Name":"VMTools","Status":"Running","StartType":"Automatic"}')
    assert single["vmtools"].running_automatic
    assert ps.parse_services("") == {}


def test_parse_services_ignores_noise_lines() -> None:
    out = 'WARNING: something\n{"Name":"VMTools","Status":1,"StartType":3}\n'
    assert ps.parse_services(out)["vmtools"].status == "Stopped"


@pytest.mark.parametrize(
    ("text", "exists", "ok", "value"),
    [
        (ps.MISSING_MARKER + "\r\n", False, False, None),
        ("[guestinfo]\r\nexclude-nics=\r\n", True, True, ""),
        ("[guestinfo]\nexclude-nics = \n", True, True, ""),
        ("[guestinfo]\n#exclude-nics=\n", True, False, None),
        ("[guestinfo]\nexclude-nics=vEthernet*\n", True, False, "vEthernet*"),
        ("[logging]\nexclude-nics=\n", True, False, None),
        ("", True, False, None),
    ],
)
def test_parse_tools_conf(text: str, exists: bool, ok: bool, value: str | None) -> None:
    st = ps.parse_tools_conf(text)
    assert (st.exists, st.exclude_nics_empty, st.exclude_nics_value) == (exists, ok, value)


@pytest.mark.parametrize(
    "existing",
    [
        None,
        ps.MISSING_MARKER,
        "",
        "[logging]\nlog=true\n",
        "[guestinfo]\nexclude-nics=vEthernet*\npoll-interval=30\n[logging]\nlog=true",
        "[guestinfo]\npoll-interval=30\n",
        "[guestinfo]\n[logging]\nlog=true\n",
    ],
)
def test_repaired_tools_conf_is_valid_and_keeps_other_settings(existing: str | None) -> None:
    lines = ps.repaired_tools_conf(existing)
    assert ps.parse_tools_conf("\n".join(lines)).exclude_nics_empty
    assert sum(1 for line in lines if line.strip().startswith("exclude-nics")) == 1
    for keep in ("log=true", "poll-interval=30"):
        if existing and keep in existing:
            assert keep in lines


def test_tools_versions() -> None:
    assert ps.parse_tools_version("12.1.5.20735 (build-20735119)\r\n") == (12, 1, 5)
    assert ps.decode_vcenter_tools_version(12325) == (12, 1, 5)
    assert ps.decode_vcenter_tools_version("11270") == (11, 0, 6)
    with pytest.raises(ValueError):
        ps.parse_tools_version("'VMwareToolboxCmd.exe' is not recognized")


ICACLS_GOOD = """C:\\ProgramData\\ssh\\administrators_authorized_keys NT AUTHORITY\\SYSTEM:(F)
                                                  BUILTIN\\Administrators:(F)

Successfully processed 1 files; Failed processing 0 files
"""
ICACLS_INHERITED = """C:\\ProgramData\\ssh\\administrators_authorized_keys BUILTIN\\Administrators:(I)(F)
                                                  NT AUTHORITY\\SYSTEM:(I)(F)
                                                  BUILTIN\\Users:(I)(RX)

Successfully processed 1 files; Failed processing 0 files
"""


def test_parse_icacls_and_acl_rules() -> None:
    good = ps.parse_icacls(ICACLS_GOOD)
    assert [(a.principal, a.perms) for a in good] == [
        ("NT AUTHORITY\\SYSTEM", "(F)"),
        ("BUILTIN\\Administrators", "(F)"),
    ]
    assert ps.acl_problems(good) == []
    bad = ps.acl_problems(ps.parse_icacls(ICACLS_INHERITED))
    assert "BUILTIN\\Users has access (I)(RX)" in bad
    assert any("inherited" in p for p in bad)
    assert ps.acl_problems([]) == [
        "builtin\\administrators has no access",
        "nt authority\\system has no access",
    ]


def test_key_present_ignores_options_and_comments() -> None:
    line = "ssh-rsa AAAAB3Nza comment"
    assert ps.key_present("no-pty ssh-rsa AAAAB3Nza other\r\n", line)
    assert not ps.key_present("ssh-rsa AAAAB3Nzb x\n", line)
    assert not ps.key_present(ps.MISSING_MARKER, line)


def test_runtime_rules_per_profile() -> None:
    docker = ps.parse_services('{"Name":"docker","Status":4,"StartType":2}')
    assert ps.runtime_problems(PROFILES["ocp-4.9"], docker) == []
    assert ps.runtime_problems(PROFILES["ocp-4.9"], {}) == ["the docker service is not installed"]
    assert ps.runtime_problems(PROFILES["current"], {}) == []
    assert ps.runtime_problems(PROFILES["current"], docker) == [
        "a container runtime is preinstalled: docker (Running)"
    ]
    stopped = ps.parse_services('{"Name":"docker","Status":1,"StartType":3}')
    assert "not Running/Automatic" in ps.runtime_problems(PROFILES["ocp-4.9"], stopped)[0]


def test_firewall_parsing_and_missing_ports() -> None:
    out = (
        '{"Name":"{abc}","DisplayName":"ContainerLogsPort","Enabled":1,"Direction":1,"Action":2}\r\n'
        '{"Name":"{def}","DisplayName":"WindowsExporterMetricsPort","Enabled":2,"Direction":1,"Action":2}\r\n'
    )
    rules = ps.parse_firewall_rules(out)
    assert rules[0].enabled and rules[0].direction == "Inbound" and rules[0].action == "Allow"
    assert not rules[1].enabled
    assert ps.missing_firewall_ports(PROFILES["current"], rules) == [WINDOWS_EXPORTER]
    assert ps.missing_firewall_ports(PROFILES["ocp-4.9"], rules) == []
    assert ps.missing_firewall_ports(PROFILES["current"], []) == [CONTAINER_LOGS, WINDOWS_EXPORTER]
    as_strings = ps.parse_firewall_rules(
        '{"Name":"x","DisplayName":"ContainerLogsPort","Enabled":"True","Direction":"Inbound","Action":"Allow"}'
    )
    assert as_strings[0].enabled


IPCONFIG = """
Windows IP Configuration


Ethernet adapter Ethernet0:

   Connection-specific DNS Suffix  . : lab
   Link-local IPv6 Address . . . . . : fe80::1%4
   IPv4 Address. . . . . . . . . . . : 10.0.0.5(Preferred)
   Subnet Mask . . . . . . . . . . . : 255.255.255.0
   Default Gateway . . . . . . . . . : 10.0.0.1

Ethernet adapter Ethernet1:

   Autoconfiguration IPv4 Address. . : 169.254.3.4
"""


def test_ipconfig() -> None:
    assert ps.parse_ipconfig_ipv4(IPCONFIG) == ["10.0.0.5", "169.254.3.4"]


@pytest.mark.parametrize(
    ("ip", "ok"),
    [
        ("10.0.0.5", True),
        ("127.31.0.2", True),  # the lab's guests
        ("169.254.3.4", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("10.0.0", False),
        ("fe80::1", False),
    ],
)
def test_usable_ipv4(ip: str, ok: bool) -> None:
    assert ps.is_usable_ipv4(ip) is ok


def test_os_version_is_read_from_the_registry() -> None:
    cmd = ps.os_version_command()
    assert "HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion" in cmd
    assert "CurrentBuildNumber, UBR" in cmd
    out = (
        '{"CurrentBuildNumber":"20348","UBR":681,'
        '"ProductName":"Windows Server 2022 Datacenter","DisplayVersion":"21H2"}'
    )
    v = ps.parse_os_version(out)
    assert (v.build, v.ubr) == (20348, 681)
    assert v.version == "20348.681"  # what G6u reports before and after the updates
    assert str(v) == "Windows Server 2022 Datacenter 21H2 20348.681"
    assert ps.parse_os_version('{"CurrentBuildNumber":"26100"}').version == "26100.0"
    with pytest.raises(ValueError, match="CurrentBuildNumber"):
        ps.parse_os_version("")
