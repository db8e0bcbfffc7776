"""The lab's figures, measured side by side in one run: `.venv/bin/python benchmarks/lab_figures.py`.

The issues ask how long the lab takes to come up, how much memory it holds, how fast a guest
answers over SSH, how long a Windows VM takes from PowerOn to an IP and a MachineSet from apply to
a Ready Node. Tests must not assert timings (they run on a shared 2-core machine), so the numbers
live here: one script that brings up a lab of its own, measures, prints a table and takes its lab
down again.

Isolation: the lab runs in a fresh run directory under /tmp (WINNODES_LAB_DIR) on free ports chosen
at start and its own guest network (LAB_GUEST_NET: one nothing listens on), so a lab already running on this
machine (yours or another engineer's) is not disturbed. The build cache is the machine's: `lab up`
is timed with the Go servers already built (the script builds them first, untimed, if missing).

Measured:
  lab up              cold start of the fresh run dir, with each component's share
  memory              RSS of every lab process (each daemon with its child processes: guest sshd
                      under the guest supervisor, controllers under their supervisors), after `up`
                      and again with one Windows node running
  SSH                 connect time (TCP + handshake + key auth) and median/p90 of 30 commands
                      on one connection to a guest
  PowerOn -> IP       first boot of a VM installed from ISO, and boot of its clone
  MachineSet -> Ready apply of a Windows MachineSet (golden template made with lab.scenario, the
                      api-int record added by a TSIG-signed update, `cloud-private-key` from the
                      lab's key) to the Node Ready, with the Machine's phases on the way
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from lab import cli, scenario  # noqa: E402
from lab.controllers import wmco  # noqa: E402
from lab.paths import LabPaths  # noqa: E402

Obj = dict[str, Any]
Row = tuple[str, str, str]  # figure, value, note


# ------------------------------------------------------------------------------------- isolation
def bench_env(run_dir: Path, guest_net: int | None) -> dict[str, str]:
    """The lab's variables for a lab of the benchmark's own (the tests' session lab uses the same
    lab.cli.private_settings): run directory, ports from the OS, a free guest network."""
    env = dict(os.environ) | cli.private_settings(run_dir, guest_net=guest_net)
    env["GOTOOLCHAIN"] = "local"
    return env


def lab_cmd(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"`python -m lab {' '.join(args)}` failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


# ---------------------------------------------------------------------------------------- lab up
def measure_up(env: dict[str, str]) -> list[Row]:
    t0 = time.monotonic()
    out = lab_cmd(env, "up")
    wall = time.monotonic() - t0
    rows: list[Row] = [("lab up (cold run dir, cached build)", f"{wall:.1f} s", "wall clock")]
    for line in out.splitlines():
        parts = line.split()
        # "  vcsim                    up (0.5s)"
        if len(parts) == 3 and parts[1] == "up" and parts[2].startswith("("):
            secs = float(parts[2].strip("()s"))
            rows.append((f"  {parts[0]}", f"{secs:.1f} s", f"{100 * secs / wall:.0f}% of up"))
    rest = wall - sum(float(r[1].split()[0]) for r in rows[1:])
    rows.append(("  rest", f"{rest:.1f} s", "interpreter, SSH key (RSA 4096), run dir, env files"))
    return rows


# ---------------------------------------------------------------------------------------- memory
def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                kids += [
                    int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                ]
    return kids


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def lab_processes(paths: LabPaths) -> dict[str, list[tuple[int, str, int]]]:
    """Every lab daemon (a pid file in <lab>/run) with its process tree, each process counted once:
    name -> [(pid, comm, KiB)]. A daemon started by another (a guest's sshd under the guest
    supervisor) is its own entry, not part of its parent's."""
    roots: dict[str, int] = {}
    for pid_file in sorted(paths.run.glob("*.pid")):
        with contextlib.suppress(ValueError):
            pid = int(pid_file.read_text().strip())
            if Path(f"/proc/{pid}").exists():
                roots[pid_file.stem] = pid
    root_pids = set(roots.values())
    out: dict[str, list[tuple[int, str, int]]] = {}
    for name, root in roots.items():
        tree, todo = [], [root]
        while todo:
            pid = todo.pop()
            tree.append((pid, _comm(pid), _rss_kib(pid)))
            todo += [c for c in _children(pid) if c not in root_pids]
        out[name] = tree
    return out


def measure_memory(paths: LabPaths, when: str) -> list[Row]:
    procs = lab_processes(paths)
    total = sum(rss for tree in procs.values() for _, _, rss in tree)
    rows: list[Row] = [
        (
            f"lab RSS, {when}",
            f"{total / 1024:.0f} MiB",
            f"{sum(map(len, procs.values()))} processes",
        )
    ]
    for name, tree in sorted(procs.items(), key=lambda kv: -sum(r for _, _, r in kv[1])):
        kib = sum(r for _, _, r in tree)
        comms: dict[str, list[int]] = {}
        for _, comm, rss in tree:
            comms.setdefault(comm, []).append(rss)
        detail = ", ".join(
            f"{c} x{len(r)} {sum(r) / 1024:.0f} MiB" if len(r) > 1 else f"{c} {r[0] / 1024:.0f} MiB"
            for c, r in sorted(comms.items(), key=lambda x: -sum(x[1]))
        )
        rows.append((f"  {name}", f"{kib / 1024:.0f} MiB", detail if len(tree) > 1 else ""))
    return rows


# ------------------------------------------------------------------------------------ the guests
def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def measure_ssh(site: scenario.Site, si: Any, vm: Any, ip: str, key_file: str) -> list[Row]:
    trusted = scenario.host_keys(site, vm)
    t0 = time.monotonic()
    with scenario.ssh(ip, key_file, trusted) as client:
        connect = time.monotonic() - t0
        lat: list[float] = []
        for _ in range(30):
            t = time.monotonic()
            rc, _, err = scenario.run(client, "hostname")
            lat.append(time.monotonic() - t)
            if rc != 0:
                raise RuntimeError(f"hostname failed on {ip}: {err}")
    return [
        ("SSH connect (TCP + handshake + key auth)", f"{connect * 1000:.0f} ms", ip),
        (
            "SSH command, median of 30",
            f"{statistics.median(lat) * 1000:.0f} ms",
            "`hostname`, one connection",
        ),
        (
            "SSH command, p90 of 30",
            f"{_percentile(lat, 90) * 1000:.0f} ms",
            f"max {max(lat) * 1000:.0f} ms",
        ),
    ]


def make_golden(site: scenario.Site, env: dict[str, str], tag: str) -> tuple[str, list[Row]]:
    """G1-G10 by hand with lab.scenario; returns the template's name and the guest figures."""
    key_file = env["LAB_SSH_PRIVATE_KEY"]
    public_key = Path(env["LAB_SSH_PUBLIC_KEY"]).read_text().strip()
    rows: list[Row] = []
    name = f"bench-{tag}"
    with scenario.connect(site) as si:
        script = scenario.first_logon_script(public_key, firewall_ports=(10250, 9182))
        answers = scenario.answer_iso(
            site, f"{name}-answers", scenario.autounattend(name, "Lab-Passw0rd!"), script
        )
        isos = [site.windows_iso["current"], site.tools_iso, answers]
        vm = scenario.create_windows_vm(si, site, name, isos)
        t0 = time.monotonic()
        scenario.power_on(si, vm)
        ip = scenario.wait_for_ip(si, vm, timeout=300)
        rows.append(
            (
                "PowerOn -> IP, install from ISO",
                f"{time.monotonic() - t0:.1f} s",
                "first boot, OOBE, first logon",
            )
        )
        rows += measure_ssh(site, si, vm, ip, key_file)
        template = f"{name}-tmpl"
        t0 = time.monotonic()
        scenario.make_template(si, site, vm, key_file, template)
        rows.append(
            ("golden template (clone, boot, sysprep)", f"{time.monotonic() - t0:.1f} s", "G8-G10")
        )
        clone = scenario.clone(
            si, site, scenario.vm_by_name(si, site, template), f"{name}-boot", power=False
        )
        t0 = time.monotonic()
        scenario.power_on(si, clone)
        scenario.wait_for_ip(si, clone, timeout=300)
        rows.append(
            (
                "PowerOn -> IP, clone of the template",
                f"{time.monotonic() - t0:.1f} s",
                "specialize, OOBE",
            )
        )
        scenario.destroy(si, clone)
        scenario.destroy(si, vm)
    return template, rows


# -------------------------------------------------------------------------------------- cluster
def api_int(env: dict[str, str]) -> None:
    """DNS1 by hand: the api-int record, added by an RFC 2136 update signed with the lab's key."""
    import dns.name
    import dns.query
    import dns.tsigkeyring
    import dns.update

    from lab.dns import read_tsig_key

    key = read_tsig_key(Path(env["LAB_TSIG_KEYFILE"]))
    ring = dns.tsigkeyring.from_text({key.name: (key.algorithm, key.secret)})
    zone, cluster = env["LAB_DNS_ZONE"], env["LAB_CLUSTER_NAME"]
    upd = dns.update.UpdateMessage(zone, keyring=ring, keyname=dns.name.from_text(key.name))
    upd.replace(f"api-int.{cluster}", 60, "CNAME", f"api.{cluster}.{zone}.")
    resp = dns.query.tcp(upd, env["LAB_DNS_SERVER"], port=int(env["LAB_DNS_PORT"]), timeout=5)
    if resp.rcode() != 0:
        raise RuntimeError(f"DNS update of api-int refused: {resp}")


def key_secret(core: Any, key_file: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": wmco.KEY_SECRET, "namespace": wmco.WMCO_NAMESPACE},
        "type": "Opaque",
        "data": {wmco.KEY_SECRET_DATA: base64.b64encode(Path(key_file).read_bytes()).decode()},
    }
    try:
        core.create_namespaced_secret(wmco.WMCO_NAMESPACE, body)
    except Exception:
        core.replace_namespaced_secret(wmco.KEY_SECRET, wmco.WMCO_NAMESPACE, body)


def machineset(name: str, template: str, site: scenario.Site, infra_id: str) -> Obj:
    return scenario.windows_machineset(name, infra_id, scenario.provider_spec(site, template))


def _watch(
    list_fn: Callable[..., Any], on_event: Callable[[str, Obj], bool], timeout: float, **kw: Any
) -> None:
    """List then watch (resumed) until on_event(type, object) returns True."""
    from kubernetes import watch as k8s_watch

    deadline = time.monotonic() + timeout
    body = list_fn(**kw)
    if not isinstance(body, dict):
        body = list_fn.__self__.api_client.sanitize_for_serialization(body)  # type: ignore[attr-defined]
    for o in body["items"]:
        if on_event("ADDED", o):
            return
    rv = body["metadata"]["resourceVersion"]
    while (left := deadline - time.monotonic()) > 0:
        for ev in k8s_watch.Watch().stream(
            list_fn, resource_version=rv, timeout_seconds=max(1, int(left)), **kw
        ):
            o = ev["raw_object"]
            rv = o["metadata"]["resourceVersion"]
            if on_event(ev["type"], o):
                return
    raise TimeoutError(f"no result within {timeout:.0f}s")


def measure_machineset(
    env: dict[str, str], site: scenario.Site, template: str, tag: str
) -> list[Row]:
    import threading

    from kubernetes import client as k8s

    from lab.controllers.common import kube_client

    api = kube_client(env)
    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    key_secret(core, env["LAB_SSH_PRIVATE_KEY"])
    api_int(env)
    name = f"bench{tag}"
    marks: dict[str, float] = {}
    machine: list[str] = []

    def machines() -> None:
        def seen(_type: str, m: Obj) -> bool:
            labels = m["metadata"].get("labels") or {}
            if labels.get("machine.openshift.io/cluster-api-machineset") != name:
                return False
            if not machine:
                machine.append(m["metadata"]["name"])
                marks.setdefault("Machine created", time.monotonic())
            phase = (m.get("status") or {}).get("phase")
            if phase:
                marks.setdefault(f"Machine {phase}", time.monotonic())
            return phase == "Running"

        with contextlib.suppress(TimeoutError):
            _watch(
                lambda **kw: custom.list_namespaced_custom_object(
                    "machine.openshift.io", "v1beta1", wmco.MACHINE_API_NAMESPACE, "machines", **kw
                ),
                seen,
                600,
            )

    watcher = threading.Thread(target=machines, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    custom.create_namespaced_custom_object(
        "machine.openshift.io",
        "v1beta1",
        wmco.MACHINE_API_NAMESPACE,
        "machinesets",
        machineset(name, template, site, env["LAB_INFRASTRUCTURE_ID"]),
    )

    def ready(_type: str, node: Obj) -> bool:
        if not machine or node["metadata"]["name"] != machine[0]:
            return False
        conds = (node.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    _watch(core.list_node, ready, 600)
    total = time.monotonic() - t0
    watcher.join(timeout=30)
    rows: list[Row] = [
        (
            "MachineSet apply -> Node Ready",
            f"{total:.1f} s",
            f"Machine {machine[0] if machine else '?'}",
        )
    ]
    for what, at in sorted(marks.items(), key=lambda kv: kv[1]):
        rows.append((f"  -> {what}", f"{at - t0:.1f} s", "since apply"))
    return rows


# ------------------------------------------------------------------------------------------ main
def print_table(rows: list[Row]) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"\n{'figure':<{w0}}  {'value':>{w1}}  note")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 40}")
    for figure, value, note in rows:
        print(f"{figure:<{w0}}  {value:>{w1}}  {note}")


@contextlib.contextmanager
def bench_lab(env: dict[str, str], keep: bool) -> Iterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            lab_cmd(env, "down", timeout=120)
        if not keep:
            shutil.rmtree(env["WINNODES_LAB_DIR"], ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--guest-net",
        type=int,
        default=int(os.environ["BENCH_GUEST_NET"]) if os.environ.get("BENCH_GUEST_NET") else None,
        help="second octet of the guests' 127.x.y.z addresses (default: one nothing listens on)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run directory (logs) after the lab is down"
    )
    parser.add_argument(
        "--skip-node", action="store_true", help="only lab up and memory (no Windows guests)"
    )
    args = parser.parse_args(argv)

    run_dir = Path(tempfile.mkdtemp(prefix="winnodes-bench-", dir="/tmp"))
    env = bench_env(run_dir, args.guest_net)
    paths = LabPaths(root=run_dir, cache=LabPaths.default().cache)
    print(f"bench lab: {run_dir}; ports " + ", ".join(f"{v}={env[v]}" for v in cli.PORT_VARS))
    print("building (untimed; cached after the first time) ...", flush=True)
    lab_cmd(env, "build", timeout=3600)
    rows: list[Row] = []
    with bench_lab(env, args.keep):
        print("lab up ...", flush=True)
        rows += measure_up(env)
        rows += measure_memory(paths, "after up")
        if not args.skip_node:
            lab_env: dict[str, str] = json.loads((run_dir / "lab.json").read_text())
            site = scenario.Site.from_env(lab_env)
            tag = uuid.uuid4().hex[:4]
            print("golden image (install, SSH, sysprep, template) ...", flush=True)
            template, guest_rows = make_golden(site, lab_env, tag)
            rows += guest_rows
            print("MachineSet -> Node Ready ...", flush=True)
            rows += measure_machineset(lab_env, site, template, tag)
            rows += measure_memory(paths, "with one Windows node")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
