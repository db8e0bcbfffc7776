"""G6u's PowerShell and the parsing of what the Windows Update Agent answers (pure)."""

from __future__ import annotations

from winnodes.render import windows_update as wu


def test_round_script_uses_the_wua_api_and_the_source() -> None:
    text = wu.install_round_command("windows-update")
    assert "New-Object -ComObject Microsoft.Update.Session" in text
    assert "Search(\"IsInstalled=0 and Type='Software'\")" in text
    assert "$searcher.ServerSelection = 2" in text
    assert "CreateUpdateDownloader" in text and "CreateUpdateInstaller" in text
    assert "$searcher.ServerSelection = 1" in wu.install_round_command("wsus")


def test_wsus_policy_values() -> None:
    text = wu.source_policy_command("wsus", "http://wsus.example.com:8530")
    assert "HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate" in text
    assert "-Name WUServer -Value 'http://wsus.example.com:8530'" in text
    assert "-Name UseWUServer -Value 1 -PropertyType DWord" in text
    assert "UseWUServer -Value 0" in wu.source_policy_command("windows-update", None)


def test_parse_round_both_array_shapes() -> None:
    one = wu.parse_round('{"Found":"KB5011570","Installed":"KB5011570","RebootRequired":false,'
                         '"ResultCode":2,"HResult":0,"Stage":"install"}')  # fmt: skip
    assert one.found == ["KB5011570"] and one.installed == ["KB5011570"] and not one.failed
    many = wu.parse_round('{"Found":["KB1","KB2"],"Installed":["KB1"],"RebootRequired":true,'
                          '"ResultCode":3,"HResult":0,"Stage":"install"}')  # fmt: skip
    assert many.found == ["KB1", "KB2"] and many.reboot_required and many.failed
    none = wu.parse_round('{"Found":[],"Installed":[],"RebootRequired":false,"ResultCode":0,'
                          '"HResult":0,"Stage":"search"}')  # fmt: skip
    assert none.found == [] and not none.failed


def test_unreachable_source_is_explained() -> None:
    r = wu.parse_round('{"Found":null,"HResult":-2145107924,"Stage":"search",'
                       '"Error":"Exception from HRESULT: 0x8024402C"}')  # fmt: skip
    assert r.failed and r.source_unreachable
    text = r.problem("WSUS http://wsus:8530")
    assert "0x8024402C" in text and "does not resolve" in text and "search failed" in text
    timeout = wu.parse_round('{"HResult":-2147012894,"Stage":"search"}')
    assert "0x80072EE2" in timeout.problem("windows-update") and timeout.source_unreachable
