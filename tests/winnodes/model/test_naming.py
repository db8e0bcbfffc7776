"""Template names, build IDs and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from winnodes.model.config import Names
from winnodes.model.naming import build_id_of, next_build_id, template_name, templates_to_delete


def test_timestamp_build_id_is_utc() -> None:
    names = Names()
    now = datetime(2026, 1, 2, 13, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    bid = next_build_id(names, now=now)
    assert bid == "20260102120405"
    assert template_name(names, bid) == "windows-golden-20260102120405"


def test_counter_build_id_follows_the_highest_of_the_series() -> None:
    names = Names(build_id_scheme="counter", template_pattern="{series}-v{build_id}")
    existing = ["windows-golden-v2", "windows-golden-v10", "other-v99", "windows-golden-base"]
    assert next_build_id(names, now=datetime.now(UTC), existing=existing) == "11"
    assert next_build_id(names, now=datetime.now(UTC)) == "1"


def test_build_id_of_ignores_other_names() -> None:
    names = Names()
    assert build_id_of(names, "windows-golden-20260101000000") == "20260101000000"
    assert build_id_of(names, "windows-golden-base") is None
    assert build_id_of(names, "xwindows-golden-1") is None


def test_retention_keeps_the_newest_and_never_touches_other_names() -> None:
    names = Names()
    existing = [
        "windows-golden-20260103000000",
        "windows-golden-20260101000000",
        "windows-golden-base",
        "windows-golden-20260102000000",
        "unrelated",
    ]
    assert templates_to_delete(names, existing, keep=1) == [
        "windows-golden-20260101000000",
        "windows-golden-20260102000000",
    ]
    assert templates_to_delete(names, existing, keep=5) == []
    with pytest.raises(ValueError):
        templates_to_delete(names, existing, keep=0)
