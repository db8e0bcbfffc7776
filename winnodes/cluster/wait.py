"""V1: wait, with watches, until the Windows MachineSet is ready, or say why it is not.

Four bounded list+watch streams (the MachineSet, its Machines, Windows Nodes, Events in
openshift-machine-api) run in daemon threads and feed one queue; the caller's thread applies each
change to a `SetSnapshot` and re-evaluates `winnodes.render.diagnosis.readiness` at once, so the
wait returns within the watch delivery time of the condition becoming true (no polling). Each watch
is bounded (`timeout_seconds`, field-notes) and resumed from its last resourceVersion; 410 Gone
lists again. The deadline is the caller's; on timeout `MachineSetNotReady` (a WaitTimeout: a re-run
resumes the wait) carries the diagnosis; a cause that waiting cannot cure (a Machine in phase
Failed, a key WMCO refuses, an image without its firewall rule) raises `MachineSetFailed` early.
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from winnodes import errors
from winnodes.cluster.api import Obj, boundary, retry_after
from winnodes.render.diagnosis import (
    Diagnosis,
    Readiness,
    SetSnapshot,
    diagnose,
    fatal,
    readiness,
    relevant_event,
)
from winnodes.render.machineset import LABEL_MACHINESET, NAMESPACE

WATCH_SECONDS = 30  # one watch request; resumed from its resourceVersion afterwards


class MachineSetNotReady(errors.WaitTimeout):
    """The deadline passed before the set was ready; `diagnosis` says what was seen."""

    def __init__(self, message: str, diagnosis: Diagnosis) -> None:
        super().__init__(message, step_id="V1")
        self.diagnosis = diagnosis


class MachineSetFailed(errors.PermanentError):
    """The set cannot become ready by waiting; `diagnosis` names the prerequisite to fix."""

    def __init__(self, message: str, diagnosis: Diagnosis) -> None:
        super().__init__(message, step_id="V1")
        self.diagnosis = diagnosis


Progress = Callable[[Readiness], None]


MAX_FAILURES = 5  # consecutive failed list/watch attempts before a stream gives up
MAX_BACKOFF = 10.0  # seconds between attempts at most (a Retry-After above it is capped)


def _watch(
    list_fn: Callable[..., Any],
    kind: str,
    out: queue.Queue[tuple[str, str, Any]],
    stop: threading.Event,
    rv: str,
    kwargs: dict[str, Any],
) -> tuple[str, int, bool]:
    """One bounded watch from `rv`: (last resourceVersion seen, events delivered, expired).

    Reads the event stream itself rather than through `kubernetes.watch.Watch`: the server reports
    a watch that cannot start from `rv` (compacted: 410 "too old resource version") as an ERROR
    event on a 200 response, which Watch.stream turns into a KeyError when not deserialising (it
    looks for `raw_object`), or, when deserialising, retries once from a version that is just as
    old. Here 410 means "list again"; any other ERROR event raises ApiException with its code."""
    resp = list_fn(
        watch=True,
        resource_version=rv,
        timeout_seconds=WATCH_SECONDS,
        allow_watch_bookmarks=True,
        _preload_content=False,
        **kwargs,
    )
    delivered = 0
    try:
        for line in iter_resp_lines(resp):
            if stop.is_set():
                break
            if not line.strip():
                continue
            ev = json.loads(line)
            obj = ev.get("object") or {}
            if ev.get("type") == "ERROR":
                if obj.get("code") == 410:
                    return rv, delivered, True
                raise ApiException(
                    status=int(obj.get("code") or 500),
                    reason=f"{obj.get('reason', '')}: {obj.get('message', '')}",
                )
            rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            if ev.get("type") != "BOOKMARK":
                out.put((str(ev["type"]), kind, obj))
                delivered += 1
    finally:
        resp.close()
        with contextlib.suppress(Exception):
            resp.release_conn()
    return rv, delivered, False


def _stream(
    list_fn: Callable[..., Any],
    kind: str,
    out: queue.Queue[tuple[str, str, Any]],
    stop: threading.Event,
    **kwargs: Any,
) -> None:
    """List, then watch from the list's resourceVersion, until `stop`; errors go to `out`.

    A watch that ends (its timeout, a proxy or server closing it) is resumed from the last
    resourceVersion delivered, so nothing is lost or replayed; 410 Gone lists again (the list
    replaces the caller's picture). Failures (429/5xx, resets, repeated 410s without progress)
    back off exponentially with jitter, at least the server's Retry-After, at most MAX_BACKOFF,
    and give up after MAX_FAILURES in a row; 401/403 and other 4xx give up at once."""
    failures = 0

    def back_off(retry_after: float = 0.0) -> None:
        delay = min(max(0.25 * 2**failures * random.uniform(0.5, 1.0), retry_after), MAX_BACKOFF)
        stop.wait(delay)

    while not stop.is_set():
        try:
            resp = list_fn(_preload_content=False, **kwargs)
            body = json.loads(resp.data)
            rv = body["metadata"]["resourceVersion"]
            out.put(("list", kind, body.get("items") or []))
            while not stop.is_set():
                rv, delivered, expired = _watch(list_fn, kind, out, stop, rv, kwargs)
                if delivered or not expired:
                    failures = 0  # progress, or a watch that simply ended: resume from rv
                if expired:
                    break
        except ApiException as exc:
            failures += 1
            if exc.status == 410:  # the list's own version expired meanwhile: list again
                if failures > MAX_FAILURES:
                    out.put(("error", kind, exc))
                    return
                back_off()
                continue
            permanent = exc.status not in (0, 429) and (exc.status or 0) < 500
            if permanent or failures > MAX_FAILURES:
                out.put(("error", kind, exc))
                return
            back_off(retry_after(exc) or 0.0)
            continue
        except Exception as exc:  # transport errors: retry a few times, then give up loudly
            failures += 1
            if failures > MAX_FAILURES:
                out.put(("error", kind, exc))
                return
            back_off()
            continue
        # 410 Gone: list again at once; 410s without progress in between count as failures
        failures += 1
        if failures > MAX_FAILURES:
            out.put(
                ("error", kind, ApiException(status=410, reason="Expired: watch kept expiring"))
            )
            return
        if failures > 1:
            back_off()


Feed = tuple[Callable[..., Any], str, dict[str, Any]]  # list function, kind, its arguments


class Watches:
    """The common loop of the cluster adapter's waits (V1 here, ROT3 drain, ROT4 rotation): one
    list+watch stream per feed in a daemon thread, all into one queue; `events` yields them until
    the deadline. A stream that gives up fails the wait, unless its kind is `optional` (V1's
    Events, which only explain a wait). Use as a context manager: leaving it stops the streams."""

    def __init__(
        self, feeds: list[Feed], thread_prefix: str, optional: frozenset[str] = frozenset()
    ) -> None:
        self.optional = optional  # kinds whose stream may give up without failing the wait
        self.lost: dict[str, BaseException] = {}  # optional streams that gave up, and why
        self.out: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(
                target=_stream,
                args=(fn, kind, self.out, self.stop),
                kwargs=kw,
                daemon=True,
                name=f"{thread_prefix}-{kind}",
            )
            for fn, kind, kw in feeds
        ]

    def __enter__(self) -> Watches:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()

    def events(
        self,
        deadline: float,
        on_timeout: Callable[[], Exception],
        step_id: str,
        what: Callable[[str], str],
    ) -> Iterator[tuple[str, str, Any]]:
        """(op, kind, payload) as they come: op is "list" (payload: the items), the watch event
        type (payload: the object), or "lost" when an optional feed's stream gave up (payload:
        its error). At `deadline` (time.monotonic) raises `on_timeout()`; a stream
        that gave up raises its error through `boundary(step_id, what(kind))`."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise on_timeout()
            try:
                op, kind, payload = self.out.get(timeout=remaining)
            except queue.Empty:
                continue
            if op == "error" and kind in self.optional:
                self.lost[kind] = payload  # the caller waits on without this feed
                yield "lost", kind, payload
                continue
            if op == "error":
                with boundary(step_id, what(kind)):
                    raise payload
            yield op, kind, payload


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _event_is_recent(event: Obj, since: datetime | None) -> bool:
    if since is None:
        return True
    when = _parse_time(event.get("lastTimestamp") or event.get("eventTime"))
    when = when or _parse_time(event.get("firstTimestamp"))
    # Event times have one-second resolution: keep what happened in the same second.
    return when is None or when.timestamp() >= int(since.timestamp())


def wait_until_ready(
    api: k8s.ApiClient,
    name: str,
    *,
    timeout: float,
    since: datetime | None = None,
    on_progress: Progress | None = None,
    fail_fast: bool = True,
) -> SetSnapshot:
    """V1: return the snapshot once DESIRED = CURRENT = READY = AVAILABLE and every Machine's Node
    is a Ready Windows node. Events older than `since` (e.g. from an earlier run) are ignored.

    Raises:
        MachineSetNotReady: the deadline passed (transient: a re-run resumes waiting).
        MachineSetFailed: a cause waiting cannot cure (with `fail_fast`).
        NotFound: the MachineSet does not exist (after the first listing).
    """
    since = since or datetime.now(UTC)
    custom = k8s.CustomObjectsApi(api)
    core = k8s.CoreV1Api(api)
    streams: list[Feed] = [
        (
            custom.list_namespaced_custom_object,
            "machineset",
            {
                "group": "machine.openshift.io",
                "version": "v1beta1",
                "namespace": NAMESPACE,
                "plural": "machinesets",
                "field_selector": f"metadata.name={name}",
            },
        ),
        (
            custom.list_namespaced_custom_object,
            "machine",
            {
                "group": "machine.openshift.io",
                "version": "v1beta1",
                "namespace": NAMESPACE,
                "plural": "machines",
                "label_selector": f"{LABEL_MACHINESET}={name}",
            },
        ),
        (core.list_node, "node", {"label_selector": "kubernetes.io/os=windows"}),
        (core.list_namespaced_event, "event", {"namespace": NAMESPACE}),
    ]
    snap = SetSnapshot(name)
    listed: set[str] = set()
    deadline = time.monotonic() + timeout
    last_summary = ""

    def not_ready() -> Exception:
        d = diagnose(snap)
        return MachineSetNotReady(
            f"machineset {name} not ready after {timeout:.0f}s:\n{d.text()}", d
        )

    # Events only explain a wait (diagnosis); a broken event stream must not fail it.
    with Watches(streams, "v1", optional=frozenset({"event"})) as watches:
        for op, kind, payload in watches.events(
            deadline, not_ready, "V1", lambda kind: f"watch {kind}s of machineset {name}"
        ):
            if op == "lost":  # the event stream gave up: decide now, without (more) events
                listed.add(kind)
            else:
                _apply(snap, op, kind, payload, since)
            if op == "list":
                listed.add(kind)
            if len(listed) < len(streams):
                continue  # decide only on a complete picture
            if snap.machineset is None:
                raise errors.NotFound(
                    f"machineset {name} does not exist in {NAMESPACE}", step_id="V1"
                )
            r = readiness(snap)
            if on_progress and r.summary != last_summary:
                last_summary = r.summary
                with contextlib.suppress(Exception):  # progress reporting never fails the wait
                    on_progress(r)
            if r.ready:
                return snap
            failed = fatal(snap) if fail_fast else None
            if failed is not None:
                raise MachineSetFailed(
                    f"machineset {name} cannot become ready:\n{failed.text()}", failed
                )
    raise AssertionError("the events never end")  # pragma: no cover


def _apply(snap: SetSnapshot, op: str, kind: str, payload: Any, since: datetime | None) -> None:
    if kind == "machineset":
        if op == "list":
            snap.machineset = payload[0] if payload else None
        elif op == "DELETED":
            snap.machineset = None
        else:
            snap.machineset = payload
        return
    if kind == "event":
        items = payload if op == "list" else [payload]
        names = list(snap.machines)
        for e in items:
            if op == "DELETED":
                continue
            if relevant_event(e, snap.name, names) and _event_is_recent(e, since):
                uid = e.get("metadata", {}).get("uid")
                snap.events = [x for x in snap.events if x.get("metadata", {}).get("uid") != uid]
                snap.events.append(e)
        return
    target = snap.machines if kind == "machine" else snap.nodes
    if op == "list":
        target.clear()
        for o in payload:
            target[o["metadata"]["name"]] = o
    elif op == "DELETED":
        target.pop(payload["metadata"]["name"], None)
    else:
        target[payload["metadata"]["name"]] = payload
