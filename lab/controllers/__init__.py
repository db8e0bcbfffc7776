"""The lab component "lab.controllers": the simulated cluster operators, each a supervised process.

machine-api (and later the WMCO simulator) run as separate processes, as the real operators run in
their own pods: each one can crash and restart without taking the lab down, and a restart exercises
the same adoption logic a real controller restart does. Every controller runs under a small
supervisor (`python -m lab.controllers <name>`) that restarts it when it dies (with backoff) and
stops it with itself; both log to `<lab>/logs/<name>.log`.

Adding a controller is one line in CONTROLLERS: its name and the module run with `python -m`. The
module reads KUBECONFIG and GOVC_* from its environment and writes its pid to the file named by
LAB_CONTROLLER_READY_FILE once its caches are synced.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lab.process import LabError, pid_alive, read_pid, start_daemon, stop_daemon

if TYPE_CHECKING:
    from lab.cli import LabContext
    from lab.paths import LabPaths

# name -> module started with `python -m` (a new controller is one more line).
CONTROLLERS: dict[str, str] = {
    "machine-api": "lab.controllers.machine_api",
    "wmco": "lab.controllers.wmco",
    "kubelet": "lab.controllers.kubelet",
}

REQUIRED_ENV = ("KUBECONFIG", "GOVC_URL")


def ready_file(paths: LabPaths, name: str) -> Path:
    return paths.run / f"{name}.ready"


def restarts_file(paths: LabPaths, name: str) -> Path:
    return paths.run / f"{name}.restarts"


def controller_pid(paths: LabPaths, name: str) -> int | None:
    """The pid of the controller process itself (not its supervisor), once it is ready."""
    try:
        pid = int(ready_file(paths, name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def start(ctx: LabContext) -> dict[str, str]:
    missing = [v for v in REQUIRED_ENV if not ctx.env.get(v)]
    if missing:
        raise LabError(
            f"lab.controllers needs {', '.join(missing)} from the components started before it: "
            "include vcsim and kube in LAB_COMPONENTS (e.g. LAB_COMPONENTS=vcsim,kube,dns,controllers)"
        )
    ctx.paths.ensure()
    for name in CONTROLLERS:
        rf = ready_file(ctx.paths, name)
        env = dict(ctx.env)
        env["LAB_CONTROLLER_READY_FILE"] = str(rf)
        start_daemon(
            ctx.paths,
            name,
            [sys.executable, "-m", "lab.controllers", name],
            ready=lambda name=name: controller_pid(ctx.paths, name) is not None,  # type: ignore[misc]
            timeout=60.0,
            env=env,
        )
    return {"LAB_CONTROLLERS": ",".join(CONTROLLERS)}


def stop(ctx: LabContext) -> None:
    for name in reversed(list(CONTROLLERS)):
        stop_daemon(ctx.paths, name)
        ready_file(ctx.paths, name).unlink(missing_ok=True)


def status(ctx: LabContext) -> str:
    parts: list[str] = []
    healthy = True
    for name in CONTROLLERS:
        sup = read_pid(ctx.paths, name)
        pid = controller_pid(ctx.paths, name)
        try:
            restarts = int(restarts_file(ctx.paths, name).read_text().strip())
        except (FileNotFoundError, ValueError):
            restarts = 0
        if sup is None:
            healthy = False
            parts.append(f"{name} stopped")
        elif pid is None:
            healthy = False
            parts.append(f"{name} not ready (supervisor pid {sup}, restarts {restarts})")
        else:
            parts.append(f"{name} pid {pid} (restarts {restarts})")
    return ("running: " if healthy else "degraded: ") + ", ".join(parts)
