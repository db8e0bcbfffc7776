"""The fault matrix's vCenter family: the golden-image flow under injected vCenter faults, delays,
session expiry and kill -9, with a table of what survived. `make faults` runs it with the other
families (benchmarks/fault_matrix.py: SSH, Kubernetes API, DNS); a seeded sample runs in `make test`.
It also holds what the families share: `Cell`, `Outcome`, `report`, `run_flow`, `end_state`.

Why. Retrying transient vCenter failures is one of the things this project is for; a handful of
hand-picked cases tried once prove little. The matrix makes it systematic: every SOAP method a clean
build calls (read from the lab vCenter's per-method call counts of a baseline run), every transient
fault kind vCenter really returns, in call mode (the SOAP call fails) and, for `*_Task` methods, task
mode (the task ends in error), injected once, three times, and for good; plus delays, sessions
expiring at step boundaries and in the middle of a wait, permanent faults, and kill -9 of the flow's
process at step boundaries, inside a long vCenter task and inside the long guest waits (G2, G9),
each brought back by a fresh run and, as its own cell, by a retry of the same deployment flow run
through the Prefect API (what the UI's Retry button does). Every fault comes from the lab's control
endpoint; nothing in the product knows about it.

What a cell checks, with clients independent of the product (pyvmomi through `lab.scenario`, the
datastore's files on disk, the lab vCenter's fault hit counts):
- the run's final state: transient faults within the retry budget (once, three times) -> Completed;
  for good -> Failed, naming the step ID of the step that makes the call; permanent faults -> Failed
  at the first hit (the rule was hit exactly once: no retries);
- a failed or killed run leaves nothing half-made: a re-run (fresh flow run, same configuration;
  for `:retry` kill cells the same flow run retried) completes, continuing the killed run's build,
  with one clone task of the base VM in all (vCenter's task timeline);
- the end state: exactly one template of the cell's series, exactly one base VM, no other VM of the
  cell, no answer ISO left in the datastore;
- time to recover: for a completed run, its time minus the clean baseline's; for a failed or killed
  one, the re-run's time.
A killed run's flow run is marked Crashed before its fresh re-run (`crash_abandoned_runs`), as the
zombie-run automation a site registers does once heartbeats stop: the new build's G10 then removes
the killed build's clone.

Usage:
    .venv/bin/python benchmarks/faults.py                 # the whole matrix
    .venv/bin/python benchmarks/faults.py --sample 3 --seed 42
    .venv/bin/python benchmarks/faults.py --only 'CloneVM_Task' --list

Run alone, the table goes to `.artifacts/faults-vcenter.md` and, when PREFECT_API_URL is set, to a Prefect
markdown artifact (key `fault-matrix-vcenter`; `make faults` publishes `fault-matrix`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from lab import cli, scenario  # noqa: E402
from lab.vcsim import VcsimControl  # noqa: E402

PASSWORD = "Lab-Passw0rd!"
VC_BLOCK = "faults-vsphere"
WIN_BLOCK = "faults-windows"
DEFAULT_SEED = 1107
ARTIFACT_KEY = "fault-matrix"

#: Transient faults vCenter returns for a busy or briefly unreachable host (the product retries).
TRANSIENT = ("HostCommunication", "SystemError", "TaskInProgress", "Timedout")
#: Faults no retry can fix (the product must fail at once).
PERMANENT = ("NoPermission", "InvalidArgument")
#: Methods whose failure the product handles without failing (cleanup, logout): no "for good" cell.
#: DestroyPropertyCollector: called only to drop a collector that failed (its error is suppressed;
#: vCenter drops a session's collectors at logout).
TOLERATED = {
    "Logout",
    "SessionIsActive",
    "DeleteDatastoreFile_Task",
    "Destroy_Task",
    "DestroyPropertyCollector",
}
#: Times a fault is injected: once and three times stay within the tasks' retry budget (4 retries).
TIMES = {"once": 1, "three": 3, "always": 0}
#: Methods called before the vCenter session exists (a fault there fails the login, outside steps).
LOGIN = {"RetrieveServiceContent", "Login", "LoginByToken"}
#: Cells that fail because of a product defect found by the matrix and not fixed yet: still run and
#: reported (as FAIL, with this note) by `make faults`, left out of the CI sample.
KNOWN_DEFECTS: dict[str, str] = {
    "delay:WaitForUpdatesEx:call:once": (
        "G1 presses the EFI boot key only after WaitForUpdatesEx saw the power-on; with every "
        "WaitForUpdatesEx 3 s slow the presses start after the lab's 2 s prompt and Windows "
        "never installs (G2 times out). Fix: press from the power-on request on."
    ),
}
#: How a killed run is brought back: a fresh flow run of the same configuration, or a retry of the
#: same (deployment) flow run through the Prefect API, as the UI's Retry button does.
KILL_VARIANTS = ("fresh", "retry")
#: mid-wait kills: the guest twin's setup / shutdown take this long (lab timing overrides), and the
#: flow-run process dies this many seconds into the step, i.e. inside its long guest wait.
SLOW_GUEST_SECONDS = 6.0
MID_WAIT_SECONDS = 2.0
#: The deployment a served golden-image flow gets (retry cells).
SERVE_NAME = "faults-kill"


def forget_custom_fields(env: dict[str, str]) -> None:
    """Remove the product's custom attribute definitions (winnodes.*), as on a vCenter the product
    never ran on: the next build creates them again (AddCustomFieldDef)."""
    site = scenario.Site.from_env(env)
    with scenario.connect(site) as si:
        cfm = si.content.customFieldsManager
        assert cfm is not None  # vCenter has one
        for field in list(cfm.field or []):
            if field.name.startswith("winnodes."):
                cfm.RemoveCustomFieldDef(key=field.key)


#: Methods a build calls only the first time on a vCenter: a cell on one first restores that
#: state, or its fault would never be reached (every build after the baseline finds the
#: definitions and never calls it).
FIRST_TIME_ONLY: dict[str, Callable[[dict[str, str]], None]] = {
    "AddCustomFieldDef": forget_custom_fields
}


# -------------------------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Cell:
    """One fault point x one repetition. `kind`: fault | delay | expiry | kill."""

    kind: str
    target: str  # SOAP method, task name (delays), or step ID (expiry, kill)
    fault: str = ""
    mode: str = ""  # call | task (faults); boundary | mid-task | mid-wait (kills); at | during
    times: str = "once"  # once | three | always; for kills how the run comes back: fresh | retry
    expect: str = "Completed"  # Completed | Failed
    step: str = ""  # the step expected to fail (Failed cells), when known

    @property
    def name(self) -> str:
        parts = [self.kind, self.target, self.fault, self.mode, self.times]
        return ":".join(p for p in parts if p)


@dataclass
class Outcome:
    cell: Cell
    state: str = ""
    failed_step: str | None = None  # the step ID the flow's error names
    report_step: str | None = None  # the step of the run report that failed
    error: str = ""
    seconds: float = 0.0
    recovery: float = 0.0
    hits: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def matrix(methods: dict[str, str]) -> list[Cell]:
    """Every cell, from the baseline's methods (method -> the step that first calls it)."""
    cells: list[Cell] = []
    for method, step in sorted(methods.items()):
        modes = ["call", "task"] if method.endswith("_Task") else ["call"]
        for mode in modes:
            for fault in TRANSIENT:
                if mode == "call" and fault == "TaskInProgress" and not method.endswith("_Task"):
                    continue  # vCenter raises TaskInProgress only for methods that start a task
                for times in TIMES:
                    if times == "always" and (method in TOLERATED or method in LOGIN):
                        continue
                    expect = "Failed" if times == "always" else "Completed"
                    cells.append(Cell("fault", method, fault, mode, times, expect, step))
        if method not in TOLERATED and method not in LOGIN:
            for fault in PERMANENT:
                cells.append(Cell("fault", method, fault, "call", "always", "Failed", step))
    for task_name in ("CreateVm", "CloneVm", "PowerOn", "ReconfigVm"):
        cells.append(Cell("delay", task_name, mode="task", times="once"))
    for method in ("RetrievePropertiesEx", "WaitForUpdatesEx"):
        cells.append(Cell("delay", method, mode="call", times="once"))
    for step in ("G1", "G2", "G4", "G8", "G9", "G10"):
        cells.append(Cell("expiry", step, mode="at"))
    cells.append(Cell("expiry", "G2", mode="during"))
    cells.append(Cell("expiry", "G9", mode="during"))
    for variant in KILL_VARIANTS:
        for step in ("G1", "G2", "G4", "G8", "G9", "G10"):
            cells.append(Cell("kill", step, mode="boundary", times=variant, expect="Killed"))
        for task_name in ("CloneVm", "PowerOn"):
            cells.append(Cell("kill", task_name, mode="mid-task", times=variant, expect="Killed"))
        for step in ("G2", "G9"):  # inside the wait for setup (Tools) / for sysprep's power-off
            cells.append(Cell("kill", step, mode="mid-wait", times=variant, expect="Killed"))
    return cells


def selected(name: str, only: str) -> bool:
    """`--only`: the cell's name contains the text, or one of its alternatives (a|b or a,b)."""
    wanted = [w for w in only.replace("|", ",").split(",") if w] or [""]
    return any(w in name for w in wanted)


def sample(cells: list[Cell], n: int, seed: int) -> list[Cell]:
    """`n` cells drawn with `seed` (same seed, same cells: a CI failure replays with --seed)."""
    return random.Random(seed).sample(cells, min(n, len(cells)))


@contextlib.contextmanager
def private_site(
    kind: str, components: list[str], *, startup_timeout: int = 60
) -> Iterator[dict[str, str]]:
    """A family's own private lab (`components`, in a fresh directory under /tmp) and a Prefect API
    (a test server, unless PREFECT_API_URL names one): what a family's standalone run stands on.
    Yields the lab's variables."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"winnodes-faults-{kind}-", dir="/tmp"))
    with cli.private_lab(run_dir / "lab", list(components)) as ctx:
        harness: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if not os.environ.get("PREFECT_API_URL"):
            from prefect.testing.utilities import prefect_test_harness

            harness = prefect_test_harness(server_startup_timeout=startup_timeout)
        with harness:
            yield dict(ctx.env)


# ---------------------------------------------------------------------------------------- the flow
def config(env: dict[str, str], tag: str) -> Any:
    from winnodes.model.config import GoldenImageConfig

    return GoldenImageConfig.model_validate(
        {
            "profile": "current",
            "vsphere_credentials_block": VC_BLOCK,
            "windows_access_block": WIN_BLOCK,
            "placement": {
                "datacenter": env["LAB_VSPHERE_DATACENTER"],
                "cluster": env["LAB_VSPHERE_CLUSTER"],
                "datastore": env["LAB_VSPHERE_DATASTORE"],
                "folder": env["LAB_VSPHERE_FOLDER"],
                "network": env["LAB_VSPHERE_NETWORK"],
            },
            "source": {
                "windows_iso": env["LAB_WINDOWS_ISO_CURRENT"],
                "tools_iso": env["LAB_TOOLS_ISO"],
            },
            "hardware": {
                "num_cpus": 2,
                "memory_mib": 4096,
                "disk_gib": 40,
                "boot_key_presses": 16,
                "boot_key_interval_seconds": 0.25,
            },
            "unattend": {"computer_name": "winworker"},
            "names": {"base_vm": f"fx-{tag}-base", "template_series": f"fx-{tag}"},
            "keep_templates": 1,
            "timeouts": {
                "vcenter_task_seconds": 60,
                "install_seconds": 90,
                "ssh_seconds": 20,
                "command_seconds": 60,
                "sysprep_seconds": 90,
            },
        }
    )


def save_blocks(env: dict[str, str]) -> None:
    from pydantic import SecretStr

    from blocks.vsphere import VSphereCredentials
    from blocks.windows import WindowsAccess

    VSphereCredentials(
        server=env["LAB_VSPHERE_SERVER"],
        username=env["LAB_VSPHERE_USERNAME"],
        password=SecretStr(env["LAB_VSPHERE_PASSWORD"]),
        ca_bundle=env["LAB_VSPHERE_CA_FILE"],
    ).save(VC_BLOCK, overwrite=True)
    WindowsAccess(
        ssh_private_key=SecretStr(Path(env["LAB_SSH_PRIVATE_KEY"]).read_text()),
        administrator_password=SecretStr(PASSWORD),
    ).save(WIN_BLOCK, overwrite=True)


@contextlib.contextmanager
def on_step(hooks: dict[str, Callable[[], object]]) -> Iterator[list[str]]:
    """Call hooks[step ID] when the flow enters that step (the run report's step boundary); yields
    the steps entered, in order, and "failed:<step>" for the step an exception left."""
    from flows import reporting

    entered: list[str] = []
    original: Callable[..., Any] = reporting.RunReport.step

    @contextlib.contextmanager
    def step(self: Any, step_id: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        sid = str(step_id.value)
        entered.append(sid)
        if sid in hooks:
            hooks[sid]()
        try:
            with original(self, step_id, *args, **kwargs) as out:
                yield out
        except BaseException:
            entered.append("failed:" + sid)
            if "failed" in hooks:  # before the flow's clean-up of a failed build runs
                hooks["failed"]()
            raise

    reporting.RunReport.step = step  # type: ignore[method-assign,assignment]
    try:
        yield entered
    finally:
        reporting.RunReport.step = original  # type: ignore[method-assign]


def run_flow(gi: Any, build_id: str | None = None) -> tuple[str, BaseException | None, float]:
    """One golden-image flow run in this process: (final state, its exception, seconds); with
    `build_id`, the run continues that build (as `winnodes run --resume` does)."""
    from flows.golden_image import golden_image

    t0 = time.monotonic()
    return settle(golden_image(gi, build_id=build_id, return_state=True), t0)


def settle(state: Any, t0: float) -> tuple[str, BaseException | None, float]:
    """A flow run's final Prefect state as a cell reads it: ("Completed"/"Failed"/..., the run's
    exception, seconds since `t0`). Shared by every family's runs."""
    seconds = time.monotonic() - t0
    exc: BaseException | None = None
    if not state.is_completed():
        try:
            state.result(raise_on_failure=True)
        except BaseException as e:
            exc = e
    return state.type.value.capitalize(), exc, seconds


# -------------------------------------------------------------------------------- the end state
def end_state(env: dict[str, str], gi: Any) -> list[str]:
    """What is wrong with the cell's objects, read with pyvmomi and from the datastore's files."""
    from pyVmomi import vim

    site = scenario.Site.from_env(env)
    prefix = gi.names.template_series
    problems: list[str] = []
    with scenario.connect(site) as si:
        folder = scenario.find(si, site.folder)
        views = si.content.viewManager
        assert views is not None
        view = views.CreateContainerView(folder, [vim.VirtualMachine], True)
        try:
            mine = [
                (vm.name, bool(vm.config and vm.config.template))
                for vm in view.view
                if vm.name.startswith(prefix)
            ]
        finally:
            view.Destroy()
    templates = [n for n, t in mine if t]
    bases = [n for n, t in mine if n == gi.names.base_vm and not t]
    others = sorted(n for n, t in mine if not t and n != gi.names.base_vm)
    if len(templates) != 1:
        problems.append(f"{len(templates)} templates of the series ({templates})")
    if len(bases) != 1:
        problems.append(f"{len(bases)} base VMs")
    if others:
        problems.append(f"orphan VMs: {others}")
    iso = Path(env["LAB_VSPHERE_DATASTORE_DIR"]) / "winnodes" / f"{gi.names.base_vm}-answers.iso"
    if iso.exists():
        problems.append(f"answer ISO left: {iso.name}")
    return problems


# ---------------------------------------------------------------------------------- the baseline
def baseline(env: dict[str, str], control: VcsimControl) -> tuple[dict[str, str], float]:
    """A clean build: the SOAP methods it calls (method -> first step that calls it, "" outside
    steps) and its time."""
    from benchmarks.vcenter_calls import measured

    marks: list[tuple[str, Any]] = []
    current = [""]

    def mark_entering(step: str) -> Callable[[], None]:
        def hook() -> None:
            marks.append((current[0], measured(control.stats())))
            current[0] = step

        return hook

    gi = config(env, "base-" + uuid.uuid4().hex[:4])
    control.reset_stats()
    marks.append(("", measured(control.stats())))
    steps = ("G1", "G2", "G3a", "G3b", "G3c", "G4", "G5", "G6", "G7", "G8", "G9", "G10")
    with on_step({s: mark_entering(s) for s in steps}):
        state, exc, seconds = run_flow(gi)
    marks.append((current[0], measured(control.stats())))
    if state != "Completed":
        raise RuntimeError(f"the clean baseline build did not complete: {state} {exc!r}")
    first: dict[str, str] = {}
    for (_, before), (step, after) in itertools.pairwise(marks):
        for method in after - before:
            first.setdefault(method, step)
    return first, seconds


# ------------------------------------------------------------------------------------- the cells
def _fault_hits(control: VcsimControl) -> int:
    return sum(int(r.get("count", 0)) for r in control.list_faults())


def _started_task(control: VcsimControl, name: str) -> bool:
    return any(t["name"] == name and not t.get("completed") for t in control.stats()["tasks"])


def run_cell(
    env: dict[str, str], control: VcsimControl, cell: Cell, base_seconds: float
) -> Outcome:
    tag = uuid.uuid4().hex[:6]
    gi = config(env, tag)
    out = Outcome(cell)
    control.clear_faults()
    control.clear_delays()
    at_failure: list[int] = []  # fault hits when a step failed
    flow_run_id: Any = None
    hooks: dict[str, Callable[[], object]] = {}
    timers: list[threading.Timer] = []
    try:
        if cell.target in FIRST_TIME_ONLY:
            FIRST_TIME_ONLY[cell.target](env)
        if cell.kind == "fault":
            control.add_fault(
                cell.target,
                cell.fault,
                mode=cell.mode,
                max_count=TIMES[cell.times],
                message=f"{cell.fault} (fault matrix)",
            )
        elif cell.kind == "delay":
            control.set_delays({cell.target: 3000})
        elif cell.kind == "expiry":
            if cell.mode == "at":
                hooks[cell.target] = control.invalidate_sessions
            else:

                def later() -> None:
                    t = threading.Timer(1.5, control.invalidate_sessions)
                    timers.append(t)
                    t.start()

                hooks[cell.target] = later
        if cell.kind == "kill":
            return kill_cell(env, control, gi, cell, out)
        else:
            hooks["failed"] = lambda: at_failure.append(_fault_hits(control))
            with on_step(hooks) as entered:
                from flows.golden_image import golden_image

                t0 = time.monotonic()
                final = golden_image(gi, return_state=True)
                out.state, exc, out.seconds = settle(final, t0)
                flow_run_id = final.state_details.flow_run_id
            out.report_step = next(
                (e.removeprefix("failed:") for e in entered if e.startswith("failed:")), None
            )
            if exc is not None:
                out.failed_step = getattr(exc, "step_id", None)
                out.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        out.hits = _fault_hits(control)
    finally:
        for t in timers:
            t.join()
        control.clear_faults()
        control.clear_delays()

    expect = cell.expect
    if cell.kind == "kill":
        if out.state != "Killed":
            out.problems.append(f"the kill point was not reached ({out.state})")
    elif out.state != expect:
        out.problems.append(f"ended {out.state}, expected {expect}")
    if expect == "Failed" and out.state == "Failed":
        if not out.failed_step:
            out.problems.append("the failure names no step ID")
        if cell.step and out.report_step != cell.step:
            out.problems.append(f"step {out.report_step} failed, expected {cell.step}")
        # No retry of a permanent fault: no failed task run ran more than once. (The fault's hit
        # count cannot tell: the lab's own guest supervisor calls the same methods, and the
        # clean-up of a failed build may call the method again.)
        hits = at_failure[0] if at_failure else out.hits
        if cell.fault in PERMANENT:
            if hits < 1:
                out.problems.append("the permanent fault was never hit")
            if retried := retried_task_runs(flow_run_id):
                out.problems.append(f"permanent fault retried: {', '.join(retried)}")
    if out.state == "Completed":
        out.recovery = max(0.0, out.seconds - base_seconds)
    else:  # nothing half-made: a fresh run of the same configuration converges
        state, exc, seconds = run_flow(gi)
        out.recovery = seconds
        if state != "Completed":
            out.problems.append(f"re-run ended {state}: {exc!r}"[:200])
    out.problems += end_state(env, gi)
    if out.problems and cell.name in KNOWN_DEFECTS:
        out.problems.append("known defect: " + KNOWN_DEFECTS[cell.name])
    return out


def kill_cell(
    env: dict[str, str], control: VcsimControl, gi: Any, cell: Cell, out: Outcome
) -> Outcome:
    """A kill cell: the flow run's process dies (kill -9) at the cell's point, then the run comes
    back as the variant says: `fresh`, a new flow run of the same configuration in this process;
    `retry`, the same deployment flow run retried through the Prefect API (`kill_retry`). Checks,
    besides the end state: the run resumed the killed run's build (the build ID vCenter shows on
    the base VM) and vCenter cloned the base VM once in all (`retry`: the same flow run continues
    its build; a fresh run in the default build mode "new" starts a build of its own), and vCenter
    reset the base VM only when its boot never got the EFI boot key (kill:PowerOn:mid-task)."""
    from lab.guest import timing

    guests = env.get("LAB_GUESTS_DIR", "")
    slow = cell.mode == "mid-wait" and bool(guests)
    if slow:  # long guest waits: setup before Tools report (G2), sysprep's shutdown (G9)
        overrides = {"setup": SLOW_GUEST_SECONDS, "shutdown": SLOW_GUEST_SECONDS}
        timing.set_lab_timing(guests, timing.Timing("fast", overrides=overrides))
    try:
        if cell.times == "retry":
            kill_retry(env, control, gi, cell, out)
        else:
            # a fresh run of a "new" build starts a build of its own (choose_build: "resume"
            # continues the pending one); it supersedes the killed run's build
            out.state, out.seconds = kill_run(env, control, gi, cell)
            if out.state == "Killed":
                crash_abandoned_runs()
                state, exc, out.recovery = run_flow(gi)
                if state != "Completed":
                    out.problems.append(f"re-run ended {state}: {exc!r}"[:200])
    finally:
        if slow:
            timing.set_lab_timing(guests, None)
        control.clear_delays()
    if out.state != "Killed":
        out.problems.append(f"the kill point was not reached ({out.state})")
    base = _base_moid(env, gi)
    clones = _tasks_on(control, base, "clone")
    if cell.times == "retry" and len(clones) != 1:  # the retry continues the same build
        out.problems.append(f"{len(clones)} clone tasks of the base VM (expected 1)")
    resets = len(_tasks_on(control, base, "reset"))
    expected_resets = 1 if (cell.target, cell.mode) == ("PowerOn", "mid-task") else 0
    if resets != expected_resets:
        out.problems.append(f"{resets} resets of the base VM (expected {expected_resets})")
    out.problems += end_state(env, gi)
    if out.problems and cell.name in KNOWN_DEFECTS:
        out.problems.append("known defect: " + KNOWN_DEFECTS[cell.name])
    return out


def retried_task_runs(flow_run_id: Any) -> list[str]:
    """Failed task runs of the flow run that ran more than once (Prefect's own record)."""
    if flow_run_id is None:
        return []
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(
        f"{r.name} x{r.run_count}"
        for r in runs
        if r.state is not None and r.state.is_failed() and r.run_count > 1
    )


def crash_abandoned_runs() -> list[str]:
    """Mark the flow runs still "Running" after their process was killed as Crashed, as a site's
    zombie-run automation does once their heartbeats stop (`deployments.register`; the matrix's
    test server runs no automations). A new build then knows the killed build is over (G10
    removes its clone). Returns the runs marked."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    marked: list[str] = []
    with get_client(sync_client=True) as client:
        running = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
        )
        for run in client.read_flow_runs(flow_run_filter=running):
            client.set_flow_run_state(
                run.id, Crashed(message="process killed (fault matrix)"), force=True
            )
            marked.append(str(run.id))
    return marked


def _tasks_on(control: VcsimControl, moid: str, kind: str) -> list[dict[str, Any]]:
    """vCenter tasks on the VM `moid` whose type (VirtualMachine.cloneVm, .reset...) contains
    `kind` (the lab vCenter's task timeline, /stats: independent of the product)."""
    return [
        t
        for t in control.stats()["tasks"]
        if moid and t.get("entity") == moid and kind in str(t.get("type", "")).lower()
    ]


def _base_moid(env: dict[str, str], gi: Any) -> str:
    site = scenario.Site.from_env(env)
    with scenario.connect(site) as si:
        vm = _vm_named(si, site, gi.names.base_vm)
        return str(vm._moId) if vm is not None else ""


def _base_build(env: dict[str, str], gi: Any) -> str:
    """The build the killed run worked on, as vCenter shows it on the base VM: the pending build
    (custom attribute, set at the end of G1); "" when the run died before (a base VM is kept
    across builds: one killed in G1 is reused by the next run's build, under a new build ID)."""
    site = scenario.Site.from_env(env)
    with scenario.connect(site) as si:
        vm = _vm_named(si, site, gi.names.base_vm)
        if vm is None:
            return ""
        content: Any = si.content
        fields = {f.key: f.name for f in content.customFieldsManager.field or []}
        attrs = {fields.get(v.key): v.value for v in vm.customValue or []}
        return str(attrs.get("winnodes.build.pending") or "")


def _vm_named(si: Any, site: Any, name: str) -> Any:
    from pyVmomi import vim

    views = si.content.viewManager
    view = views.CreateContainerView(scenario.find(si, site.folder), [vim.VirtualMachine], True)
    try:
        return next((vm for vm in view.view if vm.name == name), None)
    finally:
        view.Destroy()


def _resumed(env: dict[str, str], gi: Any, build: str) -> list[str]:
    """The template the run came back with belongs to the killed run's build (when it had one)."""
    if not build:
        return []
    site = scenario.Site.from_env(env)
    with scenario.connect(site) as si:
        from pyVmomi import vim

        content: Any = si.content
        folder = scenario.find(si, site.folder)
        view = content.viewManager.CreateContainerView(folder, [vim.VirtualMachine], True)
        try:
            fields = {f.key: f.name for f in content.customFieldsManager.field or []}
            builds = [
                {fields.get(v.key): v.value for v in vm.customValue or []}.get("winnodes.build")
                for vm in view.view
                if vm.name.startswith(gi.names.template_series)
                and vm.config is not None
                and vm.config.template
            ]
        finally:
            view.Destroy()
    if builds != [build]:
        return [f"the template's build {builds} is not the killed run's build {build}"]
    return []


def _kill_env(cell: Cell, once: Path) -> dict[str, str]:
    """What the flow-run process needs to kill itself at the cell's point (boundary: on entering
    the step; mid-wait: MID_WAIT_SECONDS later), once (the marker file `once`)."""
    if cell.mode == "mid-task":
        return {}
    after = MID_WAIT_SECONDS if cell.mode == "mid-wait" else 0.0
    return {
        "FAULTS_KILL_AT": cell.target,
        "FAULTS_KILL_AFTER": str(after),
        "FAULTS_KILL_ONCE": str(once),
    }


def install_kill_hook() -> None:
    """In a flow-run process: kill -9 itself where FAULTS_KILL_AT/_AFTER say, once (the first
    process to get there creates FAULTS_KILL_ONCE; a retried run goes past)."""
    kill_at = os.environ.get("FAULTS_KILL_AT", "")
    if not kill_at:
        return
    after = float(os.environ.get("FAULTS_KILL_AFTER", "0") or 0)
    once = os.environ.get("FAULTS_KILL_ONCE", "")

    def die() -> None:
        if once:
            try:
                Path(once).touch(exist_ok=False)
            except FileExistsError:
                return  # an earlier attempt was killed here already
        if after:
            timer = threading.Timer(after, os.kill, (os.getpid(), signal.SIGKILL))
            timer.daemon = True
            timer.start()
        else:
            os.kill(os.getpid(), signal.SIGKILL)

    stack = contextlib.ExitStack()
    stack.enter_context(on_step({kill_at: die}))  # for the life of the process
    _KEEP.append(stack)


_KEEP: list[contextlib.ExitStack] = []


def kill_run(env: dict[str, str], control: VcsimControl, gi: Any, cell: Cell) -> tuple[str, float]:
    """Run the flow in a child process and kill -9 it at the cell's kill point."""
    from prefect.settings import PREFECT_API_URL

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        fh.write(gi.model_dump_json())
        cfg = fh.name
    once = Path(cfg).with_suffix(".killed")
    child_env = dict(os.environ) | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    child_env |= _kill_env(cell, once)
    if cell.mode == "mid-task":
        control.set_delays({cell.target: 10000})
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", cfg],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if cell.mode == "mid-task":
            _kill_mid_task(control, cell, lambda: proc.poll() is None, proc.pid, t0)
        proc.wait(timeout=600)
        if cell.mode == "mid-task":
            _task_finished(control, cell)
    finally:
        if proc.poll() is None:
            proc.kill()
        control.clear_delays()
        Path(cfg).unlink(missing_ok=True)
        once.unlink(missing_ok=True)
    state = "Killed" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
    return state, time.monotonic() - t0


def _kill_mid_task(
    control: VcsimControl, cell: Cell, alive: Callable[[], bool], pid: int, t0: float
) -> None:
    """Kill -9 `pid` half a second into the cell's (delayed) vCenter task."""
    while alive() and not _started_task(control, cell.target):
        if time.monotonic() - t0 > 300:
            return
        time.sleep(0.2)
    if alive():
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _task_finished(control: VcsimControl, cell: Cell) -> None:
    """The run comes back after vCenter finished the task the killed run left (delayed) behind."""
    control.clear_delays()
    until = time.monotonic() + 120
    while _started_task(control, cell.target) and time.monotonic() < until:
        time.sleep(0.5)


def child(cfg: str) -> int:
    """The flow run of a kill cell (in its own process, killed by the parent or by itself)."""
    from winnodes.model.config import GoldenImageConfig

    gi = GoldenImageConfig.model_validate_json(Path(cfg).read_text())
    install_kill_hook()
    state, _exc, _ = run_flow(gi)
    return 0 if state == "Completed" else 1


# ------------------------------------------------------------------------- retry via the Prefect API
def serve(pid_dir: str) -> int:
    """The `retry` cells' runner: serves the golden-image flow as deployment
    `golden-image/faults-kill` (Prefect's `serve`: a process that picks up the deployment's
    scheduled runs, each in a flow-run process of its own, `python -m prefect.engine`). The
    deployment's entrypoint is benchmarks/served_flow.py, the product's flow behind the kill hook."""
    from prefect import serve as prefect_serve

    from flows.golden_image import golden_image

    Path(pid_dir).mkdir(parents=True, exist_ok=True)
    deployment: Any = golden_image.to_deployment(name=SERVE_NAME)
    deployment.entrypoint = f"{Path(__file__).resolve().parent / 'served_flow.py'}:golden_image"
    prefect_serve(deployment, limit=1, print_starting_message=False)
    return 0


def flow_run_process_started() -> None:
    """At import in a flow-run process of the serve runner (benchmarks/served_flow.py): the kill
    hook, and its pid."""
    pid_dir = os.environ.get("FAULTS_PID_DIR", "")
    if pid_dir:
        (Path(pid_dir) / str(os.getpid())).touch()
    install_kill_hook()


def kill_retry(
    env: dict[str, str], control: VcsimControl, gi: Any, cell: Cell, out: Outcome
) -> None:
    """The `retry` variant: the flow runs as a deployment flow run (served), its flow-run process
    is killed -9 at the cell's point, the runner reports the run Crashed, and the same flow run is
    retried through the Prefect API as the UI's Retry button does (state AwaitingRetry, forced);
    the same runner runs it again, and it must complete, resuming the killed run's build."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import AwaitingRetry

    work = Path(tempfile.mkdtemp(prefix="faults-retry-", dir="/tmp"))
    pid_dir = work / "pids"
    serve_env = dict(os.environ) | {
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "FAULTS_PID_DIR": str(pid_dir),
    }
    serve_env |= _kill_env(cell, work / "killed")
    if cell.mode == "mid-task":
        control.set_delays({cell.target: 10000})
    runner = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(pid_dir)],
        env=serve_env,
        stdout=subprocess.DEVNULL,
        stderr=(work / "serve.log").open("w"),
        cwd=REPO_ROOT,
    )
    try:
        with get_client(sync_client=True) as client:
            deployment = _wait_for(
                "the served deployment",
                lambda: _deployment(client, f"golden-image/{SERVE_NAME}", runner),
                60,
            )
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters={"config": gi.model_dump(mode="json")}
            )
            t0 = time.monotonic()
            if cell.mode == "mid-task":
                flow_pid = _wait_for("the flow-run process", lambda: _flow_pid(pid_dir), 120)
                _kill_mid_task(control, cell, lambda: _alive(flow_pid), flow_pid, t0)
            state = _wait_for("the killed run's end", lambda: _final(client, run.id), 600)
            out.seconds = time.monotonic() - t0
            out.state = "Killed" if state.type.value == "CRASHED" else state.type.value.capitalize()
            out.error = str(state.message or "")[:160]
            if cell.mode == "mid-task":
                _task_finished(control, cell)
            build = _base_build(env, gi)
            if out.state != "Killed":
                return
            t1 = time.monotonic()
            retry: Any = AwaitingRetry(message="Retry (fault matrix), as the UI's Retry button")
            client.set_flow_run_state(run.id, retry, force=True)
            _wait_for("the retry to start", lambda: _started_again(client, run.id), 120)
            state = _wait_for("the retried run's end", lambda: _final(client, run.id), 600)
            out.recovery = time.monotonic() - t1
            if state.type.value != "COMPLETED":
                out.problems.append(
                    f"retry ended {state.type.value}: {str(state.message or '')[:160]}"
                )
            out.problems += _resumed(env, gi, build)
    finally:
        runner.terminate()
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
        for pid in _flow_pids(pid_dir):  # a flow-run process the runner left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    """Poll `probe` (benchmark harness: the Prefect API and /proc have no events to wait on here)
    until it returns something truthy."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(f"{what}: nothing after {timeout:.0f}s")


def _deployment(client: Any, name: str, runner: subprocess.Popen[bytes]) -> Any:
    from prefect.exceptions import ObjectNotFound

    if runner.poll() is not None:
        raise RuntimeError(f"the serve process ended ({runner.returncode})")
    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None


def _final(client: Any, run_id: Any) -> Any:
    state = client.read_flow_run(run_id).state
    return state if state is not None and state.is_final() else None


def _started_again(client: Any, run_id: Any) -> bool:
    state = client.read_flow_run(run_id).state
    return state is not None and not state.is_scheduled()


def _flow_pids(pid_dir: Path) -> list[int]:
    return [int(p.name) for p in pid_dir.glob("[0-9]*")] if pid_dir.is_dir() else []


def _flow_pid(pid_dir: Path) -> int | None:
    return next((pid for pid in _flow_pids(pid_dir) if _alive(pid)), None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


# -------------------------------------------------------------------------------------- the report
def report(outcomes: list[Outcome], seed: int | None, base_seconds: float) -> str:
    passed = sum(o.passed for o in outcomes)
    slowest = max(outcomes, key=lambda o: o.recovery, default=None)
    lines = [
        "# Fault matrix: golden-image flow on the lab",
        "",
        f"Cells: **{len(outcomes)}**, passed: **{passed}**, failed: **{len(outcomes) - passed}**"
        + (f"; sample seed {seed}" if seed is not None else "")
        + f"; clean build {base_seconds:.1f}s",
    ]
    if slowest is not None:
        lines.append(f"Slowest recovery: {slowest.recovery:.1f}s ({slowest.cell.name})")
    lines += [
        "",
        "| fault point | times | expected | outcome | failed step (error's ID) | hits | run s "
        "| recovery s | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        c = o.cell
        point = ":".join(p for p in (c.kind, c.target, c.fault, c.mode) if p)
        verdict = "pass" if o.passed else "FAIL: " + "; ".join(o.problems).replace("|", "/")
        lines.append(
            f"| {point} | {c.times} | {c.expect}{'@' + c.step if c.expect == 'Failed' else ''} "
            f"| {o.state} | {_failed(o)} | {o.hits} | {o.seconds:.1f} "
            f"| {o.recovery:.1f} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _failed(o: Outcome) -> str:
    if not o.report_step and not o.failed_step:
        return ""
    return f"{o.report_step or '-'} ({o.failed_step or 'none'})"


def publish(markdown: str, path: Path, key: str = ARTIFACT_KEY) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    print(f"report: {path}", flush=True)
    if os.environ.get("PREFECT_API_URL"):
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown, key=key, description="fault matrix")


# --------------------------------------------------------------------------------------------- main
def run_matrix(
    env: dict[str, str],
    *,
    only: str = "",
    n: int = 0,
    seed: int | None = None,
    deadline: float = 0.0,
    progress: Callable[[Outcome], None] | None = None,
    skip_known: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> tuple[list[Outcome], float]:
    """Baseline, then the cells (all, those matching `only`, or `n` drawn with `seed`; without the
    known defects' cells with `skip_known`), until the monotonic `deadline` (0: none). Needs a
    Prefect API (server or test harness)."""
    control = VcsimControl.from_env(env)
    save_blocks(env)
    kills = [c for c in matrix({}) if selected(c.name, only)]
    if only and kills and all(c.kind == "kill" for c in kills):
        # kill cells do not depend on the baseline's methods: no clean build first
        return _run_cells(env, control, kills, n, seed, deadline, progress, 0.0, shard)
    methods, base_seconds = baseline(env, control)
    print(
        f"baseline: {len(methods)} SOAP methods in {base_seconds:.1f}s: "
        + ", ".join(f"{m}@{s or '-'}" for m, s in sorted(methods.items())),
        flush=True,
    )
    cells = [
        c
        for c in matrix(methods)
        if selected(c.name, only) and not (skip_known and c.name in KNOWN_DEFECTS)
    ]
    return _run_cells(env, control, cells, n, seed, deadline, progress, base_seconds, shard)


#: What the multi-family runner (benchmarks/fault_matrix.py) calls: the same as `run_matrix`.
run_family = run_matrix
KIND = "vcenter"
#: The lab components the golden-image flow needs here.
LAB = ["vcsim", "guest.supervisor"]
#: SOAP methods of a clean build, for `cells()` without a baseline (the real list comes from it).
REFERENCE_METHODS = {
    "CloneVM_Task": "G8",
    "CreateVM_Task": "G1",
    "MarkAsTemplate": "G10",
    "PowerOnVM_Task": "G1",
    "RetrievePropertiesEx": "",
    "WaitForUpdatesEx": "G1",
}


def cells() -> list[Cell]:
    """Reference cells (a real run derives the methods from its clean baseline build)."""
    return matrix(REFERENCE_METHODS)


def _run_cells(
    env: dict[str, str],
    control: VcsimControl,
    cells: list[Cell],
    n: int,
    seed: int | None,
    deadline: float,
    progress: Callable[[Outcome], None] | None,
    base_seconds: float,
    shard: tuple[int, int] = (0, 1),
) -> tuple[list[Outcome], float]:
    if n:
        cells = sample(cells, n, DEFAULT_SEED if seed is None else seed)
    elif seed is not None:  # a time-boxed run covers the matrix evenly, replayably
        cells = sample(cells, len(cells), seed)
    cells = cells[shard[0] :: shard[1]]  # this job's share (benchmarks/fault_matrix.py)
    outcomes: list[Outcome] = []
    for i, cell in enumerate(cells, 1):
        if deadline and time.monotonic() > deadline:
            print(f"time is up after {i - 1} of {len(cells)} cells", flush=True)
            break
        o = run_cell(env, control, cell, base_seconds)
        outcomes.append(o)
        print(
            f"[{i}/{len(cells)}] {cell.name}: {o.state} {_failed(o)} "
            f"{o.seconds:.1f}s -> {'pass' if o.passed else 'FAIL ' + '; '.join(o.problems)}",
            flush=True,
        )
        if progress:
            progress(o)
    return outcomes, base_seconds


def family_main(
    argv: list[str] | None,
    *,
    doc: str | None,
    kind: str,
    lab: list[str],
    cells: Callable[[], list[Cell]],
    run: Callable[..., tuple[Any, ...]],
    title: str = "",
    startup_timeout: int = 60,
    add_args: Callable[[argparse.ArgumentParser], None] | None = None,
    early: Callable[[argparse.Namespace], int | None] | None = None,
    after_run: Callable[[argparse.Namespace], None] | None = None,
) -> int:
    """A family module run alone: the options every family has (--seed, --sample, --only,
    --minutes, --list, --out), its own private lab and Prefect API, the report as markdown (+ JSON,
    + the Prefect artifact `fault-matrix-<kind>`). `run` is the family's `run_family` (its first two
    results: outcomes, clean run's seconds); `title` replaces "golden-image flow" in the report's
    heading; `add_args`/`early`/`after_run` are a family's own options and what they do."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, help="draw the sample (or the order) with this seed")
    parser.add_argument("--sample", type=int, default=0, help="run N cells drawn with --seed")
    parser.add_argument("--only", default="", help="cells whose name contains this text")
    parser.add_argument("--minutes", type=float, default=0, help="stop starting cells after this")
    parser.add_argument("--list", action="store_true", help="list the reference cells and exit")
    parser.add_argument("--out", default=str(REPO_ROOT / ".artifacts" / f"faults-{kind}.md"))
    if add_args is not None:
        add_args(parser)
    args = parser.parse_args(argv)
    if early is not None and (code := early(args)) is not None:
        return code
    if args.list:
        for c in cells():
            print(c.name)
        return 0
    seed = args.seed if args.seed is not None else (DEFAULT_SEED if args.sample else None)
    if seed is not None:
        print(f"seed: {seed} (replay with --seed {seed})", flush=True)
    os.environ.setdefault("WINNODES_RETRY_DELAY", "0.2")
    # SIGTERM stops like Ctrl-C: the private lab's daemons are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    deadline = time.monotonic() + args.minutes * 60 if args.minutes else 0.0
    with private_site(kind, lab, startup_timeout=startup_timeout) as env:
        outcomes, base = run(env, only=args.only, n=args.sample, seed=seed, deadline=deadline)[:2]
        if after_run is not None:
            after_run(args)
        md = report(outcomes, seed, base)
        if title:
            md = md.replace("golden-image flow", title)
        publish(md, Path(args.out), key=f"{ARTIFACT_KEY}-{kind}")
    Path(args.out).with_suffix(".json").write_text(
        json.dumps([asdict(o.cell) | {"passed": o.passed, **_row(o)} for o in outcomes], indent=1)
    )
    print(md)
    return 0 if all(o.passed for o in outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    def early(args: argparse.Namespace) -> int | None:
        if args.child:
            return child(args.child)
        if args.serve:
            return serve(args.serve)
        return None

    def hidden(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--child", help=argparse.SUPPRESS)
        parser.add_argument("--serve", help=argparse.SUPPRESS)

    return family_main(
        argv,
        doc=__doc__,
        kind=KIND,
        lab=LAB,
        cells=cells,
        run=run_matrix,
        startup_timeout=180,
        add_args=hidden,
        early=early,
    )


def _row(o: Outcome) -> dict[str, Any]:
    return {
        "state": o.state,
        "failed_step": o.failed_step,
        "report_step": o.report_step,
        "seconds": round(o.seconds, 1),
        "recovery": round(o.recovery, 1),
        "hits": o.hits,
        "problems": o.problems,
        "error": o.error,
    }


if __name__ == "__main__":
    raise SystemExit(main())
