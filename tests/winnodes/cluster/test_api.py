"""The kubernetes boundary: every client exception becomes the right product error (retry or not),
with the API's message and without secrets."""

from __future__ import annotations

import http.server
import json
import threading

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


class _Throttling(http.server.BaseHTTPRequestHandler):
    """An API server under API Priority and Fairness: every request gets 429 + Retry-After."""

    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = b"Too many requests, please try again later.\n"
        self.send_response(429)
        self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize("how", ["token", "kubeconfig"])
def test_a_429_reaches_the_product_once_with_its_retry_after(how: str) -> None:
    """Before: urllib3 retried a GET answered 429 three times by itself, sleeping Retry-After each
    time, then raised MaxRetryError without the header; the task's retry then waited again."""
    from kubernetes import client as k8s

    from winnodes.cluster.api import client_from_kubeconfig, client_from_token

    _Throttling.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        if how == "token":
            api = client_from_token(url, "secret-token", verify_tls=False)
        else:
            kubeconfig = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": "secret-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
            api = client_from_kubeconfig(kubeconfig)
        with pytest.raises(errors.ApiUnavailable) as info, boundary("C1", "read nodes"):
            k8s.CoreV1Api(api).list_node(_request_timeout=5)
    finally:
        server.shutdown()
    assert _Throttling.hits == 1
    assert info.value.retry_after == 1.0 and info.value.transient
