"""End to end against the lab, the way a site runs it: the product registered with its one command,
a worker running the `end-to-end` deployment started by `winnodes run`, ending with Ready Windows
nodes; the golden-image schedule creating runs; and no secret value anywhere Prefect or the lab
keeps text (database: logs, parameters, artifacts, results, events; result files; lab logs)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from lab import prefect_server
from tests.flows.windows_nodes_site import Site, e2e

pytestmark = [pytest.mark.lab, pytest.mark.slow]
__all__ = ["e2e"]


def _api(site: Site, path: str, body: dict[str, Any]) -> Any:
    url = site.product_env["PREFECT_API_URL"] + path
    resp = httpx.post(url, json=body, timeout=30)
    resp.raise_for_status()
    return resp.json()


def test_end_to_end_deployment_ends_with_ready_windows_nodes(e2e: Site) -> None:
    assert e2e.returncode == 0, e2e.output
    out = e2e.output
    assert "run " in out and ": Completed" in out
    assert "G10 convert to template" in out and "V1 wait until the MachineSet is ready" in out
    assert "Windows nodes Ready 1/1" in out
    assert "MachineSet:     openshift-machine-api/winworker" in out
    assert e2e.run_url.startswith(prefect_server.ui_url() + "/runs/flow-run/")
    run_id = e2e.run_url.rsplit("/", 1)[1]
    subflows = _api(
        e2e, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}}
    )
    flows = _api(
        e2e, "/flows/filter", {"flows": {"id": {"any_": [r["flow_id"] for r in subflows]}}}
    )
    flow_names = {f["id"]: f["name"] for f in flows}
    names = {flow_names[r["flow_id"]] for r in subflows if r["state_type"] == "COMPLETED"}
    assert {"golden-image", "cluster-prep", "windows-machineset"} <= names
    artifacts = _api(e2e, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    assert any(a["key"] == "windows-nodes-summary" for a in artifacts)


def test_the_rebuild_schedule_creates_scheduled_runs(e2e: Site) -> None:
    (dep,) = _api(
        e2e, "/deployments/filter", {"deployments": {"name": {"any_": ["golden-image-rebuild"]}}}
    )
    runs = _api(
        e2e,
        "/flow_runs/filter",
        {
            "deployments": {"id": {"any_": [dep["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        },
    )
    assert runs, "the scheduler created no run from the cron schedule"
    for run in runs:
        when = datetime.fromisoformat(run["expected_start_time"]).astimezone(
            ZoneInfo("Europe/Berlin")
        )
        assert (when.weekday(), when.hour, when.minute) == (6, 2, 0)  # Sundays 02:00 Berlin time
        assert run["parameters"]["only"] == "golden-image"


def _database_text(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def _files_text(*roots: Path) -> list[tuple[Path, str]]:
    out = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                out.append((path, path.read_bytes().decode("utf-8", "replace")))
    return out


def test_no_secret_value_in_prefect_or_lab_records(e2e: Site) -> None:
    assert e2e.returncode == 0, e2e.output
    db_text = _database_text(e2e.home / "prefect.db")
    # the database holds what the run left: logs, parameters, artifacts, events
    for table in ("log", "flow_run", "artifact", "events"):
        assert f'INSERT INTO "{table}"' in db_text
    files = _files_text(e2e.home / "results", e2e.paths.logs, Path(e2e.env["LAB_LOG_DIR"]))
    assert files, "no result files or logs were searched"
    leaks = []
    for i, secret in enumerate(e2e.secrets):
        if secret in db_text:
            leaks.append(f"secret #{i} in the Prefect database")
        leaks += [f"secret #{i} in {p}" for p, text in files if secret in text]
    assert not leaks, leaks
    assert e2e.output and not any(s in e2e.output for s in e2e.secrets)


def test_no_administrator_password_on_guest_disks_or_the_datastore(e2e: Site) -> None:
    """After a full build and a MachineSet run: no copy of any secret on any guest's disk (base VM,
    nodes) or in the datastore (answer media gone). The only copy allowed is the one a generalized
    template must carry for its OOBE (C:\\Windows\\Panther\\unattend.xml); every node removes it
    with SetupComplete.cmd (docs/lab-fidelity.md, First boot, offline sites, secrets)."""
    import json

    assert e2e.returncode == 0, e2e.output
    guests = Path(e2e.env["LAB_GUESTS_DIR"])
    leaks: list[str] = []
    allowed = 0
    scanned = 0
    for vm_dir in sorted(p for p in guests.iterdir() if p.is_dir()):
        try:
            generalized = json.loads((vm_dir / "state.json").read_text()).get("generalized")
        except (OSError, ValueError):
            generalized = False
        for path in (vm_dir / "disk").rglob("*"):
            if not path.is_file():
                continue
            scanned += 1
            data = path.read_bytes()
            for i, secret in enumerate(e2e.secrets):
                if secret.encode() not in data:
                    continue
                rel = path.relative_to(vm_dir / "disk").as_posix().lower()
                if generalized and rel == "c:/windows/panther/unattend.xml":
                    allowed += 1
                else:
                    leaks.append(f"secret #{i} in {vm_dir.name}: {rel}")
    datastore = Path(e2e.env["LAB_VSPHERE_DATASTORE_DIR"])
    for path, text in _files_text(datastore):
        scanned += 1
        leaks += [
            f"secret #{i} in the datastore: {path}" for i, s in enumerate(e2e.secrets) if s in text
        ]
    assert scanned > 100, "no guest disk was searched"
    assert not leaks, leaks
    print(f"\nscanned {scanned} files; template copies (needed for OOBE): {allowed}")
