"""One retry policy for every task that does I/O: the exception type decides.

Adapters map every client-library failure to `winnodes.errors`; a `TransientError` (vCenter busy,
connection reset, session expired, API 5xx/429, SSH drop, ...) is retried with exponential backoff and
jitter, anything else (bad credentials, missing template, invalid spec, a guest check that failed)
fails the task at once. Declaring it here keeps the decision out of message text and out of the flows.

`WINNODES_RETRY_DELAY` (seconds, default 2) scales the backoff: tests and the lab use a small value.
A server's Retry-After (Kubernetes 429) is honoured on top of it, capped (`retry_transient`).

Deadlines. A wait's budget is its step's configured time *in total*, across retries. The flow
computes one absolute deadline per wait (`deadline_after`) and passes it to the task; the task asks
`seconds_left` at the start of every attempt, so a retry after a dropped connection waits only for
what is left, and an attempt that starts after the deadline fails at once. `WaitTimeout` is
permanent, so a wait that ran out is not started again. (The deadline is an input of the task: a
later flow run computes a new one, which is how a re-run resumes a wait with a fresh budget.)
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from winnodes.errors import TransientError, WaitTimeout

RETRIES = 4


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


#: The longest server-requested wait (Retry-After) honoured before a retry, in seconds.
MAX_RETRY_AFTER = 30.0


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only when the task raised a TransientError.

    When the server said how long to wait (`ApiUnavailable.retry_after`: a 429 of the Kubernetes
    API's Priority and Fairness carries Retry-After), wait that long (at most MAX_RETRY_AFTER)
    before the retry's own backoff starts: retrying earlier only earns another 429. Prefect calls
    this only when a retry is left."""
    try:
        state.result()
    except BaseException as exc:
        if not is_transient(exc):
            return False
        wait = getattr(exc, "retry_after", None)
        if isinstance(wait, (int, float)) and wait > 0:
            time.sleep(min(float(wait), MAX_RETRY_AFTER))
        return True
    return False


def _base_delay() -> float:
    raw = os.environ.get("WINNODES_RETRY_DELAY", "2")
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"WINNODES_RETRY_DELAY={raw!r} is not a number of seconds") from exc
    return max(value, 0.0)


#: Every task that reads or changes live state (vCenter, the guest, the cluster, DNS) is never
#: served from Prefect's cache: with `persist_result=True` (the parent flow) the default policy
#: (inputs + source + flow run) would answer a second call with the same inputs from the first one's
#: result, e.g. the G6 runtime check after the restart, which must look again. Only deterministic
#: planning (C1 render, the build ID) may be cached.
LIVE_STATE: dict[str, Any] = {"cache_policy": NO_CACHE}


def transient_retries(retries: int = RETRIES) -> dict[str, Any]:
    """Keyword arguments for `@task(...)` of a task that does I/O: retries of transient failures
    only, with backoff (base, 2x base, 4x base, ...) and 50 % jitter, and no cache (`LIVE_STATE`)."""
    return {
        **LIVE_STATE,
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=_base_delay()),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_transient,
    }


def deadline_after(seconds: float) -> datetime:
    """The absolute end (UTC) of a budget of `seconds` that starts now: computed once per wait, in
    the flow, and passed to the task that waits."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


def seconds_left(deadline: datetime, *, step_id: str, what: str) -> float:
    """What is left of the budget ending at `deadline`; `WaitTimeout` when nothing is.

    Called at the start of each attempt of a waiting task, so retries share one budget."""
    left = (deadline - datetime.now(UTC)).total_seconds()
    if left <= 0:
        raise WaitTimeout(
            f"{what}: the step's time ran out at {deadline:%Y-%m-%d %H:%M:%S} UTC "
            f"({-left:.0f}s ago) before this attempt could wait",
            step_id=step_id,
        )
    return left
