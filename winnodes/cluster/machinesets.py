"""C3: the Windows MachineSet on the cluster, applied idempotently with server-side apply.

Server-side apply (field manager `winnodes`, forced) makes "create, or converge an existing set" one
request: the server merges our fields, removes fields we set before and no longer send, and changes
nothing when the object already says what we send. Whether anything changed is read from the
object's `metadata.generation` (spec changes bump it; status writes by machine-api do not) and its
labels, not from the response of the PATCH (the client only parses 200 bodies, field-notes).
The same request with `dryRun=All` runs every server-side check (schema, admission) without writing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from winnodes import errors
from winnodes.cluster.api import Obj, boundary
from winnodes.render.machineset import NAMESPACE

GROUP, VERSION, PLURAL = "machine.openshift.io", "v1beta1", "machinesets"
FIELD_MANAGER = "winnodes"
APPLY = "application/apply-patch+yaml"

Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class ApplyResult:
    action: Action
    name: str
    generation: int
    replicas: int
    template: str


def get_machineset(api: k8s.ApiClient, name: str, step_id: str = "C3") -> Obj | None:
    """The MachineSet `name` in openshift-machine-api, or None."""
    with boundary(step_id, f"read machineset {name}"):
        try:
            obj: Any = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
    return dict(obj)


def apply(
    api: k8s.ApiClient, manifest: Obj, *, dry_run: bool = False, field_manager: str = FIELD_MANAGER
) -> Obj | None:
    """Server-side apply of a MachineSet manifest (forced, as `field_manager`); the object the API
    server returns, or None. The caller names the step (`boundary`)."""
    name = manifest["metadata"]["name"]
    kwargs: dict[str, Any] = {"field_manager": field_manager, "force": True}
    if dry_run:
        kwargs["dry_run"] = "All"
    # _preload_content=False: the client would drop a 201 body (created by the apply).
    resp: Any = k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        name,
        json.loads(json.dumps(manifest)),
        _content_type=APPLY,
        _preload_content=False,
        **kwargs,
    )
    raw = resp.data
    if not raw:
        return None
    out: Obj = json.loads(raw)
    return out


def dry_run(api: k8s.ApiClient, manifest: Obj) -> Obj | None:
    """C3 before C3: the server-side apply with dryRun=All. Raises ConfigError (400/422) when the
    API server refuses the manifest (schema, admission); nothing is written."""
    with boundary("C3", f"dry-run apply of machineset {manifest['metadata']['name']}"):
        return apply(api, manifest, dry_run=True)


def _summary(obj: Obj) -> tuple[int, int, str]:
    spec = obj.get("spec") or {}
    tpl = (
        ((spec.get("template") or {}).get("spec") or {}).get("providerSpec", {}).get("value") or {}
    ).get("template", "")
    return int(obj["metadata"].get("generation") or 0), int(spec.get("replicas") or 0), str(tpl)


def apply_machineset(api: k8s.ApiClient, manifest: Obj) -> ApplyResult:
    """C3: create the MachineSet, or converge an existing one to `manifest` (template, replicas,
    sizes, labels). Returns what happened; a second call with the same manifest is 'unchanged'."""
    name = manifest["metadata"]["name"]
    before = get_machineset(api, name)
    with boundary("C3", f"apply machineset {name}"):
        apply(api, manifest, dry_run=False)
    after = get_machineset(api, name)
    if after is None:  # deleted right after we wrote it
        raise errors.Conflict(
            f"machineset {name} vanished right after it was applied", step_id="C3"
        )
    gen, replicas, template = _summary(after)
    if before is None:
        action: Action = "created"
    elif gen != _summary(before)[0] or (before["metadata"].get("labels") or {}) != (
        after["metadata"].get("labels") or {}
    ):
        action = "updated"
    else:
        action = "unchanged"
    return ApplyResult(action, name, gen, replicas, template)
