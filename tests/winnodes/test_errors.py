"""The exception tree: retry decisions by type, step IDs in messages, secrets redacted."""

from __future__ import annotations

import pytest

from winnodes import errors as e


@pytest.mark.parametrize(
    ("cls", "transient"),
    [
        (e.VCenterBusy, True),
        (e.ConnectionLost, True),
        (e.SessionExpired, True),
        (e.ApiUnavailable, True),
        (e.SSHDropped, True),
        (e.WaitTimeout, True),
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
