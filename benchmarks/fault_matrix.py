"""`make faults`: the whole fault matrix, every family, in parallel private labs, one report.

Why. Each family of fault points lives in its own module, with the flow it drives and the clients
that check the end state (see each module's docstring):
  vcenter  benchmarks/faults.py       golden-image flow; vCenter SOAP faults, delays, session
                                      expiry, kill -9 (fresh re-run and Retry through Prefect's API)
  ssh      benchmarks/faults_ssh.py   golden-image flow; the guests' sshd drops, refuses, stalls,
                                      pauses a command for a kill
  kube     benchmarks/faults_kube.py  cluster-side flows; 429/500/503/reset per verb and resource,
                                      watches closed mid-stream, 410 Gone on resume
  dns      benchmarks/faults_dns.py   cluster-prep flow's DNS1; BIND slow or silent, lost answers,
                                      BADTIME/BADSIG/BADKEY
A cell is one flow run (or two: a failed or killed run is followed by a re-run that must converge),
so the matrix takes hours on one lab. This runner splits it into jobs (a family, or a shard of one:
every k-th cell of its list) that run at the same time, each on a private lab of its own (its own
vCenter simulator, guest twin, API server, BIND, Prefect test server), so no job's faults reach
another's flows. Most of a cell's time is spent waiting on the lab's simulated boots and restarts,
so a few jobs share a small machine well; `--jobs` bounds them.

Each job writes its outcomes as JSON; the runner merges them into one markdown report
(`.artifacts/faults.md`, a summary per family then every cell), also published as the Prefect
markdown artifact `fault-matrix` when PREFECT_API_URL is set.

Usage:
    .venv/bin/python benchmarks/fault_matrix.py                          # everything
    .venv/bin/python benchmarks/fault_matrix.py --families dns,kube --jobs 2
    .venv/bin/python benchmarks/fault_matrix.py --shards vcenter=3,ssh=2 --jobs 4 --minutes 90
    .venv/bin/python benchmarks/fault_matrix.py --list                   # the reference cells
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import faults  # noqa: E402
from benchmarks.faults import Cell, Outcome  # noqa: E402

FAMILIES = {
    "vcenter": "benchmarks.faults",
    "ssh": "benchmarks.faults_ssh",
    "kube": "benchmarks.faults_kube",
    "dns": "benchmarks.faults_dns",
}
TITLES = {
    "vcenter": "vCenter SOAP faults, delays, session expiry, kills (golden-image flow)",
    "ssh": "the guests' SSH: drop, refuse, stall, pause + kill (golden-image flow)",
    "kube": "Kubernetes API: 429/5xx/reset, watch closed, 410 Gone (cluster-side flows)",
    "dns": "DNS: BIND slow or silent, lost answers, TSIG refusals (cluster-prep flow, DNS1)",
}


def family(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise SystemExit(f"unknown family {name!r}: choose from {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])


@dataclass(frozen=True)
class Job:
    family: str
    index: int = 0  # this job runs cells index, index + of, index + 2*of, ...
    of: int = 1

    @property
    def label(self) -> str:
        return self.family if self.of == 1 else f"{self.family}:{self.index + 1}/{self.of}"

    @classmethod
    def parse(cls, text: str) -> Job:
        name, _, shard = text.partition(":")
        if not shard:
            return cls(name)
        index, _, of = shard.partition("/")
        return cls(name, int(index) - 1, int(of))


def jobs(families: list[str], shards: dict[str, int]) -> list[Job]:
    """The jobs of a run: each family split into its number of shards (1 unless told)."""
    out: list[Job] = []
    for name in families:
        family(name)  # fails early on a typo
        k = max(1, shards.get(name, 1))
        out += [Job(name, i, k) for i in range(k)]
    return out


def shard(cells: list[Cell], index: int, of: int) -> list[Cell]:
    """Every `of`-th cell from `index`: shards of one list cover it exactly once, and each gets a
    fair share of every kind of cell when the list is shuffled or sorted by fault point."""
    return cells[index::of]


# ------------------------------------------------------------------------------------- JSON rows
def row(o: Outcome) -> dict[str, Any]:
    return asdict(o.cell) | {"passed": o.passed, **faults._row(o)}


def outcome(r: dict[str, Any]) -> Outcome:
    fields = {f: r[f] for f in Cell.__dataclass_fields__ if f in r}
    return Outcome(
        Cell(**fields),
        state=r.get("state", ""),
        failed_step=r.get("failed_step"),
        report_step=r.get("report_step"),
        error=r.get("error", ""),
        seconds=float(r.get("seconds", 0.0)),
        recovery=float(r.get("recovery", 0.0)),
        hits=int(r.get("hits", 0)),
        problems=list(r.get("problems", [])),
    )


# ------------------------------------------------------------------------------------ the report
def report(results: dict[str, list[Outcome]], notes: dict[str, list[str]]) -> str:
    """One markdown report: a summary row per family, then each family's own table."""
    total = sum(len(v) for v in results.values())
    passed = sum(o.passed for v in results.values() for o in v)
    everything = [o for v in results.values() for o in v]
    slowest = max(everything, key=lambda o: o.recovery, default=None)
    lines = [
        "# Fault matrix",
        "",
        f"Cells run: **{total}**, passed: **{passed}**, failed: **{total - passed}**"
        + (
            f"; slowest recovery {slowest.recovery:.1f}s ({slowest.cell.name})"
            if slowest is not None
            else ""
        ),
        "",
        "| family | what | cells run | passed | failed | slowest recovery s | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, outs in results.items():
        ok = sum(o.passed for o in outs)
        slow = max((o.recovery for o in outs), default=0.0)
        note = "; ".join(notes.get(name, [])).replace("|", "/")
        lines.append(
            f"| {name} | {TITLES.get(name, '')} | {len(outs)} | {ok} | {len(outs) - ok} "
            f"| {slow:.1f} | {note} |"
        )
    for name, outs in results.items():
        body = faults.report(outs, None, 0.0).split("\n", 2)[2]  # without the vCenter title
        body = body.replace("; clean build 0.0s", "")
        lines += ["", f"## {name}: {TITLES.get(name, '')}", "", body.rstrip()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- a job
def run_job(
    job: Job, out: Path, *, only: str, sample: int, seed: int | None, minutes: float
) -> int:
    """One job in this process: a private lab with the family's components, its cells, JSON."""
    mod = family(job.family)
    os.environ.setdefault("WINNODES_RETRY_DELAY", "0.2")
    deadline = time.monotonic() + minutes * 60 if minutes else 0.0
    with faults.private_site(job.family, list(mod.LAB), startup_timeout=180) as env:
        result = mod.run_family(
            env,
            only=only,
            n=sample,
            seed=seed,
            deadline=deadline,
            shard=(job.index, job.of),
        )
    outcomes, base_seconds = result[0], result[1]
    out.write_text(
        json.dumps(
            {"job": job.label, "base_seconds": base_seconds, "rows": [row(o) for o in outcomes]}
        )
    )
    return 0 if all(o.passed for o in outcomes) else 1


# -------------------------------------------------------------------------------------- the runner
def run(
    todo: list[Job], *, parallel: int, args: list[str], work: Path
) -> tuple[dict[str, list[Outcome]], dict[str, list[str]]]:
    """Start the jobs (at most `parallel` at once) as child processes; merge what they wrote."""
    pending = list(todo)
    running: dict[Job, tuple[subprocess.Popen[bytes], Path, float]] = {}
    results: dict[str, list[Outcome]] = {j.family: [] for j in todo}
    notes: dict[str, list[str]] = {j.family: [] for j in todo}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            out = work / f"{job.label.replace('/', '-').replace(':', '-')}.json"
            log = (work / f"{out.stem}.log").open("wb")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--job", job.label, "--json"]
            proc = subprocess.Popen([*cmd, str(out), *args], stdout=log, stderr=subprocess.STDOUT)
            running[job] = (proc, out, time.monotonic())
            print(f"started {job.label} (log {log.name})", flush=True)
        for job, (proc, out, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[job]
            if not out.exists():
                notes[job.family].append(f"job {job.label} wrote nothing (exit {proc.returncode})")
                print(f"{job.label}: no result (exit {proc.returncode})", flush=True)
                continue
            data = json.loads(out.read_text())
            outs = [outcome(r) for r in data["rows"]]
            results[job.family] += outs
            ok = sum(o.passed for o in outs)
            notes[job.family].append(f"{job.label}: clean run {data['base_seconds']:.0f}s")
            print(
                f"{job.label}: {ok}/{len(outs)} passed in {time.monotonic() - t0:.0f}s", flush=True
            )
        time.sleep(1)
    return results, notes


def _shards(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        name, _, k = part.partition("=")
        out[name.strip()] = int(k or 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated")
    parser.add_argument("--shards", default="", help="e.g. vcenter=3,ssh=2 (default 1 each)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs running at once")
    parser.add_argument("--only", default="", help="cells whose name contains this text")
    parser.add_argument("--sample", type=int, default=0, help="N cells per job, drawn with --seed")
    parser.add_argument("--seed", type=int, help="shuffle (or draw the sample) with this seed")
    parser.add_argument("--minutes", type=float, default=0, help="jobs start no cell after this")
    parser.add_argument("--list", action="store_true", help="list the reference cells and exit")
    parser.add_argument("--out", default=str(REPO_ROOT / ".artifacts" / "faults.md"))
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    if args.list:
        for name in names:
            for c in family(name).cells():
                print(c.name)
        return 0
    seed = args.seed
    if args.job:
        return run_job(
            Job.parse(args.job),
            Path(args.json),
            only=args.only,
            sample=args.sample,
            seed=seed,
            minutes=args.minutes,
        )
    if seed is not None:
        print(f"seed: {seed} (replay with --seed {seed})", flush=True)
    todo = jobs(names, _shards(args.shards))
    passthrough = [
        "--only",
        args.only,
        "--sample",
        str(args.sample),
        "--minutes",
        str(args.minutes),
    ]
    if seed is not None:
        passthrough += ["--seed", str(seed)]
    work = Path(tempfile.mkdtemp(prefix="winnodes-fault-matrix-", dir="/tmp"))
    print(f"{len(todo)} jobs, {args.jobs} at a time; logs in {work}", flush=True)
    results, notes = run(todo, parallel=max(1, args.jobs), args=passthrough, work=work)
    md = report(results, notes)
    faults.publish(md, Path(args.out))
    Path(args.out).with_suffix(".json").write_text(
        json.dumps({k: [row(o) for o in v] for k, v in results.items()}, indent=1)
    )
    print(md)
    ran = sum(len(v) for v in results.values())
    return 0 if ran and all(o.passed for v in results.values() for o in v) else 1


if __name__ == "__main__":
    raise SystemExit(main())
