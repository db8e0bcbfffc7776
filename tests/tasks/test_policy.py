"""Retries follow the exception type: transient ones are retried with backoff, permanent ones fail."""

from __future__ import annotations

import contextlib

import pytest
from prefect import flow, task

from tasks.policy import is_transient, transient_retries
from winnodes.errors import NotFound, SSHDropped, ValidationError, VCenterBusy


def test_classification() -> None:
    assert is_transient(VCenterBusy("busy"))
    assert is_transient(SSHDropped("reset"))
    assert not is_transient(NotFound("no template"))
    assert not is_transient(ValidationError([]))
    assert not is_transient(ValueError("bug"))


def test_backoff_settings_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINNODES_RETRY_DELAY", "3")
    kw = transient_retries(retries=3)
    assert kw["retries"] == 3
    assert kw["retry_delay_seconds"](3) == [3, 6, 12]
    assert kw["retry_jitter_factor"] == 0.5
    monkeypatch.setenv("WINNODES_RETRY_DELAY", "soon")
    with pytest.raises(ValueError, match="WINNODES_RETRY_DELAY"):
        transient_retries()


@pytest.mark.usefixtures("prefect_api")
def test_transient_is_retried_permanent_is_not() -> None:
    calls = {"transient": 0, "permanent": 0}

    @task(**transient_retries(retries=3))
    def flaky() -> str:
        calls["transient"] += 1
        if calls["transient"] < 3:
            raise VCenterBusy("TaskInProgress", step_id="G8")
        return "done"

    @task(**transient_retries(retries=3))
    def broken() -> None:
        calls["permanent"] += 1
        raise NotFound("template 'x' not found", step_id="M7")

    @flow
    def run() -> str:
        out = flaky()
        with contextlib.suppress(NotFound):
            broken()
        return out

    assert run() == "done"
    assert calls == {"transient": 3, "permanent": 1}
