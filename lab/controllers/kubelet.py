"""The lab's kubelet, reduced to what a drain needs: the pod lifecycle on Windows nodes.

The lab has no kubelet: WMCO's simulator writes each Windows Node and its Ready condition. Without a
kubelet, a pod bound to a node stays Pending forever (so the disruption controller never counts it
healthy) and an evicted pod is never removed (eviction only sets its deletionTimestamp; a real
kubelet stops the containers and then deletes the pod object with grace period 0). This controller
plays exactly that part for pods bound to a Ready Windows node the lab's WMCO configured:

- a bound pod that is not Running becomes Running with the conditions a kubelet reports
  (PodScheduled, Initialized, ContainersReady, Ready), so PodDisruptionBudgets see it healthy;
- a pod with a deletionTimestamp is deleted with gracePeriodSeconds=0 (termination confirmed).

Pods on a node that no longer exists are left to kube-controller-manager's pod garbage collector,
as in a cluster. Run as `python -m lab.controllers.kubelet` with KUBECONFIG in the environment.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from lab.controllers.common import (
    Obj,
    WorkQueue,
    kube_client,
    now_rfc3339,
    run_controller,
    setup_logging,
    watch_objects,
)

log = logging.getLogger("kubelet")

#: Set by the lab's WMCO on the Nodes it configures (lab/controllers/wmco.py).
WMCO_VERSION_ANNOTATION = "windowsmachineconfig.openshift.io/version"


def _ready(node: Obj) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def wants(pod: Obj, node: Obj | None) -> str | None:
    """What the kubelet of `node` does with `pod` now: 'delete', 'run' or None (pure)."""
    if node is None or not _ready(node):
        return None
    meta = node.get("metadata") or {}
    if (meta.get("labels") or {}).get("kubernetes.io/os") != "windows":
        return None
    if WMCO_VERSION_ANNOTATION not in (meta.get("annotations") or {}):
        return None
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return "delete"
    if (pod.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed"):
        return None
    return "run"


def running_status(pod: Obj) -> Obj:
    now = now_rfc3339()
    conds = [
        {"type": t, "status": "True", "lastTransitionTime": now}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    containers = [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": now}},
        }
        for c in (pod.get("spec") or {}).get("containers") or []
    ]
    return {
        "phase": "Running",
        "conditions": conds,
        "startTime": now,
        "containerStatuses": containers,
        "podIP": (pod.get("status") or {}).get("podIP") or "10.132.0.10",
    }


class Kubelet:
    def __init__(self, env: Mapping[str, str], stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.api = kube_client(env)
        self.core = k8s.CoreV1Api(self.api)
        self.queue = WorkQueue()
        self.synced = threading.Event()

    def run(self, ready_file: Path | None = None) -> None:
        run_controller(
            [("watch-pods", self._watch_pods)],
            worker=self._worker,
            workers=2,
            synced=[self.synced],
            stop=self.stop,
            queue=self.queue,
            ready_file=ready_file,
            log=log,
        )

    def _watch_pods(self) -> None:
        def on_list(items: list[Obj]) -> None:
            for p in items:
                self._changed(p)
            self.synced.set()

        def on_event(kind: str, p: Obj) -> None:
            if kind != "DELETED":
                self._changed(p)

        watch_objects(
            self.core.list_pod_for_all_namespaces,
            on_list=on_list,
            on_event=on_event,
            stop=self.stop,
            what="pods",
        )

    def _changed(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            meta = pod["metadata"]
            self.queue.add((meta["namespace"], meta["name"]))

    def _worker(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self.reconcile(*key)
            except Exception as exc:
                log.warning("pod %s/%s: %r; retrying", *key, exc)
                self.queue.add_after(key, 1.0)
            finally:
                self.queue.done(key)

    def reconcile(self, ns: str, name: str) -> None:
        try:
            pod: Any = self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, ns))
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        try:
            node: Any = self.api.sanitize_for_serialization(
                self.core.read_node(pod["spec"]["nodeName"])
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            node = None
        action = wants(pod, node)
        if action == "delete":
            try:
                self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
                log.info(
                    "pod %s/%s on %s: terminated and deleted", ns, name, pod["spec"]["nodeName"]
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
        elif action == "run":
            self.core.patch_namespaced_pod_status(name, ns, {"status": running_status(pod)})
            log.info("pod %s/%s on %s: Running", ns, name, pod["spec"]["nodeName"])


def main() -> int:
    setup_logging("kubelet")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready = os.environ.get("LAB_CONTROLLER_READY_FILE")
    Kubelet(os.environ, stop).run(Path(ready) if ready else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
