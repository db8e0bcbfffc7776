"""The lab runs kube-controller-manager (same Kubernetes release as its API server), so the cluster
does what a cluster does: deleting a MachineSet garbage-collects its Machines (owner references),
PodDisruptionBudgets get a status and the eviction API enforces them, and the lab's kubelet runs and
terminates pods bound to Windows nodes. Each test fails on the lab without these parts."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client import ApiException

from lab.controllers.common import kube_client
from lab.controllers.kubelet import WMCO_VERSION_ANNOTATION, running_status, wants

pytestmark = pytest.mark.lab
MAPI = ("machine.openshift.io", "v1beta1", "openshift-machine-api")


@pytest.fixture(scope="module")
def api(lab_env: dict[str, str]) -> k8s.ApiClient:
    if "kubelet" not in lab_env.get("LAB_CONTROLLERS", ""):
        pytest.skip("needs the lab's controllers component")
    return kube_client(lab_env)


def wait_for(
    what: str, check: Callable[[], bool], list_fn: Any, timeout: float = 60, **kw: Any
) -> None:
    """Watch `list_fn` until `check()` holds (re-evaluated on every event), or fail."""
    deadline = time.monotonic() + timeout
    if check():
        return
    while time.monotonic() < deadline:
        w = watch.Watch()
        for _ in w.stream(list_fn, timeout_seconds=max(1, int(deadline - time.monotonic())), **kw):
            if check():
                w.stop()
                return
    assert check(), f"{what} not seen within {timeout:.0f}s"


def test_deleting_a_machineset_garbage_collects_its_machines(api: k8s.ApiClient) -> None:
    custom: Any = k8s.CustomObjectsApi(api)
    name = f"gc{uuid.uuid4().hex[:5]}"
    labels = {"machine.openshift.io/cluster-api-machineset": name}
    body = {
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "MachineSet",
        "metadata": {"name": name, "namespace": MAPI[2]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"providerSpec": {"value": {"template": "no-such-template"}}},
            },
        },
    }
    custom.create_namespaced_custom_object(*MAPI, "machinesets", body)

    def machines() -> list[Any]:
        res = custom.list_namespaced_custom_object(
            *MAPI, "machines", label_selector=f"machine.openshift.io/cluster-api-machineset={name}"
        )
        return list(res["items"])

    wait_for(
        "the set's Machine",
        lambda: len(machines()) == 1,
        custom.list_namespaced_custom_object,
        group=MAPI[0],
        version=MAPI[1],
        namespace=MAPI[2],
        plural="machines",
    )
    (machine,) = machines()
    assert machine["metadata"]["ownerReferences"][0]["name"] == name
    custom.delete_namespaced_custom_object(*MAPI, "machinesets", name)
    wait_for(
        "the Machine garbage-collected",
        lambda: not machines(),
        custom.list_namespaced_custom_object,
        group=MAPI[0],
        version=MAPI[1],
        namespace=MAPI[2],
        plural="machines",
    )


@pytest.fixture
def namespace(api: k8s.ApiClient) -> Iterator[str]:
    core: Any = k8s.CoreV1Api(api)
    ns = f"pdb-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": ns}})
    yield ns
    core.delete_namespace(ns)


@pytest.fixture
def windows_node(api: k8s.ApiClient) -> Iterator[str]:
    """A Ready Windows Node as the lab's WMCO writes it (no VM needed for the pod lifecycle)."""
    core: Any = k8s.CoreV1Api(api)
    name = f"win-{uuid.uuid4().hex[:5]}"
    core.create_node(
        {
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/os": "windows"},
                "annotations": {WMCO_VERSION_ANNOTATION: "test"},
            }
        }
    )
    core.patch_node_status(
        name,
        {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}},
    )
    yield name
    with contextlib.suppress(ApiException):
        core.delete_node(name)


def pod(name: str, node: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "web", "image": "mcr.microsoft.com/windows/servercore:ltsc2022"}]
    }
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}


def test_pdb_status_is_computed_and_evictions_respect_it(
    api: k8s.ApiClient, namespace: str, windows_node: str
) -> None:
    core: Any = k8s.CoreV1Api(api)
    policy: Any = k8s.PolicyV1Api(api)
    for i in range(2):
        core.create_namespaced_pod(namespace, pod(f"web-{i}", windows_node))
    policy.create_namespaced_pod_disruption_budget(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        },
    )

    def status() -> dict[str, Any]:
        pdb: Any = policy.read_namespaced_pod_disruption_budget("web", namespace)
        return api.sanitize_for_serialization(pdb.status) or {}

    # the lab's kubelet runs the pods; the disruption controller counts them healthy
    wait_for(
        "PDB status with 2 healthy pods",
        lambda: status().get("currentHealthy") == 2 and status().get("disruptionsAllowed") == 1,
        policy.list_namespaced_pod_disruption_budget,
        namespace=namespace,
    )
    evict: Any = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "web-0", "namespace": namespace},
    }
    core.create_namespaced_pod_eviction("web-0", namespace, evict)
    # the kubelet confirms the termination: the pod object goes away
    wait_for(
        "evicted pod deleted",
        lambda: [p.metadata.name for p in core.list_namespaced_pod(namespace).items] == ["web-1"],
        core.list_namespaced_pod,
        namespace=namespace,
    )
    wait_for(
        "PDB allows no more disruption",
        lambda: status().get("disruptionsAllowed") == 0,
        policy.list_namespaced_pod_disruption_budget,
        namespace=namespace,
    )
    evict["metadata"]["name"] = "web-1"
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction("web-1", namespace, evict)
    assert refused.value.status == 429


def test_kubelet_acts_only_for_ready_windows_nodes_wmco_configured() -> None:
    node = {
        "metadata": {
            "labels": {"kubernetes.io/os": "windows"},
            "annotations": {WMCO_VERSION_ANNOTATION: "1"},
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    p = pod("a", "n")
    assert wants(p, node) == "run"
    assert wants(p, None) is None
    assert (
        wants(p, {**node, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
        is None
    )
    assert wants(p, {**node, "metadata": {"labels": {"kubernetes.io/os": "linux"}}}) is None
    assert wants({**p, "metadata": {"name": "a", "deletionTimestamp": "x"}}, node) == "delete"
    assert wants({**p, "status": {"phase": "Running"}}, node) is None
    st = running_status(p)
    assert st["phase"] == "Running" and {c["type"] for c in st["conditions"]} >= {"Ready"}
