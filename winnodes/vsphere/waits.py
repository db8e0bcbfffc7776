"""Event-driven waits on vCenter objects: a private property collector and `WaitForUpdatesEx`.

The shape CAPV and govmomi use: a private PropertyCollector, one filter for the object and only the
properties the condition needs, then `WaitForUpdatesEx` with a bounded `maxWaitSeconds` resumed
from the returned version until the condition holds or the deadline passes; the filter is destroyed
in `finally`. The collector comes from the session's pool (`VSphereSession.collector`), so a wait
costs CreateFilter + WaitForUpdatesEx + DestroyPropertyFilter, not a collector each time. No sleep
loops: the server answers as soon as something changes.

A deadline that passes raises `WaitTimeout` (permanent: the caller's timeout is what is left of the
step's budget, see `tasks.policy`; a new flow run resumes the wait) with the last values seen, so a
report can say what the object looked like when we gave up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pyVmomi import vmodl

from winnodes import errors
from winnodes.render.powershell import is_usable_ipv4
from winnodes.vsphere.faults import boundary, map_exception
from winnodes.vsphere.session import VSphereSession
from winnodes.vsphere.tools import ToolsVersion, decode_tools_version

PC = vmodl.query.PropertyCollector

#: Upper bound of one WaitForUpdatesEx round (must stay below the session's HTTP read timeout).
MAX_WAIT_SECONDS = 30


def wait_for(
    session: VSphereSession,
    obj: Any,
    props: Sequence[str],
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    step_id: str | None = None,
    what: str = "condition",
) -> dict[str, Any]:
    """Block until `predicate(values)` holds for `obj`'s `props`; returns the values.

    Raises:
        WaitTimeout: the deadline passed (values seen are in the message).
        NotFound: the object was deleted while waiting.
        SessionExpired: the session expired during the wait (its collector went with it); a retry
            waits again on a collector of the new session.
    """
    relogins = session.relogins
    try:
        return _wait_for(session, obj, props, predicate, timeout, step_id, what)
    except errors.NotFound as exc:
        if session.relogins == relogins or exc.message.startswith(f"{obj._moId} was deleted"):
            raise
        raise errors.SessionExpired(
            f"the vCenter session expired while waiting for {what} on {obj._moId}",
            step_id=step_id,
        ) from exc


def _wait_for(
    session: VSphereSession,
    obj: Any,
    props: Sequence[str],
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float,
    step_id: str | None,
    what: str,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    values: dict[str, Any] = dict.fromkeys(props)
    action = f"wait for {what} on {obj._moId}"
    with _property_filter(session, obj, props, step_id=step_id, action=action) as pc:
        for changed in _changes(session, pc, obj, deadline, step_id=step_id, what=what):
            values.update(changed)
            if predicate(values):
                return values
        raise errors.WaitTimeout(
            f"{what} on {obj._moId} not reached after {timeout:.0f}s; last seen: {_summary(values)}",
            step_id=step_id,
        )


def watch_for_change(
    session: VSphereSession,
    obj: Any,
    prop: str,
    *,
    trigger: Callable[[], None],
    timeout: float,
    step_id: str | None = None,
    what: str = "a change",
) -> dict[str, Any]:
    """Start watching `obj`'s `prop`, run `trigger()` (e.g. restart the guest over SSH), then wait
    until vCenter reports a change of `prop` made after the watch started; returns the values.

    The filter exists before the trigger, so a change that is over before this function would
    have begun a wait (a guest that restarts in a second: Tools stop and start again) is still
    reported: the collector answers from the version taken before the trigger, and any reported
    change of `prop` counts, whatever its value now.

    Raises:
        WaitTimeout: no change in `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    values: dict[str, Any] = {prop: None}
    action = f"watch {prop} of {obj._moId}"
    with _property_filter(session, obj, [prop], step_id=step_id, action=action) as pc:
        first = pc.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0))  # the values before
        version = first.version if first is not None else ""
        trigger()
        for changed in _changes(
            session, pc, obj, deadline, step_id=step_id, what=what, version=version
        ):
            if prop in changed:
                values[prop] = changed[prop]
                return values
        raise errors.WaitTimeout(
            f"{what} on {obj._moId} not seen after {timeout:.0f}s; {prop} is {values[prop]!r}",
            step_id=step_id,
        )


@contextlib.contextmanager
def _property_filter(
    session: VSphereSession,
    obj: Any,
    props: Sequence[str],
    *,
    step_id: str | None,
    action: str,
) -> Iterator[Any]:
    """A collector of the session's pool with one filter on `obj`'s `props`, inside `boundary`.

    A context manager and not part of `_changes`: whatever the caller raises inside it (a timeout,
    its predicate's or trigger's error) must reach `boundary` and `collector()` (which destroys a
    collector that raised instead of reusing it), and a caller that returns must leave both
    normally (a generator left early is closed with GeneratorExit, which `collector()` counts as
    raised)."""
    with boundary(step_id, action=action), session.collector() as pc:
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=obj, skip=False)],
            propSet=[PC.PropertySpec(type=type(obj), pathSet=list(props))],
        )
        flt = pc.CreateFilter(spec, partialUpdates=False)
        try:
            yield pc
        finally:
            # The collector is reused by the session's next wait, so it must end without filters
            # (if this fails, `collector()` destroys the collector instead).
            flt.DestroyPropertyFilter()


def _changes(
    session: VSphereSession,
    pc: Any,
    obj: Any,
    deadline: float,
    *,
    step_id: str | None,
    what: str,
    version: str = "",
) -> Iterator[dict[str, Any]]:
    """The WaitForUpdatesEx rounds of `pc` from `version` until `deadline`: for every update,
    the properties it changed (name -> new value, None when removed), in order. Ends when the
    deadline passes (the caller raises its `WaitTimeout`).

    Raises:
        NotFound: `obj` was deleted (it left the filter).
    """
    round_cap = max(1, min(MAX_WAIT_SECONDS, int(session.timeout) - 5))
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        opts = PC.WaitOptions(maxWaitSeconds=max(1, min(round_cap, int(left + 0.999))))
        update = pc.WaitForUpdatesEx(version, opts)
        if update is None:  # this round ended with no change
            continue
        version = update.version
        changed: dict[str, Any] = {}
        for fs in update.filterSet or []:
            for oc in fs.objectSet or []:
                if oc.kind == "leave":
                    raise errors.NotFound(
                        f"{obj._moId} was deleted while waiting for {what}", step_id=step_id
                    )
                for change in oc.changeSet or []:
                    changed[change.name] = None if change.op == "remove" else change.val
        yield changed


def _summary(values: dict[str, Any]) -> str:
    parts = []
    for k, v in values.items():
        text = repr(v) if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__
        parts.append(f"{k}={text[:80]}")
    return ", ".join(parts)


def task_moid(task: Any) -> str:
    return str(task._moId)


def wait_for_task(
    session: VSphereSession,
    task: Any,
    *,
    timeout: float = 600,
    step_id: str | None = None,
) -> Any:
    """Wait for a vCenter task; returns its result, or raises its fault as a product error.

    `task` may be a `vim.Task` or a task ID string ("task-42") saved by an earlier run."""
    if isinstance(task, str):
        task = session.moref("Task", task)
    values = wait_for(
        session,
        task,
        ["info.state", "info.error", "info.result", "info.descriptionId"],
        lambda v: v["info.state"] in ("success", "error"),
        timeout=timeout,
        step_id=step_id,
        what="task completion",
    )
    if values["info.state"] == "error":
        fault = values["info.error"]
        action = f"task {task._moId} ({values.get('info.descriptionId') or 'unknown'})"
        mapped = map_exception(fault, step_id=step_id, action=action) if fault else None
        raise mapped or errors.PermanentError(f"{action} failed", step_id=step_id)
    return values["info.result"]


def task_state(session: VSphereSession, task_id: str) -> str | None:
    """ "queued" / "running" / "success" / "error" of a remembered task, or None when vCenter no
    longer knows it (tasks expire from the task manager after a while)."""
    from winnodes.vsphere.inventory import retrieve

    try:
        found = retrieve(session, [session.moref("Task", task_id)], ["info.state"])
    except errors.NotFound:
        return None
    return str(found[0].props["info.state"]) if found else None


# -- guest IP and power state --------------------------------------------------------------------


def is_valid_ipv4(ip: object) -> bool:
    """A string F's G3b rule accepts: IPv4, not APIPA/link-local, not 0.0.0.0/multicast/broadcast."""
    return isinstance(ip, str) and is_usable_ipv4(ip)


def pick_ipv4(primary: object, nics: object) -> str | None:
    """The guest's primary address if valid, else the first valid IPv4 of any NIC."""
    if is_valid_ipv4(primary):
        return str(primary)
    for nic in nics or []:  # type: ignore[attr-defined]
        for ip in getattr(nic, "ipAddress", None) or []:
            if is_valid_ipv4(ip):
                return str(ip)
    return None


@dataclass(frozen=True)
class GuestInfo:
    """What VMware Tools report once the guest is up (G2/G3b)."""

    ip: str
    tools_running_status: str
    tools_version: ToolsVersion | None
    host_name: str | None


GUEST_PROPS = (
    "guest.toolsRunningStatus",
    "guest.ipAddress",
    "guest.net",
    "guest.toolsVersion",
    "guest.hostName",
)


def wait_for_guest_ip(
    session: VSphereSession, vm: Any, *, timeout: float, step_id: str | None = "G3b"
) -> GuestInfo:
    """Wait until Tools run and report a valid IPv4 (APIPA and 0.0.0.0 are skipped)."""

    def ready(v: dict[str, Any]) -> bool:
        return v["guest.toolsRunningStatus"] == "guestToolsRunning" and bool(
            pick_ipv4(v["guest.ipAddress"], v["guest.net"])
        )

    v = wait_for(
        session, vm, GUEST_PROPS, ready, timeout=timeout, step_id=step_id, what="Tools and IPv4"
    )
    ip = pick_ipv4(v["guest.ipAddress"], v["guest.net"])
    assert ip is not None
    return GuestInfo(
        ip=ip,
        tools_running_status=str(v["guest.toolsRunningStatus"]),
        tools_version=decode_tools_version(v["guest.toolsVersion"]),
        host_name=v["guest.hostName"],
    )


def wait_for_power_state(
    session: VSphereSession,
    vm: Any,
    state: str = "poweredOff",
    *,
    timeout: float,
    step_id: str | None = None,
) -> None:
    """Wait until `runtime.powerState` is `state` (e.g. sysprep's shutdown in G9)."""
    wait_for(
        session,
        vm,
        ["runtime.powerState"],
        lambda v: v["runtime.powerState"] == state,
        timeout=timeout,
        step_id=step_id,
        what=state,
    )


def wait_for_power_off(
    session: VSphereSession, vm: Any, *, timeout: float, step_id: str | None = "G9"
) -> None:
    wait_for_power_state(session, vm, "poweredOff", timeout=timeout, step_id=step_id)


def guest_variable(extra_config: Any, key: str) -> str | None:
    """The value of `key` (e.g. a `guestinfo.*` variable the guest set with rpctool) in a VM's
    config.extraConfig, or None."""
    for opt in extra_config or []:
        if getattr(opt, "key", None) == key:
            return str(opt.value) if opt.value is not None else None
    return None


def wait_for_guest_variable_change(
    session: VSphereSession,
    vm: Any,
    key: str,
    current: str | None,
    *,
    timeout: float,
    step_id: str | None = None,
) -> str | None:
    """Wait (WaitForUpdatesEx) up to `timeout` for guest variable `key` to differ from `current`;
    returns its value then, or `current` when nothing changed in time (not an error: the caller
    decides what a quiet guest means)."""
    try:
        v = wait_for(
            session,
            vm,
            ["config.extraConfig"],
            lambda v: guest_variable(v["config.extraConfig"], key) != current,
            timeout=timeout,
            step_id=step_id,
            what=f"a change of {key}",
        )
    except errors.WaitTimeout:
        return current
    return guest_variable(v["config.extraConfig"], key)


__all__ = [
    "GuestInfo",
    "guest_variable",
    "is_valid_ipv4",
    "pick_ipv4",
    "task_state",
    "wait_for",
    "wait_for_guest_ip",
    "wait_for_guest_variable_change",
    "wait_for_power_off",
    "wait_for_power_state",
    "wait_for_task",
    "watch_for_change",
]
