"""The kubernetes boundary: every client exception becomes the right product error (retry or not),
with the API's message and without secrets."""

from __future__ import annotations

import json

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from winnodes import errors
from winnodes.cluster.api import boundary, map_api_exception


def _api(status: int, message: str = "boom") -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message}).encode()  # type: ignore[assignment]
    return exc


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, errors.AuthenticationError),
        (403, errors.AuthenticationError),
        (404, errors.NotFound),
        (409, errors.Conflict),
        (400, errors.ConfigError),
        (422, errors.ConfigError),
        (429, errors.ApiUnavailable),
        (500, errors.ApiUnavailable),
        (503, errors.ApiUnavailable),
        (0, errors.ConnectionLost),
        (418, errors.PermanentError),
    ],
)
def test_status_mapping(status: int, cls: type[errors.WinNodesError]) -> None:
    err = map_api_exception(_api(status), "C3", "apply x")
    assert type(err) is cls
    assert err.step_id == "C3" and "apply x" in str(err) and "boom" in str(err)


def test_ssa_schema_error_is_the_request_not_the_server() -> None:
    err = map_api_exception(
        _api(500, "failed to create typed patch object (x): .spec.replicas: expected numeric"),
        "C3",
        "apply",
    )
    assert isinstance(err, errors.ConfigError) and not err.transient


def test_transport_errors() -> None:
    assert isinstance(
        map_api_exception(urllib3.exceptions.NewConnectionError(None, "refused"), None, "x"),  # type: ignore[arg-type]
        errors.ConnectionLost,
    )
    mre = urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.SSLError("bad cert"))  # type: ignore[arg-type]
    assert isinstance(map_api_exception(mre, None, "x"), errors.Conflict)


def test_secrets_in_bodies_are_redacted() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEsecretline\n-----END RSA PRIVATE KEY-----"
    with (
        pytest.raises(errors.ConfigError) as exc,
        boundary("PRE-3", "create secret", secrets=[pem]),
    ):
        raise _api(422, f"invalid: {pem}")
    assert "MIIEsecretline" not in str(exc.value)
    assert isinstance(exc.value.__cause__, ApiException)


def test_product_errors_pass_through() -> None:
    with pytest.raises(errors.NotFound), boundary("M1"):
        raise errors.NotFound("x")


def test_retry_after_is_kept_for_the_retry() -> None:
    """kube-apiserver's APF answers 429 with Retry-After (seconds): the error carries it."""
    exc = _api(429)
    exc.headers = {"Retry-After": "3"}  # type: ignore[assignment]
    err = map_api_exception(exc, "C3", "apply x")
    assert isinstance(err, errors.ApiUnavailable) and err.retry_after == 3.0
    assert map_api_exception(_api(503), "C3", "x").retry_after is None  # type: ignore[attr-defined]
    exc.headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}  # type: ignore[assignment]
    assert map_api_exception(exc, "C3", "x").retry_after is None  # type: ignore[attr-defined]
