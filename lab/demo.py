"""`make demo`: the product end to end against the lab, the way an administrator runs it on a site.

With the lab up (`python -m lab up`), it writes the product's configuration for the lab
(`<lab>/pipeline.yaml`, `<lab>/blocks.yaml`, no secrets in either), starts a Prefect server (SQLite
in `<lab>/prefect`, or the lab's PostgreSQL with `make demo PREFECT_DB=postgres`;
http://127.0.0.1:$WINNODES_PREFECT_PORT, default 4200) and a webhook receiver for failure
notifications (lab.webhook), registers blocks, deployments and automations with the product's one
registration command, starts a process worker, and runs the
`end-to-end` deployment with `winnodes run`, which prints each step, the result (template,
MachineSet, Ready nodes) and the run's address in the Prefect UI. Server and worker keep running
for the UI; `python -m lab down` stops them with the rest of the lab.

The lab talks to the product only through its commands (subprocesses), never by importing it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lab import pipeline, postgres, prefect_server, webhook
from lab.process import LabError

if TYPE_CHECKING:
    from lab.cli import LabContext

PROJECT_DIR = Path(__file__).resolve().parents[1]


def _step(title: str) -> float:
    print(f"==> {title}", flush=True)
    return time.monotonic()


def _done(t: float) -> None:
    print(f"    ({time.monotonic() - t:.1f}s)", flush=True)


def product_env(ctx: LabContext, env: dict[str, str]) -> dict[str, str]:
    """The environment of the product's commands: Prefect's address and the lab's secrets."""
    return {
        **os.environ,
        **prefect_server.prefect_env(ctx.paths),
        **pipeline.secret_env(env),
        "WINNODES_RETRY_DELAY": os.environ.get("WINNODES_RETRY_DELAY", "0.5"),
    }


def register(ctx: LabContext, env: dict[str, str], config: Path, blocks: Path) -> None:
    penv = product_env(ctx, env)
    cmd = [
        sys.executable,
        "-m",
        "deployments.register",
        "--blocks",
        str(blocks),
        "--config",
        str(config),
        "--results-dir",
        penv["WINNODES_RESULTS_DIR"],
    ]
    proc = subprocess.run(cmd, cwd=PROJECT_DIR, env=penv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"registration failed:\n{proc.stdout}{proc.stderr}")
    print("    " + proc.stdout.strip().replace("\n", "\n    "))


def start_prefect(ctx: LabContext, env: dict[str, str]) -> tuple[Path, Path]:
    """Configuration files, server, registration, worker: everything before a run."""
    from lab.cli import load_env, prefect_db

    env = dict(env or load_env(ctx.paths))
    env["LAB_WEBHOOK_URL"] = webhook.start(ctx.paths)
    print(f"    failure notifications go to {env['LAB_WEBHOOK_URL']}")
    print(f"    (received: {webhook.requests_file(ctx.paths)})")
    config, blocks = pipeline.write(env)
    print(f"    configuration: {config}\n    blocks:        {blocks}")
    database_url = None
    where = f"SQLite in {ctx.paths.root / 'prefect'}"
    if prefect_db() == "postgres":
        # `lab up` with LAB_PREFECT_DB=postgres started it; start it here otherwise
        database_url = env.get("LAB_PREFECT_DATABASE_URL") or postgres.start_cluster(ctx.paths)
        where = f"PostgreSQL on {postgres.HOST}:{postgres.port()}"
    t = _step(f"Prefect server ({where}) at {prefect_server.ui_url()}")
    prefect_server.start_server(ctx.paths, database_url=database_url)
    _done(t)
    t = _step("register blocks and deployments: python -m deployments.register")
    register(ctx, env, config, blocks)
    _done(t)
    t = _step("start a process worker on the 'winnodes' pool")
    extra = {k: v for k, v in product_env(ctx, env).items() if k.startswith("WINNODES_")}
    prefect_server.start_worker(ctx.paths, PROJECT_DIR, extra)
    _done(t)
    return config, blocks


def run_demo(ctx: LabContext) -> int:
    from lab.cli import load_env

    t0 = time.monotonic()
    env = load_env(ctx.paths)
    config, _ = start_prefect(ctx, env)
    t = _step("winnodes run: golden image -> cluster preparation -> MachineSet -> Ready nodes")
    cmd = [sys.executable, "-m", "app.cli", "run", str(config)]
    rc = subprocess.run(cmd, cwd=PROJECT_DIR, env=product_env(ctx, env)).returncode
    _done(t)
    print(
        f"\nDemo {'finished' if rc == 0 else 'FAILED'} in {time.monotonic() - t0:.1f}s. "
        f"Prefect UI: {prefect_server.ui_url()} (server and worker keep running; "
        "`python -m lab down` stops everything)."
    )
    return rc
