"""Rotation time per node on the lab: `.venv/bin/python benchmarks/rotation.py [--replicas 3]`.

Builds two Windows templates A and B by hand (lab.scenario, with the provenance PRE-3 compares),
creates a Windows MachineSet of N replicas on A with the `windows-machineset` flow, then runs the
`rotate-windows-nodes` flow onto B and prints the time per node (surge -> old Machine gone) and in
total. Uses the lab that is running (`make lab-up`, or `python -m lab up` with your env file) and a
temporary Prefect server; deletes its MachineSet at the end. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args(argv)

    from prefect.testing.utilities import prefect_test_harness

    from blocks.windows import WindowsAccess
    from flows.cluster_prep import cluster_prep
    from flows.machineset import machineset
    from flows.rotate import rotate
    from lab import cli
    from tests.flows import cluster_lab as cl
    from tests.flows.test_rotate_lab import pipeline

    ctx = cli.context()
    if not all(m.status(ctx).startswith("running") for m in cli._components()):
        print("the lab is not running: start it with `python -m lab up` (or `make lab-up`)")
        return 2
    env = cli.load_env(ctx.paths)
    with prefect_test_harness(server_startup_timeout=60):
        cl.save_blocks(env)
        cluster = cl.Cluster(env)
        cluster_prep(
            cl.cluster_config(env),
            windows_access_block=cl.WIN_BLOCK,
            dns_resolver=cl.resolver(env),
        )
        fp = WindowsAccess.load(cl.WIN_BLOCK).fingerprint()  # type: ignore[union-attr]
        tag = uuid.uuid4().hex[:4]
        t0 = time.monotonic()
        a = cl.build_template(env, f"bench{tag}", fingerprint=fp)
        b = cl.build_template(env, f"bench{tag}", fingerprint=fp)
        print(f"templates A={a} B={b} built in {time.monotonic() - t0:.0f}s")
        cfg = pipeline(env, a)
        ms = cfg.machineset.model_copy(update={"name": f"b{tag}", "replicas": args.replicas})
        cfg = cfg.model_copy(update={"machineset": ms})
        try:
            t0 = time.monotonic()
            machineset(
                cfg.cluster,
                ms,
                waits=cfg.waits,
                vsphere_credentials_block=cl.VC_BLOCK,
                windows_access_block=cl.WIN_BLOCK,
            )
            print(f"MachineSet of {args.replicas} on A Ready in {time.monotonic() - t0:.0f}s")
            t0 = time.monotonic()
            result = rotate(cfg, template=b)
            total = time.monotonic() - t0
        finally:
            cluster.delete_machineset(ms.name)
    print()
    print("| figure | value |")
    print("|---|---|")
    for i, s in enumerate(result.seconds_per_node, 1):
        print(f"| rotation, node {i} (surge -> old Machine gone) | {s:.1f} s |")
    mean = sum(result.seconds_per_node) / max(1, len(result.seconds_per_node))
    print(f"| rotation, mean per node | {mean:.1f} s |")
    print(
        f"| rotation of {args.replicas} nodes, total (incl. ROT1 checks, retention) | {total:.1f} s |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
