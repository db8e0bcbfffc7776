"""One retry policy for every task that does I/O: the exception type decides.

Adapters map every client-library failure to `winnodes.errors`; a `TransientError` (vCenter busy,
connection reset, session expired, API 5xx/429, SSH drop, ...) is retried with exponential backoff and
jitter, anything else (bad credentials, missing template, invalid spec, a guest check that failed)
fails the task at once. Declaring it here keeps the decision out of message text and out of the flows.

`WINNODES_RETRY_DELAY` (seconds, default 2) scales the backoff: tests and the lab use a small value.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.tasks import exponential_backoff

from winnodes.errors import TransientError

RETRIES = 4


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only when the task raised a TransientError."""
    try:
        state.result()
    except BaseException as exc:
        return is_transient(exc)
    return False


def _base_delay() -> float:
    raw = os.environ.get("WINNODES_RETRY_DELAY", "2")
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"WINNODES_RETRY_DELAY={raw!r} is not a number of seconds") from exc
    return max(value, 0.0)


def transient_retries(retries: int = RETRIES) -> dict[str, Any]:
    """Keyword arguments for `@task(...)`: retries of transient failures only, with backoff
    (base, 2x base, 4x base, ...) and 50 % jitter."""
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=_base_delay()),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_transient,
    }
