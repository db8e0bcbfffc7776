"""The controllers' vCenter session survives vCenter ending it (expiry, an administrator, a test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyVmomi import vim

from lab import cli
from lab.controllers.common import VSphere
from lab.vcsim import VcsimControl


@pytest.fixture(scope="module")
def vcsim_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with cli.private_lab(Path(tmp_path_factory.mktemp("vs")) / "lab", ["vcsim"]) as ctx:
        yield dict(ctx.env)


@pytest.mark.lab
def test_lost_session_is_replaced_by_a_new_login(vcsim_env: dict[str, str]) -> None:
    vs = VSphere(vcsim_env)
    try:

        def names() -> list[str]:
            return sorted(p["name"] for _, p in vs.retrieve(vim.Datastore, ["name"]))

        before = names()
        old_key = vs.content.sessionManager.currentSession.key
        assert VcsimControl.from_env(vcsim_env).invalidate_sessions() >= 1
        assert names() == before  # no NotAuthenticated: the helper logged in again
        assert vs.content.sessionManager.currentSession.key != old_key
    finally:
        vs.close()
