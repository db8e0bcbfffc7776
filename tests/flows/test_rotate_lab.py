"""The rolling rotation (ROT1-ROT4), safe retention (G10) and M7's Windows check against the lab.

Real kube-apiserver + kube-controller-manager (disruption controller, garbage collector), the lab's
machine-api, WMCO and kubelet simulators, vcsim with Windows guest twins. Workload pods bound to the
Windows nodes are kept at three by a small stand-in for a ReplicaSet (the lab runs no ReplicaSet
controller) under a PodDisruptionBudget. An independent watch samples the Windows nodes throughout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch

from flows.machineset import machineset
from flows.rotate import rotate
from lab import scenario
from lab.pipeline import placement
from tests.flows.cluster_lab import (
    MAPI_NS,
    VC_BLOCK,
    WIN_BLOCK,
    Cluster,
    build_template,
    cluster_config,
    machineset_config,
    vcenter,
    windows_fingerprint,
)
from winnodes import errors
from winnodes.cluster.drain import DrainBlocked
from winnodes.model.config import PipelineConfig, Waits
from winnodes.plan.rotation import BASELINE_ANNOTATION, DELETE_MACHINE_ANNOTATION
from winnodes.vsphere import inventory

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
TAG = uuid.uuid4().hex[:4]
SERIES = f"j-rot{TAG}-tmpl"
SET = f"r{TAG}"
NS = f"web-{TAG}"
MACHINE = ("machine.openshift.io", "v1beta1", MAPI_NS, "machines")


def pipeline(env: dict[str, str], template: str, keep: int = 2, **rotation: Any) -> PipelineConfig:
    ms = machineset_config(env, SET, template, replicas=3)
    return PipelineConfig.model_validate(
        {
            "golden_image": {
                "vsphere_credentials_block": VC_BLOCK,
                "windows_access_block": WIN_BLOCK,
                "placement": placement(env),
                "names": {"template_series": SERIES},
                "keep_templates": keep,
            },
            "cluster": cluster_config(env).model_dump(),
            "machineset": ms.model_dump(),
            "waits": {"machineset_ready_seconds": 600},
            "rotation": {"drain_seconds": 120, "machine_deleted_seconds": 300, **rotation},
        }
    )


@pytest.fixture(scope="module")
def templates(env: dict[str, str], prepared: None, cluster: Cluster) -> Iterator[tuple[str, str]]:
    """Templates A then B of one series, built by hand with the provenance PRE-3 compares."""
    fp = windows_fingerprint()
    a = build_template(env, f"rot{TAG}", fingerprint=fp)
    b = build_template(env, f"rot{TAG}", fingerprint=fp)
    yield a, b
    cluster.delete_machineset(SET)
    with contextlib.suppress(Exception):
        cluster.core.delete_namespace(NS)


def machines(cluster: Cluster) -> list[dict[str, Any]]:
    res = cluster.custom.list_namespaced_custom_object(
        *MACHINE, label_selector=f"machine.openshift.io/cluster-api-machineset={SET}"
    )
    return list(res["items"])


def template_of(m: dict[str, Any]) -> str:
    return str(m["spec"]["providerSpec"]["value"]["template"])


class NodeSampler(threading.Thread):
    """Watches the set's Windows nodes and records, at every change, how many are Ready (and Ready
    and schedulable)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.nodes: dict[str, Any] = {}
        self.samples: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def _count(self) -> tuple[int, int]:
        ready = [
            n
            for name, n in self.nodes.items()
            if name.startswith(SET + "-")
            and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        ]
        return len(ready), sum(1 for n in ready if not n.spec.unschedulable)

    def run(self) -> None:
        listing = self.cluster.core.list_node(label_selector="kubernetes.io/os=windows")
        self.nodes = {n.metadata.name: n for n in listing.items}
        self.samples.append(self._count())
        rv = listing.metadata.resource_version
        while not self.stop.is_set():
            w = watch.Watch()
            for ev in w.stream(
                self.cluster.core.list_node,
                label_selector="kubernetes.io/os=windows",
                resource_version=rv,
                timeout_seconds=5,
            ):
                n = ev["object"]
                rv = n.metadata.resource_version
                if ev["type"] == "DELETED":
                    self.nodes.pop(n.metadata.name, None)
                else:
                    self.nodes[n.metadata.name] = n
                self.samples.append(self._count())

    def minimum(self) -> tuple[int, int]:
        return min(r for r, _ in self.samples), min(s for _, s in self.samples)


class Replicas(threading.Thread):
    """A stand-in for a ReplicaSet of three `web` pods, one per node of the set: a pod that goes
    away (evicted, then deleted by the lab's kubelet) is re-created on a Ready, schedulable node of
    the set that has none."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.created = 0

    def place(self) -> None:
        core = self.cluster.core
        pods = core.list_namespaced_pod(NS, label_selector="app=web").items
        used = {p.spec.node_name for p in pods if not p.metadata.deletion_timestamp}
        live = [p for p in pods if not p.metadata.deletion_timestamp]
        for n in core.list_node(label_selector="kubernetes.io/os=windows").items:
            if len(live) >= 3:
                return
            ready = any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            name = n.metadata.name
            if (
                name.startswith(SET + "-")
                and ready
                and not n.spec.unschedulable
                and name not in used
            ):
                body: Any = {
                    "metadata": {"generateName": "web-", "labels": {"app": "web"}},
                    "spec": {
                        "nodeName": name,
                        "containers": [
                            {
                                "name": "web",
                                "image": "mcr.microsoft.com/windows/servercore:ltsc2022",
                            }
                        ],
                    },
                }
                live.append(core.create_namespaced_pod(NS, body))
                used.add(name)
                self.created += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.place()
            w = watch.Watch()
            for ev in w.stream(self.cluster.core.list_namespaced_pod, NS, timeout_seconds=5):
                if ev["type"] == "DELETED":
                    self.place()
                if self.stop.is_set():
                    w.stop()


def wait_healthy(cluster: Cluster, n: int, timeout: float = 120) -> None:
    policy: Any = __import__("kubernetes").client.PolicyV1Api(cluster.api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w = watch.Watch()
        for ev in w.stream(policy.list_namespaced_pod_disruption_budget, NS, timeout_seconds=10):
            st = ev["object"].status
            if (
                st
                and st.current_healthy == n
                and st.observed_generation == ev["object"].metadata.generation
            ):
                w.stop()
                return
    raise AssertionError(f"PodDisruptionBudget web never saw {n} healthy pods")


@pytest.fixture(scope="module")
def fleet(
    env: dict[str, str], templates: tuple[str, str], cluster: Cluster
) -> Iterator[NodeSampler]:
    """The set on template A with 3 Ready nodes, 3 web pods under a PDB (minAvailable 2), and the
    sampler watching the nodes from then on."""
    a, _ = templates
    cfg = pipeline(env, a)
    machineset(
        cfg.cluster,
        cfg.machineset,
        waits=Waits(machineset_ready_seconds=600),
        vsphere_credentials_block=VC_BLOCK,
        windows_access_block=WIN_BLOCK,
    )
    cluster.core.create_namespace({"metadata": {"name": NS}})
    from kubernetes import client as k8s

    k8s.PolicyV1Api(cluster.api).create_namespaced_pod_disruption_budget(
        NS,
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
        },  # type: ignore[arg-type]
    )
    replicas = Replicas(cluster)
    replicas.start()
    wait_healthy(cluster, 3)
    sampler = NodeSampler(cluster)
    sampler.start()
    yield sampler
    sampler.stop.set()
    replicas.stop.set()


def test_rotation_moves_three_nodes_from_a_to_b_never_below_three_ready(
    env: dict[str, str], templates: tuple[str, str], cluster: Cluster, fleet: NodeSampler
) -> None:
    a, b = templates
    before = {m["metadata"]["name"] for m in machines(cluster)}
    assert len(before) == 3 and all(template_of(m) == a for m in machines(cluster))
    t0 = time.monotonic()
    result = rotate(pipeline(env, b), template=b)
    elapsed = time.monotonic() - t0

    after = machines(cluster)
    assert len(after) == 3 and {template_of(m) for m in after} == {b}
    assert not before & {m["metadata"]["name"] for m in after}, "A's Machines are gone"
    assert sorted(result.replaced) == sorted(before)
    assert f"kept {a} (one of the newest 2)" in result.retention  # retention ran after it
    ms = cluster.machineset(SET)
    assert ms is not None and ms["spec"]["replicas"] == 3
    assert BASELINE_ANNOTATION not in (ms["metadata"].get("annotations") or {})
    nodes = cluster.core.list_node(label_selector="kubernetes.io/os=windows").items
    ours = [n for n in nodes if n.metadata.name.startswith(SET + "-")]
    assert len(ours) == 3 and not any(n.spec.unschedulable for n in ours)
    ready_min, schedulable_min = fleet.minimum()
    assert len(fleet.samples) > 10
    assert ready_min >= 3 and schedulable_min >= 3, fleet.samples
    # `winnodes status` reads the same state: every machine on B, A used by nobody
    from deployments.status import status

    text = status(pipeline(env, b))
    assert f"{a}  build -" in text and "used by: not used" in text
    assert f"MachineSet {SET}" in text and "drift: none" in text and "nothing to rotate" in text
    print(
        f"\nMEASURE rotation of 3 nodes {elapsed:.1f}s; per node {result.seconds_per_node}; "
        f"{len(fleet.samples)} node samples, min Ready {ready_min}"
    )


def _run_in_subprocess(cfg: PipelineConfig, template: str) -> subprocess.Popen[bytes]:
    from prefect.settings import PREFECT_API_URL

    code = (
        "import sys; from flows.rotate import rotate; "
        "from winnodes.model.config import PipelineConfig; "
        "rotate(PipelineConfig.model_validate_json(sys.argv[1]), template=sys.argv[2])"
    )
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    return subprocess.Popen(
        [sys.executable, "-c", code, cfg.model_dump_json(), template],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_blocked_drain_deletes_nothing_then_kill_9_and_rerun_converge(
    env: dict[str, str], templates: tuple[str, str], cluster: Cluster, fleet: NodeSampler
) -> None:
    a, _ = templates
    from kubernetes import client as k8s

    policy: Any = k8s.PolicyV1Api(cluster.api)
    policy.patch_namespaced_pod_disruption_budget("web", NS, {"spec": {"minAvailable": 3}})
    with pytest.raises(DrainBlocked) as blocked:
        rotate(pipeline(env, a, drain_seconds=15), template=a)
    assert "PodDisruptionBudget" in str(blocked.value) or "disruption budget" in str(blocked.value)
    assert f"{NS}/web" in str(blocked.value)
    now = machines(cluster)
    assert len(now) == 4 and not any(m["metadata"].get("deletionTimestamp") for m in now)
    cordoned = [
        n.metadata.name
        for n in cluster.core.list_node(label_selector="kubernetes.io/os=windows").items
        if n.metadata.name.startswith(SET + "-") and n.spec.unschedulable
    ]
    assert len(cordoned) == 1

    policy.patch_namespaced_pod_disruption_budget("web", NS, {"spec": {"minAvailable": 2}})
    proc = _run_in_subprocess(pipeline(env, a), a)
    try:  # kill -9 the run as soon as it retires a Machine (between ROT4's mark and scale-down)
        w = watch.Watch()
        for ev in w.stream(
            cluster.custom.list_namespaced_custom_object, *MACHINE, timeout_seconds=300
        ):
            meta = ev["object"]["metadata"]
            if DELETE_MACHINE_ANNOTATION in (meta.get("annotations") or {}) or meta.get(
                "deletionTimestamp"
            ):
                os.killpg(proc.pid, signal.SIGKILL)
                w.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    result = rotate(pipeline(env, a), template=a)
    after = machines(cluster)
    assert len(after) == 3 and {template_of(m) for m in after} == {a}
    assert not any(m["metadata"].get("deletionTimestamp") for m in after)
    ms = cluster.machineset(SET)
    assert ms is not None and ms["spec"]["replicas"] == 3
    assert BASELINE_ANNOTATION not in (ms["metadata"].get("annotations") or {})
    ready_min, schedulable_min = fleet.minimum()
    assert ready_min >= 3 and schedulable_min >= 3, fleet.samples
    assert "kept" in result.retention


def test_retention_keeps_a_template_a_machine_still_runs(
    env: dict[str, str], templates: tuple[str, str], cluster: Cluster
) -> None:
    """Series: A (the Machines run it), B, then C (newest). keep_templates 1: C is the newest, A is
    referenced, only B goes. Checked with pyvmomi directly."""
    from tasks.vsphere import g10_retention

    a, b = templates
    assert {template_of(m) for m in machines(cluster)} == {a}
    site = scenario.Site.from_env(env)
    c = f"{SERIES}-c{TAG}"
    with scenario.connect(site) as si:
        scenario.clone(si, site, scenario.vm_by_name(si, site, b), c, template=True)
    cfg = pipeline(env, a, keep=1)
    result = g10_retention(cfg.golden_image, None, cfg.cluster.openshift_block)
    assert result.deleted == [b]
    kept = dict(result.kept)
    assert "referenced by" in kept[a] and f"Machine {SET}-" in kept[a]
    assert "newest" in kept[c]
    with vcenter(env) as session:
        assert inventory.vm(session, a).obj is not None
        with pytest.raises(errors.NotFound):
            inventory.vm(session, b)
    # without cluster access nothing is deleted
    unknown = g10_retention(cfg.golden_image, None, None)
    assert unknown.deleted == [] and "unknown" in dict(unknown.kept)[a]


def test_m7_refuses_the_rhcos_template_before_any_write(
    env: dict[str, str], templates: tuple[str, str], cluster: Cluster
) -> None:
    name = f"x{TAG}"
    rhcos = f"{env['LAB_INFRASTRUCTURE_ID']}-rhcos"
    ms = machineset_config(env, name, rhcos)
    with pytest.raises(errors.ValidationError) as refused:
        machineset(
            cluster_config(env),
            ms,
            vsphere_credentials_block=VC_BLOCK,
            windows_access_block=WIN_BLOCK,
        )
    assert "not a Windows template" in str(refused.value) and "(M7)" in str(refused.value)
    assert cluster.machineset(name) is None
    # a template without winnodes provenance: refused only when asked to
    a, _ = templates
    strict = machineset_config(env, name, a, require_provenance=True)
    with pytest.raises(errors.ValidationError, match="no winnodes provenance"):
        machineset(
            cluster_config(env),
            strict,
            vsphere_credentials_block=VC_BLOCK,
            windows_access_block=WIN_BLOCK,
        )
    assert cluster.machineset(name) is None


def test_parent_flow_runs_the_rotation_part(
    env: dict[str, str],
    templates: tuple[str, str],
    cluster: Cluster,
    fleet: NodeSampler,
    tmp_path: Path,
) -> None:
    """`windows-nodes` with only="rotate" (the `rotate` deployment): the set already runs A, so
    the rotation replaces nothing, reports that and still runs retention."""
    from prefect.filesystems import LocalFileSystem

    from flows.windows_nodes import RESULT_STORAGE, windows_nodes

    a, _ = templates
    LocalFileSystem(basepath=str(tmp_path)).save(RESULT_STORAGE.split("/")[1], overwrite=True)
    result = windows_nodes(pipeline(env, a), only="rotate")
    assert result["only"] == "rotate"
    assert result["rotation"].startswith(f"0 machine(s) replaced, all on {a}")
    assert {template_of(m) for m in machines(cluster)} == {a} and len(machines(cluster)) == 3
