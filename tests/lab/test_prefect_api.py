"""lab.prefect_server.Api, the Prefect REST client of the scale-out test and the fleet benchmark,
against a fake transport (the lab runs of both start a whole Prefect server: minutes)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lab import prefect_server

URL = "http://127.0.0.1:1/api"


class Server:
    """Answers from a script: path -> list of (status, json) taken in turn (the last repeats)."""

    def __init__(self, script: dict[str, list[tuple[int, Any]]]) -> None:
        self.script = script
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(self, method: str, url: str, *, json: Any, timeout: float) -> httpx.Response:
        path = url.removeprefix(URL)
        self.calls.append((method, path, json))
        answers = self.script[path]
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        return httpx.Response(status, json=body, request=httpx.Request(method, url))


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(prefect_server.time, "sleep", slept.append)
    return slept


def test_start_run_finds_the_deployment_then_creates_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = Server(
        {
            "/deployments/name/windows-nodes/golden-image": [(200, {"id": "d1"})],
            "/deployments/d1/create_flow_run": [(201, {"id": "r1"})],
            "/flow_runs/r1": [
                (200, {"state": {"type": "RUNNING"}}),
                (200, {"state": {"type": "CRASHED"}}),
            ],
        }
    )
    monkeypatch.setattr(httpx, "request", server)
    api = prefect_server.Api(URL)
    run = api.start_run("windows-nodes/golden-image", {"config": {"x": 1}})
    assert run == {"id": "r1"}
    assert server.calls == [
        ("GET", "/deployments/name/windows-nodes/golden-image", None),
        ("POST", "/deployments/d1/create_flow_run", {"parameters": {"config": {"x": 1}}}),
    ]
    assert api.final_state("r1") is None  # RUNNING
    assert api.final_state("r1") == "CRASHED"
    assert api.post("/deployments/d1/create_flow_run") == {"id": "r1"}
    assert server.calls[-1] == ("POST", "/deployments/d1/create_flow_run", {})


def test_503_is_counted_and_retried_up_to_the_attempts_other_errors_raise_at_once(
    monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]
) -> None:
    server = Server(
        {
            "/flow_runs/busy": [(503, {}), (503, {}), (200, {"id": "busy"})],
            "/flow_runs/locked": [(503, {})],
            "/flow_runs/missing": [(404, {"detail": "not found"})],
        }
    )
    monkeypatch.setattr(httpx, "request", server)
    api = prefect_server.Api(URL, attempts=3)
    assert api.flow_run("busy") == {"id": "busy"}
    assert api.unavailable == 2 and no_sleep == [1, 1]
    with pytest.raises(httpx.HTTPStatusError):
        api.flow_run("locked")
    assert api.unavailable == 5 and len(no_sleep) == 4  # no sleep after the last attempt
    with pytest.raises(httpx.HTTPStatusError):
        api.flow_run("missing")
    assert [c[1] for c in server.calls].count("/flow_runs/missing") == 1
    # one attempt (the default): a 503 raises without waiting
    with pytest.raises(httpx.HTTPStatusError):
        prefect_server.Api(URL).flow_run("locked")
    assert len(no_sleep) == 4
