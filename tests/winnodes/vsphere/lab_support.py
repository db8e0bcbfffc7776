"""A small lab (vcsim + the Windows guest twin) for the adapter tests, shared by the vsphere and guest
test modules.

Reuses a lab that is already running with those components (e.g. a developer's own, selected by
WINNODES_LAB_DIR and the port variables); otherwise starts a private one in a temporary run directory
with free ports and its own guest network, and stops it afterwards.
"""

from __future__ import annotations

import importlib
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


def _running(ctx: cli.LabContext) -> bool:
    return all(importlib.import_module(m).status(ctx).startswith("running") for m in COMPONENTS)


def small_lab(run_dir: Path) -> Iterator[dict[str, str]]:
    """Yield the lab's published variables (GOVC_*, LAB_VSPHERE_*, LAB_SSH_*, ...)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB_COMPONENTS", ",".join(m.removeprefix("lab.") for m in COMPONENTS))
        ctx = cli.context()
        if ctx.paths.lab_json.exists() and _running(ctx):
            yield cli.load_env(ctx.paths)
            return
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
