"""The Kubernetes fault proxy (lab.kubefaults): request attributes as kube-apiserver derives them,
rules and counts, and, against a private lab's real kube-apiserver, that it forwards verbatim over
verified TLS, streams watches event by event, and injects each fault the way the real server sends
it (the 410 of a too-old watch is compared with the real apiserver's own answer)."""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from kubernetes.client import ApiException
from kubernetes.watch.watch import iter_resp_lines

from lab import cli
from lab.kubefaults import (
    KubeFaultProxy,
    KubeFaultsControl,
    Rule,
    gone_event,
    request_info,
    running,
)

NS = "default"


# ----------------------------------------------------------------------------- no lab needed
@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("GET", "/api/v1/namespaces/default/secrets/s1", ("get", "secrets", "", "default", "s1")),
        ("GET", "/api/v1/namespaces/default/secrets", ("list", "secrets", "", "default", "")),
        ("GET", "/api/v1/nodes?watch=true&resourceVersion=5", ("watch", "nodes", "", "", "")),
        ("GET", "/api/v1/watch/nodes", ("watch", "nodes", "", "", "")),
        ("GET", "/api/v1/namespaces/kube-system", ("get", "namespaces", "", "", "kube-system")),
        (
            "PATCH",
            "/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machinesets/w1",
            ("patch", "machinesets", "", "openshift-machine-api", "w1"),
        ),
        (
            "PUT",
            "/apis/machine.openshift.io/v1beta1/namespaces/m/machinesets/w1/status",
            ("update", "machinesets", "status", "m", "w1"),
        ),
        ("POST", "/api/v1/namespaces/x/configmaps", ("create", "configmaps", "", "x", "")),
        ("DELETE", "/api/v1/namespaces/x/configmaps/c", ("delete", "configmaps", "", "x", "c")),
        (
            "DELETE",
            "/api/v1/namespaces/x/configmaps",
            ("deletecollection", "configmaps", "", "x", ""),
        ),
        ("GET", "/apis/config.openshift.io/v1", ("get", "", "", "", "")),
        ("GET", "/version", ("get", "", "", "", "")),
    ],
)
def test_request_info_as_the_apiserver_derives_it(
    method: str, target: str, expected: tuple[str, ...]
) -> None:
    info = request_info(method, target)
    got = (info.verb, info.resource, info.subresource, info.name)
    assert got == (expected[0], expected[1], expected[2], expected[4])
    if expected[3]:
        assert info.namespace == expected[3]


def test_rules_select_and_count() -> None:
    watch = request_info("GET", "/api/v1/nodes?watch=1&resourceVersion=7")
    fresh = request_info("GET", "/api/v1/nodes?watch=1")
    assert Rule(verb="watch", resource="nodes", fault="gone").matches(watch)
    assert not Rule(verb="watch", resource="nodes", fault="gone").matches(fresh)
    assert not Rule(verb="list", resource="nodes", fault="503").matches(watch)
    assert Rule(resource="nodes", fault="503", name="").matches(watch)
    secret = request_info("GET", "/api/v1/namespaces/a/secrets/k")
    assert Rule(verb="get", resource="secrets", namespace="a", name="k").matches(secret)
    assert not Rule(verb="get", resource="secrets", namespace="b").matches(secret)
    with pytest.raises(ValueError):
        Rule(verb="list", fault="watch-close")
    with pytest.raises(ValueError):
        Rule(fault="418")


def test_gone_event_is_the_watch_caches_status() -> None:
    event = json.loads(gone_event("123"))
    assert event == {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "too old resource version: 123 (124)",
            "reason": "Expired",
            "code": 410,
        },
    }


# ------------------------------------------------------------------------------ against the lab
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with cli.private_lab(tmp_path_factory.mktemp("kubefaults") / "lab", ["kube"]) as ctx:
        yield dict(ctx.env)


@pytest.fixture(scope="module")
def proxy(lab: dict[str, str]) -> Iterator[KubeFaultProxy]:
    with running(lab) as p:
        yield p


@pytest.fixture
def control(proxy: KubeFaultProxy) -> Iterator[KubeFaultsControl]:
    c = KubeFaultsControl(proxy.control_url)
    c.clear()
    yield c
    c.clear()


def _api(kubeconfig: str) -> Any:
    return k8s_config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture
def core(proxy: KubeFaultProxy) -> Iterator[Any]:
    assert proxy.kubeconfig is not None
    api = _api(str(proxy.kubeconfig))
    yield k8s.CoreV1Api(api)
    api.close()


@pytest.fixture
def direct(lab: dict[str, str]) -> Iterator[Any]:
    api = _api(lab["KUBECONFIG"])
    yield k8s.CoreV1Api(api)
    api.close()


def _cm(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {"k": "v"}}


@pytest.mark.lab
def test_forwards_over_verified_tls_and_counts(
    lab: dict[str, str], proxy: KubeFaultProxy, control: KubeFaultsControl, core: Any
) -> None:
    control.reset_stats()
    names = {n.metadata.name for n in core.list_namespace().items}
    assert "openshift-machine-api" in names
    name = f"f-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_config_map(NS, _cm(name))
    assert core.read_namespaced_config_map(name, NS).data == {"k": "v"}
    core.delete_namespaced_config_map(name, NS)
    assert control.stats() == {
        "list namespaces": 1,
        "create configmaps": 1,
        "get configmaps": 1,
        "delete configmaps": 1,
    }
    # The proxy's certificate chains to the lab's serving CA only: another CA is refused.
    other = ssl.create_default_context()
    with pytest.raises(ssl.SSLError):
        host, port = proxy.url.removeprefix("https://").split(":")
        import socket

        with socket.create_connection((host, int(port)), timeout=5) as s:
            other.wrap_socket(s, server_hostname=host)


@pytest.mark.lab
@pytest.mark.parametrize("fault", ["429", "500", "503"])
def test_status_faults_once_then_through(fault: str, control: KubeFaultsControl, core: Any) -> None:
    # POST: urllib3 never retries it by itself, so the client sees the fault as the server sent it
    control.add_rule("create", "configmaps", fault, times=1, retry_after=3)
    name = f"s-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(NS, _cm(name))
    exc: Any = err.value
    assert exc.status == int(fault)
    if fault == "429":  # APF: Retry-After and net/http's plain-text error
        assert exc.headers["Retry-After"] == "3"
        assert exc.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert exc.body in (
            b"Too many requests, please try again later.\n",
            "Too many requests, please try again later.\n",
        )
    else:
        status = json.loads(exc.body)
        assert (status["kind"], status["code"], status["status"]) == (
            "Status",
            int(fault),
            "Failure",
        )
        assert status["reason"] == {"500": "InternalError", "503": "ServiceUnavailable"}[fault]
    core.create_namespaced_config_map(NS, _cm(name))  # once: the next call goes through
    core.delete_namespaced_config_map(name, NS)
    (rule,) = control.rules()
    assert (rule["hits"], rule["seen"]) == (1, 2)


@pytest.mark.lab
def test_the_client_itself_retries_a_get_after_429_retry_after(
    control: KubeFaultsControl, core: Any
) -> None:
    """urllib3 (under the kubernetes client) retries idempotent requests answered 429/503 with
    Retry-After, sleeping that long, up to 3 times: a GET sees one 429 only as a delay."""
    control.add_rule("list", "configmaps", "429", times=1, retry_after=1)
    core.list_namespaced_config_map(NS)
    (rule,) = control.rules()
    assert (rule["hits"], rule["seen"]) == (1, 2)


@pytest.mark.lab
def test_times_and_always(control: KubeFaultsControl, core: Any) -> None:
    control.add_rule("get", "namespaces", "503", times=3)
    for _ in range(3):
        with pytest.raises(ApiException):
            core.read_namespace("default")
    core.read_namespace("default")
    control.clear()
    control.add_rule("get", "namespaces", "500", times=0, name="default")
    for _ in range(4):
        with pytest.raises(ApiException):
            core.read_namespace("default")
    core.read_namespace("kube-system")  # another name: not selected
    assert control.rules()[0]["hits"] == 4


@pytest.mark.lab
def test_reset_closes_without_a_response(control: KubeFaultsControl, core: Any) -> None:
    control.add_rule("create", "configmaps", "reset", times=1)
    name = f"r-{uuid.uuid4().hex[:6]}"
    with pytest.raises(urllib3.exceptions.HTTPError) as err:
        core.create_namespaced_config_map(NS, _cm(name))
    assert "Connection" in repr(err.value) or "reset" in repr(err.value).lower()
    core.create_namespaced_config_map(NS, _cm(name))  # nothing was forwarded: no 409
    core.delete_namespaced_config_map(name, NS)


def _watch(core: Any, rv: str, timeout: int = 20) -> Any:
    return core.list_namespaced_config_map(
        NS, watch=True, resource_version=rv, timeout_seconds=timeout, _preload_content=False
    )


@pytest.mark.lab
def test_watch_streams_events_as_they_happen(
    control: KubeFaultsControl, core: Any, direct: Any
) -> None:
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    resp = _watch(core, rv)
    lines = iter_resp_lines(resp)
    name = f"w-{uuid.uuid4().hex[:6]}"
    # The event arrives while the watch is still open (not buffered until it ends): the object is
    # created only after the watch started, and the watch is closed by us after reading it.
    threading.Timer(0.5, lambda: direct.create_namespaced_config_map(NS, _cm(name))).start()
    event = json.loads(next(lines))
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", name)
    resp.close()
    direct.delete_namespaced_config_map(name, NS)


@pytest.mark.lab
def test_watch_close_after_n_events(control: KubeFaultsControl, core: Any, direct: Any) -> None:
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    names = [f"c-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    for n in names:
        direct.create_namespaced_config_map(NS, _cm(n))
    control.add_rule("watch", "configmaps", "watch-close", after=2)
    events = [json.loads(line) for line in iter_resp_lines(_watch(core, rv)) if line]
    assert [e["object"]["metadata"]["name"] for e in events] == names[:2]  # then a clean end
    # resumed from the last resourceVersion seen: the third, nothing replayed
    last = events[-1]["object"]["metadata"]["resourceVersion"]
    resp = _watch(core, last, timeout=1)
    rest = [
        json.loads(line)["object"]["metadata"]["name"] for line in iter_resp_lines(resp) if line
    ]
    assert rest == names[2:]
    for n in names:
        direct.delete_namespaced_config_map(n, NS)


@pytest.mark.lab
def test_gone_is_the_watch_caches_error_event(control: KubeFaultsControl, core: Any) -> None:
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    control.add_rule("watch", "configmaps", "gone")
    resp = _watch(core, rv)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    injected = [json.loads(line) for line in iter_resp_lines(resp) if line]  # then it ends
    assert injected == [json.loads(gone_event(rv))]
    # the kubernetes client's own Watch reads it as 410 (and would retry once without a timeout)
    control.add_rule("watch", "configmaps", "gone")
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=5
        ):
            pass
    assert err.value.status == 410 and "too old resource version" in str(err.value.reason)
    # a fresh watch (no resourceVersion) is never "too old"
    control.add_rule("watch", "configmaps", "gone", times=0)
    resp = core.list_namespaced_config_map(
        NS, watch=True, timeout_seconds=1, _preload_content=False
    )
    assert all(json.loads(x)["type"] != "ERROR" for x in iter_resp_lines(resp) if x)
