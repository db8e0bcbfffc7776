"""The stand-in ISOs are real ISO 9660 images whose content the guest twin reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import media


@pytest.mark.parametrize("profile", sorted(media.WINDOWS_MEDIA))
def test_windows_iso_describes_its_profile(tmp_path: Path, profile: str) -> None:
    spec = media.WINDOWS_MEDIA[profile]
    iso_path = tmp_path / spec.file_name
    media.build_windows_iso(iso_path, spec)
    with media.Iso(iso_path) as iso:
        info = iso.info()
        assert info is not None
        assert info["kind"] == "windows-installer"
        assert info["build"] == spec.build
        assert info["hotfixes"] == list(spec.hotfixes)
        assert iso.exists("\\sources\\INSTALL.WIM")
        assert iso.is_dir("/sources")


def test_profiles_carry_the_documented_patches() -> None:
    assert media.WINDOWS_MEDIA["ocp-4.9"].hotfixes == ("KB4565351",)
    assert media.WINDOWS_MEDIA["current"].hotfixes == ("KB5012637",)
    assert media.WINDOWS_MEDIA["current"].build == 20348


def test_tools_iso_has_setup64_and_version(tmp_path: Path) -> None:
    spec = media.TOOLS_MEDIA["current"]
    media.build_tools_iso(tmp_path / "t.iso", spec)
    with media.Iso(tmp_path / "t.iso") as iso:
        assert iso.exists("D:\\SETUP64.EXE")
        info = iso.info()
        assert info == {"kind": "vmware-tools", "version": spec.version, "build": spec.build}


def test_answer_media_long_names_read_back(tmp_path: Path) -> None:
    media.build_iso(
        tmp_path / "a.iso",
        {"/autounattend.xml": b"<unattend/>", "/scripts/first-logon.ps1": b"Write-Output 1"},
        "ANSWERS",
    )
    with media.Iso(tmp_path / "a.iso") as iso:
        assert iso.info() is None
        assert iso.read("/Autounattend.XML") == b"<unattend/>"
        assert iso.read("E:\\scripts\\first-logon.ps1") == b"Write-Output 1"
        with pytest.raises(FileNotFoundError):
            iso.read("/missing.txt")
