"""Shared fixtures. `lab_env` brings the whole lab up once per test session (or reuses a lab that is
already running, e.g. after `make lab-up`) and takes it down at the end if it started it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab import cli


@pytest.fixture(scope="session")
def lab_env() -> Iterator[dict[str, str]]:
    ctx = cli.context()
    if all(mod.status(ctx).startswith("running") for mod in cli._components()):
        yield cli.load_env(ctx.paths)
        return
    cli.up(ctx)
    try:
        yield dict(ctx.env)
    finally:
        cli.down(ctx)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect server and database for the session (flows, artifacts, events)."""
    import os

    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("WINNODES_RETRY_DELAY", "0.05")
    with prefect_test_harness(server_startup_timeout=60):
        yield
