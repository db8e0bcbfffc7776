"""V1's decisions from snapshots: readiness (oc's four columns, generation, nodes) and diagnosis
(causes from Machine errors and Events, and which of them stop the wait early)."""

from __future__ import annotations

from typing import Any

import pytest

from winnodes.render.diagnosis import (
    SetSnapshot,
    classify,
    diagnose,
    fatal,
    is_fatal,
    readiness,
    relevant_event,
)


def _ms(replicas: int, cur: int, ready: int, avail: int, gen: int = 1, observed: int = 1) -> Any:
    return {
        "metadata": {"name": "win", "generation": gen},
        "spec": {"replicas": replicas},
        "status": {
            "replicas": cur,
            "readyReplicas": ready,
            "availableReplicas": avail,
            "observedGeneration": observed,
        },
    }


def _machine(name: str, phase: str, node: str | None = None, **st: Any) -> Any:
    status: dict[str, Any] = {"phase": phase, **st}
    if node:
        status["nodeRef"] = {"kind": "Node", "name": node}
    return {"metadata": {"name": name}, "status": status}


def _node(name: str, ready: bool = True, os: str = "windows") -> Any:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/os": os}},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def _event(
    obj: str, reason: str, message: str, type_: str = "Warning", kind: str = "Machine"
) -> Any:
    return {
        "metadata": {"uid": f"{obj}-{reason}", "resourceVersion": "1"},
        "involvedObject": {"kind": kind, "name": obj},
        "reason": reason,
        "message": message,
        "type": type_,
        "lastTimestamp": "2026-01-01T00:00:00Z",
    }


def test_ready_needs_all_columns_nodes_and_current_generation() -> None:
    snap = SetSnapshot(
        "win",
        _ms(1, 1, 1, 1),
        {"win-a": _machine("win-a", "Running", "win-a")},
        {"win-a": _node("win-a")},
    )
    r = readiness(snap)
    assert r.ready and r.fraction == 1.0
    assert r.summary.startswith("DESIRED 1 CURRENT 1 READY 1 AVAILABLE 1")
    # status not yet observed for a new spec (scaled): not ready even though columns agree
    snap.machineset = _ms(1, 1, 1, 1, gen=2, observed=1)
    assert not readiness(snap).ready
    # a Node that is not Ready, or not Windows, does not count
    snap.machineset = _ms(1, 1, 1, 1)
    snap.nodes = {"win-a": _node("win-a", ready=False)}
    assert not readiness(snap).ready
    snap.nodes = {"win-a": _node("win-a", os="linux")}
    assert not readiness(snap).ready


def test_scale_down_waits_for_the_extra_machine_to_go() -> None:
    snap = SetSnapshot(
        "win",
        _ms(0, 0, 0, 0),
        {"win-a": _machine("win-a", "Deleting", "win-a")},
        {"win-a": _node("win-a")},
    )
    assert not readiness(snap).ready
    snap.machines = {}
    assert readiness(snap).ready


def test_missing_machineset_is_not_ready() -> None:
    assert not readiness(SetSnapshot("win")).ready


@pytest.mark.parametrize(
    ("reason", "message", "cause", "stops"),
    [
        ("AuthenticationFailed", "SSH authentication as Administrator failed (G5)", "key", True),
        ("InvalidPrivateKey", "secret x: passphrase (PRE-3)", "key", True),
        (
            "MachineSetupFailure",
            "firewall: no enabled inbound rule allowing TCP 10250 (container logs) (G7, profile "
            "current)",
            "firewall",
            True,
        ),
        (
            "MachineSetupFailure",
            "dns: api-int.lab.example.com does not exist (NXDOMAIN) through the DNS server; add "
            "it (DNS1)",
            "dns",
            False,
        ),
        (
            "MachineSetupFailure",
            "tools.conf: C:\\... has no empty exclude-nics= (G3a)",
            "template",
            True,
        ),
        (
            "MachineSetupFailure",
            "ssh: SSH handshake failed; sshd must run with a firewall rule for TCP 22 (G4)",
            "template",
            False,
        ),
        ("FailedCreate", "unable to get template \"x\": vm 'x' not found", "template", True),
        ("FailedCreate", "network 'No Such' not found", "placement", True),
        ("HostKeyMismatch", "ssh: host key changed; refusing to connect", "template", True),
        ("Something", "unrelated", "unknown", False),
    ],
)
def test_classify_and_fatality(reason: str, message: str, cause: str, stops: bool) -> None:
    assert classify(reason, message) == cause
    assert is_fatal(reason, message) is stops


def test_diagnosis_lists_machines_events_and_causes() -> None:
    snap = SetSnapshot(
        "win",
        _ms(2, 2, 0, 0),
        {
            "win-a": _machine(
                "win-a",
                "Failed",
                errorMessage='unable to get template "x": not found',
                errorReason="InvalidConfiguration",
            ),
            "win-b": _machine("win-b", "Provisioned"),
        },
        {},
        [
            _event("win-b", "Create", "Created Machine win-b", "Normal"),
            _event("win-b", "MachineSetupFailure", "dns: api-int... (DNS1)"),
        ],
    )
    d = diagnose(snap)
    assert d.causes == ["template", "dns"]
    assert d.fatal  # a Machine in phase Failed
    text = d.text()
    assert "machine win-a: phase Failed, error: unable to get template" in text
    assert "event win-b: Warning MachineSetupFailure" in text
    assert "| win-a | Failed |" in d.markdown()
    assert fatal(snap) is not None


def test_dns_alone_keeps_waiting() -> None:
    snap = SetSnapshot(
        "win",
        _ms(1, 1, 0, 0),
        {"win-b": _machine("win-b", "Provisioned")},
        {},
        [_event("win-b", "MachineSetupFailure", "dns: api-int missing (DNS1)")],
    )
    assert fatal(snap) is None
    assert diagnose(snap).causes == ["dns"]


def test_relevant_events() -> None:
    assert relevant_event(_event("win-x1", "r", "m"), "win", [])  # a deleted Machine of the set
    assert relevant_event(_event("win", "r", "m", kind="MachineSet"), "win", [])
    assert not relevant_event(_event("other-1", "r", "m"), "win", [])
    assert not relevant_event(_event("winner", "r", "m", kind="MachineSet"), "win", [])


def test_a_machine_the_provider_cannot_check_is_diagnosed_from_its_condition() -> None:
    """machine-api's vSphere actuator sets no phase and no errorMessage when it cannot build its
    scope (credentials secret keys, workspace.server), only InstanceExists=Unknown."""
    cond = {
        "type": "InstanceExists",
        "status": "Unknown",
        "reason": "ErrorCheckingProvider",
        "message": "Failed to check if machine exists: win-a: failed to create scope for machine: "
        'win-a: error getting credentials: secret openshift-machine-api/c does not have "v.username" '
        "field set",
    }
    m = {"metadata": {"name": "win-a"}, "status": {"conditions": [cond]}}
    d = diagnose(SetSnapshot("win", _ms(1, 1, 0, 0), {"win-a": m}, {}, []))
    assert d.causes == ["placement"]
    assert 'does not have "v.username" field set' in d.text()


def test_v1_reports_machines_on_a_previous_template() -> None:
    from winnodes.render.diagnosis import SetSnapshot, readiness, template_drift

    def tpl(t: str) -> dict[str, object]:
        return {"providerSpec": {"value": {"template": t}}}

    snap = SetSnapshot(
        "w",
        machineset={
            "metadata": {"name": "w", "generation": 1},
            "spec": {"replicas": 3, "template": {"spec": tpl("imgs/b")}},
            "status": {"observedGeneration": 1},
        },
        machines={
            n: {"metadata": {"name": n}, "spec": tpl(t)}
            for n, t in (("w-1", "imgs/a"), ("w-2", "imgs/a"), ("w-3", "imgs/b"))
        },
    )
    assert template_drift(snap) == "2 of 3 machine(s) on a previous template (imgs/a)"
    assert "2 of 3 machine(s) on a previous template" in readiness(snap).summary
    for m in snap.machines.values():
        m["spec"] = tpl("imgs/b")
    assert template_drift(snap) == "" and "previous template" not in readiness(snap).summary
