"""The lab's webhook receiver records each request (method, path, JSON body) for tests to read."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from lab import webhook
from lab.paths import LabPaths


def test_requests_are_recorded_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("LAB_WEBHOOK_PORT", str(s.getsockname()[1]))
    paths = LabPaths(root=tmp_path, cache=tmp_path / "cache")
    url = webhook.start(paths)
    try:
        assert webhook.received(paths) == []
        httpx.post(url, json={"text": "first"}, timeout=10).raise_for_status()
        httpx.post(url, content=b"plain", timeout=10).raise_for_status()
        first, second = webhook.received(paths)
        assert (first["method"], first["path"], first["body"]) == (
            "POST",
            webhook.PATH,
            {"text": "first"},
        )
        assert second["body"] == "plain"
    finally:
        webhook.stop(paths)
