"""A minimal HTTP CONNECT proxy on loopback for tests (records the targets it tunnelled to)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def connect_proxy(refuse: bool = False) -> Iterator[tuple[str, list[str]]]:
    """Yield ('127.0.0.1:<port>', targets). `refuse`: answer 403 to every CONNECT."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    targets: list[str] = []
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with a, b:
            while not stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)

    def handle(client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(1)
            if not chunk:
                client.close()
                return
            head += chunk
        method, target = head.split(b"\r\n", 1)[0].decode().split()[:2]
        targets.append(target)
        if refuse or method != "CONNECT":
            client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            client.close()
            return
        host, _, p = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(p)), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            client.close()
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipe(client, upstream)

    def serve() -> None:
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(client,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}", targets
    finally:
        stop.set()
        server.close()
        thread.join(timeout=2)
