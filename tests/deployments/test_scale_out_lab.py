"""The scale-out path as a site runs it: Prefect on PostgreSQL, two process workers (separate
processes, at most two runs each), the product registered with its one command (deployments, the
`vcenter-clone` limit, the zombie-run and failure-notification automations, a webhook block).

1. Four golden-image builds of different series, started at once from the `golden-image`
   deployment, all complete with exactly one template each, and vCenter never has more clones in
   flight than the limit. Both checked from the lab's vCenter with pyvmomi (templates; CloneVM tasks
   of a TaskHistoryCollector made before the builds), never from the product.
2. A scheduled-rebuild run whose worker host dies (kill -9 of the worker and its flow-run process
   in the middle of the clone) is marked Crashed by the automation within the heartbeat window, the
   failure notification reaches the webhook, and a retry (`prefect flow-run retry`) completes it
   with one template, one clone task and no other VM.

The site has its own lab (vCenter, guest twin and the cluster's API server, which is what a golden
image needs), because the test slows clones down for everyone on its vCenter. Heartbeats every 30 s (Prefect's minimum) and a
60 s window keep the crash detection under two minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from lab import cli, pipeline, postgres, prefect_server, webhook
from lab.paths import LabPaths
from lab.process import descendants, free_port
from lab.vcsim import VcsimControl

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLONE_SLOTS = 2  # the vcenter-clone limit the site registers
HEARTBEAT = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the workers (Prefect's minimum)
WINDOW = 60  # register --heartbeat-window: two heartbeats (they come 30-37 s apart here)
PROACTIVE_SLACK = 15  # Prefect evaluates proactive triggers every 5 s; events travel
WORKERS = ("prefect-worker-a", "prefect-worker-b")
# A golden image needs vCenter and the guests, and the cluster for retention (G10 keeps what a
# MachineSet or Machine names); not DNS or the controllers.
LAB = ["vcsim", "guest.supervisor", "kube"]


@dataclass
class Site:
    env: dict[str, str]  # the small lab's variables
    penv: dict[str, str]  # the product's commands' environment
    paths: LabPaths  # Prefect server, workers, PostgreSQL, webhook receiver
    si: Any  # pyvmomi ServiceInstance of the lab's vCenter (the test's own session)
    tasks: Any  # TaskHistoryCollector made before any build
    tag: str
    worker_pids: dict[str, int] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.penv["PREFECT_API_URL"]

    @property
    def prefect(self) -> prefect_server.Api:
        return prefect_server.Api(self.api)

    def config(self, series: str) -> dict[str, Any]:
        cfg = pipeline.pipeline(self.env, series=series)
        # Scale-out is the subject, not G6u: its restarts add minutes to every build here.
        cfg["golden_image"]["windows_update"] = {"source": "off"}
        return cfg

    def start_run(self, deployment: str, series: str) -> dict[str, Any]:
        return self.prefect.start_run(
            f"windows-nodes/{deployment}", {"config": self.config(series)}
        )

    def run(self, run_id: str) -> dict[str, Any]:
        return self.prefect.flow_run(run_id)


def _wait(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _connect(env: dict[str, str]) -> Any:
    host, _, port = env["LAB_VSPHERE_SERVER"].partition(":")
    ctx = ssl.create_default_context(cafile=env["LAB_VSPHERE_CA_FILE"])
    return SmartConnect(
        host=host,
        port=int(port or 443),
        user=env["LAB_VSPHERE_USERNAME"],
        pwd=env["LAB_VSPHERE_PASSWORD"],
        sslContext=ctx,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    stack = contextlib.ExitStack()
    lab = stack.enter_context(cli.private_lab(tmp_path_factory.mktemp("lab-scaleout"), LAB))
    env = dict(lab.env)
    # PostgreSQL runs as the `postgres` account when we are root: its directory must be reachable
    # (pytest's temporary directories are private to root).
    root = Path(tempfile.mkdtemp(prefix="winnodes-scaleout-"))
    root.chmod(0o755)
    paths = LabPaths(root=root, cache=LabPaths.default().cache)
    si = None
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WINNODES_PREFECT_PORT", "LAB_POSTGRES_PORT", "LAB_WEBHOOK_PORT"):
            mp.setenv(var, str(free_port()))
        try:
            database_url = postgres.start_cluster(paths)
            hook_url = webhook.start(paths)
            prefect_server.start_server(paths, database_url=database_url)
            tag = uuid.uuid4().hex[:4]
            penv = {
                **os.environ,
                **prefect_server.prefect_env(paths),
                "LAB_VSPHERE_PASSWORD": env["LAB_VSPHERE_PASSWORD"],
                pipeline.ADMIN_PASSWORD_VAR: pipeline.admin_password(Path(env["LAB_DIR"])),
                "WINNODES_RETRY_DELAY": "0.2",
            }
            blocks = {
                pipeline.BLOCK_VSPHERE: {
                    "type": "vsphere",
                    "server": env["LAB_VSPHERE_SERVER"],
                    "username": env["LAB_VSPHERE_USERNAME"],
                    "password": {"env": "LAB_VSPHERE_PASSWORD"},
                    "ca_bundle": env["LAB_VSPHERE_CA_FILE"],
                },
                pipeline.BLOCK_WINDOWS: {
                    "type": "windows",
                    "ssh_private_key": {"file": env["LAB_SSH_PRIVATE_KEY"]},
                    "administrator_password": {"env": pipeline.ADMIN_PASSWORD_VAR},
                },
                pipeline.BLOCK_OPENSHIFT: {
                    "type": "openshift",
                    "kubeconfig_path": env["KUBECONFIG"],
                },
                pipeline.BLOCK_NOTIFY: pipeline.notify_block(hook_url),
            }
            (root / "blocks.yaml").write_text(yaml.safe_dump(blocks))
            config = root / "pipeline.yaml"
            config.write_text(yaml.safe_dump(pipeline.pipeline(env, series=f"so{tag}-default")))
            proc = subprocess.run(
                [
                    *(sys.executable, "-m", "deployments.register"),
                    *("--blocks", str(root / "blocks.yaml"), "--config", str(config)),
                    *("--results-dir", penv["WINNODES_RESULTS_DIR"]),
                    *("--clone-slots", str(CLONE_SLOTS), "--heartbeat-window", str(WINDOW)),
                ],
                cwd=ROOT,
                env=penv,
                capture_output=True,
                text=True,
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
            worker_env = {
                **{k: v for k, v in penv.items() if k.startswith(("WINNODES_", "PREFECT_"))},
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT),
                "PREFECT_WORKER_QUERY_SECONDS": "2",
            }
            pids = {
                name: prefect_server.start_worker(paths, ROOT, worker_env, name=name, limit=2)
                for name in WORKERS
            }
            si = _connect(env)
            # tasks on the VMs of the lab's folder (not the datastore's FileManager tasks)
            folder = si.content.searchIndex.FindByInventoryPath(env["LAB_VSPHERE_FOLDER"])
            spec = vim.TaskFilterSpec(
                entity=vim.TaskFilterSpec.ByEntity(entity=folder, recursion="all")
            )
            collector = si.content.taskManager.CreateCollectorForTasks(spec)
            yield Site(env, penv, paths, si, collector, tag, pids)
        finally:
            if si is not None:
                Disconnect(si)
            prefect_server.stop(paths)
            webhook.stop(paths)
            postgres.stop_cluster(paths)
            # keep the site's logs (server, workers, PostgreSQL, webhook) for a post-mortem
            shutil.copytree(
                root / "logs", tmp_path_factory.mktemp("scaleout-logs"), dirs_exist_ok=True
            )
            shutil.rmtree(root, ignore_errors=True)
            stack.close()  # the lab's teardown


# -- vCenter, read with pyvmomi ------------------------------------------------------------------
def _vms(site: Site, prefix: str) -> dict[str, bool]:
    """name -> is a template, for the VMs in the lab's VM folder whose name starts with prefix."""
    content = site.si.content
    folder = content.searchIndex.FindByInventoryPath(site.env["LAB_VSPHERE_FOLDER"])
    view = content.viewManager.CreateContainerView(folder, [vim.VirtualMachine], False)
    try:
        return {vm.name: bool(vm.config.template) for vm in view.view if vm.name.startswith(prefix)}
    finally:
        view.DestroyView()


def _clone_tasks(site: Site, source_prefix: str) -> list[Any]:
    """The CloneVM tasks vCenter ran (TaskInfo, current state) whose source VM's name starts with
    `source_prefix`. (descriptionId is "VirtualMachine.clone" on vCenter, "...cloneVm" on vcsim,
    whose entityName is the moref: the name is read from the entity.)"""
    site.tasks.RewindCollector()
    infos: list[Any] = []
    while page := site.tasks.ReadNextTasks(100):
        infos += page
    clones = [i for i in infos if i.descriptionId.startswith("VirtualMachine.clone")]
    return [i for i in clones if i.entity is not None and i.entity.name.startswith(source_prefix)]


def _max_in_flight(tasks: list[Any]) -> int:
    now = datetime.now(UTC)
    edges = []
    for t in tasks:
        if t.startTime is None:
            continue
        edges += [(t.startTime, 1), (t.completeTime or now, -1)]
    most = current = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
        current += step
        most = max(most, current)
    return most


def _errors(site: Site, run_id: str) -> str:
    """The run's error logs (with their tracebacks), for the assertion message of a failed run."""
    body = {"logs": {"flow_run_id": {"any_": [run_id]}, "level": {"ge_": 40}}, "limit": 20}
    return "\n".join(str(log["message"]) for log in site.prefect.post("/logs/filter", body))


def _final(site: Site, run_id: str) -> str | None:
    return site.prefect.final_state(run_id)


def _process_of_run(run_id: str) -> int | None:
    """The flow-run process a process worker started for the run (PREFECT__FLOW_RUN_ID)."""
    needle = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                return int(environ.parent.name)
        except OSError:
            continue
    return None


# -- the tests -------------------------------------------------------------------------------------
def test_four_series_build_at_once_on_two_workers_within_the_clone_limit(site: Site) -> None:
    control = VcsimControl.from_env(site.env)
    control.set_delays(CloneVm=3000)  # clones that take time, so that slots matter
    series = [f"so{site.tag}-s{i}" for i in range(4)]
    t0 = time.monotonic()
    runs = {s: site.start_run("golden-image", s)["id"] for s in series}
    states = {
        s: _wait(f"build {s}", partial(_final, site, r), timeout=420, every=2)
        for s, r in runs.items()
    }
    elapsed = time.monotonic() - t0
    assert states == dict.fromkeys(series, "COMPLETED"), {
        s: f"{site.run(r)['state']['message']}: {_errors(site, r)}"
        for s, r in runs.items()
        if states[s] != "COMPLETED"
    }
    # both workers ran builds (each takes at most two runs at a time)
    logs = {w: (site.paths.logs / f"{w}.log").read_text(errors="replace") for w in WORKERS}
    for w, text in logs.items():
        assert any(r in text for r in runs.values()), f"{w} ran none of the builds"
    for s in series:
        vms = _vms(site, s)
        templates = [n for n, template in vms.items() if template]
        assert len(templates) == 1, (s, vms)
        assert set(vms) == {templates[0], f"{s}-base"}, vms  # the kept base VM, nothing else
    clones = _clone_tasks(site, f"so{site.tag}-s")
    assert len(clones) == 4 and all(t.state == "success" for t in clones), clones
    in_flight = _max_in_flight(clones)
    assert 1 <= in_flight <= CLONE_SLOTS, in_flight
    print(f"4 builds on 2 workers in {elapsed:.0f}s; at most {in_flight} clones in flight")


def test_dead_worker_run_is_crashed_by_the_automation_and_a_retry_completes_it(
    site: Site,
) -> None:
    control = VcsimControl.from_env(site.env)
    control.set_delays(CloneVm=15000)  # a clone long enough to die in the middle of
    s = f"so{site.tag}-r"
    run_id = site.start_run("golden-image-rebuild", s)["id"]

    def cloning() -> bool:
        assert _final(site, run_id) is None, site.run(run_id)["state"]  # ended before its clone
        return any(t.state == "running" for t in _clone_tasks(site, f"{s}-base"))

    _wait("the rebuild's clone in vCenter", cloning, timeout=300, every=0.5)
    flow_process = _process_of_run(run_id)
    assert flow_process is not None, "no process runs the flow run"
    worker = next(w for w, pid in site.worker_pids.items() if flow_process in descendants(pid))
    doomed = descendants(site.worker_pids[worker])
    for pid in doomed:  # the worker's host dies: worker and flow-run processes at once
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert site.run(run_id)["state"]["type"] == "RUNNING"

    state = _wait(
        "the automation to mark the run Crashed",
        lambda: _final(site, run_id),
        timeout=HEARTBEAT + WINDOW + PROACTIVE_SLACK + 30,
    )
    crashed_after = time.monotonic() - killed_at
    run = site.run(run_id)
    assert state == "CRASHED", run["state"]
    assert "heartbeat" in (run["state"]["message"] or ""), run["state"]
    # the last heartbeat was at most HEARTBEAT seconds before the kill
    assert crashed_after <= HEARTBEAT + WINDOW + PROACTIVE_SLACK, crashed_after

    def notified() -> list[dict[str, Any]]:
        return [r for r in webhook.received(site.paths) if run["name"] in json.dumps(r["body"])]

    (message,) = _wait("the failure notification", notified, timeout=30)
    assert "golden-image-rebuild" in message["body"]["subject"]
    assert "Crashed" in message["body"]["text"]

    retry = subprocess.run(
        [sys.executable, "-m", "prefect", "flow-run", "retry", run_id],
        env=site.penv,
        capture_output=True,
        text=True,
    )
    assert retry.returncode == 0, retry.stdout + retry.stderr
    state = _wait("the retried run", lambda: _final(site, run_id), timeout=300, every=2)
    assert state == "COMPLETED", site.run(run_id)["state"]
    vms = _vms(site, s)
    templates = [n for n, template in vms.items() if template]
    assert len(templates) == 1 and set(vms) == {templates[0], f"{s}-base"}, vms
    clones = _clone_tasks(site, f"{s}-base")
    assert len(clones) == 1, clones  # the retry waited for the dead run's clone
    print(f"worker {worker} killed; run Crashed after {crashed_after:.0f}s; retry completed")
