"""The fleet benchmark: `make fleet` or `.venv/bin/python benchmarks/fleet.py [--builds 20 --sets 10
--machines 10]`. Not a test and not in CI: nothing is asserted, figures are printed.

Issue 12 asks what a site's fleet costs on one 2-core machine: many golden-image builds (each of
its own template series) started at once from the `golden-image` deployment, with the Prefect
server on SQLite and on PostgreSQL side by side, then MachineSets x machines turned into Windows
nodes by the lab's machine-api and WMCO simulators from a template of one of the builds.

One private lab (lab.cli.private_lab: its own run directory, ports and guest network; a lab the
user runs is never touched). For each database, in turn, on that lab: a Prefect server of its own
(PostgreSQL: lab.postgres), `python -m deployments.register`, `--workers` process workers, the
builds started at once, and while they run the product's RSS (workers and their flow-run
processes) sampled from /proc every second. Then the MachineSets, applied at once, until every
Node is Ready; the memory of the guests is read while they all run.

Measured, per database:
  wall time           first build started -> last build ended
  critical path       the longest chain of the lab's simulated waits of one build: its vCenter
                      tasks (GET /stats task timeline, entity names of the series) plus the guest
                      boot waits (LAB_BOOT_DELAY per PowerOn task, LAB_EFI_KEY_WINDOW for the
                      install from ISO); what an infinitely fast machine would still wait
  product RSS         peak and mean of workers + flow-run processes (VmRSS of /proc/<pid>/status)
  SOAP calls          total answered by the lab's vCenter (GET /stats), and per build
  API server CPU      utime+stime of the Prefect server process tree (/proc/<pid>/stat) during
                      the phase, in CPU seconds and as a share of the wall time
The plot `.artifacts/fleet.png`: one bar per flow run from start to end, coloured by kind, one
panel per database, and one for the MachineSets (apply -> all their Nodes Ready).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import lab_figures  # noqa: E402

from lab import cli, pipeline, postgres, prefect_server, scenario  # noqa: E402
from lab.controllers import wmco  # noqa: E402
from lab.paths import LabPaths  # noqa: E402
from lab.process import descendants, free_port, read_pid  # noqa: E402
from lab.vcsim import VcsimControl, max_in_flight  # noqa: E402

Obj = dict[str, Any]
ARTIFACT = REPO_ROOT / ".artifacts" / "fleet.png"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------ /proc
def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


class Sampler:
    """RSS of the product's processes (the workers and everything they start) every second."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.samples: list[int] = []  # KiB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            pids = {p for r in self.roots for p in descendants(r)}
            self.samples.append(sum(lab_figures._rss_kib(p) for p in pids))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------------ the phases
@dataclass
class Phase:
    name: str
    wall: float = 0.0
    critical: float = 0.0
    rss_peak: int = 0  # KiB
    rss_mean: float = 0.0
    soap: int = 0
    server_cpu: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    clones_in_flight: int = 0
    unavailable: int = 0  # 503 answers to the benchmark's own API calls
    bars: list[tuple[str, float, float, str]] = field(
        default_factory=list
    )  # label, start, end, kind
    templates: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def critical_path(
    tasks: list[Obj], names: dict[str, str], series: list[str], boot: float, efi: float
) -> float:
    """The longest chain of simulated waits of one build (see the module docstring). `names`:
    VM moref -> name (vcsim's task entity_name is the moref)."""
    longest = 0.0
    for s in series:
        mine = [t for t in tasks if names.get(t.get("entity") or "", "").startswith(s)]
        wait = sum(
            (_ts(t["completed"]) or 0.0) - (_ts(t["started"]) or 0.0)
            for t in mine
            if t.get("started") and t.get("completed")
        )
        boots = sum(1 for t in mine if t["name"].startswith("PowerOn"))
        longest = max(longest, wait + boots * boot + efi)
    return longest


def run_builds(db: str, env: dict[str, str], base: Path, args: argparse.Namespace) -> Phase:
    phase = Phase(db)
    root = base / f"prefect-{db}"
    root.mkdir(parents=True)
    root.chmod(0o755)  # PostgreSQL runs as `postgres` when we are root
    paths = LabPaths(root=root, cache=LabPaths.default().cache)
    saved = {v: os.environ.get(v) for v in ("WINNODES_PREFECT_PORT", "LAB_POSTGRES_PORT")}
    os.environ["WINNODES_PREFECT_PORT"] = str(free_port())
    os.environ["LAB_POSTGRES_PORT"] = str(free_port())
    control = VcsimControl.from_env(env)
    tag = uuid.uuid4().hex[:4]
    series = [f"f{tag}{db[0]}{i:02d}" for i in range(args.builds)]
    try:
        database_url = postgres.start_cluster(paths) if db == "postgres" else None
        prefect_server.start_server(paths, database_url=database_url)
        penv = {
            **os.environ,
            **prefect_server.prefect_env(paths),
            **pipeline.secret_env(env),
            "WINNODES_RETRY_DELAY": "0.5",
        }
        (root / "blocks.yaml").write_text(yaml.safe_dump(pipeline.blocks_spec(env)))
        (root / "pipeline.yaml").write_text(
            yaml.safe_dump(pipeline.pipeline(env, series=series[0]))
        )
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "deployments.register"),
                *("--blocks", str(root / "blocks.yaml"), "--config", str(root / "pipeline.yaml")),
                *("--results-dir", penv["WINNODES_RESULTS_DIR"]),
            ],
            cwd=REPO_ROOT,
            env=penv,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"registration failed:\n{proc.stdout}{proc.stderr}")
        worker_env = {k: v for k, v in penv.items() if k.startswith(("WINNODES_", "PREFECT_"))}
        worker_env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
        workers = [
            prefect_server.start_worker(
                paths, REPO_ROOT, worker_env, name=f"prefect-worker-{i}", limit=args.per_worker
            )
            for i in range(args.workers)
        ]
        server = read_pid(paths, prefect_server.SERVER)
        assert server is not None
        # a 503 (SQLite's "database is locked") is counted and retried
        api = prefect_server.Api(penv["PREFECT_API_URL"], timeout=60, attempts=10)
        dep = api.deployment("windows-nodes/golden-image")
        control.reset_stats()
        cpu0 = _cpu_seconds(descendants(server))
        t0 = time.time()
        runs: dict[str, str] = {}
        with Sampler(workers) as sampler:
            for s in series:
                cfg = pipeline.pipeline(env, series=s)
                cfg["golden_image"]["windows_update"] = {"source": "off"}  # not the subject
                runs[s] = api.create_flow_run(dep["id"], {"config": cfg})["id"]
            deadline = time.monotonic() + args.timeout
            states: dict[str, Obj] = {}
            while time.monotonic() < deadline:
                states = {s: api.flow_run(r) for s, r in runs.items()}
                if all(r["state"]["type"] in prefect_server.FINAL_STATES for r in states.values()):
                    break
                time.sleep(3)
        phase.server_cpu = _cpu_seconds(descendants(server)) - cpu0
        phase.unavailable = api.unavailable
        stats = control.stats()
        for s, r in states.items():
            st = r["state"]["type"]
            phase.states[st] = phase.states.get(st, 0) + 1
            start, end = _ts(r.get("start_time")), _ts(r.get("end_time"))
            if start is not None:
                phase.bars.append((s, start - t0, (end or time.time()) - t0, "golden-image"))
            if st != "COMPLETED":
                print(f"  {s}: {st}: {r['state'].get('message')}", flush=True)
        ends = [b[2] for b in phase.bars]
        phase.wall = max(ends) if ends else time.time() - t0
        phase.rss_peak = max(sampler.samples, default=0)
        phase.rss_mean = statistics.mean(sampler.samples) if sampler.samples else 0.0
        phase.soap = int(stats.get("total", 0))
        tasks = stats.get("tasks") or []
        phase.clones_in_flight = max_in_flight(tasks, "CloneVm")
        site = scenario.Site.from_env(env)
        with scenario.connect(site) as si:
            vms = _folder_vms(si, site)
            names = {vm._moId: vm.name for vm in vms}
            phase.templates = sorted(
                vm.name for vm in vms if vm.config.template and vm.name.startswith(f"f{tag}")
            )
        phase.critical = critical_path(
            tasks,
            names,
            series,
            float(os.environ.get("LAB_BOOT_DELAY", "0.5")),
            float(os.environ.get("LAB_EFI_KEY_WINDOW", "2.0")),
        )
    finally:
        prefect_server.stop(paths)
        if db == "postgres":
            postgres.stop_cluster(paths)
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    return phase


def _folder_vms(si: Any, site: scenario.Site) -> list[Any]:
    from pyVmomi import vim

    folder = scenario.find(si, site.folder)
    view = si.content.viewManager.CreateContainerView(folder, [vim.VirtualMachine], False)
    try:
        return list(view.view)
    finally:
        view.DestroyView()


def _ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def run_machinesets(
    env: dict[str, str], lab_paths: LabPaths, template: str, args: argparse.Namespace
) -> Phase:
    """M MachineSets of K replicas applied at once on `template`; until every Node is Ready."""
    from kubernetes import client as k8s

    from lab.controllers.common import kube_client

    phase = Phase("machinesets")
    api = kube_client(env)
    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    lab_figures.key_secret(core, env["LAB_SSH_PRIVATE_KEY"])
    lab_figures.api_int(env)
    site = scenario.Site.from_env(env)
    tag = uuid.uuid4().hex[:4]
    names = [f"fl{tag}{i:02d}" for i in range(args.sets)]
    group = ("machine.openshift.io", "v1beta1", wmco.MACHINE_API_NAMESPACE)
    t0 = time.time()
    for n in names:
        ms = lab_figures.machineset(n, template, site, env["LAB_INFRASTRUCTURE_ID"])
        ms["spec"]["replicas"] = args.machines
        custom.create_namespaced_custom_object(*group, "machinesets", ms)
    ready_at: dict[str, float] = {}  # node name -> seconds since apply
    deadline = time.monotonic() + args.timeout
    machines: dict[str, str] = {}  # machine name -> machineset
    while time.monotonic() < deadline:
        listed: Obj = custom.list_namespaced_custom_object(*group, "machines")  # type: ignore[assignment]
        for m in listed["items"]:
            labels = m["metadata"].get("labels") or {}
            owner = labels.get("machine.openshift.io/cluster-api-machineset")
            if owner in names:
                machines[m["metadata"]["name"]] = owner
        for node in core.list_node().items:
            name = str(node.metadata.name)  # type: ignore[union-attr]
            if name in machines and name not in ready_at and _ready(node):
                ready_at[name] = time.time() - t0
        if len(ready_at) >= args.sets * args.machines:
            break
        time.sleep(2)
    for n in names:
        mine = [at for m, at in ready_at.items() if machines.get(m) == n]
        if mine:
            phase.bars.append((n, 0.0, max(mine), "machineset"))
    phase.wall = max(ready_at.values(), default=time.time() - t0)
    phase.states = {"Ready": len(ready_at)}
    # the guests' memory while they all run
    procs = lab_figures.lab_processes(lab_paths)
    supervisor: list[tuple[int, str, int]] = next(
        (tr for name, tr in procs.items() if "supervisor" in name), []
    )
    guests = {
        name.removeprefix("sshd-"): tr for name, tr in procs.items() if name.startswith("sshd-")
    }
    sshd = [tr[0][2] for tr in guests.values()]
    sessions = [rss for tr in guests.values() for _, _, rss in tr[1:]]  # sessions, emulator
    disk = [
        sum(f.stat().st_size for f in (lab_paths.guests / vm).rglob("*") if f.is_file())
        for vm in guests
    ]
    n_guests = max(1, len(guests))
    phase.extra = {
        "guests with a running sshd": str(len(guests)),
        "guest supervisor RSS": f"{(supervisor[0][2] if supervisor else 0) / 1024:.0f} MiB "
        f"({(supervisor[0][2] if supervisor else 0) / n_guests:.0f} KiB per guest)",
        "sshd per guest": f"{(statistics.mean(sshd) if sshd else 0) / 1024:.1f} MiB",
        "sessions + emulator per guest": f"{sum(sessions) / n_guests / 1024:.1f} MiB "
        f"({len(sessions)} processes at the sample)",
        "guest disk": f"{(statistics.mean(disk) if disk else 0) / 1024:.0f} KiB mean, "
        f"{sum(disk) / 2**20:.1f} MiB total",
        "lab RSS total": f"{sum(r for t in procs.values() for _, _, r in t) / 1024:.0f} MiB",
    }
    for ms_name in names:
        with contextlib.suppress(Exception):
            custom.delete_namespaced_custom_object(*group, "machinesets", ms_name)
    return phase


# --------------------------------------------------------------------------------------- output
def print_table(phases: list[Phase], args: argparse.Namespace) -> None:
    builds = [p for p in phases if p.name != "machinesets"]
    rows = [
        ("builds (states)", *(json.dumps(p.states) for p in builds)),
        ("wall time", *(f"{p.wall:.0f} s" for p in builds)),
        ("critical path of simulated waits", *(f"{p.critical:.1f} s" for p in builds)),
        ("wall / critical path", *(f"{p.wall / max(p.critical, 0.1):.0f}x" for p in builds)),
        ("wall per build", *(f"{p.wall / max(1, args.builds):.1f} s" for p in builds)),
        ("product RSS peak", *(f"{p.rss_peak / 1024:.0f} MiB" for p in builds)),
        ("product RSS mean", *(f"{p.rss_mean / 1024:.0f} MiB" for p in builds)),
        ("SOAP calls", *(str(p.soap) for p in builds)),
        ("SOAP calls per build", *(f"{p.soap / max(1, args.builds):.0f}" for p in builds)),
        ("API 503s to the benchmark (retried)", *(str(p.unavailable) for p in builds)),
        ("clones in flight (max)", *(str(p.clones_in_flight) for p in builds)),
        ("API server CPU", *(f"{p.server_cpu:.0f} s" for p in builds)),
        (
            "API server CPU / wall",
            *(f"{100 * p.server_cpu / max(p.wall, 0.1):.0f}%" for p in builds),
        ),
    ]
    head = ("figure", *(p.name for p in builds))
    w = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print(f"\nFleet: {args.builds} builds, {args.workers} workers x {args.per_worker} runs")
    print("  ".join(f"{c:<{w[i]}}" for i, c in enumerate(head)))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print("  ".join(f"{c:<{w[i]}}" for i, c in enumerate(r)))
    for p in phases:
        if p.name == "machinesets":
            print(f"\nMachineSets: {args.sets} x {args.machines} machines")
            print(f"  apply -> all Nodes Ready: {p.wall:.0f} s ({p.states.get('Ready', 0)} Ready)")
            for k, v in p.extra.items():
                print(f"  {k}: {v}")


def plot(phases: list[Phase], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"golden-image": "tab:blue", "machineset": "tab:orange"}
    shown = [p for p in phases if p.bars]
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(10, 2 + 0.25 * sum(len(p.bars) for p in shown))
    )
    if len(shown) == 1:
        axes = [axes]
    for ax, p in zip(axes, shown, strict=True):
        bars = sorted(p.bars, key=lambda b: b[1])
        for i, (_label, start, end, kind) in enumerate(bars):
            ax.barh(i, end - start, left=start, color=colours.get(kind, "grey"), label=kind)
        ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=6)
        ax.set_title(
            f"{p.name}: wall {p.wall:.0f} s"
            + (f", critical path {p.critical:.1f} s" if p.critical else "")
        )
        ax.set_xlim(left=0)
        ax.set_xlabel("seconds since the first run was started")
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(
            dict(zip(labels, handles, strict=True)).values(),
            dict(zip(labels, handles, strict=True)).keys(),
            loc="lower right",
        )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"\nplot: {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--builds", type=int, default=20, help="golden-image builds per database")
    parser.add_argument("--sets", type=int, default=10, help="MachineSets")
    parser.add_argument("--machines", type=int, default=10, help="machines per MachineSet")
    parser.add_argument("--dbs", default="sqlite,postgres", help="Prefect databases, in order")
    parser.add_argument("--workers", type=int, default=2, help="process workers")
    parser.add_argument("--per-worker", type=int, default=5, help="flow runs at once per worker")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per phase")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument("--out", type=Path, default=ARTIFACT, help="the plot's PNG")
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="winnodes-fleet-", dir="/tmp"))
    base.chmod(0o755)
    print(f"fleet run directory: {base}", flush=True)
    phases: list[Phase] = []
    try:
        with cli.private_lab(base / "lab") as ctx:
            env = dict(ctx.env)
            for db in [d.strip() for d in args.dbs.split(",") if d.strip()]:
                print(f"{args.builds} builds, Prefect on {db} ...", flush=True)
                phases.append(run_builds(db, env, base, args))
                print(f"  done in {phases[-1].wall:.0f} s: {phases[-1].states}", flush=True)
            templates = [t for p in phases for t in p.templates]
            if args.sets and args.machines:
                if not templates:
                    print("no template was built: no MachineSets")
                else:
                    print(
                        f"{args.sets} MachineSets x {args.machines} on {templates[0]} ...",
                        flush=True,
                    )
                    phases.append(run_machinesets(env, ctx.paths, templates[0], args))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print_table(phases, args)
    plot(phases, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
