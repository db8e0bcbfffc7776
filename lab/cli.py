"""`python -m lab build|up|down|status|demo`: the lab's one entry point.

`up` starts every component in dependency order and writes `<lab>/env` (shell exports) and
`<lab>/lab.json` (the same, machine-readable) so that govc, ssh, kubectl, dig and the product's own
configuration can point at the lab as they would at a real site. Each component module provides
`start(ctx) -> dict[str, str]` (its variables), `stop(ctx)` and `status(ctx) -> str`, and optionally
`build(ctx)` for what it compiles into the per-machine cache.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from lab.config import LabConfig, infrastructure_id
from lab.paths import LabPaths
from lab.process import LabError, PortInUse, free_guest_net, free_port

# Start order; stop runs in reverse. LAB_COMPONENTS (comma-separated, without "lab.") selects a subset.
# LAB_PREFECT_DB=postgres adds lab.postgres (the demo's Prefect server then runs on PostgreSQL).
ALL_COMPONENTS = [
    "lab.vcsim",
    "lab.guest.supervisor",
    "lab.kube",
    "lab.dns",
    "lab.controllers",
]


@dataclass
class LabContext:
    paths: LabPaths
    cfg: LabConfig
    infra_id: str
    env: dict[str, str] = field(default_factory=dict)  # variables published so far


def component_names() -> list[str]:
    raw = os.environ.get("LAB_COMPONENTS", "").strip()
    if not raw:
        names = list(ALL_COMPONENTS)
    else:
        names = ["lab." + n.strip().removeprefix("lab.") for n in raw.split(",") if n.strip()]
    if prefect_db() == "postgres" and "lab.postgres" not in names:
        names.append("lab.postgres")
    return names


def prefect_db() -> str:
    """The Prefect server's database for the demo: "sqlite" (default) or "postgres"."""
    value = os.environ.get("LAB_PREFECT_DB", "sqlite").strip().lower() or "sqlite"
    if value not in ("sqlite", "postgres"):
        raise LabError(f"LAB_PREFECT_DB={value!r}: use sqlite or postgres")
    return value


def _components() -> list[ModuleType]:
    return [importlib.import_module(name) for name in component_names()]


def context(paths: LabPaths | None = None) -> LabContext:
    paths = paths or LabPaths.default()
    cfg = LabConfig.from_env()
    return LabContext(paths=paths, cfg=cfg, infra_id=infrastructure_id(paths, cfg))


def ensure_ssh_key(paths: LabPaths) -> dict[str, str]:
    """The administrator key pair the lab's pipeline config uses: RSA 4096 in PEM without
    passphrase, which is what WMCO accepts for `cloud-private-key`."""
    key = paths.ssh / "id_rsa"
    if not key.exists():
        paths.ssh.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "rsa",
                "-b",
                "4096",
                "-m",
                "PEM",
                "-N",
                "",
                "-C",
                "winnodes-lab",
                "-f",
                str(key),
            ],
            check=True,
        )
    return {"LAB_SSH_PRIVATE_KEY": str(key), "LAB_SSH_PUBLIC_KEY": str(key) + ".pub"}


def write_env(ctx: LabContext) -> None:
    lines = ["# written by `python -m lab up`; use with: source .lab/env"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(ctx.env.items())]
    # govc, kubectl, ... as plain commands after `source .lab/env`
    bin_dir = ctx.paths.root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for var in ("LAB_GOVC", "LAB_KUBECTL"):
        if target := ctx.env.get(var):
            link = bin_dir / Path(target).name
            link.unlink(missing_ok=True)
            link.symlink_to(target)
    lines.append(f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"')
    ctx.paths.env_file.write_text("\n".join(lines) + "\n")
    ctx.paths.lab_json.write_text(json.dumps(ctx.env, indent=1, sort_keys=True) + "\n")


def build(ctx: LabContext) -> None:
    for mod in _components():
        if hasattr(mod, "build"):
            mod.build(ctx)


def _any_running(ctx: LabContext) -> bool:
    return any(mod.status(ctx).startswith("running") for mod in _components())


def clear_stale(ctx: LabContext) -> None:
    """A stopped lab's run directory describes servers that no longer exist (VM morefs of an old
    vcsim, guests' disks, pids): start over, keeping only the infrastructure ID and the SSH key."""
    root = ctx.paths.root
    if not root.exists():
        return
    if not ctx.paths.marker.exists() and any(root.iterdir()):
        raise LabError(
            f"{root} exists but was not made by the lab (no {ctx.paths.marker.name}); "
            "refusing to clear it: remove it or point WINNODES_LAB_DIR elsewhere"
        )
    keep = {ctx.paths.infrastructure_id_file.name, ctx.paths.ssh.name, ctx.paths.marker.name}
    stale = [p for p in root.iterdir() if p.name not in keep]
    if stale:
        print(f"  clearing stale lab state in {root} (the lab was not running)")
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def up(ctx: LabContext) -> None:
    t0 = time.monotonic()
    if not _any_running(ctx):
        clear_stale(ctx)
    ctx.paths.ensure()
    ctx.env.update(
        {
            "LAB_DIR": str(ctx.paths.root),
            "LAB_LOG_DIR": str(ctx.paths.logs),
            "LAB_INFRASTRUCTURE_ID": ctx.infra_id,
            "LAB_CLUSTER_NAME": ctx.cfg.cluster_name,
            "LAB_BASE_DOMAIN": ctx.cfg.base_domain,
        }
    )
    ctx.env.update(ensure_ssh_key(ctx.paths))
    for mod in _components():
        t = time.monotonic()
        ctx.env.update(mod.start(ctx))
        write_env(ctx)
        print(f"  {mod.__name__.removeprefix('lab.'):<24} up ({time.monotonic() - t:.1f}s)")
    write_env(ctx)
    print(f"lab is up in {time.monotonic() - t0:.1f}s; variables: source {ctx.paths.env_file}")


def down(ctx: LabContext) -> None:
    # the demo's Prefect server, workers and webhook receiver, if it started them
    from lab import postgres, prefect_server, webhook

    prefect_server.stop(ctx.paths)
    webhook.stop(ctx.paths)
    for mod in reversed(_components()):
        try:
            mod.stop(ctx)
        except Exception as exc:  # keep stopping the rest
            print(f"  {mod.__name__}: {exc}", file=sys.stderr)
    if postgres not in _components():  # started by `up` with LAB_PREFECT_DB=postgres
        postgres.stop(ctx)
    print("lab is down")


def status(ctx: LabContext) -> int:
    worst = 0
    for mod in _components():
        line = mod.status(ctx)
        print(f"  {mod.__name__.removeprefix('lab.'):<24} {line}")
        if not line.startswith("running"):
            worst = 1
    from lab import postgres

    if postgres not in _components() and (line := postgres.status(ctx)).startswith("running"):
        print(f"  {'postgres':<24} {line}")  # started by `up` with LAB_PREFECT_DB=postgres
    if ctx.paths.env_file.exists():
        print(f"variables: source {ctx.paths.env_file}")
    return worst


# Every port a lab listens on (the guests' sshd listen on port 22 of their own 127.<net>.x.y).
PORT_VARS = (
    "LAB_VCSIM_PORT",
    "LAB_VCSIM_CONTROL_PORT",
    "LAB_ETCD_PORT",
    "LAB_ETCD_PEER_PORT",
    "LAB_APISERVER_PORT",
    "LAB_DNS_LISTEN_PORT",
)


@contextlib.contextmanager
def _environ(overrides: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def private_settings(
    run_dir: Path, components: Sequence[str] | None = None, *, guest_net: int | None = None
) -> dict[str, str]:
    """The variables that make a lab of its own: its run directory, every port from the OS, a
    guest network nothing listens on (never the one of the environment's lab), `components`
    (names without "lab."; default: all of them, whatever LAB_COMPONENTS says)."""
    ports: set[int] = set()
    while len(ports) < len(PORT_VARS):  # the OS may hand out the same free port twice
        ports.add(free_port())
    current = os.environ.get("LAB_GUEST_NET", "")
    avoid = [int(current)] if current.isdigit() else []
    names = (
        components if components is not None else [c.removeprefix("lab.") for c in ALL_COMPONENTS]
    )
    return {
        "LAB_COMPONENTS": ",".join(names),
        "WINNODES_LAB_DIR": str(run_dir),
        **{var: str(port) for var, port in zip(PORT_VARS, sorted(ports), strict=True)},
        "LAB_GUEST_NET": str(guest_net if guest_net is not None else free_guest_net(avoid)),
    }


#: How many sets of free ports a private lab tries when another lab takes one while it starts.
PRIVATE_PORT_ATTEMPTS = 3


@contextlib.contextmanager
def private_lab(
    run_dir: Path, components: Sequence[str] | None = None, *, guest_net: int | None = None
) -> Iterator[LabContext]:
    """A lab of its own for a test session, a test module or a benchmark (see private_settings),
    so that neither it nor a lab the user runs (`make demo`, `.lab/`, the default ports) sees the
    other's objects, faults or sessions. Stopped on exit. The settings are in the environment only
    while the lab starts and stops (its daemons inherit them); clients use `ctx.env`."""
    for attempt in range(1, PRIVATE_PORT_ATTEMPTS + 1):
        overrides = private_settings(run_dir, components, guest_net=guest_net)
        with _environ(overrides):
            ctx = context()
            try:
                up(ctx)
                break
            except PortInUse:
                # its free ports were taken by a lab starting beside it (fault-matrix jobs,
                # parallel benchmarks): new ports, a new try
                down(ctx)
                if attempt == PRIVATE_PORT_ATTEMPTS:
                    raise
            except BaseException:
                down(ctx)  # whatever had started
                raise
    try:
        yield ctx
    finally:
        with _environ(overrides):
            down(ctx)


def load_env(paths: LabPaths | None = None) -> dict[str, str]:
    """The variables of a running lab, for tests and the demo."""
    paths = paths or LabPaths.default()
    try:
        data: dict[str, str] = json.loads(paths.lab_json.read_text())
    except FileNotFoundError as exc:
        raise LabError(
            f"the lab is not up ({paths.lab_json} is missing); run `make lab-up`"
        ) from exc
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "down", "status", "demo", "env"])
    args = parser.parse_args(argv)
    try:
        ctx = context()
        if args.command == "build":
            build(ctx)
        elif args.command == "up":
            up(ctx)
        elif args.command == "down":
            down(ctx)
        elif args.command == "status":
            return status(ctx)
        elif args.command == "env":
            print(Path(ctx.paths.env_file).read_text(), end="")
        elif args.command == "demo":
            from lab.demo import run_demo

            return run_demo(ctx)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2
    return 0
