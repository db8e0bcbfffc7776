"""A Prefect server (SQLite under `<lab>/prefect`, or PostgreSQL) and process workers for the demo
and the end-to-end tests, run as lab daemons (pid and log files like every lab server).

The server is one process, `prefect server start` with its background services, on SQLite (the
default) or on PostgreSQL (lab.postgres); any number of workers (`start_worker(name=...)`) are
processes of their own. A site splits the API server (`--no-services`) from the services
(`prefect server services start`), but then events reach the services (automations, triggers)
only through Redis (`prefect-redis`, Prefect's "scale self-hosted" guide): its in-memory message
broker is per process. The lab keeps one process; the README describes the site's layout.

Not one of `python -m lab up`'s components: unit and lab tests use Prefect's own test harness; only
the demo and the deployment tests need a long-running server that a worker and a browser reach.
Port: WINNODES_PREFECT_PORT (default 4200) on 127.0.0.1.

`Api` is the few REST calls the deployment tests and the benchmarks make of such a server (a
deployment by name, a flow run started from it, the run's state): plain HTTP, so that what they
check does not go through the product's own Prefect client.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from lab.paths import LabPaths
from lab.process import log_file, read_pid, require_free_port, start_daemon, stop_daemon

SERVER, WORKER = "prefect-server", "prefect-worker"
HOST = "127.0.0.1"
WORK_POOL = "winnodes"
#: The state types a flow run ends in.
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def port() -> int:
    return int(os.environ.get("WINNODES_PREFECT_PORT", "4200"))


def api_url() -> str:
    return f"http://{HOST}:{port()}/api"


def ui_url() -> str:
    return f"http://{HOST}:{port()}"


def prefect_env(paths: LabPaths) -> dict[str, str]:
    """What every process talking to this server needs (the CLI, the worker, registration)."""
    home = paths.root / "prefect"
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url(),
        "PREFECT_UI_URL": ui_url(),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "WINNODES_RESULTS_DIR": str(home / "results"),
    }


def _healthy() -> bool:
    with urllib.request.urlopen(api_url() + "/health", timeout=2) as resp:
        return bool(json.loads(resp.read()))


def start_server(
    paths: LabPaths, extra_env: dict[str, str] | None = None, database_url: str | None = None
) -> None:
    """The API server, UI and background services in one process; on PostgreSQL when
    `database_url` is given (lab.postgres), else on SQLite in PREFECT_HOME."""
    if read_pid(paths, SERVER) is None:
        require_free_port(HOST, port(), "Prefect server", "WINNODES_PREFECT_PORT")
    env = {**prefect_env(paths), **(extra_env or {})}
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST]
    start_daemon(
        paths, SERVER, [*argv, "--port", str(port())], ready=_healthy, timeout=180, env=env
    )


def start_worker(
    paths: LabPaths,
    project_dir: Path,
    extra_env: dict[str, str] | None = None,
    name: str = WORKER,
    limit: int | None = None,
) -> int:
    """A process worker on the `winnodes` pool; it runs flows from `project_dir`. Ready once the
    worker's log says it started (it polls the server on its own). Several workers: give each a
    `name` starting with "prefect-worker" (its pid and log file, and the worker's name in Prefect);
    `limit`: at most this many flow runs at once on this worker. Returns its pid."""
    log = log_file(paths, name)
    before = log.stat().st_size if log.exists() else 0

    def started() -> bool:
        return "started!" in log.read_text(errors="replace")[before:]

    env = {**prefect_env(paths), **(extra_env or {})}
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL]
    argv += ["--type", "process", "--name", f"{name}-{paths.root.name}"]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return start_daemon(paths, name, argv, ready=started, env=env, cwd=project_dir)


def worker_names(paths: LabPaths) -> list[str]:
    return sorted(p.stem for p in paths.run.glob(f"{WORKER}*.pid"))


def stop(paths: LabPaths) -> None:
    for name in worker_names(paths):
        stop_daemon(paths, name)
    stop_daemon(paths, SERVER)


def status(paths: LabPaths) -> str:
    try:
        return f"running at {ui_url()}" if _healthy() else "stopped"
    except OSError:
        return "stopped"


class Api:
    """A client of the REST API at `url` (`PREFECT_API_URL`, ending in /api).

    `attempts`: how many times a call is made while the server answers 503 (SQLite's "database is
    locked" under load), a second apart; `unavailable` counts the 503 answers. Any other error
    status raises `httpx.HTTPStatusError` at once."""

    def __init__(self, url: str, *, timeout: float = 30, attempts: int = 1) -> None:
        self.url = url
        self.timeout = timeout
        self.attempts = attempts
        self.unavailable = 0

    def request(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in range(1, self.attempts + 1):
            resp = httpx.request(method, self.url + path, json=body, timeout=self.timeout)
            if resp.status_code != 503:
                break
            self.unavailable += 1
            if attempt < self.attempts:
                time.sleep(1)
        resp.raise_for_status()
        return resp.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body or {})

    def deployment(self, name: str) -> dict[str, Any]:
        """A deployment by its full name, "<flow>/<deployment>"."""
        dep: dict[str, Any] = self.get(f"/deployments/name/{name}")
        return dep

    def create_flow_run(self, deployment_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
        run: dict[str, Any] = self.post(
            f"/deployments/{deployment_id}/create_flow_run", {"parameters": parameters}
        )
        return run

    def start_run(self, deployment: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """A flow run of the deployment named `deployment` ("<flow>/<deployment>")."""
        return self.create_flow_run(self.deployment(deployment)["id"], parameters)

    def flow_run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.get(f"/flow_runs/{run_id}")
        return run

    def final_state(self, run_id: str) -> str | None:
        """The run's state type once it ended (one of FINAL_STATES), else None."""
        state = self.flow_run(run_id)["state"]["type"]
        return str(state) if state in FINAL_STATES else None
