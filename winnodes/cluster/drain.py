"""ROT3: cordon a node and drain it through the eviction API, respecting PodDisruptionBudgets.

As `kubectl drain` does: mark the node unschedulable, then ask the API server to evict every pod on
it except DaemonSet pods (their controller would put them back) and mirror pods (the kubelet owns
them). The API server refuses an eviction with 429 while a PodDisruptionBudget allows no disruption;
such pods are asked again whenever a PDB or a pod changes (watches, no polling), until the deadline.
Past it, `DrainBlocked` says which pods remain and which budgets hold them; nothing is deleted and
the node stays cordoned, so a re-run continues with the same node.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from winnodes import errors
from winnodes.cluster.api import Obj, boundary
from winnodes.cluster.wait import Feed, Watches

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(frozen=True)
class DrainResult:
    node: str
    evicted: list[str]
    skipped: list[str]
    seconds: float
    blocked_retries: int = 0

    def evidence(self) -> str:
        skipped = f"; left {', '.join(self.skipped)} (DaemonSet/mirror)" if self.skipped else ""
        waits = (
            f"; {self.blocked_retries} eviction(s) refused by a PodDisruptionBudget first"
            if self.blocked_retries
            else ""
        )
        return (
            f"node {self.node} cordoned and drained in {self.seconds:.1f}s: evicted "
            f"{len(self.evicted)} pod(s) ({', '.join(self.evicted) or '-'}){waits}{skipped}"
        )


class DrainBlocked(errors.WaitTimeout):
    """The drain did not finish by its deadline; `remaining` and `budgets` say why."""

    def __init__(self, message: str, remaining: list[str], budgets: list[str]) -> None:
        super().__init__(message, step_id="ROT3")
        self.remaining = remaining
        self.budgets = budgets


def _pod_key(p: Obj) -> str:
    return f"{p['metadata'].get('namespace')}/{p['metadata']['name']}"


def is_evictable(pod: Obj) -> bool:
    """Not a DaemonSet pod, not a mirror pod, not finished (those are simply deleted by GC)."""
    meta = pod.get("metadata") or {}
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return False
    return not any(r.get("kind") == "DaemonSet" for r in meta.get("ownerReferences") or [])


def _budget_text(pdb: Obj) -> str:
    spec, st = pdb.get("spec") or {}, pdb.get("status") or {}
    limit = (
        f"minAvailable {spec['minAvailable']}"
        if "minAvailable" in spec
        else f"maxUnavailable {spec.get('maxUnavailable')}"
    )
    return (
        f"{pdb['metadata'].get('namespace')}/{pdb['metadata']['name']} ({limit}: healthy "
        f"{st.get('currentHealthy', '?')}, desired {st.get('desiredHealthy', '?')}, disruptions "
        f"allowed {st.get('disruptionsAllowed', '?')})"
    )


def cordon(api: k8s.ApiClient, node: str) -> bool:
    """Mark the node unschedulable; True when this call changed it."""
    core = k8s.CoreV1Api(api)
    with boundary("ROT3", f"cordon node {node}"):
        current: Any = core.read_node(node)
        if current.spec and current.spec.unschedulable:
            return False
        core.patch_node(node, {"spec": {"unschedulable": True}}, field_manager="winnodes")
    return True


@dataclass
class _Drain:
    api: k8s.ApiClient
    node: str
    pods: dict[str, Obj] = field(default_factory=dict)
    budgets: dict[str, Obj] = field(default_factory=dict)
    asked: set[str] = field(default_factory=set)  # evictions the API server accepted
    refused: dict[str, str] = field(default_factory=dict)  # pod -> last 429 message
    retries: int = 0

    def evict(self, key: str) -> None:
        ns, name = key.split("/", 1)
        body: Any = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns},
        }
        try:
            k8s.CoreV1Api(self.api).create_namespaced_pod_eviction(name, ns, body)
        except ApiException as exc:
            if exc.status == 404:
                self.pods.pop(key, None)
                return
            if exc.status == 429:
                if key in self.refused:
                    self.retries += 1
                msg = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body or "")
                with contextlib.suppress(ValueError):
                    msg = json.loads(msg).get("message", msg)
                self.refused[key] = errors.truncate(msg, 300)
                return
            raise
        self.asked.add(key)
        self.refused.pop(key, None)

    def pending(self) -> list[str]:
        return sorted(k for k, p in self.pods.items() if is_evictable(p))


def drain(api: k8s.ApiClient, node: str, timeout: float) -> DrainResult:
    """Cordon `node` and evict its pods (PDBs respected) until none is left, or DrainBlocked."""
    cordon(api, node)
    core, policy = k8s.CoreV1Api(api), k8s.PolicyV1Api(api)
    feeds: list[Feed] = [
        (core.list_pod_for_all_namespaces, "pod", {"field_selector": f"spec.nodeName={node}"}),
        (policy.list_pod_disruption_budget_for_all_namespaces, "pdb", {}),
    ]
    d = _Drain(api, node)
    t0 = time.monotonic()
    listed: set[str] = set()
    skipped: set[str] = set()
    evicted: set[str] = set()
    with Watches(feeds, "rot3") as watches:
        for op, kind, payload in watches.events(
            t0 + timeout,
            lambda: _blocked(d, node, timeout),
            "ROT3",
            lambda kind: f"watch {kind}s while draining {node}",
        ):
            target = d.pods if kind == "pod" else d.budgets
            items = payload if op == "list" else [payload]
            if op == "list":
                target.clear()
                listed.add(kind)
            for o in items:
                if op == "DELETED":
                    target.pop(_pod_key(o), None)
                else:
                    target[_pod_key(o)] = o
            if len(listed) < len(feeds):
                continue
            skipped |= {k for k, p in d.pods.items() if not is_evictable(p)}
            pending = d.pending()
            if not pending:
                return DrainResult(
                    node, sorted(evicted), sorted(skipped), time.monotonic() - t0, d.retries
                )
            with boundary("ROT3", f"evict pods from {node}"):
                for key in pending:
                    if key not in d.asked:
                        d.evict(key)
                        if key in d.asked:
                            evicted.add(key)
    raise AssertionError("the events never end")  # pragma: no cover


def _blocked(d: _Drain, node: str, timeout: float) -> DrainBlocked:
    remaining = d.pending()
    namespaces = {k.split("/", 1)[0] for k in remaining}
    budgets = [
        _budget_text(b) for b in d.budgets.values() if b["metadata"].get("namespace") in namespaces
    ]
    lines = [
        f"node {node} not drained within {timeout:.0f}s (ROT3): {len(remaining)} pod(s) remain; "
        "nothing was deleted, the node stays cordoned and a re-run continues with it"
    ]
    for key in remaining:
        why = d.refused.get(key) or (
            "eviction accepted, pod still terminating" if key in d.asked else "not yet evicted"
        )
        lines.append(f"pod {key}: {why}")
    lines += [f"budget {b}" for b in budgets]
    return DrainBlocked("\n".join(lines), remaining, budgets)
