"""A small lab (vcsim + the Windows guest twin) for the adapter tests, shared by the vsphere and guest
test modules.

Always a private one, in a temporary run directory with free ports and its own guest network, stopped
afterwards: these tests invalidate every vCenter session and inject faults, which would break the
controllers of a shared lab that other tests rely on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lab import cli

COMPONENTS = ("lab.vcsim", "lab.guest.supervisor")


def small_lab(run_dir: Path) -> Iterator[dict[str, str]]:
    """Yield the lab's published variables (GOVC_*, LAB_VSPHERE_*, LAB_SSH_*, ...)."""
    with cli.private_lab(run_dir, [m.removeprefix("lab.") for m in COMPONENTS]) as ctx:
        yield dict(ctx.env)
