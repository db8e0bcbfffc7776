"""Golden image wall times side by side: from the Windows ISO vs rebuilt from the kept base VM.

    .venv/bin/python benchmarks/rebuild.py [--rounds N]

Scheduled rebuilds (issue 10) start from the kept, un-sysprepped base VM: power it on, Windows
updates (G6u), re-verify G2-G7, clone, sysprep, template. This script measures what that saves
against a fresh install from ISO, on the lab: it brings up a small lab of its own (vcsim + the
Windows guest twin, free ports, its own guest network, a temporary run directory), a temporary
Prefect server, saves the two blocks, then runs the real `golden_image` flow N times each way and
prints the medians. Tests never assert timings (a shared 2-core machine); the figures live here.

The lab's guest twin boots in LAB_BOOT_DELAY seconds (default 0.5) where real Windows takes minutes,
so the absolute numbers are the automation's own overhead; the ratio says how much of it the ISO path
adds (answer media, setup, first-logon commands, the extra checks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def _config(env: dict[str, str], tag: str, mode: str) -> Any:
    from lab.pipeline import placement
    from winnodes.model.config import GoldenImageConfig

    return GoldenImageConfig.model_validate(
        {
            "vsphere_credentials_block": "bench-vsphere",
            "windows_access_block": "bench-windows",
            "placement": placement(env),
            "source": {
                "mode": mode,
                "windows_iso": env["LAB_WINDOWS_ISO_CURRENT"],
                "tools_iso": env["LAB_TOOLS_ISO"],
            },
            "names": {"base_vm": f"bench-base-{tag}", "template_series": f"bench-{tag}"},
            "keep_templates": 10,
            "timeouts": {"install_seconds": 120, "sysprep_seconds": 120, "updates_seconds": 300},
        }
    )


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="builds per path (default 3)")
    args = parser.parse_args()

    from lab.process import free_port

    run_dir = Path(tempfile.mkdtemp(prefix="winnodes-bench-rebuild-"))
    os.environ.update(
        {
            "LAB_COMPONENTS": "vcsim,guest.supervisor",
            "WINNODES_LAB_DIR": str(run_dir),
            "LAB_VCSIM_PORT": str(free_port()),
            "LAB_VCSIM_CONTROL_PORT": str(free_port()),
            "LAB_GUEST_NET": os.environ.get("BENCH_GUEST_NET", "98"),
            "WINNODES_RETRY_DELAY": "0.2",
        }
    )

    from lab import cli

    ctx = cli.context()
    print(f"starting a small lab in {run_dir} ...", flush=True)
    cli.up(ctx)
    try:
        env = dict(ctx.env)
        from prefect.testing.utilities import prefect_test_harness

        from flows.golden_image import golden_image
        from tests.flows.cluster_lab import save_vcenter_and_windows_blocks

        with prefect_test_harness():
            save_vcenter_and_windows_blocks(
                env, "bench-vsphere", "bench-windows", "Bench-Passw0rd!"
            )
            iso_times, base_times = [], []
            for _ in range(args.rounds):
                tag = uuid.uuid4().hex[:5]
                # A new base VM per round: installed from ISO, then rebuilt from it.
                iso_times.append(_timed(lambda t=tag: golden_image(_config(env, t, "iso"))))  # type: ignore[misc]
                base_times.append(_timed(lambda t=tag: golden_image(_config(env, t, "base"))))  # type: ignore[misc]
    finally:
        cli.down(ctx)
    iso, base = statistics.median(iso_times), statistics.median(base_times)
    print()
    print(f"{'golden image build':<34}{'median':>10}{'all runs':>34}")
    print(f"{'from the Windows ISO (G1 install)':<34}{iso:>9.1f}s  {_runs(iso_times):>32}")
    print(f"{'from the kept base VM (mode base)':<34}{base:>9.1f}s  {_runs(base_times):>32}")
    print(f"{'base / ISO':<34}{base / iso:>10.2f}")
    return 0


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
