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


def test_choose_build_new_never_repeats_an_existing_id() -> None:
    from winnodes.model.naming import choose_build

    names = Names(template_series="w")
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert choose_build(names, "new", now=now) == ("20260101120000", "new")
    taken = ["w-20260101120000"]
    assert choose_build(names, "new", now=now, templates=taken)[0] == "20260101120001"
    assert choose_build(names, "new", now=now, unfinished=["20260101120000"])[0] == (
        "20260101120001"
    )
    counter = Names(template_series="w", build_id_scheme="counter")
    assert choose_build(counter, "new", now=now, templates=["w-3"], unfinished=["4"]) == (
        "5",
        "new",
    )


def test_choose_build_resume_and_latest() -> None:
    from winnodes.model.naming import NothingToResume, choose_build

    names = Names(template_series="w")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    got = choose_build(names, "resume", now=now, unfinished=["20251230000000", "20251201000000"])
    assert got == ("20251230000000", "resumed")
    with pytest.raises(NothingToResume):
        choose_build(names, "resume", now=now, templates=["w-20251201000000"])
    latest = ["w-20251201000000", "w-20251224000000", "other-20251231000000"]
    assert choose_build(names, "latest", now=now, templates=latest) == ("20251224000000", "reused")
    assert choose_build(names, "latest", now=now) == ("20260101000000", "new")
    with pytest.raises(ValueError):
        choose_build(names, "again", now=now)
