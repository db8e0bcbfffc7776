"""A small lab (vcsim + the Windows guest twin) for the adapter tests, shared by the vsphere and guest
test modules.

Always a private one, in a temporary run directory with free ports and its own guest network, stopped
afterwards: these tests invalidate every vCenter session and inject faults, which would break the
controllers of a shared lab that other tests rely on.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import cli

COMPONENTS = ("lab.vcsim", "lab.guest.supervisor")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def small_lab(run_dir: Path) -> Iterator[dict[str, str]]:
    """Yield the lab's published variables (GOVC_*, LAB_VSPHERE_*, LAB_SSH_*, ...)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB_COMPONENTS", ",".join(m.removeprefix("lab.") for m in COMPONENTS))
        mp.setenv("WINNODES_LAB_DIR", str(run_dir))
        mp.setenv("LAB_VCSIM_PORT", str(_free_port()))
        mp.setenv("LAB_VCSIM_CONTROL_PORT", str(_free_port()))
        # A guest network of its own, away from a session lab started with LAB_GUEST_NET.
        mp.setenv("LAB_GUEST_NET", str((int(os.environ.get("LAB_GUEST_NET", "77")) + 100) % 250))
        ctx = cli.context()
        cli.up(ctx)
        try:
            yield dict(ctx.env)
        finally:
            cli.down(ctx)
