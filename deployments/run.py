"""Start the parent flow for `winnodes run` and show it in the terminal while it runs.

Through a deployment (the default) a worker runs the flow; this process creates the run, prints its
address in the Prefect UI, then follows the run's events over Prefect's websocket (each step's task
runs and subflows as they start and end, the `winnodes.*` milestones) until the run is final: no
polling loop. `run_in_process` runs the flow here instead, with Prefect's own console logging.
"""

from __future__ import annotations

import asyncio
from typing import Any, TextIO
from uuid import UUID

from winnodes.model.config import PipelineConfig

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def ui_url(flow_run_id: UUID | str) -> str:
    """The run's page in the Prefect UI (PREFECT_UI_URL, else derived from PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    base = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return f"{str(base).rstrip('/')}/runs/flow-run/{flow_run_id}"


def parameters(config: PipelineConfig, only: str) -> dict[str, Any]:
    return {"config": config.model_dump(mode="json"), "only": only}


def summary_lines(result: Any) -> list[str]:
    """The parent flow's result as lines: template, MachineSet, Ready nodes."""
    if not isinstance(result, dict):
        return [f"result: {result!r}"]
    lines = []
    if result.get("template"):
        lines.append(f"template:    {result['template']}")
    if result.get("machineset"):
        lines.append(f"MachineSet:  {result['machineset']}")
    nodes = result.get("ready_nodes")
    if nodes is not None:
        lines.append(f"Ready nodes: {len(nodes)}: {', '.join(nodes) if nodes else '-'}")
    return lines or [f"result: {result!r}"]


async def watch(flow_run_id: UUID, out: TextIO, timeout: float) -> str:
    """Print the run's events until its state is final; return that state's type."""
    from prefect.client.orchestration import get_client
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventAnyResourceFilter, EventFilter

    rid = f"prefect.flow-run.{flow_run_id}"
    flt = EventFilter(any_resource=EventAnyResourceFilter(id=[rid]))

    async def follow() -> str:
        async with get_events_subscriber(filter=flt) as subscriber:
            # The run may have ended between its creation and the subscription.
            async with get_client() as client:
                run = await client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.type.value in FINAL:
                return run.state.type.value
            async for event in subscriber:
                name = event.resource.get("prefect.resource.name", "")
                what = event.event
                if what.startswith("winnodes."):
                    print(f"  * {what.removeprefix('winnodes.')}: {name}", file=out, flush=True)
                    continue
                kind, _, state = what.rpartition(".")
                if kind == "prefect.task-run" and state in ("Running", "Completed", "Failed"):
                    print(f"  {state:<10} {name}", file=out, flush=True)
                elif kind == "prefect.flow-run":
                    if event.resource.id == rid:
                        print(f"run {state}", file=out, flush=True)
                        if state.upper() in FINAL:
                            return state.upper()
                    elif state in ("Running", "Completed", "Failed"):
                        print(f"  {state:<10} subflow {name}", file=out, flush=True)
        return "UNKNOWN"

    return await asyncio.wait_for(follow(), timeout)


def run_deployment_and_watch(
    config: PipelineConfig,
    only: str,
    *,
    deployment: str,
    out: TextIO,
    timeout: float,
) -> int:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run: Any = run_deployment(deployment, parameters=parameters(config, only), timeout=0)
    except ObjectNotFound:
        print(
            f"deployment {deployment!r} not found: register it with `python -m deployments."
            "register --config CONFIG` (or use --in-process)",
            file=out,
        )
        return 1
    print(f"flow run {run.name}: {ui_url(run.id)}", file=out, flush=True)
    state = asyncio.run(watch(run.id, out, timeout))
    with get_client(sync_client=True) as client:
        final = client.read_flow_run(run.id).state
    ok = final is not None and final.is_completed()
    if ok and final is not None:
        try:
            for line in summary_lines(final.result()):
                print(line, file=out)
        except Exception as exc:  # the result store may not be readable from here
            print(f"(result not readable here: {type(exc).__name__})", file=out)
    print(f"{state.lower()}: {ui_url(run.id)}", file=out)
    return 0 if ok else 1


def run_in_process(config: PipelineConfig, only: str, out: TextIO) -> int:
    from flows.windows_nodes import windows_nodes

    state = windows_nodes(config=config, only=only, return_state=True)  # type: ignore[arg-type]
    if state.is_completed():
        for line in summary_lines(state.result()):
            print(line, file=out)
        return 0
    print(f"run {state.type.value.lower()}: {state.message}", file=out)
    return 1
