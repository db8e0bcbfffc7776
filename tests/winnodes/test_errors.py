"""The exception tree: retry decisions by type, step IDs in messages, secrets redacted."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from typing import Any

import pytest

import winnodes
from winnodes import errors as e
from winnodes.render.diagnosis import Diagnosis

# Every product module is imported so that the walk below finds every error class, wherever it is
# defined (a new module's new class is covered without editing this file).
for _mod in pkgutil.walk_packages(winnodes.__path__, "winnodes."):
    importlib.import_module(_mod.name)

_PROBLEM = e.Problem("M2", "machineset.name", "max-length", "machineset.name: too long (M2)")

#: Sample values by constructor parameter name, for classes with an `__init__` of their own.
_SAMPLES: dict[str, Any] = {
    "message": "something went wrong",
    "step_id": "G6",
    "problems": [_PROBLEM],
    "evidence": "seen: docker Stopped",
    "command": "Get-Service -Name docker",
    "exit_code": 3,
    "stderr_tail": "Get-Service : Cannot find any service",
    "status": 503,
    "remaining": ["apps/web-0"],
    "budgets": ["apps/web (0 disruptions allowed)"],
    "diagnosis": Diagnosis(summary="0/1 ready", machines=[], events=[], causes=[]),
}


def _all_error_classes() -> list[type[e.WinNodesError]]:
    found: list[type[e.WinNodesError]] = []
    todo: list[type[e.WinNodesError]] = [e.WinNodesError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _instance(cls: type[e.WinNodesError]) -> e.WinNodesError:
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name not in _SAMPLES:
            if param.default is not param.empty:
                continue
            raise AssertionError(f"{cls.__qualname__}: add a sample for parameter {name!r}")
        kwargs[name] = _SAMPLES[name]
    return cls(**kwargs)


def test_the_walk_finds_the_classes_with_their_own_init() -> None:
    names = {c.__name__ for c in _all_error_classes()}
    assert {"GuestCheckFailed", "GuestCommandFailed", "ValidationError"} <= names
    assert {"MachineSetNotReady", "MachineSetFailed", "ApiUnavailable"} <= names


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda c: c.__qualname__)
def test_every_error_class_survives_pickle(cls: type[e.WinNodesError]) -> None:
    """Prefect persists a failed task's exception and reads it back: type, message and every
    attribute must come back as they were."""
    err = _instance(cls)
    err.__cause__ = ValueError("upstream")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == str(err)
    assert back.args == err.args
    assert vars(back) == vars(err)
    assert back.transient is err.transient


@pytest.mark.parametrize(
    ("cls", "transient"),
    [
        (e.VCenterBusy, True),
        (e.ConnectionLost, True),
        (e.SessionExpired, True),
        (e.ApiUnavailable, True),
        (e.SSHDropped, True),
        (e.CommandTimeout, True),  # a hung guest command: a new session may succeed
        (e.WaitTimeout, False),  # the step's budget is spent: retrying cannot help
        (e.ConfigError, False),
        (e.ValidationError, False),
        (e.AuthenticationError, False),
        (e.NotFound, False),
        (e.Conflict, False),
        (e.GuestCheckFailed, False),
    ],
)
def test_transient_is_in_the_type(cls: type[e.WinNodesError], transient: bool) -> None:
    base = e.TransientError if transient else e.PermanentError
    assert issubclass(cls, base)
    assert cls.transient is transient


def test_step_id_is_part_of_the_message() -> None:
    err = e.NotFound("template 'x' does not exist", step_id="M7")
    assert str(err) == "[M7] template 'x' does not exist"
    assert err.step_id == "M7"


def test_guest_check_failed_carries_truncated_evidence() -> None:
    err = e.GuestCheckFailed("G3c", "VMTools is stopped", evidence="x" * 5000)
    assert err.step_id == "G3c"
    assert len(err.evidence) < 2100
    assert err.evidence.endswith("[3000 more characters]")


def test_validation_error_lists_every_problem() -> None:
    problems = [
        e.Problem("M2", "machineset.name", "max-length", "machineset.name: too long (M2)"),
        e.Problem("G9", "golden_image.unattend.computer_name", "dns-1123-label", "bad name (G9)"),
    ]
    err = e.ValidationError(problems)
    assert err.problems == problems
    assert "2 configuration problem(s)" in str(err)
    assert "too long (M2)" in str(err) and "bad name (G9)" in str(err)
    assert err.step_id is None  # several steps


def test_api_unavailable_keeps_status() -> None:
    assert e.ApiUnavailable("busy", status=429).status == 429


def test_redact_replaces_raw_escaped_and_line_forms() -> None:
    pem = "-----BEGIN KEY-----\nAAAAsecretline1\nBBBBsecretline2\n-----END KEY-----"
    text = (
        "password P@ss'<w>rd! in xml P@ss'&lt;w&gt;rd! in ps 'P@ss''<w>rd!' key BBBBsecretline2 "
        "and ok"
    )
    out = e.redact(text, ["P@ss'<w>rd!", pem, None, "ab"])
    assert "P@ss" not in out
    assert "secretline" not in out
    assert out.endswith("and ok")
    assert out.count(e.REDACTED) == 4


def test_redact_ignores_short_secrets() -> None:
    assert e.redact("a b c", ["a"]) == "a b c"
