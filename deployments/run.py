"""Start the parent flow for `winnodes run` and show it in the terminal while it runs.

Through a deployment (the default) a worker runs the flow; this process creates the run, prints its
address in the Prefect UI, then follows the run's events over Prefect's websocket (each step's task
runs and subflows as they start and end, the `winnodes.*` milestones) until the run is final: no
polling loop. `run_in_process` runs the flow here instead, with Prefect's own console logging.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, TextIO
from uuid import UUID

from winnodes.model.config import PipelineConfig

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
STATES = {"Running", "Completed", "Failed", "Crashed", "Cancelled", "Cached", "AwaitingRetry"}


def ui_url(flow_run_id: UUID | str) -> str:
    """The run's page in the Prefect UI (PREFECT_UI_URL, else derived from PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    base = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return f"{str(base).rstrip('/')}/runs/flow-run/{flow_run_id}"


def parameters(config: PipelineConfig, only: str, build: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"config": config.model_dump(mode="json"), "only": only}
    if build is not None:
        params["build"] = build
    return params


_STEP = re.compile(r"\[((?:PRE|DNS|ROT)-?\d+|G\d+[a-z]?|M\d+|C\d+|V\d+)\]")
_PREFIX = re.compile(
    r"^(?:Flow run encountered an exception|Task run encountered an exception)[:.]\s*"
)


def failure_lines(message: str | None, error: BaseException | None = None) -> list[str]:
    """Why a run failed, for the terminal: the failing step's ID and the error message (pure).

    `error` is the run's exception when it could be read back; otherwise Prefect's state message
    ("Flow run encountered an exception: GuestCommandFailed: [G7] ...") is used."""
    text = str(error) if error is not None else _PREFIX.sub("", (message or "").strip())
    kind = type(error).__name__ if error is not None else ""
    if not kind and ": " in text.split("\n", 1)[0]:
        head, _, rest = text.partition(": ")
        if head.isidentifier():
            kind, text = head, rest
    step = getattr(error, "step_id", None)
    if not step:
        found = _STEP.search(text)
        step = found.group(1) if found else None
    first = f"failed at step {step}" if step else "failed"
    lines = [
        f"{first}: {kind + ': ' if kind else ''}{text.splitlines()[0] if text else '(no message)'}"
    ]
    lines += [f"  {line}" for line in text.splitlines()[1:20]]
    return lines


def quiet_shutdown() -> None:
    """Prefect's background services log "Still processing items: N items remaining..." while the
    process exits; that is not news for a terminal user (the items are sent anyway)."""
    from prefect._internal.concurrency.services import QueueService

    todo: list[type] = [QueueService]
    while todo:
        cls = todo.pop()
        logging.getLogger(cls.__name__).setLevel(logging.ERROR)
        todo.extend(cls.__subclasses__())


def summary_lines(result: Any) -> list[str]:
    """The parent flow's result as lines: template, MachineSet, Ready nodes."""
    data = result.model_dump() if hasattr(result, "model_dump") else result
    if not isinstance(data, dict):
        return [f"result: {result!r}"]
    labels = (
        ("template", "template"),
        ("machineset", "MachineSet"),
        ("machineset_template", "its template"),
        ("replicas", "replicas"),
        ("ready", "Ready"),
        ("rotation", "rotation"),
    )
    lines = [f"{label + ':':<16}{data[k]}" for k, label in labels if data.get(k) not in (None, "")]
    if data.get("template") and data.get("template_action"):
        build = f", build {data['build_id']}" if data.get("build_id") else ""
        lines[0] = f"{lines[0]} ({data['template_action']}{build})"
    return lines


async def watch(flow_run_id: UUID, out: TextIO, timeout: float) -> str:
    """Print the run's events (its own, its subflows' and their task runs') until its state is
    final; return that state's type. Subflows are recognised through their parent task run."""
    from prefect.client.orchestration import get_client
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter

    ours = {str(flow_run_id)}
    others: set[str] = set()
    flt = EventFilter(
        event=EventNameFilter(prefix=["prefect.flow-run.", "prefect.task-run.", "winnodes."])
    )

    async def belongs(client: Any, run_id: str) -> bool:
        if run_id in ours or run_id in others:
            return run_id in ours
        run = await client.read_flow_run(UUID(run_id))
        parent = run.parent_task_run_id
        if parent is not None:
            task_run = await client.read_task_run(parent)
            if str(task_run.flow_run_id) in ours:
                ours.add(run_id)
                return True
        others.add(run_id)
        return False

    def related_flow_run(event: Any) -> str | None:
        for res in event.related:
            rid = res.get("prefect.resource.id", "")
            if rid.startswith("prefect.flow-run."):
                return str(rid.removeprefix("prefect.flow-run."))
        return None

    async def follow() -> str:
        async with get_events_subscriber(filter=flt) as subscriber, get_client() as client:
            # The run may have ended between its creation and the subscription.
            run = await client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.type.value in FINAL:
                return run.state.type.value
            async for event in subscriber:
                name = event.resource.get("prefect.resource.name", "")
                kind, _, state = event.event.rpartition(".")
                rid = event.resource.id
                if kind == "prefect.flow-run":
                    run_id = rid.removeprefix("prefect.flow-run.")
                    if state not in STATES or not await belongs(client, run_id):
                        continue
                    if run_id == str(flow_run_id):
                        print(f"run {name}: {state}", file=out, flush=True)
                        if state.upper() in FINAL:
                            return state.upper()
                    else:
                        print(f"  {state:<10} flow {name}", file=out, flush=True)
                    continue
                parent = related_flow_run(event)
                if parent is None or not await belongs(client, parent):
                    continue
                if kind == "prefect.task-run" and state in STATES:
                    print(f"    {state:<10} {name}", file=out, flush=True)
                elif event.event.startswith("winnodes."):
                    what = event.event.removeprefix("winnodes.")
                    print(f"    * {what}: {name}", file=out, flush=True)
        return "UNKNOWN"

    return await asyncio.wait_for(follow(), timeout)


def run_deployment_and_watch(
    config: PipelineConfig,
    only: str,
    *,
    deployment: str,
    out: TextIO,
    timeout: float,
    build: str | None = None,
) -> int:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run: Any = run_deployment(deployment, parameters=parameters(config, only, build), timeout=0)
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
    elif final is not None:
        error: BaseException | None = None
        try:
            raised = final.result(raise_on_failure=False)
            error = raised if isinstance(raised, BaseException) else None
        except Exception:  # the result store may not be readable from here: use the message
            error = None
        for line in failure_lines(final.message, error):
            print(line, file=out)
    print(f"{state.lower()}: {ui_url(run.id)}", file=out)
    return 0 if ok else 1


def run_in_process(config: PipelineConfig, only: str, out: TextIO, build: str | None = None) -> int:
    from flows.windows_nodes import windows_nodes

    state = windows_nodes(config=config, only=only, build=build, return_state=True)  # type: ignore[arg-type]
    if state.is_completed():
        for line in summary_lines(state.result()):
            print(line, file=out)
        return 0
    raised = state.result(raise_on_failure=False)
    error = raised if isinstance(raised, BaseException) else None
    print(f"run {state.type.value.lower()}", file=out)
    for line in failure_lines(state.message, error):
        print(line, file=out)
    return 1
