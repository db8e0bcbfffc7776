"""winnodes.proxy: the HTTP CONNECT tunnel the product's vCenter client uses at proxied sites."""

from __future__ import annotations

import socket

import pytest

from tests.winnodes.proxy_support import connect_proxy
from winnodes import errors
from winnodes.proxy import parse_proxy, tunnel


def test_parse_proxy() -> None:
    assert parse_proxy("proxy.corp:3128") == ("proxy.corp", 3128)
    assert parse_proxy("http://10.0.0.1:8080/") == ("10.0.0.1", 8080)
    with pytest.raises(errors.ConfigError, match="host:port"):
        parse_proxy("proxy.corp")


def test_tunnel_reaches_the_target_and_a_refusal_is_an_error() -> None:
    target = socket.create_server(("127.0.0.1", 0))
    port = target.getsockname()[1]
    with connect_proxy() as (proxy, seen):
        sock = tunnel(proxy, "127.0.0.1", port, timeout=5)
        peer, _ = target.accept()
        peer.sendall(b"hello")
        assert sock.recv(5) == b"hello"
        sock.close()
        peer.close()
        assert seen == [f"127.0.0.1:{port}"]
    with (
        connect_proxy(refuse=True) as (proxy, _),
        pytest.raises(errors.ConnectionLost, match="403"),
    ):
        tunnel(proxy, "127.0.0.1", port, timeout=5)
    target.close()
