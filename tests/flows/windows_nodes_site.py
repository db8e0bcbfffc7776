"""A whole site for the end-to-end tests: the session's lab, a Prefect server of its own (SQLite in a
temporary directory, a free port, the scheduler every 2 s), the product registered with its one
command, a process worker, and one `winnodes run` of the end-to-end deployment.

Shared by tests/flows/test_windows_nodes_lab.py and tests/ui/ (import the `e2e` fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab import pipeline, prefect_server
from lab.paths import LabPaths
from lab.process import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Site:
    env: dict[str, str]  # the lab's variables
    product_env: dict[str, str]  # what the product's commands ran with
    paths: LabPaths  # the Prefect server's and worker's run directory
    home: Path  # PREFECT_HOME (the SQLite database, results)
    config: Path
    output: str  # what `winnodes run` printed
    returncode: int
    run_url: str
    secrets: list[str]


def _secrets(env: dict[str, str]) -> list[str]:
    values = list(pipeline.secret_env(env).values())
    key = Path(env["LAB_SSH_PRIVATE_KEY"]).read_text()
    values.append(key)
    values += [line for line in key.splitlines() if len(line) >= 20 and "PRIVATE KEY" not in line]
    return values


@pytest.fixture(scope="session")
def e2e(lab_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    needed = ("KUBECONFIG", "LAB_TSIG_KEYFILE", "LAB_GUESTS_DIR", "LAB_VSPHERE_SERVER")
    if not all(lab_env.get(v) for v in needed):
        pytest.skip("needs the whole lab")
    tmp = tmp_path_factory.mktemp("e2e")
    paths = LabPaths(root=tmp / "site", cache=LabPaths.default().cache)
    old_port = os.environ.get("WINNODES_PREFECT_PORT")
    os.environ["WINNODES_PREFECT_PORT"] = str(free_port())
    extra = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    try:
        prefect_server.start_server(paths, extra)
        penv = {
            **os.environ,
            **prefect_server.prefect_env(paths),
            **pipeline.secret_env(lab_env),
            "WINNODES_RETRY_DELAY": "0.2",
        }
        tag = uuid.uuid4().hex[:5]
        config = tmp / "pipeline.yaml"
        config.write_text(yaml.safe_dump(pipeline.pipeline(lab_env, series=f"e2e-{tag}")))
        blocks = tmp / "blocks.yaml"
        blocks.write_text(yaml.safe_dump(pipeline.blocks_spec(lab_env)))
        subprocess.run(
            [
                *(sys.executable, "-m", "deployments.register", "--blocks", str(blocks)),
                *("--config", str(config), "--results-dir", penv["WINNODES_RESULTS_DIR"]),
            ],
            cwd=ROOT,
            env=penv,
            check=True,
            capture_output=True,
        )
        worker_env = {k: v for k, v in penv.items() if k.startswith(("WINNODES_", "PREFECT_"))}
        prefect_server.start_worker(paths, ROOT, worker_env)
        proc = subprocess.run(
            [sys.executable, "-m", "app.cli", "run", str(config), "--timeout", "900"],
            cwd=ROOT,
            env=penv,
            capture_output=True,
            text=True,
        )
        url = next(
            (w for w in proc.stdout.split() if "/runs/flow-run/" in w), prefect_server.ui_url()
        )
        yield Site(
            env=lab_env,
            product_env=penv,
            paths=paths,
            home=Path(penv["PREFECT_HOME"]),
            config=config,
            output=proc.stdout + proc.stderr,
            returncode=proc.returncode,
            run_url=url,
            secrets=_secrets(lab_env),
        )
    finally:
        prefect_server.stop(paths)
        if old_port is None:
            os.environ.pop("WINNODES_PREFECT_PORT", None)
        else:
            os.environ["WINNODES_PREFECT_PORT"] = old_port
