"""A webhook receiver: the lab's stand-in for the chat or paging service a site's failure
notifications go to (Slack, Teams, a ticket system's webhook).

A small HTTP server on 127.0.0.1 that answers every POST/PUT with 200 and appends one JSON line per
request (time, method, path, headers, body) to `<lab>/webhook/requests.jsonl`, so the demo's user
can read the message Prefect's automation sent and a test can see it arrive. Run as a lab daemon
(`python -m lab.webhook PORT FILE`) next to the demo's Prefect server.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lab.paths import LabPaths
from lab.process import read_pid, require_free_port, start_daemon, stop_daemon, tcp_ready

NAME = "webhook"
HOST = "127.0.0.1"
PATH = "/hooks/winnodes"


def port() -> int:
    return int(os.environ.get("LAB_WEBHOOK_PORT", "18991"))


def url() -> str:
    return f"http://{HOST}:{port()}{PATH}"


def requests_file(paths: LabPaths) -> Path:
    return paths.root / "webhook" / "requests.jsonl"


def start(paths: LabPaths) -> str:
    """Start the receiver (if not running); return the URL a notification block posts to."""
    if read_pid(paths, NAME) is None:
        require_free_port(HOST, port(), "webhook receiver", "LAB_WEBHOOK_PORT")
    out = requests_file(paths)
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "lab.webhook", str(port()), str(out)]
    start_daemon(paths, NAME, argv, ready=tcp_ready(HOST, port()), timeout=30)
    return url()


def stop(paths: LabPaths) -> None:
    stop_daemon(paths, NAME)


def received(paths: LabPaths) -> list[dict[str, Any]]:
    """Every request received so far, oldest first."""
    try:
        lines = requests_file(paths).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def serve(listen_port: int, out: Path) -> None:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            entry = {
                "time": time.time(),
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": body,
            }
            with lock, out.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        do_POST = do_PUT = do_PATCH = _record

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"webhook: {self.command} {self.path}\n")

    ThreadingHTTPServer((HOST, listen_port), Handler).serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
