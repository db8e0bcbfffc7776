"""Every run leaves a step report, progress and an objects table; failures emit an event."""

from __future__ import annotations

import time

import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from flows.reporting import RunReport
from winnodes.model.steps import StepId


def test_report_without_a_flow_run_is_plain_markdown() -> None:
    report = RunReport("Golden image", [StepId.G1, StepId.G2], key="gi")
    with report.step(StepId.G1) as out:
        out.repaired("tools.conf rewritten")
    md = report.markdown()
    assert "| G1 |" in md and "repaired" in md and "tools.conf rewritten" in md
    assert "| G2 |" in md and "pending" in md


def test_a_failure_without_a_step_id_gets_the_step_it_failed_in() -> None:
    """Found by the fault matrix: a permanent vCenter fault in G1's power-on (an adapter call made
    without a step ID) failed the flow with an error naming no step."""
    from winnodes import errors

    report = RunReport("Golden image", [StepId.G1, StepId.G2], key="gi")
    with pytest.raises(errors.PermanentError) as err, report.step(StepId.G1):
        raise errors.PermanentError("power on vm-94: vCenter rejected an argument")
    assert err.value.step_id == "G1"
    assert str(err.value).startswith("[G1] power on vm-94")
    with pytest.raises(errors.NotFound) as named, report.step(StepId.G2):
        raise errors.NotFound("answer ISO", step_id="G1")
    assert named.value.step_id == "G1"  # an error that names its step keeps it


@pytest.mark.usefixtures("prefect_api")
def test_artifacts_are_published_for_a_flow_run() -> None:
    @flow
    def build() -> None:
        report = RunReport("Golden image", [StepId.G1, StepId.G7], key="gi-test").start()
        with report.step(StepId.G1) as out:
            out.ok("VM created")
        report.created("VirtualMachine", "win-base", "created")
        with pytest.raises(RuntimeError), report.step(StepId.G7):
            raise RuntimeError("rule missing")
        report.publish()

    build()
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(
                    any_=["gi-test-report", "gi-test-objects", "gi-test-progress"]
                )
            )
        )
    kinds = {a.key: a for a in arts}
    assert set(kinds) == {"gi-test-report", "gi-test-objects", "gi-test-progress"}
    assert "RuntimeError: rule missing" in str(kinds["gi-test-report"].data)
    assert kinds["gi-test-progress"].data == 100.0

    # The failed step is an event an automation can trigger on, related to its step ID.
    from prefect.events.filters import EventFilter, EventNameFilter

    def failed_events() -> list[object]:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                filter=EventFilter(event=EventNameFilter(name=["winnodes.step.failed"])), limit=50
            )
        return [
            e
            for e in page.events
            if any(r.id == "winnodes.step.G7" for r in e.related)
            and "rule missing" in str(e.payload.get("error"))
        ]

    deadline = time.monotonic() + 20  # events reach the API asynchronously
    found = failed_events()
    while not found and time.monotonic() < deadline:
        time.sleep(0.2)  # bounded wait for the event pipeline; no event-stream API to block on here
        found = failed_events()
    assert found
