"""Requirement profiles: what the documented 4.9 procedure and today's WMCO expect of an image.

The procedure (docs/procedure.md, "Requirement profiles") was written for OpenShift 4.9; WMCO has moved
on. Everything that differs between the two lives in this one table, so a step asks the profile
("which firewall ports?", "is Docker expected?") instead of branching on a profile name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["ocp-4.9", "current"]

#: VMware Tools 11.0.6, the minimum of G2, for both profiles.
MIN_TOOLS_VERSION: tuple[int, int, int] = (11, 0, 6)

#: OpenShift's vSphere infrastructure requirement (G1): virtual hardware version 15 or later.
MIN_HARDWARE_VERSION = 15


@dataclass(frozen=True)
class FirewallPort:
    """One inbound TCP rule the node needs (G7). `display_name` is how the rule is found again."""

    port: int
    display_name: str
    purpose: str


@dataclass(frozen=True)
class RequirementProfile:
    name: ProfileName
    description: str
    windows: str  # human-readable Windows release(s)
    builds: tuple[int, ...]  # acceptable OS build numbers (PRE-2)
    min_ubr: dict[int, int]  # build -> minimum update build revision (the patch level)
    hotfix: str  # the KB the procedure names
    runtime: Literal["docker", "none"]  # container runtime that must (not) be in the image (G6)
    firewall: tuple[FirewallPort, ...]  # G7
    min_tools_version: tuple[int, int, int]
    guest_id: str  # vSphere guest OS identifier for the VM (G1)
    image_name: str  # /IMAGE/NAME in install.wim selected by autounattend.xml (G1)
    images: tuple[str, ...] = ()  # every /IMAGE/NAME the profile's ISOs carry (G1 validation)

    @property
    def firewall_ports(self) -> tuple[int, ...]:
        return tuple(p.port for p in self.firewall)


CONTAINER_LOGS = FirewallPort(10250, "ContainerLogsPort", "kubelet: container logs (G7)")
WINDOWS_EXPORTER = FirewallPort(9182, "WindowsExporterMetricsPort", "windows_exporter metrics")


def ltsc_images(release: str) -> tuple[str, ...]:
    """install.wim of a Windows Server LTSC ISO (2022, 2025): Standard and Datacenter, each as
    Server Core and with the Desktop Experience, in index order 1-4."""
    return tuple(
        f"Windows Server {release} {edition}"
        for edition in (
            "SERVERSTANDARDCORE",
            "SERVERSTANDARD",
            "SERVERDATACENTERCORE",
            "SERVERDATACENTER",
        )
    )


PROFILES: dict[str, RequirementProfile] = {
    "ocp-4.9": RequirementProfile(
        name="ocp-4.9",
        description="The documented OpenShift 4.9 procedure",
        windows="Windows Server SAC 20H2",
        builds=(19042,),
        # KB4565351 is 19041.450; 20H2 (19042) shares that servicing branch and its UBRs.
        min_ubr={19042: 450},
        hotfix="KB4565351",
        runtime="docker",
        firewall=(CONTAINER_LOGS,),
        min_tools_version=MIN_TOOLS_VERSION,
        guest_id="windows2019srv_64Guest",
        image_name="Windows Server SERVERDATACENTERACORE",
        # Semi-Annual Channel media carry Server Core only.
        images=("Windows Server SERVERSTANDARDACORE", "Windows Server SERVERDATACENTERACORE"),
    ),
    "current": RequirementProfile(
        name="current",
        description="WMCO 6 and later (WMCO installs and manages containerd)",
        windows="Windows Server 2022 LTSC or 2025",
        builds=(20348, 26100),
        # WS2022 needs KB5012637 (20348.681); WS2025 is supported from its first release.
        min_ubr={20348: 681, 26100: 0},
        hotfix="KB5012637",
        runtime="none",
        firewall=(CONTAINER_LOGS, WINDOWS_EXPORTER),
        min_tools_version=MIN_TOOLS_VERSION,
        guest_id="windows2019srvNext_64Guest",
        image_name="Windows Server 2022 SERVERDATACENTERCORE",
        images=ltsc_images("2022") + ltsc_images("2025"),
    ),
}


def get_profile(name: str) -> RequirementProfile:
    """The profile called `name`; KeyError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(
            f"unknown requirement profile {name!r}; known: {', '.join(PROFILES)}"
        ) from None


def tools_version_ok(version: tuple[int, int, int], profile: RequirementProfile) -> bool:
    """G2: is this VMware Tools version new enough?"""
    return version >= profile.min_tools_version


@dataclass(frozen=True)
class WindowsRelease:
    """One Windows Server release as PRE-2 knows it, by its build number."""

    build: int
    name: str
    hotfix: str  # the KB that brings a profile's `min_ubr` for it ("" when none is named)
    min_wmco: tuple[int, int] | None = None  # the first WMCO (major, minor) that supports it


#: Sources: WMCO docs/wmco-prerequisites.md and docs/vsphere-golden-image.md (WS2022 needs
#: KB5012637 = 20348.681; vSphere needs a custom VXLAN port, which WS2019 lacks; WS2025 is listed
#: from the release-4.22 branch, WMCO 10.22, not in release-4.21, WMCO 10.21); the OpenShift 4.9
#: procedure (SAC 20H2 with KB4565351, which is 19041.450 in the servicing branch 20H2 shares).
WINDOWS_RELEASES: dict[int, WindowsRelease] = {
    17763: WindowsRelease(17763, "Windows Server 2019 (1809)", ""),
    19042: WindowsRelease(19042, "Windows Server SAC 20H2", "KB4565351"),
    20348: WindowsRelease(20348, "Windows Server 2022", "KB5012637"),
    26100: WindowsRelease(26100, "Windows Server 2025", "", min_wmco=(10, 22)),
}


def os_build_problem(build: int, ubr: int, profile: RequirementProfile) -> str | None:
    """PRE-2: why the installed Windows (build.UBR) does not meet the profile, or None.

    The message names the build found, the builds the profile accepts and PRE-2."""
    found = f"build {build}.{ubr}"
    release = WINDOWS_RELEASES.get(build)
    if release is not None:
        found = f"{release.name}, {found}"
    wanted = ", ".join(
        f"{r.name} {r.build}.{profile.min_ubr.get(r.build, 0)}+"
        + (f" ({r.hotfix})" if profile.min_ubr.get(r.build, 0) and r.hotfix else "")
        for r in (WINDOWS_RELEASES[b] for b in profile.builds)
    )
    if build not in profile.builds:
        why = (
            "WMCO does not support Windows Server 2019 on vSphere: it lacks the custom VXLAN port "
            "hybrid overlay networking needs there (WMCO docs, wmco-prerequisites)"
            if build == 17763
            else f"not an image of profile {profile.name}"
        )
        return f"{found} is refused: {why}; profile {profile.name} needs {wanted} (PRE-2)"
    need = profile.min_ubr.get(build, 0)
    if ubr < need:
        kb = release.hotfix if release is not None else "the required update"
        return (
            f"{found} lacks {kb}: profile {profile.name} needs {build}.{need} or later; install "
            "the cumulative update on the base VM, or build from a newer ISO (PRE-2)"
        )
    return None


def wmco_supports(build: int, wmco: tuple[int, int] | None) -> str | None:
    """PRE-1/PRE-2 on the cluster side: why the installed WMCO (major, minor) cannot configure a
    node of this build, or None. An unknown WMCO version refuses builds that need a minimum."""
    release = WINDOWS_RELEASES.get(build)
    if release is None or release.min_wmco is None:
        return None
    if wmco is not None and wmco >= release.min_wmco:
        return None
    have = f"WMCO {wmco[0]}.{wmco[1]}" if wmco else "a WMCO of unknown version"
    need = f"{release.min_wmco[0]}.{release.min_wmco[1]}"
    return (
        f"the template is {release.name} (build {build}), which WMCO supports from {need}; "
        f"the cluster runs {have} (PRE-1): upgrade WMCO or use a Windows Server 2022 template "
        "(PRE-2)"
    )


def parse_wmco_version(version: str | None) -> tuple[int, int] | None:
    """'10.18.1' (a CSV's spec.version) -> (10, 18); None when absent or unreadable."""
    parts = (version or "").strip().lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def parse_os_build(value: str | None) -> tuple[int, int] | None:
    """'20348.681' (the template's `winnodes.os.build`) -> (20348, 681); None when unreadable."""
    parts = (value or "").strip().split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def os_build_ok(build: int, ubr: int, profile: RequirementProfile) -> bool:
    """PRE-2: does the installed Windows (build.UBR) meet the profile?"""
    return os_build_problem(build, ubr, profile) is None
