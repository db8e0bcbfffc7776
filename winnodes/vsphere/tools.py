"""VMware Tools version as vCenter reports it, with the cases the raw decoder cannot know.

`guest.toolsVersion` is one integer, major * 1024 + minor * 32 + patch (11.0.6 is 11270); the bit
arithmetic is `winnodes.render.powershell.decode_vcenter_tools_version` (pure, shared with G2's
in-guest check). This module adds what only the vSphere side means: 0 is "not installed" and
2147483647 (2^31 - 1) is "unmanaged" (e.g. open-vm-tools from a distribution), where vCenter does
not know the version and G2 must read it inside the guest instead.
"""

from __future__ import annotations

from typing import NamedTuple

from winnodes.render.powershell import decode_vcenter_tools_version

UNMANAGED = 2**31 - 1


class ToolsVersion(NamedTuple):
    """Comparable: `decode_tools_version("11270") >= MINIMUM_TOOLS`."""

    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


#: The procedure's minimum (G2).
MINIMUM_TOOLS = ToolsVersion(11, 0, 6)


def decode_tools_version(value: int | str | None) -> ToolsVersion | None:
    """`11270` or `"11270"` -> 11.0.6; None when not installed (0, empty) or unmanaged.

    Raises:
        ValueError: the value is not an integer.
    """
    if value is None or value == "":
        return None
    n = int(value)
    if n <= 0 or n == UNMANAGED:
        return None
    return ToolsVersion(*decode_vcenter_tools_version(n))
