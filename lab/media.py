"""Stand-in installation media: small, real ISO 9660 images whose content the guest twin reads.

A real Windows Server ISO is 5 GB and a Tools ISO 100 MB; neither can be shipped. What the procedure
depends on is what the media *says*: which edition, build and hotfixes Windows setup installs, and
which version VMware Tools' setup64.exe installs. Each stand-in carries that in `/LAB_MEDIA.JSON`,
next to placeholder files with the real names (`setup.exe`, `sources/install.wim`, `setup64.exe`),
so automation that checks file names on the media sees what it would see on the real ones.

Answer media made by the automation (an ISO with `autounattend.xml`) are read with the same class.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycdlib

MEDIA_INFO = "/LAB_MEDIA.JSON"
#: Where the Windows Tools ISO keeps the PVSCSI storage driver Windows PE needs (VMware Tools 10.x-12.x
#: ISOs; public Packer templates point DriverPaths here).
PVSCSI_DRIVER_DIR = "/Program Files/VMware/VMware Tools/Drivers/pvscsi/Win8/amd64"


@dataclass(frozen=True)
class WindowsMedia:
    """One requirement profile's installation ISO (see docs/procedure.md, profiles)."""

    file_name: str
    product_name: str
    edition_id: str
    display_version: str
    build: int
    ubr: int
    hotfixes: tuple[str, ...]
    volume_id: str
    # install.wim's images by /IMAGE/NAME (index order), as `dism /Get-WimInfo` lists them.
    images: tuple[str, ...] = ()

    def info(self) -> dict[str, Any]:
        return {
            "kind": "windows-installer",
            "product_name": self.product_name,
            "edition_id": self.edition_id,
            "display_version": self.display_version,
            "build": self.build,
            "ubr": self.ubr,
            "hotfixes": list(self.hotfixes),
            "images": list(self.images),
        }


def _ltsc_images(release: str) -> tuple[str, ...]:
    """install.wim of a Windows Server 2022/2025 LTSC ISO: index 1-4 (rancher/windows
    vsphere-templates windows-server.auto.pkrvars.hcl lists the same names and order)."""
    return tuple(
        f"Windows Server {release} {e}"
        for e in (
            "SERVERSTANDARDCORE",
            "SERVERSTANDARD",
            "SERVERDATACENTERCORE",
            "SERVERDATACENTER",
        )
    )


@dataclass(frozen=True)
class ToolsMedia:
    file_name: str
    version: str  # e.g. "12.1.5"
    build: str
    volume_id: str = "VMWARETOOLS"

    def info(self) -> dict[str, Any]:
        return {"kind": "vmware-tools", "version": self.version, "build": self.build}


WINDOWS_MEDIA: dict[str, WindowsMedia] = {
    "ocp-4.9": WindowsMedia(
        file_name="windows-server-20h2-sac-kb4565351.iso",
        product_name="Windows Server Datacenter",
        edition_id="ServerDatacenterACor",
        display_version="20H2",
        build=19042,
        ubr=1083,
        hotfixes=("KB4565351",),
        volume_id="SSS_X64FRE_EN-US_DV9",
        # Semi-Annual Channel releases ship Server Core only ("ACORE" editions).
        images=("Windows Server SERVERSTANDARDACORE", "Windows Server SERVERDATACENTERACORE"),
    ),
    "current": WindowsMedia(
        file_name="windows-server-2022-kb5012637.iso",
        product_name="Windows Server 2022 Datacenter",
        edition_id="ServerDatacenter",
        display_version="21H2",
        build=20348,
        ubr=681,
        hotfixes=("KB5012637",),
        volume_id="SSS_X64FRE_EN-US_DV9",
        images=_ltsc_images("2022"),
    ),
    "current-2025": WindowsMedia(
        file_name="windows-server-2025.iso",
        product_name="Windows Server 2025 Datacenter",
        edition_id="ServerDatacenter",
        display_version="24H2",
        build=26100,
        ubr=1742,
        hotfixes=(),
        volume_id="SSS_X64FRE_EN-US_DV9",
        images=_ltsc_images("2025"),
    ),
    # ISOs no profile builds from by default, for PRE-2's refusals and WMCO's version rule: the
    # build.UBR their registry reports after setup is what the real release media install.
    "ws2022-rtm": WindowsMedia(  # the August 2021 release media, before KB5012637 (20348.681)
        file_name="windows-server-2022-rtm.iso",
        product_name="Windows Server 2022 Datacenter",
        edition_id="ServerDatacenter",
        display_version="21H2",
        build=20348,
        ubr=169,
        hotfixes=(),
        volume_id="SSS_X64FRE_EN-US_DV9",
        images=_ltsc_images("2022"),
    ),
    "ws2019": WindowsMedia(  # 1809 LTSC, the September 2019 refresh of the media
        file_name="windows-server-2019-1809.iso",
        product_name="Windows Server 2019 Datacenter",
        edition_id="ServerDatacenter",
        display_version="",
        build=17763,
        ubr=737,
        hotfixes=(),
        volume_id="SSS_X64FRE_EN-US_DV9",
        images=_ltsc_images("2019"),
    ),
}

TOOLS_MEDIA: dict[str, ToolsMedia] = {
    "current": ToolsMedia(file_name="vmware-tools-12.1.5.iso", version="12.1.5", build="20735119"),
    # Older than the 11.0.6 the procedure requires (G2): for tests of that check.
    "old": ToolsMedia(file_name="vmware-tools-10.3.10.iso", version="10.3.10", build="12406962"),
}


def _iso_dir(name: str) -> str:
    return "".join(c for c in name.upper() if c.isalnum() or c == "_")[:8] or "D"


#: Offline sources of OpenSSH for sites without Windows Update (see docs/lab-fidelity.md):
#: Win32-OpenSSH's release MSI, and a Features-on-Demand ISO with the OpenSSH.Server capability.
OPENSSH_MSI = "OpenSSH-Win64-v9.5.0.0.msi"
OPENSSH_MSI_BYTES = b"LAB-MSI Win32-OpenSSH v9.5.0.0 (stand-in for the release MSI)\n"
FOD_ISO = "windows-server-2022-fod.iso"
FOD_INFO = {
    "kind": "features-on-demand",
    "build": 20348,
    "capabilities": ["OpenSSH.Server~~~~0.0.1.0", "Rsat.ActiveDirectory.DS-LDS.Tools~~~~0.0.1.0"],
}


def build_fod_iso(dest: Path) -> None:
    build_iso(
        dest,
        {
            MEDIA_INFO: json.dumps(FOD_INFO, indent=1).encode(),
            "/LanguagesAndOptionalFeatures/OpenSSH-Server-Package~31bf3856ad364e35~amd64~~.cab": (
                b"lab stand-in for the OpenSSH server FoD package\n"
            ),
        },
        "SSS_X64FRE_EN-US_FOD",
    )


def _add_file(iso: pycdlib.PyCdlib, path: str, data: bytes) -> None:
    parts = [p for p in path.strip("/").split("/") if p]
    for i in range(1, len(parts)):
        d = "/" + "/".join(parts[:i])
        with contextlib.suppress(pycdlib.pycdlibexception.PyCdlibInvalidInput):  # already there
            iso.add_directory(
                "/" + "/".join(_iso_dir(p) for p in parts[:i]), joliet_path=d, rr_name=parts[i - 1]
            )
    name = parts[-1]
    iso_name = "/" + "/".join([*(_iso_dir(p) for p in parts[:-1]), _iso_level1(name)])
    iso.add_fp(
        io.BytesIO(data), len(data), iso_name, joliet_path="/" + "/".join(parts), rr_name=name
    )


def _iso_level1(name: str) -> str:
    stem, _, ext = name.partition(".")
    stem = "".join(c for c in stem.upper() if c.isalnum() or c == "_")[:8] or "F"
    ext = "".join(c for c in ext.upper() if c.isalnum() or c == "_")[:3]
    return f"{stem}.{ext};1"


def build_iso(dest: Path, files: dict[str, bytes], volume_id: str) -> None:
    """Write an ISO 9660 image with Joliet and Rock Ridge names holding `files` (path -> bytes)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=volume_id[:16])
    for path, data in sorted(files.items()):
        _add_file(iso, path, data)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    iso.write(str(tmp))
    iso.close()
    tmp.replace(dest)


def build_windows_iso(dest: Path, media: WindowsMedia) -> None:
    build_iso(
        dest,
        {
            MEDIA_INFO: json.dumps(media.info(), indent=1).encode(),
            "/setup.exe": b"MZ lab stand-in for Windows setup\n",
            "/sources/install.wim": b"lab stand-in for the Windows image\n",
            "/bootmgr": b"lab stand-in\n",
        },
        media.volume_id,
    )


def build_tools_iso(dest: Path, media: ToolsMedia) -> None:
    build_iso(
        dest,
        {
            MEDIA_INFO: json.dumps(media.info(), indent=1).encode(),
            "/setup64.exe": b"MZ lab stand-in for VMware Tools setup (64-bit)\n",
            "/setup.exe": b"MZ lab stand-in for VMware Tools setup (32-bit)\n",
            **{
                f"{PVSCSI_DRIVER_DIR}/{f}": f"lab stand-in for the PVSCSI driver ({f})\n".encode()
                for f in ("pvscsi.inf", "pvscsi.sys", "pvscsi.cat")
            },
        },
        media.volume_id,
    )


class Iso:
    """Read-only access to an ISO image's files by their long (Joliet/Rock Ridge) names,
    case-insensitively, as Windows sees a CD."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._iso = pycdlib.PyCdlib()
        self._iso.open(str(self.path))
        self._facade = self._iso.get_joliet_facade() if self._iso.has_joliet() else None
        self._index: dict[str, str] = {}
        if self._facade is not None:
            self._walk("/")

    def close(self) -> None:
        self._iso.close()

    def __enter__(self) -> Iso:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _walk(self, d: str) -> None:
        assert self._facade is not None
        for child in self._facade.list_children(d):
            name = child.file_identifier().decode("utf-16-be")
            if name in (".", "..") or name in ("\x00", "\x01"):
                continue
            full = (d.rstrip("/") + "/" + name) if d != "/" else "/" + name
            self._index[full.lower()] = full
            if child.is_dir():
                self._walk(full)

    def files(self) -> list[str]:
        """All paths, with their original case, e.g. `/sources/install.wim`."""
        return sorted(self._index.values())

    def exists(self, path: str) -> bool:
        return _norm(path) in self._index or _norm(path) == "/"

    def is_dir(self, path: str) -> bool:
        p = _norm(path)
        return p == "/" or any(k.startswith(p + "/") for k in self._index)

    def read(self, path: str) -> bytes:
        key = _norm(path)
        if key not in self._index or self._facade is None:
            raise FileNotFoundError(path)
        out = io.BytesIO()
        self._facade.get_file_from_iso_fp(out, joliet_path=self._index[key])
        return out.getvalue()

    def info(self) -> dict[str, Any] | None:
        """The stand-in's description, or None for media the lab did not make (e.g. answer media)."""
        try:
            data: dict[str, Any] = json.loads(self.read(MEDIA_INFO))
            return data
        except FileNotFoundError:
            return None


def _norm(path: str) -> str:
    p = path.replace("\\", "/")
    if len(p) >= 2 and p[1] == ":":
        p = p[2:]
    if not p.startswith("/"):
        p = "/" + p
    return p.rstrip("/").lower() or "/"
