"""HTTP CONNECT proxies for the product's own clients (a site whose workers reach vCenter only
through a proxy).

One parser and one tunnel, so the SOAP client (pyVmomi's `httpProxyHost`, which tunnels with
CONNECT), the datastore HTTP transfers (`http.client` `set_tunnel`) and the certificate probe of a
pinned thumbprint all go the same way. The proxy sees only an encrypted TLS stream: TLS is still
verified end to end against vCenter's certificate.
"""

from __future__ import annotations

import re
import socket

from winnodes import errors

_PROXY = re.compile(
    r"^(?:http://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})/?$"
)


def parse_proxy(value: str) -> tuple[str, int]:
    """`host:port` or `http://host:port` -> (host, port). Raises ConfigError otherwise."""
    m = _PROXY.match(value.strip())
    if not m or not 0 < int(m["port"]) < 65536:
        raise errors.ConfigError(f"proxy {value!r}: expected 'host:port' or 'http://host:port'")
    return m["host"].strip("[]"), int(m["port"])


def tunnel(proxy: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP socket to host:port through the HTTP proxy (CONNECT). Raises ConnectionLost when the
    proxy refuses or cannot reach the target."""
    phost, pport = parse_proxy(proxy)
    sock = socket.create_connection((phost, pport), timeout=timeout)
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk or len(head) > 16384:
                raise errors.ConnectionLost(f"proxy {phost}:{pport} closed the CONNECT to {target}")
            head += chunk
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status.split()
        if len(parts) < 2 or parts[1] != "200":
            raise errors.ConnectionLost(f"proxy {phost}:{pport} refused CONNECT {target}: {status}")
        return sock
    except BaseException:
        sock.close()
        raise
