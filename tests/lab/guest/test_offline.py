"""Offline and proxied sites, timing and guest variables in the Windows twin (issue 9): without
Windows Update or PSGallery, `Add-WindowsCapability -Online` and the Docker provider fail with the
real errors; offline media (the Win32-OpenSSH MSI, a Features-on-Demand ISO with -Source
-LimitAccess) work; a WinHTTP proxy set to the site's proxy gets through; VMware Tools' rpctool
sets guest variables."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab import media
from lab.guest import windows
from lab.guest.timing import Timing
from tests.lab.guest.emulator_helpers import FakeHost, make_guest, ps

CAP = "OpenSSH.Server~~~~0.0.1.0"


@pytest.fixture(scope="module")
def cds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cds")
    fod = d / "fod.iso"
    media.build_fod_iso(fod)
    msi = d / "msi.iso"
    media.build_iso(msi, {f"/winnodes/{media.OPENSSH_MSI}": media.OPENSSH_MSI_BYTES}, "A")
    return {"fod": fod, "msi": msi}


def _guest(tmp: Path, *, internet: bool, proxy: str = "", cdroms: dict[str, Path] | None = None):  # type: ignore[no-untyped-def]
    disk = make_guest(tmp)
    windows.set_network(disk.root.parent, internet=internet, proxy=proxy)
    if cdroms:
        rt = disk.runtime()
        rt.cdroms = {k: str(v) for k, v in cdroms.items()}
        disk.save_runtime(rt)
    return disk


def test_capability_offline_fails_with_dism_0x800f0954(tmp_path: Path) -> None:
    disk = _guest(tmp_path, internet=False)
    r = ps(disk, f"Add-WindowsCapability -Online -Name '{CAP}'")
    assert r.exit_code != 0
    assert "Add-WindowsCapability failed. Error code = 0x800f0954" in r.stderr
    assert disk.load().service("sshd") is None


def test_capability_online_installs(tmp_path: Path) -> None:
    disk = _guest(tmp_path, internet=True)
    assert ps(disk, f"Add-WindowsCapability -Online -Name '{CAP}'").exit_code == 0
    assert disk.load().service("sshd") is not None


def test_capability_from_fod_iso_with_limit_access_works_offline(
    tmp_path: Path, cds: dict[str, Path]
) -> None:
    disk = _guest(tmp_path, internet=False, cdroms={"E": cds["fod"]})
    cmd = f"Add-WindowsCapability -Online -Name '{CAP}' -Source 'E:\\LanguagesAndOptionalFeatures' -LimitAccess"
    r = ps(disk, cmd)
    assert r.exit_code == 0, r.stderr
    assert disk.load().service("sshd") is not None


def test_capability_limit_access_without_a_source_fails_0x800f081f(tmp_path: Path) -> None:
    disk = _guest(tmp_path, internet=True)
    r = ps(disk, f"Add-WindowsCapability -Online -Name '{CAP}' -Source 'E:\\' -LimitAccess")
    assert "0x800f081f" in r.stderr and r.exit_code != 0


def test_capability_through_the_sites_winhttp_proxy(tmp_path: Path) -> None:
    disk = _guest(tmp_path, internet=False, proxy="proxy.lab:3128")
    assert "0x800f0954" in ps(disk, f"Add-WindowsCapability -Online -Name '{CAP}'").stderr
    out = ps(disk, 'netsh winhttp set proxy proxy-server="proxy.lab:3128" bypass-list="<local>"')
    assert out.exit_code == 0 and "proxy.lab:3128" in out.stdout
    assert ps(disk, f"Add-WindowsCapability -Online -Name '{CAP}'").exit_code == 0


def test_openssh_msi_installs_offline(tmp_path: Path, cds: dict[str, Path]) -> None:
    disk = _guest(tmp_path, internet=False, cdroms={"D": cds["msi"]})
    r = ps(
        disk,
        f"Start-Process -FilePath msiexec.exe -ArgumentList '/i D:\\winnodes\\{media.OPENSSH_MSI} /qn' -Wait",
    )
    assert r.exit_code == 0, r.stderr
    st = disk.load()
    assert st.service("sshd") is not None and st.allows_inbound_tcp(22)
    assert ps(disk, "msiexec.exe /i D:\\missing.msi /qn; $LASTEXITCODE").stdout.strip() == "1619"


def test_psgallery_offline_fails_as_on_windows(tmp_path: Path) -> None:
    disk = _guest(tmp_path, internet=False)
    r = ps(disk, "Install-PackageProvider -Name NuGet -Force")
    assert (
        "No match was found for the specified search criteria for the provider 'NuGet'" in r.stderr
    )
    r = ps(disk, "Install-Module -Name DockerMsftProvider -Repository PSGallery -Force")
    assert (
        "Unable to resolve package source 'https://www.powershellgallery.com/api/v2'"
        in r.stdout + r.stderr
    )
    assert "No match was found" in r.stderr
    with disk.edit() as st:
        st.packages["module:DockerMsftProvider"] = "1.0.0.8"  # as if copied in by hand
    r = ps(disk, "Install-Package -Name docker -ProviderName DockerMsftProvider -Force")
    assert "DockerDefault_DockerSearchIndex.json" in r.stderr and not disk.load().container_runtime


def test_realistic_timing_makes_the_capability_download_take_time(tmp_path: Path) -> None:
    disk = _guest(tmp_path, internet=True)
    rt = disk.runtime()
    rt.timing = Timing("realistic", 0.005).to_json()  # 180 s -> 0.9 s
    disk.save_runtime(rt)
    t0 = time.monotonic()
    assert ps(disk, f"Add-WindowsCapability -Online -Name '{CAP}'").exit_code == 0
    assert time.monotonic() - t0 >= 0.85


def test_timing_profiles() -> None:
    fast, real = Timing(), Timing.from_env({"LAB_TIMING": "realistic", "LAB_TIMING_SCALE": "0.01"})
    assert fast.seconds("capability") == 0
    assert real.seconds("capability") > real.seconds("restart") > real.seconds("command") > 0
    with pytest.raises(ValueError, match="LAB_TIMING"):
        Timing.from_env({"LAB_TIMING": "slow"})


def test_rpctool_sets_a_guest_variable(tmp_path: Path) -> None:
    disk = _guest(tmp_path, internet=True)
    host = FakeHost()
    tools = disk.host_path("C:\\Program Files\\VMware\\VMware Tools")
    tools.mkdir(parents=True, exist_ok=True)
    (tools / "rpctool.exe").write_bytes(b"MZ")
    cmd = "& 'C:\\Program Files\\VMware\\VMware Tools\\rpctool.exe' 'info-set guestinfo.winnodes.progress 3 done'"
    assert ps(disk, cmd, host).exit_code == 0
    assert ("guestinfo", {"key": "guestinfo.winnodes.progress", "value": "3 done"}) in host.events
