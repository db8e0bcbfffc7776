"""Template names, build IDs and retention as pure decisions (G8, G10).

A build's template name is derived from the configuration and a build ID, so a re-run of the same
build finds "its" template again (idempotence) and retention can tell the series' templates apart from
anything else in the folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from winnodes.model.config import Names

_TIMESTAMP = "%Y%m%d%H%M%S"


def template_name(names: Names, build_id: str) -> str:
    """The template name of one build, e.g. 'windows-golden-20260101120000'."""
    return names.template_pattern.format(series=names.template_series, build_id=build_id)


def _series_regex(names: Names) -> re.Pattern[str]:
    series = re.escape(names.template_series)
    pattern = re.escape(names.template_pattern)
    pattern = pattern.replace(re.escape("{series}"), series).replace(
        re.escape("{build_id}"), r"(?P<build_id>\d+)"
    )
    return re.compile(f"^{pattern}$")


def build_id_of(names: Names, name: str) -> str | None:
    """The build ID in a template name of this series, or None if `name` is not one of them."""
    m = _series_regex(names).match(name)
    return m.group("build_id") if m else None


def next_build_id(names: Names, *, now: datetime, existing: Iterable[str] = ()) -> str:
    """A new build ID: the UTC timestamp, or 1 + the highest counter among `existing` names."""
    if names.build_id_scheme == "timestamp":
        return now.astimezone(UTC).strftime(_TIMESTAMP)
    ids = [int(b) for n in existing if (b := build_id_of(names, n)) is not None]
    return str(max(ids, default=0) + 1)


def templates_to_delete(names: Names, existing: Iterable[str], keep: int) -> list[str]:
    """Retention: the series' templates beyond the newest `keep` (oldest first). Names outside the
    series are never selected."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the newest template is the one in use")
    series = [(int(b), n) for n in existing if (b := build_id_of(names, n)) is not None]
    series.sort()
    return [n for _, n in series[: max(0, len(series) - keep)]]


#: How a run picks its build (the rule `flows.golden_image` documents): "new" starts a new build
#: (the default of the golden-image-rebuild deployment, the schedule and `winnodes run --only
#: golden-image`), "resume" continues the unfinished build found in vCenter, "latest" reuses the
#: newest template of the series and builds only when there is none (the end-to-end default).
BUILD_MODES = ("new", "resume", "latest")


class NothingToResume(ValueError):
    """`resume` was asked for, but vCenter holds no unfinished build of the series."""


def choose_build(
    names: Names,
    mode: str,
    *,
    now: datetime,
    templates: Iterable[str] = (),
    unfinished: Iterable[str] = (),
) -> tuple[str, str]:
    """The build a run works on, and what it does with it: ("<id>", "new" | "resumed" | "reused").

    `templates`: names of the series' templates (finished builds); `unfinished`: build IDs of
    builds started but not finished (their clone exists and is no template, or the base VM carries
    their pending marker), newest first. A new timestamp ID never repeats an existing one."""
    if mode not in BUILD_MODES:
        raise ValueError(f"build mode must be one of {', '.join(BUILD_MODES)}, not {mode!r}")
    existing = list(templates)
    pending = list(unfinished)
    if mode == "resume":
        if not pending:
            raise NothingToResume(
                f"no unfinished build of series {names.template_series!r} to resume"
            )
        return pending[0], "resumed"
    if mode == "latest":
        ids = sorted(int(b) for n in existing if (b := build_id_of(names, n)) is not None)
        if ids:
            return str(ids[-1]), "reused"
    taken = {b for n in existing if (b := build_id_of(names, n)) is not None} | set(pending)
    build_id = next_build_id(names, now=now, existing=[*existing, *_names(names, pending)])
    while build_id in taken:  # two runs within one second: the next free second
        now = now + timedelta(seconds=1)
        build_id = next_build_id(names, now=now, existing=[*existing, *_names(names, pending)])
    return build_id, "new"


def _names(names: Names, build_ids: Iterable[str]) -> list[str]:
    return [template_name(names, b) for b in build_ids]
