"""The guest twin's Windows Update Agent: updates per build, SSU first, restarts, sources.

Runs the product's own G6u scripts (winnodes.render.windows_update) against the twin, so a script
written against a guess of the API fails here as on Windows."""

from __future__ import annotations

import json
from pathlib import Path

from lab.guest import boot
from lab.guest.emulator import wua
from tests.lab.guest.emulator_helpers import MEDIA_CURRENT, MEDIA_OCP49, FakeHost, make_guest, ps
from winnodes.render import windows_update as wu
from winnodes.render.powershell import os_version_command, parse_os_version


def _round(disk, source="windows-update"):  # type: ignore[no-untyped-def]
    assert ps(disk, wu.source_policy_command(source, "http://wsus.lab:8530")).exit_code == 0
    r = ps(disk, wu.install_round_command(source))
    assert r.exit_code == 0, r.stderr
    return wu.parse_round(r.stdout)


def _build(disk) -> str:  # type: ignore[no-untyped-def]
    return parse_os_version(ps(disk, os_version_command()).stdout).version


def test_rounds_from_20348_587_ssu_first_then_cumulative_updates(tmp_path: Path) -> None:
    disk = make_guest(tmp_path, dict(MEDIA_CURRENT, ubr=587, hotfixes=[]))
    first = _round(disk)
    assert first.installed == ["KB5011570"] and not first.reboot_required  # the SSU alone
    second = _round(disk)
    assert second.installed == ["KB5012637"] and second.reboot_required
    assert _build(disk) == "20348.587"  # the LCU finishes only at the restart
    assert _round(disk).found == []  # nothing more is offered while a restart is pending
    boot._normal_boot(disk, lambda _m: None)
    assert _build(disk) == "20348.681"
    third = _round(disk)
    assert third.installed == ["KB5014678"] and third.reboot_required
    boot._normal_boot(disk, lambda _m: None)
    assert _build(disk) == "20348.768" and _round(disk).found == []
    hotfixes = {h.hotfix_id for h in disk.load().hotfixes}
    assert {"KB5011570", "KB5012637", "KB5014678"} <= hotfixes


def test_nothing_offered_for_20h2(tmp_path: Path) -> None:
    disk = make_guest(tmp_path, MEDIA_OCP49)
    assert _round(disk).found == []


def test_unreachable_sources_fail_with_windows_hresults(tmp_path: Path) -> None:
    disk = make_guest(tmp_path)
    wsus = _round(disk, "wsus")  # no WSUS server answers in the lab by default
    assert wsus.failed and f"{wsus.hresult & 0xFFFFFFFF:08X}" == "8024402C"
    (tmp_path / "network.json").write_text(json.dumps({"windows_update": "timeout"}))
    online = _round(disk)
    assert online.failed and f"{online.hresult & 0xFFFFFFFF:08X}" == "80072EE2"
    (tmp_path / "network.json").write_text(
        json.dumps({"wsus": {"http://wsus.lab:8530": "reachable"}})
    )
    assert not _round(disk, "wsus").failed
    policy = disk.load().registry
    assert policy[wua.POLICY]["WUServer"] == "http://wsus.lab:8530"
    assert policy[wua.POLICY + "\\au"]["UseWUServer"] == 1


def test_com_api_refuses_what_windows_refuses(tmp_path: Path) -> None:
    disk = make_guest(tmp_path)
    bad = ps(disk, "New-Object -ComObject Microsoft.Update.Nope")
    assert bad.exit_code == 1 and "80040154" in bad.stderr
    no_updates = ps(
        disk,
        "$s = New-Object -ComObject Microsoft.Update.Session; $i = $s.CreateUpdateInstaller(); "
        "$i.Install()",
    )
    assert no_updates.exit_code == 1 and "0x80240024" in no_updates.stderr
    host = FakeHost()
    # a registry key outside the policies cannot be created by this emulator (nor needed)
    denied = ps(disk, "New-Item -Path 'HKLM:\\SOFTWARE\\Contoso' -Force", host)
    assert denied.exit_code == 1
