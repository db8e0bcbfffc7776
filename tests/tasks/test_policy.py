"""Retries follow the exception type: transient ones are retried with backoff, permanent ones fail."""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE

from tasks.policy import deadline_after, is_transient, seconds_left, transient_retries
from winnodes.errors import (
    ConnectionLost,
    NotFound,
    SSHDropped,
    ValidationError,
    VCenterBusy,
    WaitTimeout,
)


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


# -- caching: live state is never served from a cache ------------------------------------------------
#: Tasks whose result follows from their inputs alone (pure planning): the only ones that may be cached.
DETERMINISTIC = {"C1 render MachineSet"}


def _product_tasks() -> list[Task[Any, Any]]:
    import tasks

    found: dict[str, Task[Any, Any]] = {}
    for mod in pkgutil.iter_modules(tasks.__path__, "tasks."):
        for value in vars(importlib.import_module(mod.name)).values():
            if isinstance(value, Task):
                found[value.name] = value
    return sorted(found.values(), key=lambda t: t.name)


def test_the_walk_finds_the_tasks() -> None:
    names = {t.name for t in _product_tasks()}
    assert {"G6 container runtime per profile", "V1 wait until the MachineSet is ready"} <= names
    assert names >= DETERMINISTIC


@pytest.mark.parametrize("t", _product_tasks(), ids=lambda t: t.name)
def test_every_live_state_task_is_never_cached(t: Task[Any, Any]) -> None:
    """Under `persist_result=True` (the parent flow) Prefect's default policy would serve a second
    call with the same inputs from the first one's result: a check after a restart never runs."""
    if t.name in DETERMINISTIC:
        return
    assert t.cache_policy is NO_CACHE, f"{t.name!r} reads live state: cache_policy=NO_CACHE"
    assert t.with_options(persist_result=True).cache_policy is NO_CACHE


# -- deadlines: one budget per wait, across retries -------------------------------------------------
def test_seconds_left_counts_down_and_then_refuses() -> None:
    left = seconds_left(deadline_after(30), step_id="G2", what="Tools")
    assert 29 < left <= 30
    with pytest.raises(WaitTimeout) as info:
        seconds_left(datetime.now(UTC) - timedelta(seconds=5), step_id="G2", what="Tools")
    assert info.value.step_id == "G2" and not is_transient(info.value)
    assert "ran out" in str(info.value) and "5s ago" in str(info.value)


@pytest.mark.usefixtures("prefect_api")
def test_retries_share_the_budget_and_a_timeout_is_not_retried() -> None:
    """Attempt 1 waits part of the budget and loses its connection (transient: retried); attempt 2
    gets only what is left, runs out and is not retried: the step's time is a total."""
    budget = 2.0
    seen: list[float] = []

    @task(**transient_retries(retries=4))
    def wait(deadline: datetime) -> None:
        left = seconds_left(deadline, step_id="G2", what="Tools and IPv4")
        seen.append(left)
        if len(seen) == 1:
            time.sleep(0.8)
            raise ConnectionLost("reset during WaitForUpdatesEx", step_id="G2")
        time.sleep(left)  # a wait bounded by what is left, ending without its condition
        raise WaitTimeout("Tools and IPv4 not reached", step_id="G2")

    @flow
    def run() -> None:
        wait(deadline_after(budget))

    with pytest.raises(WaitTimeout):
        run()
    # One retry after the drop, none after the timeout; the retry got only what was left (not a
    # fresh budget). Counted, not timed: wall time on a shared machine proves nothing.
    assert len(seen) == 2, seen
    assert seen[1] < budget - 0.7, seen


def test_retry_after_is_honoured_before_a_retry_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 429's Retry-After is waited for (capped) before the retry; permanent errors wait nothing."""
    from prefect.states import Failed

    import tasks.policy as policy
    from winnodes.errors import ApiUnavailable

    slept: list[float] = []
    monkeypatch.setattr(policy.time, "sleep", slept.append)

    def failed(exc: BaseException) -> Any:
        return Failed(data=exc)

    busy = ApiUnavailable("429", step_id="C3", status=429, retry_after=3)
    assert policy.retry_transient(None, None, failed(busy))
    huge = ApiUnavailable("429", step_id="C3", status=429, retry_after=3600)
    assert policy.retry_transient(None, None, failed(huge))
    assert policy.retry_transient(None, None, failed(ApiUnavailable("500", status=500)))
    assert not policy.retry_transient(None, None, failed(NotFound("x", step_id="M7")))
    assert slept == [3.0, policy.MAX_RETRY_AFTER]
