"""Starting and stopping the lab's long-running servers, with clear errors.

Every lab server (vcsim, etcd, kube-apiserver, named, the guest supervisor, the controllers) is a
daemon with a pid file in `<lab>/run/<name>.pid` and a log in `<lab>/logs/<name>.log`. `start`
refuses a port that is already taken (naming the port and who asked for it), waits for readiness with
a deadline, and on failure shows the tail of the daemon's log instead of a bare timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.paths import LabPaths


class LabError(RuntimeError):
    """A problem with the lab itself (not with the product under test), with a message to act on."""


class PortInUse(LabError):
    """A port the lab wants is taken. For a private lab whose ports were picked free a moment ago,
    another lab starting at the same time took it: `cli.private_lab` picks new ports and retries."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for TCP and UDP right now, from the OS (for labs of their own in tests and
    benchmarks; the DNS server needs both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((host, port))
            except OSError:
                continue
        return port


def _listening_guest_nets() -> set[int]:
    """The N of every 127.N.x.y address a TCP socket listens on (Linux: /proc/net/tcp, where the
    address is little-endian hex, so N is the third byte pair); empty where that file is absent."""
    nets: set[int] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return nets
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
            addr = fields[1].split(":")[0]
            if len(addr) == 8 and addr[6:8] == "7F":
                nets.add(int(addr[4:6], 16))
    return nets


def free_guest_net(avoid: Collection[int] = ()) -> int:
    """A guest network (the lab's guests get 127.<net>.x.y) on which nothing listens, chosen at
    random in 100-249 so that labs started at the same moment rarely pick the same one; never the
    default (77) nor `avoid` (e.g. the LAB_GUEST_NET of a lab the user runs)."""
    taken = _listening_guest_nets() | {77, *avoid}
    choices = [n for n in range(100, 250) if n not in taken]
    if not choices:
        raise LabError("no free guest network in 127.100-249.x.y: stop some labs")
    return random.choice(choices)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def require_free_port(host: str, port: int, what: str, env_var: str) -> None:
    if port_in_use(host, port):
        raise PortInUse(
            f"{what}: port {host}:{port} is already in use by another process; stop it "
            f"(see `ss -ltnp 'sport = :{port}'`) or choose another port with {env_var}=<port>"
        )


def require_binary(path: Path, hint: str) -> None:
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise LabError(f"missing binary {path}: {hint}")


def pid_file(paths: LabPaths, name: str) -> Path:
    return paths.run / f"{name}.pid"


def log_file(paths: LabPaths, name: str) -> Path:
    return paths.logs / f"{name}.log"


def read_pid(paths: LabPaths, name: str) -> int | None:
    try:
        pid = int(pid_file(paths, name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, from the parents in /proc/<pid>/stat (Linux); processes
    that end while this reads are passed over."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def start_daemon(
    paths: LabPaths,
    name: str,
    argv: Sequence[str],
    *,
    ready: Callable[[], bool],
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` detached (own session, stdout+stderr to its log) unless already running;
    wait until `ready()` is true. Returns the pid."""
    paths.ensure()
    if (pid := read_pid(paths, name)) is not None:
        if ready():
            return pid
        stop_daemon(paths, name)
    log = log_file(paths, name)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log, "ab") as out:
        out.write(
            f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode()
        )
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    pid_file(paths, name).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(
                f"{name} exited with status {proc.returncode} while starting; "
                f"last lines of {log}:\n{log_tail(log)}"
            )
        with contextlib.suppress(Exception):
            if ready():
                return proc.pid
        time.sleep(0.1)
    stop_daemon(paths, name)
    raise LabError(
        f"{name} was not ready after {timeout:.0f}s; last lines of {log}:\n{log_tail(log)}"
    )


def stop_daemon(paths: LabPaths, name: str, timeout: float = 10.0) -> bool:
    """SIGTERM the daemon's process group, SIGKILL after `timeout`. True if something was stopped."""
    pid = read_pid(paths, name)
    pid_file(paths, name).unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return True


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    return check


# -- the lab's JSON control endpoints (vcsim-lab, the Kubernetes and DNS fault proxies) -------------
def json_request(url: str, method: str = "GET", body: Any = None, timeout: float = 10.0) -> Any:
    """One call of a control endpoint: `body` sent as JSON, the JSON answer decoded (None when
    empty). HTTP errors propagate as urllib's HTTPError: each client words its own."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def send_json(handler: Any, status: int, payload: Any) -> None:
    """Answer a `BaseHTTPRequestHandler` request with `payload` as JSON."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
