"""The cluster side of the rolling rotation (ROT1-ROT4): read the real state, record the baseline,
scale, mark and retire a Machine, and wait for it to be gone. No Prefect here.

Every write is idempotent. Replica changes are server-side applies of the same manifest C3 applied
(field manager `winnodes`), so field ownership never moves between managers and a later C3 converges
as before; the baseline annotation has its own field manager (`winnodes-rotation`), so applying it
without the annotation removes it and nothing else. A Machine is retired the way OpenShift documents
for deleting a chosen Machine: annotate it `machine.openshift.io/delete-machine` and scale the set
down; deleting it directly while the set is above its size would only make machine-api create a
replacement.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from kubernetes import client as k8s

from winnodes import errors
from winnodes.cluster import machinesets
from winnodes.cluster.api import Obj, boundary
from winnodes.cluster.machinesets import FIELD_MANAGER, GROUP, VERSION, get_machineset
from winnodes.cluster.wait import Feed, Watches
from winnodes.plan.rotation import (
    BASELINE_ANNOTATION,
    DELETE_MACHINE_ANNOTATION,
    RotationState,
    rotation_state,
)
from winnodes.render.machineset import LABEL_MACHINESET, NAMESPACE

ROTATION_MANAGER = "winnodes-rotation"


def list_machines(api: k8s.ApiClient, name: str, step_id: str = "ROT1") -> list[Obj]:
    """The Machines of MachineSet `name` (by its label), oldest first."""
    with boundary(step_id, f"list machines of machineset {name}"):
        res: Any = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "machines", label_selector=f"{LABEL_MACHINESET}={name}"
        )
    items = list(res.get("items") or [])
    return sorted(
        items, key=lambda m: (m["metadata"].get("creationTimestamp", ""), m["metadata"]["name"])
    )


def all_machine_templates(api: k8s.ApiClient, step_id: str = "G10") -> list[tuple[str, str]]:
    """(user, template path) for every MachineSet and Machine in openshift-machine-api."""
    custom = k8s.CustomObjectsApi(api)
    out: list[tuple[str, str]] = []
    with boundary(step_id, f"list machine sets and machines in {NAMESPACE}"):
        for plural, kind in (("machinesets", "MachineSet"), ("machines", "Machine")):
            res: Any = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)
            for o in res.get("items") or []:
                spec = o.get("spec") or {}
                if kind == "MachineSet":
                    spec = (spec.get("template") or {}).get("spec") or {}
                value = (spec.get("providerSpec") or {}).get("value") or {}
                if value.get("template"):
                    out.append((f"{kind} {o['metadata']['name']}", str(value["template"])))
    return out


def read_state(api: k8s.ApiClient, name: str, step_id: str = "ROT1") -> RotationState | None:
    """The MachineSet, its Machines and their Nodes as a RotationState; None without the set."""
    ms = get_machineset(api, name, step_id=step_id)
    if ms is None:
        return None
    machines = list_machines(api, name, step_id)
    with boundary(step_id, "list Windows nodes"):
        nodes: Any = k8s.CoreV1Api(api).list_node(
            label_selector="kubernetes.io/os=windows", _preload_content=False
        )
    by_name = {n["metadata"]["name"]: n for n in json.loads(nodes.data).get("items") or []}
    return rotation_state(ms, machines, by_name)


def set_baseline(api: k8s.ApiClient, name: str, replicas: int | None) -> None:
    """Record (or with None remove) the rotation's baseline replica count on the MachineSet."""
    meta: Obj = {"name": name, "namespace": NAMESPACE}
    if replicas is not None:
        meta["annotations"] = {BASELINE_ANNOTATION: str(replicas)}
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MachineSet", "metadata": meta}
    with boundary("ROT2" if replicas is not None else "ROT4", f"annotate machineset {name}"):
        machinesets.apply(api, body, field_manager=ROTATION_MANAGER)


def scale(api: k8s.ApiClient, manifest: Obj, replicas: int, step_id: str) -> None:
    """Apply the MachineSet's manifest (as C3 applied it) with `replicas`."""
    body = copy.deepcopy(manifest)
    body["spec"]["replicas"] = replicas
    name = body["metadata"]["name"]
    with boundary(step_id, f"scale machineset {name} to {replicas}"):
        machinesets.apply(api, body)


def mark_for_deletion(api: k8s.ApiClient, machine: str) -> None:
    """Annotate the Machine so that machine-api deletes it first when the set scales down."""
    body = {"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "true"}}}
    with boundary("ROT4", f"annotate machine {machine} for deletion"):
        k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "machines", machine, body, field_manager=FIELD_MANAGER
        )


def wait_machine_gone(api: k8s.ApiClient, machine: str, timeout: float) -> float:
    """Watch until the Machine no longer exists; returns the seconds waited."""
    custom = k8s.CustomObjectsApi(api)
    feed: Feed = (
        custom.list_namespaced_custom_object,
        "machine",
        {
            "group": GROUP,
            "version": VERSION,
            "namespace": NAMESPACE,
            "plural": "machines",
            "field_selector": f"metadata.name={machine}",
        },
    )

    def still_there() -> Exception:
        return errors.WaitTimeout(
            f"machine {machine} still exists {timeout:.0f}s after it was retired (ROT4); "
            "machine-api deletes its VM and Node first: read the Machine's events",
            step_id="ROT4",
        )

    t0 = time.monotonic()
    with Watches([feed], f"rot4-{machine}") as watches:
        for op, _kind, payload in watches.events(
            t0 + timeout, still_there, "ROT4", lambda _kind: f"watch machine {machine}"
        ):
            if (op == "list" and not payload) or op == "DELETED":
                return time.monotonic() - t0
    raise AssertionError("the events never end")  # pragma: no cover
