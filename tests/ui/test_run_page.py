"""The Prefect UI in a real headless browser (Debian chromium): the end-to-end run's page shows it
Completed, and its summary artifact shows the template, the MachineSet and the Ready nodes. The screenshot is kept under .artifacts/ui/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from lab import prefect_server
from tests.flows.windows_nodes_site import Site, e2e

pytestmark = [pytest.mark.lab, pytest.mark.slow]
__all__ = ["e2e"]

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "ui"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1100",
    "--virtual-time-budget=20000",
]


def _chromium() -> str:
    found = shutil.which("chromium")
    if not found:
        pytest.fail("Debian package chromium is missing: run `make deps` (scripts/system-deps.sh)")
    return found


def _browse(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [_chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _text(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_run_page_shows_completed_with_artifacts(e2e: Site, tmp_path: Path) -> None:
    assert e2e.returncode == 0, e2e.output
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run_name = e2e.output.split("flow run ", 1)[1].split(":", 1)[0]

    run_page = _text(_browse(e2e.run_url, tmp_path, "--dump-dom").stdout)
    assert f"Flow Run: {run_name}" in run_page, run_page[-2000:]
    assert "Completed" in run_page and "windows-nodes" in run_page and "end-to-end" in run_page
    assert "Artifacts" in run_page and "Subflow Runs" in run_page
    _browse(e2e.run_url, tmp_path, f"--screenshot={ARTIFACTS / 'flow-run.png'}")

    # the run's summary artifact, rendered: the template, the MachineSet and the Ready nodes
    api = e2e.product_env["PREFECT_API_URL"]
    run_id = e2e.run_url.rsplit("/", 1)[1]
    body = {
        "artifacts": {"key": {"any_": ["windows-nodes-summary"]}, "flow_run_id": {"any_": [run_id]}}
    }
    (artifact,) = httpx.post(f"{api}/artifacts/filter", json=body, timeout=30).json()
    url = f"{prefect_server.ui_url()}/artifacts/artifact/{artifact['id']}"
    page = _text(_browse(url, tmp_path, "--dump-dom").stdout)
    assert f"Flow Run {run_name}" in page, page[-2000:]
    assert "MachineSet openshift-machine-api/winworker" in page
    assert "Windows nodes Ready 1/1" in page
    shot = ARTIFACTS / "flow-run-summary-artifact.png"
    shot.unlink(missing_ok=True)
    _browse(url, tmp_path, f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 10_000
