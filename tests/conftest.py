"""Shared fixtures. `lab_env` starts a lab of the test session's own (all components, in a
temporary run directory, on ports from the OS and a guest network nothing else uses) and stops it
at the end: the suite never touches a lab the user runs (`make demo`, `.lab/`, the default ports),
and can run while one is up. See README, "How the tests isolate themselves"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab import cli


@pytest.fixture(scope="session")
def lab_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with cli.private_lab(tmp_path_factory.mktemp("session-lab") / "lab") as ctx:
        yield dict(ctx.env)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect server and database for the session (flows, artifacts, events)."""
    import os

    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("WINNODES_RETRY_DELAY", "0.05")
    with prefect_test_harness(server_startup_timeout=60):
        yield
