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
        min_ubr={19042: 0},
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


def os_build_ok(build: int, ubr: int, profile: RequirementProfile) -> bool:
    """PRE-2: does the installed Windows (build.UBR) meet the profile?"""
    return build in profile.builds and ubr >= profile.min_ubr.get(build, 0)
