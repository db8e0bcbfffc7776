"""The fault matrix, SSH family: the golden-image flow under injected faults of the guests' SSH.

Why. Every in-guest step (G3a-G9, G6u, PRE-2) talks to the guest over SSH, and a real guest's SSH
fails in a few well-known ways: the connection is cut in the middle of a command (before or after
the command took effect: the client cannot tell), sshd refuses connections while it restarts, a
command hangs without output, or the automation's own process dies while a command is in flight.
This family injects each of them (`lab.guest.faults`, in the guest twin's sshd ForceCommand; nothing
in the product knows) into every distinct command the flow sends, and checks what survived.

Cells. The command kinds come from the twin's own record of a clean baseline build
(`ssh-commands.jsonl`), grouped by the step that first sends them; every kind x {drop before,
drop after, refuse, stall} x {once, three, always}; plus pause+kill cells: the first command of
G5, G6, G7 and G9 is held (pause) while the flow's process is killed with SIGKILL, then released;
a fresh run of the same configuration must complete. Expectations (README, "Reliability"): a drop
or a refusal is transient (reconnect, retry; the commands are idempotent), a stall ends at the
command's own limit (`timeouts.command_seconds`) and is retried; once and three times stay within
the tasks' retry budget -> Completed; always -> Failed naming the step of the command (the product
must never hang past its deadlines).

End state (clients independent of the product): `faults.end_state` (pyvmomi, the datastore's files)
plus the twin's disks: the base VM's administrators_authorized_keys holds the key exactly once, no
firewall rule display name appears twice, the template was sysprepped exactly once and has no SSH
host keys.

Scaled time: the tasks' retry backoff is scaled down with WINNODES_RETRY_DELAY=0.2 (as in
`faults.py`), so a refusal lasts REFUSE_SECONDS (0.3 s: a 3 s sshd restart at the default 2 s
backoff).

Usage:
    .venv/bin/python benchmarks/faults_ssh.py                       # the whole family
    .venv/bin/python benchmarks/faults_ssh.py --sample 3 --seed 42
    .venv/bin/python benchmarks/faults_ssh.py --only G5 --minutes 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import faults  # noqa: E402
from lab.guest.faults import SshFaultClient, Store  # noqa: E402
from lab.vcsim import VcsimControl  # noqa: E402

KIND = "ssh"
LAB = ["vcsim", "guest.supervisor"]
DEFAULT_SEED = 1111
#: fault name -> (lab action, when)
FAULTS = {
    "drop-before": ("drop", "before"),
    "drop-after": ("drop", "after"),
    "refuse": ("refuse", "before"),
    "stall": ("stall", "before"),
}
REFUSE_SECONDS = 0.3
#: The command's own limit in the cells' configuration (the lab's commands take well under 1 s).
COMMAND_SECONDS = 15
#: Steps whose first command is paused while the flow's process is killed.
PAUSE_STEPS = ("G5", "G6", "G7", "G9")
#: Commands whose lost session the product expects (the guest goes down): dropping them after they
#: ran is success, so "always" completes too.
GOES_DOWN = re.compile(r"Restart-Computer|sysprep\.exe", re.IGNORECASE)
#: Commands that act only when their effect is missing ("if (-not (...)) { New-... }"): dropped
#: after they ran, the retry finds the effect and does not send them again, so "always" completes.
ENSURES = re.compile(r"^(\$ProgressPreference = 'SilentlyContinue'; )?if \(-not \(")
PREFIX = "$ProgressPreference = 'SilentlyContinue'; "
#: Cells failing because of a product defect found by this matrix and not fixed yet.
KNOWN_DEFECTS: dict[str, str] = {}


@dataclass(frozen=True)
class Kind:
    """One distinct command the flow sends: the step that first sends it, and its text."""

    step: str
    text: str
    index: int  # its position among the step's kinds (for a short, stable name)

    @property
    def label(self) -> str:
        return f"{self.step}.{self.index}"

    @property
    def pattern(self) -> str:
        return "^" + re.escape(self.text) + "$"

    @property
    def summary(self) -> str:
        body = self.text.removeprefix(PREFIX)
        return re.sub(r"\s+", " ", body)[:60]


@dataclass
class State:
    kinds: list[Kind]
    base_seconds: float
    client: SshFaultClient
    guests: Path
    public_key: str  # the administrator key's public line (`type base64`)


# -------------------------------------------------------------------------------------------- cells
def kinds_from_record(records: list[dict[str, Any]], marks: list[tuple[str, int]]) -> list[Kind]:
    """The distinct command texts of a baseline's record (`Store.recorded`), each assigned to the
    step that first sent it; `marks`: (step ID, record length when the step was entered)."""
    bounds = [*marks, ("", len(records))]
    seen: set[str] = set()
    out: list[Kind] = []
    for (step, start), (_, end) in itertools.pairwise(bounds):
        n = 0
        for rec in records[start:end]:
            text = rec["text"]
            if not step or text in seen:
                continue
            seen.add(text)
            n += 1
            out.append(Kind(step, text, n))
    return out


def matrix(kinds: list[Kind]) -> list[faults.Cell]:
    cells: list[faults.Cell] = []
    for k in kinds:
        for fault in FAULTS:
            for times in faults.TIMES:
                expect = "Failed" if times == "always" else "Completed"
                if expect == "Failed" and fault == "drop-after" and GOES_DOWN.search(k.text):
                    expect = "Completed"
                if expect == "Failed" and fault == "drop-after" and ENSURES.search(k.text):
                    # the first attempt's effect stays; the retry finds it and sends no command
                    expect = "Completed"
                cells.append(faults.Cell(KIND, k.label, fault, "", times, expect, k.step))
    firsts = {k.step: k for k in reversed(kinds)}
    for step in PAUSE_STEPS:
        if step in firsts:
            cells.append(
                faults.Cell(KIND, firsts[step].label, "pause", "kill", "once", "Killed", step)
            )
    for k in kinds:
        # The command that takes the guest down, held while the flow's process is killed, then
        # released (it runs on, unseen); the re-run continues the killed build (`--resume`):
        # it must find out that the command ran, not send it again nor clone again.
        if GOES_DOWN.search(k.text):
            cells.append(faults.Cell(KIND, k.label, "pause", "kill", "resume", "Killed", k.step))
    return cells


#: The command kinds of a clean baseline build, as recorded by the twin (regenerate with
#: `--record-kinds` after the flow's commands change; `prepare` says when they differ).
KINDS_FILE = Path(__file__).with_name("faults_ssh_kinds.json")


def recorded_kinds() -> list[Kind]:
    return [Kind(**k) for k in json.loads(KINDS_FILE.read_text())]


def cells() -> list[faults.Cell]:
    """Every cell, from the command kinds of the recorded baseline (KINDS_FILE)."""
    return matrix(recorded_kinds())


# ---------------------------------------------------------------------------------------- the flow
def config(env: dict[str, str], tag: str) -> Any:
    gi = faults.config(env, tag)
    timeouts = gi.timeouts.model_copy(
        update={"command_seconds": COMMAND_SECONDS, "sysprep_seconds": 30, "updates_seconds": 120}
    )
    return gi.model_copy(update={"timeouts": timeouts})


def prepare(env: dict[str, str]) -> State:
    """Blocks, and a clean baseline build: its time and the command kinds the twin recorded."""
    faults.save_blocks(env)
    guests = Path(env["LAB_GUESTS_DIR"])
    store = Store(guests)
    client = SshFaultClient.from_env(env)
    client.clear()
    marks: list[tuple[str, int]] = []

    def mark(step: str) -> Callable[[], None]:
        return lambda: marks.append((step, len(store.recorded())))

    steps = [s for s in ("G1", "G2", "G3a", "G3b", "G3c", "G4", "G5", "G6", "G6u")]
    steps += ["PRE-2", "G7", "G8", "G9", "G10"]
    gi = config(env, "base-" + uuid.uuid4().hex[:4])
    marks.append(("", len(store.recorded())))
    with faults.on_step({s: mark(s) for s in steps}):
        state, exc, seconds = faults.run_flow(gi)
    if state != "Completed":
        raise RuntimeError(f"the clean baseline build did not complete: {state} {exc!r}")
    kinds = kinds_from_record(store.recorded(), marks)
    saved = REPO_ROOT / ".artifacts" / "faults_ssh-kinds.json"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps([asdict(k) for k in kinds], indent=1))
    if KINDS_FILE.exists() and recorded_kinds() != kinds:
        print(
            f"note: the baseline's command kinds differ from {KINDS_FILE.name} "
            f"(new list in {saved}; run with --record-kinds to update it)",
            flush=True,
        )
    from winnodes.guest.ssh import key_line, load_private_key

    public = key_line(load_private_key(Path(env["LAB_SSH_PRIVATE_KEY"]).read_text()))
    return State(kinds, seconds, client, guests, public)


def _kind(state: State, label: str) -> Kind | None:
    return next((k for k in state.kinds if k.label == label), None)


# -------------------------------------------------------------------------------- the end state
def twin_state(state: State, gi: Any) -> list[str]:
    """What is wrong on the twin's disks of the cell's VMs (the base VM and the template)."""
    from lab.guest.state import GuestDisk
    from winnodes.render import powershell as ps

    problems: list[str] = []
    public = state.public_key.split()[:2]
    for d in sorted(state.guests.iterdir()) if state.guests.exists() else []:
        disk = GuestDisk(d)
        if not disk.exists() or not (d / "runtime.json").exists():
            continue
        name = disk.runtime().name
        if not name.startswith(gi.names.template_series):
            continue
        st = disk.load()
        if name == gi.names.base_vm:
            try:
                text = disk.host_path(ps.AUTHORIZED_KEYS).read_text()
            except (OSError, ValueError):
                text = ""
            copies = sum(line.split()[:2] == public for line in text.splitlines())
            if copies != 1:
                problems.append(f"{name}: the key is {copies} times in authorized_keys")
        names = [r.display_name for r in st.firewall_rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"{name}: duplicate firewall rules {dupes}")
        if st.generalized and st.sysprep_count != 1:
            problems.append(f"{name}: sysprepped {st.sysprep_count} times")
    return problems


# ------------------------------------------------------------------------------------- the cells
def run_cell(env: dict[str, str], state: State, cell: faults.Cell) -> faults.Outcome:
    tag = uuid.uuid4().hex[:6]
    gi = config(env, tag)
    out = faults.Outcome(cell)
    kind = _kind(state, cell.target)
    if kind is None:
        out.problems.append(f"command kind {cell.target} is not in this baseline (update kinds)")
        return out
    client = state.client
    client.clear()
    guest = f"{gi.names.template_series}*"
    try:
        if cell.fault == "pause":
            client.add("pause", kind.pattern, guest=guest, times=1)
            out.state, out.seconds = kill_while_paused(client, gi)
            if out.state == "Killed":
                faults.crash_abandoned_runs()  # as the zombie-run automation would
        else:
            action, when = FAULTS[cell.fault]
            client.add(
                action,
                kind.pattern,
                guest=guest,
                when=when,
                seconds=REFUSE_SECONDS if action == "refuse" else 0.0,
                times=faults.TIMES[cell.times],
            )
            with faults.on_step({}) as entered:
                out.state, exc, out.seconds = faults.run_flow(gi)
            out.report_step = next(
                (e.removeprefix("failed:") for e in entered if e.startswith("failed:")), None
            )
            if exc is not None:
                out.failed_step = getattr(exc, "step_id", None)
                out.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        out.hits = client.hits()
    finally:
        client.clear()  # also releases a paused command

    if out.hits == 0:
        out.problems.append("the fault was never hit (the command was not sent)")
    if cell.fault == "pause":
        if out.state != "Killed":
            out.problems.append(f"the kill point was not reached ({out.state})")
    elif out.state != cell.expect:
        out.problems.append(f"ended {out.state}, expected {cell.expect}")
    if cell.expect == "Failed" and out.state == "Failed":
        if not out.failed_step:
            out.problems.append("the failure names no step ID")
        if cell.step and out.report_step != cell.step:
            out.problems.append(f"step {out.report_step} failed, expected {cell.step}")
    if out.state == "Completed":
        out.recovery = max(0.0, out.seconds - state.base_seconds)
    elif cell.times == "resume":  # the killed build, continued
        build = faults._base_build(env, gi)
        rerun, exc, seconds = faults.run_flow(gi, build_id=build or None)
        out.recovery = seconds
        if rerun != "Completed":
            out.problems.append(f"resumed run ended {rerun}: {exc!r}"[:200])
        out.problems += faults._resumed(env, gi, build)
        control = VcsimControl.from_env(env)
        clones = faults._tasks_on(control, faults._base_moid(env, gi), "clone")
        if len(clones) != 1:
            out.problems.append(f"{len(clones)} clone tasks of the base VM (expected 1)")
    else:  # nothing half-made: a fresh run of the same configuration converges
        rerun, exc, seconds = faults.run_flow(gi)
        out.recovery = seconds
        if rerun != "Completed":
            out.problems.append(f"re-run ended {rerun}: {exc!r}"[:200])
    out.problems += faults.end_state(env, gi)
    out.problems += twin_state(state, gi)
    if out.problems and cell.name in KNOWN_DEFECTS:
        out.problems.append("known defect: " + KNOWN_DEFECTS[cell.name])
    return out


def kill_while_paused(client: SshFaultClient, gi: Any) -> tuple[str, float]:
    """Run the flow in a child process (as `faults.kill_run`), SIGKILL it while the guest command
    is paused, then release the command (it completes on the guest, unseen)."""
    from prefect.settings import PREFECT_API_URL

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        fh.write(gi.model_dump_json())
        cfg = fh.name
    child_env = dict(os.environ) | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "faults.py"), "--child", cfg],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None and not client.paused():
            if time.monotonic() - t0 > 300:
                break
            time.sleep(0.2)
        if proc.poll() is None and client.paused():
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        client.release()
        Path(cfg).unlink(missing_ok=True)
    state = "Killed" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
    return state, time.monotonic() - t0


# --------------------------------------------------------------------------------------------- main
def run_family(
    env: dict[str, str],
    *,
    only: str = "",
    n: int = 0,
    seed: int | None = None,
    deadline: float = 0.0,
    shard: tuple[int, int] = (0, 1),
) -> tuple[list[faults.Outcome], float]:
    state = prepare(env)
    print(
        f"baseline: {len(state.kinds)} command kinds in {state.base_seconds:.1f}s: "
        + "; ".join(f"{k.label} {k.summary}" for k in state.kinds),
        flush=True,
    )
    wanted = [o for o in only.split(",") if o] or [""]
    todo = [c for c in matrix(state.kinds) if any(o in c.name for o in wanted)]
    if n:
        todo = faults.sample(todo, n, DEFAULT_SEED if seed is None else seed)
    elif seed is not None:  # a time-boxed run: the few pause+kill cells first, then the rest evenly
        todo = faults.sample(todo, len(todo), seed)
        todo.sort(key=lambda c: c.fault != "pause")
    todo = todo[shard[0] :: shard[1]]  # this job's share (benchmarks/fault_matrix.py)
    outcomes: list[faults.Outcome] = []
    for i, cell in enumerate(todo, 1):
        if deadline and time.monotonic() > deadline:
            print(f"time is up after {i - 1} of {len(todo)} cells", flush=True)
            break
        o = run_cell(env, state, cell)
        outcomes.append(o)
        print(
            f"[{i}/{len(todo)}] {cell.name} ({getattr(_kind(state, cell.target), 'summary', '?')}): {o.state} "
            f"{faults._failed(o)} {o.seconds:.1f}s -> "
            f"{'pass' if o.passed else 'FAIL ' + '; '.join(o.problems)}",
            flush=True,
        )
    return outcomes, state.base_seconds


def main(argv: list[str] | None = None) -> int:
    def record_kinds(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--record-kinds",
            action="store_true",
            help=f"write the baseline's kinds to {KINDS_FILE.name}",
        )

    def after_run(args: argparse.Namespace) -> None:
        if args.record_kinds:
            saved = REPO_ROOT / ".artifacts" / "faults_ssh-kinds.json"
            KINDS_FILE.write_text(saved.read_text())
            print(f"command kinds written to {KINDS_FILE}", flush=True)

    return faults.family_main(
        argv,
        doc=__doc__,
        kind=KIND,
        lab=LAB,
        cells=cells,
        run=run_family,
        title="golden-image flow (SSH faults)",
        add_args=record_kinds,
        after_run=after_run,
    )


if __name__ == "__main__":
    raise SystemExit(main())
