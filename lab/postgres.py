"""A private PostgreSQL cluster for the Prefect server (`make demo PREFECT_DB=postgres`, the scale-out
test), run as a lab daemon like the lab's other servers.

Prefect documents SQLite as a single-server database with "database is locked" failures under
concurrent load; a site with several workers runs Prefect on PostgreSQL. This module gives the lab
the same: Debian's `postgresql` binaries (scripts/system-deps.sh installs them), a cluster made by
`initdb` in `<lab>/postgres/data`, the `postgres` server on 127.0.0.1:$LAB_POSTGRES_PORT only (no
Unix socket), password authentication (scram-sha-256) for the `prefect` role and a `prefect`
database. PostgreSQL refuses to run as root, so when the lab runs as root the cluster belongs to the
system's `postgres` account (created by the Debian package) and runs under it.

As a component of `python -m lab up` (selected with LAB_PREFECT_DB=postgres, or named in
LAB_COMPONENTS) it publishes LAB_PREFECT_DATABASE_URL, Prefect's
PREFECT_API_DATABASE_CONNECTION_URL (`postgresql+asyncpg://prefect:...@127.0.0.1:PORT/prefect`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from lab.paths import LabPaths
from lab.process import (
    LabError,
    log_tail,
    read_pid,
    require_free_port,
    start_daemon,
    stop_daemon,
    tcp_ready,
)

if TYPE_CHECKING:
    from lab.cli import LabContext

NAME = "postgres"
HOST = "127.0.0.1"
ROLE = DATABASE = "prefect"
SYSTEM_USER = "postgres"  # the Debian package's account, used when the lab runs as root


def port() -> int:
    return int(os.environ.get("LAB_POSTGRES_PORT", "15432"))


def bin_dir() -> Path:
    """Where `initdb` and `postgres` are: on PATH, else Debian's /usr/lib/postgresql/<major>/bin."""
    if found := shutil.which("initdb"):
        return Path(found).resolve().parent
    majors = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: len(p))
    if not majors:
        raise LabError(
            "PostgreSQL is not installed (no initdb): run `bash scripts/system-deps.sh` as root "
            "(Debian package `postgresql`)"
        )
    return Path(majors[-1]).parent


def _as_owner(argv: list[str]) -> list[str]:
    """`argv` run as the cluster's owner: the `postgres` account when we are root."""
    if os.geteuid() != 0:
        return argv
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise LabError(
            "PostgreSQL refuses to run as root and there is no 'postgres' account; install the "
            "Debian package `postgresql` (scripts/system-deps.sh)"
        ) from None
    return ["setpriv", f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}", "--init-groups", *argv]


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SYSTEM_USER, SYSTEM_USER)


def data_dir(paths: LabPaths) -> Path:
    return paths.root / "postgres" / "data"


def password(paths: LabPaths) -> str:
    """The `prefect` role's password, made once per cluster (kept beside it, mode 0600)."""
    f = paths.root / "postgres" / "password"
    if not f.exists():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(secrets.token_urlsafe(18) + "\n")
        f.chmod(0o600)
    return f.read_text().strip()


def database_url(paths: LabPaths) -> str:
    return f"postgresql+asyncpg://{ROLE}:{password(paths)}@{HOST}:{port()}/{DATABASE}"


def _initdb(paths: LabPaths) -> None:
    data = data_dir(paths)
    if (data / "PG_VERSION").exists():
        return
    pg_root = data.parent
    pg_root.mkdir(parents=True, exist_ok=True)
    pwfile = pg_root / "initdb.pw"
    pwfile.write_text(password(paths) + "\n")
    for p in (pg_root, pwfile):
        _chown(p)
    argv = [
        str(bin_dir() / "initdb"),
        *("-D", str(data), "-U", ROLE, "--pwfile", str(pwfile)),
        *("--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8"),
        "--no-instructions",
    ]
    proc = subprocess.run(_as_owner(argv), capture_output=True, text=True)
    pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise LabError(f"initdb failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def _create_database(paths: LabPaths) -> None:
    """The `prefect` database, if missing (psql as the `prefect` role over TCP)."""
    env = {**os.environ, "PGPASSWORD": password(paths)}
    base = [str(bin_dir() / "psql"), "-h", HOST, "-p", str(port()), "-U", ROLE, "-d", "postgres"]
    check = [*base, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"]
    proc = subprocess.run(check, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise LabError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
    if proc.stdout.strip() == "1":
        return
    proc = subprocess.run(
        [*base, "-c", f"CREATE DATABASE {DATABASE}"], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise LabError(f"CREATE DATABASE failed: {proc.stderr.strip()}")


def start_cluster(paths: LabPaths) -> str:
    """Make (once) and start the cluster; return Prefect's database URL."""
    if read_pid(paths, NAME) is None:
        require_free_port(HOST, port(), "PostgreSQL", "LAB_POSTGRES_PORT")
    paths.ensure()
    _initdb(paths)
    argv = [
        str(bin_dir() / "postgres"),
        *("-D", str(data_dir(paths)), "-p", str(port())),
        *("-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories="),
        # Prefect's server, services and workers each keep a pool; the default 100 is enough for
        # a lab, but fsync off would not be honest about a database's cost: keep the defaults.
        *("-c", "max_connections=200"),
    ]
    start_daemon(paths, NAME, _as_owner(argv), ready=tcp_ready(HOST, port()), timeout=60)
    try:
        _create_database(paths)
    except LabError as exc:
        raise LabError(
            f"{exc}\nlast lines of the server's log:\n{log_tail(paths.logs / 'postgres.log')}"
        ) from None
    return database_url(paths)


def stop_cluster(paths: LabPaths) -> None:
    """Fast shutdown (`pg_ctl stop -m fast`: clients are disconnected), then the daemon's group."""
    if read_pid(paths, NAME) is not None and (data_dir(paths) / "postmaster.pid").exists():
        argv = [str(bin_dir() / "pg_ctl"), "stop", "-m", "fast", "-D", str(data_dir(paths))]
        with contextlib.suppress(OSError, LabError):
            subprocess.run(_as_owner(argv), capture_output=True, timeout=30)
    stop_daemon(paths, NAME)


# -- lab component protocol ---------------------------------------------------------------------
def start(ctx: LabContext) -> dict[str, str]:
    return {"LAB_PREFECT_DATABASE_URL": start_cluster(ctx.paths), "LAB_POSTGRES_PORT": str(port())}


def stop(ctx: LabContext) -> None:
    stop_cluster(ctx.paths)


def status(ctx: LabContext) -> str:
    if read_pid(ctx.paths, NAME) is None:
        return "stopped"
    return f"running on {HOST}:{port()} (data {data_dir(ctx.paths)})"
