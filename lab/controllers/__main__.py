"""`python -m lab.controllers <name>`: run one controller of CONTROLLERS and restart it if it dies.

A real operator runs in a pod that the kubelet restarts; this supervisor plays that part for the lab's
simulated operators. It forwards SIGTERM to the controller and exits with it; any other exit of the
controller is logged and followed by a restart after a backoff (1 s doubling to 30 s, reset after a
minute of healthy running). The restart count is kept in `<lab>/run/<name>.restarts`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lab.controllers import CONTROLLERS


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CONTROLLERS:
        print(f"usage: python -m lab.controllers {{{'|'.join(CONTROLLERS)}}}", file=sys.stderr)
        return 2
    name = argv[0]
    module = CONTROLLERS[name]
    ready = Path(os.environ["LAB_CONTROLLER_READY_FILE"])
    restarts_path = ready.with_name(f"{name}.restarts")
    stopping = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def on_term(_sig: int, _frame: object) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    restarts = 0
    restarts_path.write_text("0\n")
    delay = 1.0
    while not stopping.is_set():
        ready.unlink(missing_ok=True)
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", module])
        rc = child.wait()
        if stopping.is_set():
            break
        restarts += 1
        restarts_path.write_text(f"{restarts}\n")
        if time.monotonic() - started > 60:
            delay = 1.0
        print(
            f"supervisor: {name} exited with status {rc}; restart {restarts} in {delay:.0f}s",
            file=sys.stderr,
            flush=True,
        )
        stopping.wait(delay)
        delay = min(delay * 2, 30.0)
    ready.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
