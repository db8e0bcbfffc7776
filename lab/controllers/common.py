"""Small pieces every simulated controller of the lab needs (machine-api now, WMCO later).

The simulators stand in for operators that, in a real cluster, are built on client-go informers and
govmomi. They must behave like them towards the product: react to changes as they happen (watches and
vCenter property-collector waits, never polling), survive their own restarts (state lives in the API
server and in vCenter, not in memory), and report problems where an operator would (Events on the
object). This module holds the plumbing for that, so each controller module contains only its
reconcile logic:

- `kube_client(env)`: an API client from the lab's kubeconfig (`KUBECONFIG`).
- `watch_objects(...)`: list + watch with a bounded `timeout_seconds`, resumed from the last
  resourceVersion, re-listed on 410 Gone.
- `WorkQueue`: a de-duplicating work queue (a key is never processed by two workers at once).
- `VSphere`: a pyvmomi session from `GOVC_URL`/`GOVC_USERNAME`/`GOVC_PASSWORD`, verifying TLS with
  `GOVC_TLS_CA_CERTS`, with property-collector helpers and event-driven task waits.
- `record_event(...)`: a core/v1 Event on an object, as client-go's event recorder writes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import logging
import os
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

log = logging.getLogger("lab.controllers")

Obj = dict[str, Any]


def setup_logging(name: str) -> logging.Logger:
    logging.basicConfig(
        level=os.environ.get("LAB_CONTROLLER_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {name} %(levelname)s %(threadName)s: %(message)s",
    )
    return logging.getLogger(name)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- Kubernetes


def kube_client(env: Mapping[str, str]) -> k8s.ApiClient:
    """An API client for the lab's API server, from `KUBECONFIG` in `env`."""
    path = env.get("KUBECONFIG")
    if not path:
        raise RuntimeError("KUBECONFIG is not set: start the lab's kube component first")
    return k8s_config.new_client_from_config(config_file=path)


def is_status(exc: BaseException, *codes: int) -> bool:
    return isinstance(exc, ApiException) and exc.status in codes


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


def watch_objects(
    list_fn: Callable[..., Any],
    *,
    on_list: Callable[[list[Obj]], None],
    on_event: Callable[[str, Obj], None],
    stop: threading.Event,
    timeout_seconds: int = 60,
    what: str = "objects",
    **kwargs: Any,
) -> None:
    """Keep `on_event` informed of every change of the objects `list_fn` lists, until `stop`.

    Lists once (passing the items to `on_list`, like an informer's initial sync), then watches from
    the list's resourceVersion with bounded watches, each resumed from the last version seen (bookmarks
    included). A 410 Gone starts over with a fresh list. Objects are plain dicts (JSON)."""
    backoff = 0.5
    while not stop.is_set():
        try:
            listing = list_fn(_preload_content=False, **kwargs)
            body = _json(listing)
            rv = body["metadata"]["resourceVersion"]
            on_list(body.get("items") or [])
            backoff = 0.5
            while not stop.is_set():
                w = k8s_watch.Watch()
                for ev in w.stream(
                    list_fn,
                    resource_version=rv,
                    timeout_seconds=timeout_seconds,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                    **kwargs,
                ):
                    obj = ev.get("object") or {}
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if ev["type"] != "BOOKMARK":
                        on_event(ev["type"], obj)
                    if stop.is_set():
                        w.stop()
                        break
        except ApiException as exc:
            if exc.status == 410:
                log.info("watch of %s: resourceVersion too old (410 Gone); listing again", what)
                continue
            log.warning("watch of %s failed: %s %s; retrying", what, exc.status, exc.reason)
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
        except Exception as exc:
            log.warning("watch of %s failed: %r; retrying", what, exc)
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)


def _json(resp: Any) -> Any:
    import json

    data = resp.data if hasattr(resp, "data") else resp.read()
    return json.loads(data)


def record_event(
    api: k8s.ApiClient,
    involved_object: Obj,
    reason: str,
    message: str,
    type: str = "Normal",
    component: str = "lab-controller",
) -> None:
    """Write a core/v1 Event about `involved_object` (a dict with apiVersion, kind, metadata) the way
    client-go's recorder does: named `<object>.<hex>`, in the object's namespace (or `default`)."""
    meta = involved_object.get("metadata", {})
    namespace = meta.get("namespace") or "default"
    ts = now_rfc3339()
    body: Any = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved_object.get("apiVersion"),
            "kind": involved_object.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": type,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": os.uname().nodename,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    }
    try:
        k8s.CoreV1Api(api).create_namespaced_event(namespace, body)
    except ApiException as exc:  # an event is best effort, as in client-go
        log.warning("could not record event %s on %s: %s", reason, meta.get("name"), exc.reason)


def label_selector_matches(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics (matchLabels and matchExpressions). An empty selector
    matches everything; None matches nothing."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --------------------------------------------------------------------------- work queue


@dataclass
class WorkQueue:
    """client-go's workqueue semantics in a few lines: a key queued several times is processed once;
    a key being processed is not handed to a second worker (it is re-queued when done); `add_after`
    re-queues later (for retries with backoff), without a polling loop."""

    _cv: threading.Condition = field(default_factory=threading.Condition)
    _queue: list[Any] = field(default_factory=list)
    _dirty: set[Any] = field(default_factory=set)
    _processing: set[Any] = field(default_factory=set)
    _later: list[tuple[float, int, Any]] = field(default_factory=list)
    _seq: int = 0
    _shutdown: bool = False

    def add(self, key: Any) -> None:
        with self._cv:
            if key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cv.notify()

    def add_after(self, key: Any, delay: float) -> None:
        with self._cv:
            self._seq += 1
            heapq.heappush(self._later, (time.monotonic() + delay, self._seq, key))
            self._cv.notify()

    def get(self) -> Any | None:
        """The next key, or None after shutdown."""
        with self._cv:
            while True:
                if self._shutdown:
                    return None
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    _, _, key = heapq.heappop(self._later)
                    if key not in self._dirty:
                        self._dirty.add(key)
                        if key not in self._processing:
                            self._queue.append(key)
                if self._queue:
                    key = self._queue.pop(0)
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key
                timeout = self._later[0][0] - now if self._later else None
                self._cv.wait(timeout)

    def done(self, key: Any) -> None:
        with self._cv:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cv.notify()

    def shutdown(self) -> None:
        with self._cv:
            self._shutdown = True
            self._cv.notify_all()


# --------------------------------------------------------------------------- vSphere


def run_controller(
    watchers: Iterable[tuple[str, Callable[[], None]]],
    *,
    worker: Callable[[], None],
    workers: int,
    synced: Iterable[threading.Event],
    stop: threading.Event,
    queue: WorkQueue,
    ready_file: Path | None,
    log: logging.Logger,
) -> None:
    """The shape every lab controller runs in: watch threads feed a work queue served by `workers`
    threads; once every informer has listed (`synced`), write the pid to `ready_file` (the
    supervisor's readiness signal); then block until `stop` and shut the queue down."""
    threads = [threading.Thread(target=fn, name=name, daemon=True) for name, fn in watchers]
    threads += [
        threading.Thread(target=worker, name=f"worker-{i}", daemon=True) for i in range(workers)
    ]
    for t in threads:
        t.start()
    for ev in synced:
        while not ev.wait(1.0):
            if stop.is_set():
                break
    if ready_file and not stop.is_set():
        ready_file.write_text(f"{os.getpid()}\n")
        log.info("caches synced; ready")
    stop.wait()
    queue.shutdown()


class VSphere:
    """A pyvmomi session to the vCenter named by the GOVC_* variables, verifying its certificate."""

    def __init__(self, env: Mapping[str, str]) -> None:
        url = env.get("GOVC_URL")
        if not url:
            raise RuntimeError("GOVC_URL is not set: start the lab's vcsim component first")
        if "://" not in url:
            url = "https://" + url
        u = urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 443
        self.path = u.path if u.path and u.path != "/" else "/sdk"
        self.user = env.get("GOVC_USERNAME") or unquote(u.username or "")
        self.password = env.get("GOVC_PASSWORD") or unquote(u.password or "")
        cafile = env.get("GOVC_TLS_CA_CERTS")
        if cafile:
            self.ssl_context = ssl.create_default_context(cafile=cafile)
        elif env.get("GOVC_INSECURE", "").lower() in ("1", "true"):
            self.ssl_context = ssl._create_unverified_context()
        else:
            self.ssl_context = ssl.create_default_context()
        self._lock = threading.Lock()
        self.si: Any = None
        self.connect()

    def connect(self) -> None:
        with self._lock:
            if self.si is not None:
                with contextlib.suppress(Exception):
                    Disconnect(self.si)
            self.si = SmartConnect(
                host=self.host,
                port=self.port,
                path=self.path,
                user=self.user,
                pwd=self.password,
                sslContext=self.ssl_context,
                connectionPoolTimeout=-1,
            )

    @property
    def content(self) -> Any:
        """The service content of a live session: a session that vCenter expired or terminated
        (the lab's tests invalidate sessions on purpose) is replaced by a new login, as a real
        operator's client does, instead of failing every later call with NotAuthenticated."""
        content = self.si.RetrieveContent()
        try:
            alive = content.sessionManager.currentSession is not None
        except vim.fault.NotAuthenticated:
            alive = False
        if not alive:
            logging.getLogger(__name__).warning("vCenter session lost; logging in again")
            self.connect()
            content = self.si.RetrieveContent()
        return content

    def close(self) -> None:
        with contextlib.suppress(Exception):
            Disconnect(self.si)

    # -- property collector ------------------------------------------------------------------

    def retrieve(
        self, obj_type: type, props: Iterable[str], container: Any = None
    ) -> list[tuple[Any, dict[str, Any]]]:
        """(object, {property: value}) for every `obj_type` under `container` (default: the root
        folder), in one RetrievePropertiesEx through a ContainerView."""
        content = self.content
        view = content.viewManager.CreateContainerView(
            container or content.rootFolder, [obj_type], True
        )
        try:
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[
                    vmodl.query.PropertyCollector.ObjectSpec(
                        obj=view,
                        skip=True,
                        selectSet=[
                            vmodl.query.PropertyCollector.TraversalSpec(
                                name="view", path="view", skip=False, type=vim.view.ContainerView
                            )
                        ],
                    )
                ],
                propSet=[
                    vmodl.query.PropertyCollector.PropertySpec(type=obj_type, pathSet=list(props))
                ],
            )
            return self._retrieve_all(content.propertyCollector, spec)
        finally:
            with contextlib.suppress(Exception):
                view.DestroyView()

    def properties(self, obj: Any, props: Iterable[str]) -> dict[str, Any]:
        """Properties of one object (an empty dict when it no longer exists)."""
        content = self.content
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
            propSet=[
                vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=list(props))
            ],
        )
        try:
            found = self._retrieve_all(content.propertyCollector, spec)
        except vmodl.fault.ManagedObjectNotFound:
            return {}
        return found[0][1] if found else {}

    @staticmethod
    def _retrieve_all(pc: Any, spec: Any) -> list[tuple[Any, dict[str, Any]]]:
        out: list[tuple[Any, dict[str, Any]]] = []
        res = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        while res is not None:
            for oc in res.objects or []:
                out.append((oc.obj, {p.name: p.val for p in oc.propSet or []}))
            res = pc.ContinueRetrievePropertiesEx(res.token) if res.token else None
        return out

    def wait_task(self, task: Any, timeout: float = 120.0) -> Any:
        """Wait for a task with WaitForUpdatesEx on a private property collector (no polling);
        return its result or raise its fault."""
        pc = self.content.propertyCollector.CreatePropertyCollector()
        try:
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=task, skip=False)],
                propSet=[
                    vmodl.query.PropertyCollector.PropertySpec(
                        type=vim.Task, pathSet=["info.state", "info.error", "info.result"]
                    )
                ],
            )
            pc.CreateFilter(spec, partialUpdates=False)
            version = ""
            deadline = time.monotonic() + timeout
            state: Any = None
            error: Any = None
            result: Any = None
            while time.monotonic() < deadline:
                wait = max(1, min(30, int(deadline - time.monotonic())))
                upd = pc.WaitForUpdatesEx(
                    version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=wait)
                )
                if upd is None:
                    continue
                version = upd.version
                for fs in upd.filterSet or []:
                    for oc in fs.objectSet or []:
                        for ch in oc.changeSet or []:
                            if ch.name == "info.state":
                                state = ch.val
                            elif ch.name == "info.error":
                                error = ch.val
                            elif ch.name == "info.result":
                                result = ch.val
                if state == vim.TaskInfo.State.success:
                    return result
                if state == vim.TaskInfo.State.error:
                    raise error
            raise TimeoutError(f"task {task._moId} did not finish within {timeout:.0f}s")
        finally:
            with contextlib.suppress(Exception):
                pc.DestroyPropertyCollector()

    def find_by_path(self, path: str) -> Any:
        """SearchIndex.FindByInventoryPath (None when nothing is there)."""
        return self.content.searchIndex.FindByInventoryPath(path.rstrip("/") or "/")
