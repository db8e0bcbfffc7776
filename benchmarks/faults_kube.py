"""The fault matrix, Kubernetes family: the cluster-side flows under injected Kubernetes API faults
(`python benchmarks/faults_kube.py`; folded into `make faults` by benchmarks/faults.py).

Why. The product's cluster side (PRE, M1, C2, M7, PRE-3, C3, V1) talks to OpenShift's API with the
`kubernetes` client; a real API server answers 429 when API Priority and Fairness sheds load, 500 and
503 when etcd or an aggregated API is unwell, connections reset under load balancers, watches end
early and resume into 410 Gone. The vCenter matrix (benchmarks/faults.py) cannot show any of that.

How. `lab.kubefaults` sits in front of a private lab's real kube-apiserver; the product's OpenShift
block points at it, the lab's controllers and this module's checks talk to the apiserver directly.
The cells are read from a clean baseline, as faults.py reads vcsim's /stats: every (verb, resource)
the flows call (the proxy's per-verb/resource counts, attributed to the step that first calls it)
x {429 (with Retry-After), 500, 503, reset} x {once, three, always}; a reset after the apiserver
did a change, for every mutating call; and, for every watch, a watch closed by the server after
one event (once, three, always) and a watch resumed into 410 Gone (once, three).

Two flows run: `cluster-prep` (PRE-1/4, DNS1, PRE-3; the key secret is removed before each of its
cells so the create path runs) and `windows-machineset` with 1 replica. Non-watch cells of the
machineset flow converge the baseline's MachineSet (every call of a fresh run is made again, the
wait ends at its first complete listing); watch cells create a fresh MachineSet, so the watches
carry the Machine and Node events the wait depends on.

What a cell checks, with the kubernetes client on the real apiserver (not through the proxy):
- within the retry budget (once, three; every watch-close/gone cell) -> Completed; always ->
  Failed, naming the step ID of the step that makes the call (V1's Events excepted: they only
  explain the wait, which goes on without them; a watch failing for good may also end Completed,
  its stream lists again between failures and can see the set Ready before it gives up);
  the rule was hit;
- a failed run leaves nothing half-made: a re-run without faults completes;
- the end state: exactly one MachineSet of the cell's name, Ready, with exactly its replicas of
  Machines (no duplicates), the key secret `cloud-private-key` holding the block's key.

Usage:
    .venv/bin/python benchmarks/faults_kube.py [--only 'list machines'] [--sample N --seed S]
"""

from __future__ import annotations

import base64
import itertools
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import faults  # noqa: E402
from benchmarks.faults import Cell, Outcome  # noqa: E402
from lab import kubefaults  # noqa: E402
from lab.kubefaults import KubeFaultsControl  # noqa: E402

KIND = "kube"
#: Lab components the cells need (names as in lab.cli.ALL_COMPONENTS without "lab.").
LAB = ["vcsim", "guest.supervisor", "kube", "dns", "controllers"]
#: Faults a busy or briefly unreachable API server gives (the product retries them).
TRANSIENT = ("429", "500", "503", "reset")
TIMES = {"once": 1, "three": 3, "always": 0}
MUTATING = {"create", "update", "patch", "delete"}
#: Calls whose failure for good the product survives: V1's Events only explain a wait (its stream
#: may give up, the wait goes on without it).
OPTIONAL = {"machineset:list events", "machineset:watch events"}
FLOWS = ("prep", "machineset")
DEFAULT_SEED = 1111
READY_SECONDS = 240
WMCO_NS = "openshift-windows-machine-config-operator"
MAPI_NS = "openshift-machine-api"
KEY_SECRET = "cloud-private-key"
#: Cells that fail because of a product defect found by the matrix and not fixed yet.
KNOWN_DEFECTS: dict[str, str] = {}


# -------------------------------------------------------------------------------------------- cells
def matrix(calls: dict[str, str]) -> list[Cell]:
    """Every cell, from the baseline's calls ("<flow>:<verb> <resource>" -> first step)."""
    cells: list[Cell] = []
    for target, step in sorted(calls.items()):
        verb = target.split(":", 1)[1].split(" ", 1)[0]
        optional = target in OPTIONAL
        for fault, times in itertools.product(TRANSIENT, TIMES):
            expect = "Failed" if times == "always" and not optional else "Completed"
            cells.append(Cell(KIND, target, fault, "call", times, expect, step))
        if verb in MUTATING:
            cells.append(Cell(KIND, target, "reset-after", "call", "once", "Completed", step))
        if verb == "watch":
            for times in TIMES:
                cells.append(Cell(KIND, target, "watch-close", "stream", times, "Completed", step))
            for times in ("once", "three"):
                cells.append(Cell(KIND, target, "gone", "resume", times, "Completed", step))
    return cells


#: The calls of a clean run on the lab (kube-apiserver v1.36, the flows of this tree), for cells()
#: without a lab; prepare() measures them again and run_family() uses the measured ones.
REFERENCE_CALLS = {
    # cluster-prep: PRE-1/PRE-4 read everything in one task before their report rows ("")
    "prep:get infrastructures": "",
    "prep:list clusterserviceversions": "",
    "prep:list subscriptions": "",
    "prep:get deployments": "",
    "prep:get networks": "",
    "prep:get secrets": "PRE-3",
    "prep:create secrets": "PRE-3",
    # windows-machineset (the lab's template: C2 is not needed, the workspace is configured)
    "machineset:get infrastructures": "M1",
    "machineset:get secrets": "M7",
    "machineset:list clusterserviceversions": "M7",
    "machineset:get machinesets": "C3",
    "machineset:patch machinesets": "C3",
    "machineset:list machinesets": "V1",
    "machineset:list machines": "V1",
    "machineset:list nodes": "V1",
    "machineset:list events": "V1",
    "machineset:watch machinesets": "V1",
    "machineset:watch machines": "V1",
    "machineset:watch nodes": "V1",
    "machineset:watch events": "V1",
}


def cells() -> list[Cell]:
    """The family's cells for the reference calls (the lab run measures them again)."""
    return matrix(REFERENCE_CALLS)


def sample(all_cells: list[Cell], n: int, seed: int) -> list[Cell]:
    return random.Random(seed).sample(all_cells, min(n, len(all_cells)))


# -------------------------------------------------------------------------------------------- state
@dataclass
class State:
    """What prepare() made: the proxy, the blocks' names, the template, the baseline."""

    proxy: Any
    control: KubeFaultsControl
    template: str
    converge_set: str
    calls: dict[str, str]
    base_seconds: dict[str, float]


def _cl() -> Any:
    from tests.flows import cluster_lab

    return cluster_lab


def _proxy_env(env: dict[str, str], proxy: Any) -> dict[str, str]:
    return env | proxy.env()


def _cluster(env: dict[str, str]) -> Any:
    """The independent observer: the kubernetes client on the real apiserver."""
    return _cl().Cluster(env)


def _machineset_config(env: dict[str, str], name: str, template: str) -> Any:
    return _cl().machineset_config(env, name, template, replicas=1)


def run_prep(penv: dict[str, str]) -> tuple[str, BaseException | None, float]:
    from flows.cluster_prep import cluster_prep

    cl = _cl()
    t0 = time.monotonic()
    state = cluster_prep(
        cl.cluster_config(penv),
        windows_access_block=cl.WIN_BLOCK,
        dns_resolver=cl.resolver(penv),
        return_state=True,
    )
    return _state(state, t0)


def run_machineset(penv: dict[str, str], name: str, template: str) -> tuple[str, Any, float]:
    from flows.machineset import machineset
    from winnodes.model.config import Waits

    cl = _cl()
    t0 = time.monotonic()
    state = machineset(
        cl.cluster_config(penv),
        _machineset_config(penv, name, template),
        waits=Waits(machineset_ready_seconds=READY_SECONDS),
        vsphere_credentials_block=cl.VC_BLOCK,
        windows_access_block=cl.WIN_BLOCK,
        return_state=True,
    )
    return _state(state, t0)


def _state(state: Any, t0: float) -> tuple[str, BaseException | None, float]:
    return faults.settle(state, t0)


def _measured(control: KubeFaultsControl) -> set[str]:
    return {k for k, n in control.stats().items() if n and "(non-resource)" not in k}


def _steps_calls(
    control: KubeFaultsControl,
    flow: str,
    run: Callable[[], tuple[str, Any, float]],
    steps: list[str],
) -> tuple[dict[str, str], float]:
    """Run `run` and attribute every (verb, resource) it calls to the step that first calls it."""
    marks: list[tuple[str, set[str]]] = []
    current = [""]

    def entering(step: str) -> Callable[[], None]:
        def hook() -> None:
            marks.append((current[0], _measured(control)))
            current[0] = step

        return hook

    control.reset_stats()
    marks.append(("", set()))
    with faults.on_step({s: entering(s) for s in steps}):
        state, exc, seconds = run()
    marks.append((current[0], _measured(control)))
    if state != "Completed":
        raise RuntimeError(f"the clean {flow} baseline did not complete: {state} {exc!r}")
    first: dict[str, str] = {}
    for (_, before), (step, after) in itertools.pairwise(marks):
        for call in sorted(after - before):
            first.setdefault(f"{flow}:{call}", step)
    return first, seconds


PREP_STEPS = ["PRE-1", "PRE-4", "DNS1", "PRE-3"]
MACHINESET_STEPS = ["M1", "C2", "C1", "M7", "PRE-3", "C3", "V1"]


def prepare(env: dict[str, str]) -> State:
    """On a running private lab (with LAB's components) and a Prefect API: start the proxy, save
    the blocks (OpenShift through the proxy), build a template, run both flows clean and measure
    their calls. The proxy lives as long as this process (stopped by `finish`)."""
    from blocks.windows import WindowsAccess

    cl = _cl()
    proxy = kubefaults._lab_proxy(env).start()
    penv = _proxy_env(env, proxy)
    control = KubeFaultsControl(proxy.control_url)
    cl.save_blocks(penv)  # OpenShift block: the proxy's kubeconfig; the rest as the lab's
    cluster = _cluster(env)
    cluster.delete_key_secret()
    prep_calls, prep_s = _steps_calls(control, "prep", lambda: run_prep(penv), PREP_STEPS)
    fp = WindowsAccess.load(cl.WIN_BLOCK).fingerprint()  # type: ignore[union-attr]
    template = cl.build_template(env, "kf", fingerprint=fp)
    name = f"kf{uuid.uuid4().hex[:5]}"
    ms_calls, ms_s = _steps_calls(
        control, "machineset", lambda: run_machineset(penv, name, template), MACHINESET_STEPS
    )
    calls = prep_calls | ms_calls
    print(
        f"baseline: prep {prep_s:.1f}s, machineset (fresh, 1 replica) {ms_s:.1f}s; calls: "
        + ", ".join(f"{c}@{s or '-'}" for c, s in sorted(calls.items())),
        flush=True,
    )
    _, _, converge_s = run_machineset(penv, name, template)
    return State(
        proxy,
        control,
        template,
        name,
        calls,
        {"prep": prep_s, "fresh": ms_s, "converge": converge_s},
    )


def finish(env: dict[str, str], state: State) -> None:
    state.control.clear()
    cluster = _cluster(env)
    cluster.delete_machineset(state.converge_set)
    _cl().remove_template(env, state.template)
    state.proxy.stop()


# -------------------------------------------------------------------------------------- end state
def end_state(env: dict[str, str], name: str | None) -> list[str]:
    """What is wrong, read on the real apiserver: the key secret, and for a MachineSet flow cell
    exactly one MachineSet `name`, Ready, with exactly its one Machine."""
    from blocks.windows import WindowsAccess

    problems: list[str] = []
    cluster = _cluster(env)
    secret = cluster.key_secret()
    access: Any = WindowsAccess.load(_cl().WIN_BLOCK)
    want = base64.b64encode(access.ssh_private_key.get_secret_value().encode()).decode()
    if secret is None:
        problems.append(f"secret {KEY_SECRET} missing")
    elif (secret.data or {}).get("private-key.pem") != want:
        problems.append(f"secret {KEY_SECRET} holds another key")
    if name is None:
        return problems
    sets = cluster.custom.list_namespaced_custom_object(
        "machine.openshift.io", "v1beta1", MAPI_NS, "machinesets"
    )["items"]
    mine = [s for s in sets if s["metadata"]["name"] == name]
    if len(mine) != 1:
        problems.append(f"{len(mine)} MachineSets named {name}")
    else:
        st = mine[0].get("status") or {}
        if st.get("readyReplicas") != 1:
            problems.append(f"MachineSet {name} not Ready ({st.get('readyReplicas')} ready)")
    machines = cluster.custom.list_namespaced_custom_object(
        "machine.openshift.io",
        "v1beta1",
        MAPI_NS,
        "machines",
        label_selector=f"machine.openshift.io/cluster-api-machineset={name}",
    )["items"]
    live = [m for m in machines if not m["metadata"].get("deletionTimestamp")]
    if len(live) != 1:
        problems.append(f"{len(live)} Machines of {name} (expected 1)")
    return problems


# ------------------------------------------------------------------------------------------- a cell
def _rule(control: KubeFaultsControl, cell: Cell) -> None:
    verb, resource = cell.target.split(":", 1)[1].split(" ", 1)
    control.add_rule(verb, resource, cell.fault, times=TIMES[cell.times], retry_after=1, after=1)


def run_cell(env: dict[str, str], state: State, cell: Cell) -> Outcome:
    """The cell's flow under its fault, then the checks (see the module docstring)."""
    out = Outcome(cell)
    penv = _proxy_env(env, state.proxy)
    flow, call = cell.target.split(":", 1)
    fresh = flow == "machineset" and call.startswith("watch ")
    name: str | None = None
    if flow == "prep":
        _cluster(env).delete_key_secret()  # the create path runs

        def run() -> tuple[str, Any, float]:
            return run_prep(penv)

    else:
        name = f"kf{uuid.uuid4().hex[:5]}" if fresh else state.converge_set

        def run() -> tuple[str, Any, float]:
            return run_machineset(penv, name or "", state.template)

    control = state.control
    control.clear()
    try:
        _rule(control, cell)
        with faults.on_step({}) as entered:
            out.state, exc, out.seconds = run()
        out.report_step = next(
            (e.removeprefix("failed:") for e in entered if e.startswith("failed:")), None
        )
        if exc is not None:
            out.failed_step = getattr(exc, "step_id", None)
            out.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        out.hits = sum(int(r.get("hits", 0)) for r in control.rules())
    finally:
        control.clear()
    base = state.base_seconds["prep" if flow == "prep" else ("fresh" if fresh else "converge")]
    verb = call.split(" ", 1)[0]
    # A watch failing for good while its lists work: the stream lists again between failures, so
    # the set may be seen Ready before the stream gives up. Both are right; a hang is not.
    either = verb == "watch" and cell.times == "always" and cell.expect == "Failed"
    if out.state != cell.expect and not (either and out.state == "Completed"):
        out.problems.append(f"ended {out.state}, expected {cell.expect}")
    if out.hits == 0:
        out.problems.append("the fault was never injected (the call did not happen)")
    if cell.expect == "Failed" and out.state == "Failed":
        if not out.failed_step:
            out.problems.append("the failure names no step ID")
        if cell.step and out.report_step != cell.step:
            out.problems.append(f"step {out.report_step} failed, expected {cell.step}")
    if out.state == "Completed":
        out.recovery = max(0.0, out.seconds - base)
    else:  # nothing half-made: a clean re-run converges
        state_, exc2, seconds = run()
        out.recovery = seconds
        if state_ != "Completed":
            out.problems.append(f"re-run ended {state_}: {exc2!r}"[:200])
    out.problems += end_state(env, name)
    if fresh and name:
        _cluster(env).delete_machineset(name)
    if out.problems and cell.name in KNOWN_DEFECTS:
        out.problems.append("known defect: " + KNOWN_DEFECTS[cell.name])
    return out


# --------------------------------------------------------------------------------------------- main
def run_family(
    env: dict[str, str],
    *,
    only: str = "",
    n: int = 0,
    seed: int | None = None,
    deadline: float = 0,
    shard: tuple[int, int] = (0, 1),
) -> tuple[list[Outcome], float]:
    state = prepare(env)
    try:
        wanted = only.split("|")  # alternatives: --only 'watch|list events'
        selected = [c for c in matrix(state.calls) if any(w in c.name for w in wanted)]
        if n:
            selected = sample(selected, n, DEFAULT_SEED if seed is None else seed)
        elif seed is not None:
            selected = sample(selected, len(selected), seed)
        selected = selected[shard[0] :: shard[1]]  # this job's share (fault_matrix.py)
        outcomes: list[Outcome] = []
        for i, cell in enumerate(selected, 1):
            if deadline and time.monotonic() > deadline:
                print(f"time is up after {i - 1} of {len(selected)} cells", flush=True)
                break
            o = run_cell(env, state, cell)
            outcomes.append(o)
            print(
                f"[{i}/{len(selected)}] {cell.name}: {o.state} {faults._failed(o)} "
                f"{o.seconds:.1f}s hits {o.hits} -> "
                f"{'pass' if o.passed else 'FAIL ' + '; '.join(o.problems)}",
                flush=True,
            )
        return outcomes, state.base_seconds["fresh"]
    finally:
        finish(env, state)


def main(argv: list[str] | None = None) -> int:
    return faults.family_main(
        argv,
        doc=__doc__,
        kind=KIND,
        lab=LAB,
        cells=cells,
        run=run_family,
        title="cluster-side flows (Kubernetes API faults)",
    )


if __name__ == "__main__":
    raise SystemExit(main())
