"""The boundary between the `kubernetes` client and the product: clients and exception mapping.

Clients are built from what a block holds (kubeconfig text or path + context, or server + token),
always with TLS verified unless the caller explicitly disables it. Every call into the client goes
through `boundary(step_id, action)`, which maps `ApiException` by HTTP status and urllib3's transport
errors to the exception tree in `winnodes.errors`; response bodies are truncated and redacted before
they reach a message (a Secret's body could echo key material).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from winnodes import errors

Obj = dict[str, Any]


def _body_message(exc: ApiException, secrets: Iterable[str | None]) -> str:
    """The API's own message (Status.message) if the body is a Status, else the raw body."""
    raw = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else (exc.body or "")
    try:
        parsed = json.loads(raw)
        text = parsed.get("message") or raw if isinstance(parsed, dict) else raw
    except ValueError:
        text = raw or (exc.reason or "")
    return errors.truncate(errors.redact(str(text), secrets), 600)


def retry_after(exc: ApiException) -> float | None:
    """The seconds of the response's Retry-After header (kube-apiserver's API Priority and Fairness
    sends it with 429; RFC 9110 also allows an HTTP date, which the apiserver never sends)."""
    headers = exc.headers or {}
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except (TypeError, ValueError):
        return None


def map_api_exception(
    exc: BaseException,
    step_id: str | None,
    action: str,
    secrets: Iterable[str | None] = (),
) -> errors.WinNodesError:
    """The most specific product error for an exception raised by the kubernetes client."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        msg = f"{action}: HTTP {status} {exc.reason or ''}".rstrip() + (
            f": {detail}" if (detail := _body_message(exc, secrets)) else ""
        )
        if status in (401, 403):
            return errors.AuthenticationError(msg, step_id=step_id)
        if status == 404:
            return errors.NotFound(msg, step_id=step_id)
        if status == 409:
            return errors.Conflict(msg, step_id=step_id)
        if status in (400, 422) or (status == 500 and "failed to create typed patch" in msg):
            # kube-apiserver answers a server-side apply whose body does not fit the schema with
            # 500 "failed to create typed patch object": the request, not the server, is wrong.
            return errors.ConfigError(msg, step_id=step_id)
        if status == 429 or status >= 500:
            return errors.ApiUnavailable(
                msg, step_id=step_id, status=status, retry_after=retry_after(exc)
            )
        if status == 0:  # the client's own "no response" exception
            return errors.ConnectionLost(msg, step_id=step_id)
        return errors.PermanentError(msg, step_id=step_id)
    if isinstance(exc, urllib3.exceptions.SSLError):
        return errors.Conflict(
            f"{action}: the API server's TLS certificate is not trusted ({type(exc).__name__})",
            step_id=step_id,
        )
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(
        exc.reason, urllib3.exceptions.SSLError
    ):
        return errors.Conflict(
            f"{action}: the API server's TLS certificate is not trusted: {exc.reason}",
            step_id=step_id,
        )
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError)):
        return errors.ConnectionLost(
            f"{action}: the API server is unreachable ({type(exc).__name__}: "
            f"{errors.truncate(str(exc), 300)})",
            step_id=step_id,
        )
    if isinstance(exc, ConfigException):
        return errors.ConfigError(f"{action}: {exc}", step_id=step_id)
    return errors.PermanentError(f"{action}: {type(exc).__name__}: {exc}", step_id=step_id)


@contextlib.contextmanager
def boundary(
    step_id: str | None = None, action: str = "Kubernetes API call", secrets: Iterable[str] = ()
) -> Iterator[None]:
    """Map client exceptions raised inside the block; product errors pass through unchanged."""
    try:
        yield
    except errors.WinNodesError:
        raise
    except (
        ApiException,
        urllib3.exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
        OSError,
        ConfigException,
    ) as exc:
        raise map_api_exception(exc, step_id, action, list(secrets)) from exc


def client_from_kubeconfig(
    kubeconfig: Obj, context: str | None = None, proxy: str | None = None
) -> k8s.ApiClient:
    """An API client from a parsed kubeconfig. Certificates embedded as `*-data` are written by the
    client library to temporary files (its own mechanism); TLS is verified as the kubeconfig says.
    `proxy` ('host:port' or an http:// URL) overrides the cluster's `proxy-url`."""
    with boundary(action="load kubeconfig"):
        cfg = k8s.Configuration()
        k8s_config.load_kube_config_from_dict(
            config_dict=kubeconfig,
            context=context,
            client_configuration=cfg,
            persist_config=False,
        )
        if proxy:
            cfg.proxy = _proxy_url(proxy)
        cfg.retries = transport_retries()
        return k8s.ApiClient(cfg)


def transport_retries() -> urllib3.Retry:
    """What urllib3 may retry by itself: a connection that could not be made (nothing was sent),
    nothing else. By default it also retried GET/PUT/DELETE answered 429/503 with Retry-After, up
    to 3 times, sleeping Retry-After each time, then raised MaxRetryError without the header:
    the task's own retry (which honours Retry-After, `tasks.policy`) waited a second time and
    never saw the server's answer."""
    return urllib3.Retry(
        total=None,
        connect=2,
        read=0,
        redirect=0,
        status=0,
        other=0,
        respect_retry_after_header=False,
        raise_on_status=False,
    )


def _proxy_url(proxy: str) -> str:
    from winnodes.proxy import parse_proxy

    host, port = parse_proxy(proxy)
    return f"http://{host}:{port}"


def client_from_token(
    server: str,
    token: str,
    *,
    ca_cert_pem: str | None = None,
    verify_tls: bool = True,
    proxy: str | None = None,
) -> k8s.ApiClient:
    """An API client for `server` with a bearer token. With `ca_cert_pem` the server's certificate
    must chain to it; without, the system CA store is used. `verify_tls=False` only for labs."""
    cfg = k8s.Configuration()
    cfg.host = server.rstrip("/")
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    cfg.verify_ssl = verify_tls
    cfg.retries = transport_retries()
    if proxy:
        cfg.proxy = _proxy_url(proxy)
    if ca_cert_pem:
        with tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False) as fh:
            fh.write(ca_cert_pem)  # a CA certificate is public
            cfg.ssl_ca_cert = fh.name
    return k8s.ApiClient(cfg)
