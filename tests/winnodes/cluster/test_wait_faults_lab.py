"""The cluster adapter's watches (winnodes.cluster.wait.Watches, used by V1, ROT3 and ROT4) under
the Kubernetes API's own faults, injected by lab.kubefaults in front of a private lab's real
kube-apiserver: a watch the server ends is resumed without losing or replaying events, 410 Gone
lists again, a 4xx other than 429 fails at once, and a stream that keeps failing gives up with a
product error (never a raw client exception)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from lab import cli
from lab.kubefaults import KubeFaultProxy, KubeFaultsControl, running
from winnodes import errors
from winnodes.cluster import wait

pytestmark = pytest.mark.lab
NS = "default"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with cli.private_lab(tmp_path_factory.mktemp("waitfaults") / "lab", ["kube"]) as ctx:
        yield dict(ctx.env)


@pytest.fixture(scope="module")
def proxy(lab: dict[str, str]) -> Iterator[KubeFaultProxy]:
    with running(lab) as p:
        yield p


@pytest.fixture
def control(proxy: KubeFaultProxy) -> Iterator[KubeFaultsControl]:
    c = KubeFaultsControl(proxy.control_url)
    c.clear()
    c.reset_stats()
    yield c
    c.clear()


@pytest.fixture
def api(proxy: KubeFaultProxy) -> Iterator[Any]:
    a = k8s_config.new_client_from_config(config_file=str(proxy.kubeconfig))
    yield a
    a.close()


@pytest.fixture
def direct(lab: dict[str, str]) -> Iterator[Any]:
    a = k8s_config.new_client_from_config(config_file=lab["KUBECONFIG"])
    yield k8s.CoreV1Api(a)
    a.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wait, "MAX_BACKOFF", 0.05, raising=False)


def _feed(api: Any, label: str) -> wait.Feed:
    return (
        k8s.CoreV1Api(api).list_namespaced_config_map,
        "cm",
        {"namespace": NS, "label_selector": label},
    )


def _cm(name: str, label: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"t": label}}}


def _seen(watches: wait.Watches, want: set[str], what: str) -> list[tuple[str, str]]:
    """(op, name) until every name in `want` was seen; lists give ("list", name) per item."""
    got: list[tuple[str, str]] = []
    names: set[str] = set()
    events = watches.events(
        time.monotonic() + 60, lambda: AssertionError(f"{what}: {got}"), "V1", str
    )
    for op, _kind, payload in events:
        items = payload if op == "list" else [payload]
        for o in items:
            got.append((op, o["metadata"]["name"]))
            names.add(o["metadata"]["name"])
        if want <= names:
            return got
    raise AssertionError("unreachable")


def test_closed_watches_resume_without_loss_or_replay(
    control: KubeFaultsControl, api: Any, direct: Any
) -> None:
    label = uuid.uuid4().hex[:8]
    control.add_rule("watch", "configmaps", "watch-close", times=0, after=1)  # every watch
    names = [f"a{i}-{label}" for i in range(4)]
    with wait.Watches([_feed(api, f"t={label}")], "t") as watches:
        assert _seen(watches, set(), "first list") == []  # the (empty) list came first
        for n in names:
            direct.create_namespaced_config_map(NS, _cm(n, label))
        got = _seen(watches, set(names), "events")
    assert got == [("ADDED", n) for n in names]  # each once, in order: nothing lost or replayed
    assert control.rules()[0]["hits"] >= 3
    assert control.stats().get("list configmaps") == 1  # resumed, never listed again
    for n in names:
        direct.delete_namespaced_config_map(n, NS)


def test_gone_lists_again_then_watches(control: KubeFaultsControl, api: Any, direct: Any) -> None:
    label = uuid.uuid4().hex[:8]
    control.add_rule("watch", "configmaps", "gone", times=2)
    with wait.Watches([_feed(api, f"t={label}")], "t") as watches:
        _seen(watches, set(), "first list")
        while control.rules()[0]["hits"] < 2:
            time.sleep(0.05)
        direct.create_namespaced_config_map(NS, _cm(f"g-{label}", label))
        got = _seen(watches, {f"g-{label}"}, "after 410")
    assert got[-1][1] == f"g-{label}"
    assert control.stats()["list configmaps"] == 3  # one list per 410
    direct.delete_namespaced_config_map(f"g-{label}", NS)


def test_a_watch_that_keeps_expiring_gives_up_with_a_product_error(
    control: KubeFaultsControl, api: Any
) -> None:
    control.add_rule("watch", "configmaps", "gone", times=0)
    with (
        wait.Watches([_feed(api, "t=none")], "t") as watches,
        pytest.raises(errors.WinNodesError) as err,
    ):
        _seen(watches, {"never"}, "410 forever")
    assert err.value.step_id == "V1"


def test_a_4xx_other_than_429_fails_at_once(control: KubeFaultsControl, api: Any) -> None:
    feed: wait.Feed = (
        k8s.CustomObjectsApi(api).list_namespaced_custom_object,
        "thing",
        {
            "group": "machine.openshift.io",
            "version": "v1beta1",
            "namespace": NS,
            "plural": "nosuch",
        },
    )
    with wait.Watches([feed], "t") as watches, pytest.raises(errors.NotFound):
        _seen(watches, {"never"}, "404")
    assert control.stats() == {"list nosuch": 1}  # not retried


def test_transient_faults_are_retried_then_the_stream_goes_on(
    control: KubeFaultsControl, api: Any, direct: Any
) -> None:
    label = uuid.uuid4().hex[:8]
    control.add_rule("list", "configmaps", "429", times=1, retry_after=1)
    control.add_rule("watch", "configmaps", "503", times=1)
    control.add_rule("watch", "configmaps", "reset", times=1)
    with wait.Watches([_feed(api, f"t={label}")], "t") as watches:
        _seen(watches, set(), "first list")
        while sum(r["hits"] for r in control.rules()) < 3:  # every fault was met first
            time.sleep(0.05)
        direct.create_namespaced_config_map(NS, _cm(f"t-{label}", label))
        got = _seen(watches, {f"t-{label}"}, "after faults")
    assert got[-1][1] == f"t-{label}"
    assert [r["hits"] for r in control.rules()] == [1, 1, 1]
    direct.delete_namespaced_config_map(f"t-{label}", NS)


def test_an_optional_stream_that_gives_up_does_not_fail_the_wait(
    control: KubeFaultsControl, api: Any, direct: Any
) -> None:
    """V1's Event stream only explains a wait: when it gives up, the wait goes on without it."""
    label = uuid.uuid4().hex[:8]
    control.add_rule("watch", "events", "503", times=0)
    events_feed: wait.Feed = (
        k8s.CoreV1Api(api).list_namespaced_event,
        "event",
        {"namespace": NS},
    )
    with wait.Watches([_feed(api, f"t={label}"), events_feed], "t", frozenset({"event"})) as w:
        ops: list[tuple[str, str]] = []
        for op, kind, payload in w.events(time.monotonic() + 60, AssertionError, "V1", str):
            ops.append((op, kind))
            if op == "lost":
                direct.create_namespaced_config_map(NS, _cm(f"o-{label}", label))
            if op == "ADDED" and payload["metadata"]["name"] == f"o-{label}":
                break
    assert ("lost", "event") in ops and ops[-1] == ("ADDED", "cm")
    assert isinstance(w.lost["event"], Exception)
    direct.delete_namespaced_config_map(f"o-{label}", NS)
