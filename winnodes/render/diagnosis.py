"""V1: is the Windows MachineSet ready, and if not, why? Pure functions over what the API returned.

The wait (winnodes.cluster.wait) keeps a `SetSnapshot` of the MachineSet, its Machines, the Windows
Nodes and the Events on them, up to date from watches; this module decides from a snapshot:

- `readiness`: DESIRED = CURRENT = READY = AVAILABLE (as `oc get machineset` prints them, with the
  status observed for the current generation), exactly DESIRED Machines, and every Machine's Node a
  Ready Windows node.
- `diagnose`: each Machine's phase and error message, the recent Events, and which prerequisite
  explains them: the template (image content, M7), the placement (network, datastore, folder,
  resource pool: M6/M9), DNS (DNS1), the key (PRE-3/G5) or the firewall (G7).
- `fatal`: a cause that waiting cannot cure (a Machine in phase Failed, a key WMCO refuses, an image
  that lacks something), so the wait stops early instead of running into its deadline.

Events are written by machine-api and WMCO; their `reason` is read first, then the procedure step
the message names (WMCO's simulator and real WMCO both say what is wrong in the message).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Obj = dict[str, Any]
Cause = Literal["template", "placement", "dns", "key", "firewall", "unknown"]

CAUSE_TEXT: dict[str, str] = {
    "template": "the Windows template (M7; golden image steps G1-G10)",
    "placement": "the vSphere placement: network, datastore, folder, resource pool, or the "
    "vCenter server and its credentials secret keys (M5, M6, M9)",
    "dns": "the api-int DNS record (DNS1)",
    "key": "the SSH key: the template's authorized key vs the cloud-private-key secret (PRE-3, G5)",
    "firewall": "the template's firewall rules (G7)",
    "unknown": "no known prerequisite; read the Events",
}
#: Causes that do not go away by waiting: the image, the placement or the key must change.
FATAL_CAUSES = frozenset({"template", "placement", "key", "firewall"})
#: Steps whose failure can be passing: the guest is still booting (APIPA address, sshd starting).
_PASSING_STEPS = frozenset({"G4", "G3b"})

_STEP = re.compile(r"\((?:[^()]*?\b)?(PRE-\d|DNS1|G\d+[a-c]?|M\d)\b")


@dataclass
class SetSnapshot:
    """What the watches saw of one MachineSet (plain JSON dicts)."""

    name: str
    machineset: Obj | None = None
    machines: dict[str, Obj] = field(default_factory=dict)
    nodes: dict[str, Obj] = field(default_factory=dict)
    events: list[Obj] = field(default_factory=list)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    desired: int
    current: int
    ready_replicas: int
    available: int
    nodes_ready: int
    summary: str

    @property
    def fraction(self) -> float:
        if self.desired <= 0:
            return 1.0 if self.ready else 0.0
        return min(1.0, self.nodes_ready / self.desired)


def node_ready(node: Obj | None) -> bool:
    if not node:
        return False
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def is_windows_node(node: Obj) -> bool:
    return (node.get("metadata", {}).get("labels") or {}).get("kubernetes.io/os") == "windows"


def _phase(m: Obj) -> str:
    return str((m.get("status") or {}).get("phase") or "Pending")


def _node_of(m: Obj) -> str | None:
    ref = (m.get("status") or {}).get("nodeRef") or {}
    return ref.get("name")


def live_machines(snap: SetSnapshot) -> list[Obj]:
    """Machines of the set that are not being deleted, by name."""
    return sorted(
        (m for m in snap.machines.values() if not m["metadata"].get("deletionTimestamp")),
        key=lambda m: m["metadata"]["name"],
    )


def _template(spec: Obj | None) -> str:
    return str((((spec or {}).get("providerSpec") or {}).get("value") or {}).get("template") or "")


def template_drift(snap: SetSnapshot) -> str:
    """'2 of 3 machine(s) on a previous template (A)' when Machines run another template than the
    MachineSet's (changing a set's template affects only new Machines: a rotation moves them)."""
    ms = snap.machineset
    if ms is None:
        return ""
    current = _template(((ms.get("spec") or {}).get("template") or {}).get("spec"))
    live = live_machines(snap)
    old = sorted({t for m in live if (t := _template(m.get("spec"))) and t != current})
    count = sum(1 for m in live if _template(m.get("spec")) not in ("", current))
    if not count:
        return ""
    return f"{count} of {len(live)} machine(s) on a previous template ({', '.join(old)})"


def readiness(snap: SetSnapshot) -> Readiness:
    ms = snap.machineset
    if ms is None:
        return Readiness(False, 0, 0, 0, 0, 0, f"machineset {snap.name} does not exist")
    spec, st = ms.get("spec") or {}, ms.get("status") or {}
    desired = int(spec.get("replicas") or 0)
    current = int(st.get("replicas") or 0)
    ready_r = int(st.get("readyReplicas") or 0)
    avail = int(st.get("availableReplicas") or 0)
    observed = int(st.get("observedGeneration") or 0) >= int(ms["metadata"].get("generation") or 0)
    machines = snap.machines.values()
    nodes_ok = 0
    for m in machines:
        node_name = _node_of(m)
        node = snap.nodes.get(node_name) if node_name else None
        if node and is_windows_node(node) and node_ready(node):
            nodes_ok += 1
    all_machines_ready = len(machines) == desired and nodes_ok == desired
    ready = observed and desired == current == ready_r == avail and all_machines_ready
    phases = ", ".join(f"{m['metadata']['name']} {_phase(m)}" for m in live_machines(snap))
    drift = template_drift(snap)
    summary = (
        f"DESIRED {desired} CURRENT {current} READY {ready_r} AVAILABLE {avail}; "
        f"Windows nodes Ready {nodes_ok}/{desired}"
        + ("" if observed else "; status not yet observed for the current generation")
        + (f"; {drift}" if drift else "")
        + (f"; machines: {phases}" if phases else "")
    )
    return Readiness(ready, desired, current, ready_r, avail, nodes_ok, summary)


def classify(reason: str, message: str) -> Cause:
    """Which prerequisite an Event (or a Machine's errorMessage) points at."""
    text = message.lower()
    if reason in ("AuthenticationFailed", "InvalidPrivateKey"):
        return "key"
    if reason == "HostKeyMismatch":
        return "template"  # clones sharing or changing host keys: sysprep without removal (G9)
    if text.startswith("firewall:") or ("firewall" in text and "(g7" in text):
        return "firewall"
    if text.startswith("dns:") or "(dns1)" in text:
        return "dns"
    steps = set(_STEP.findall(message))
    if steps & {"PRE-3", "G5"}:
        return "key"
    if "G7" in steps:
        return "firewall"
    if "DNS1" in steps:
        return "dns"
    if any(s.startswith("G") or s == "PRE-2" for s in steps) or "M7" in steps:
        return "template"
    if steps & {"M5", "M6", "M9"}:
        return "placement"
    if "error getting credentials" in text or "failed to create vsphere session" in text:
        return "placement"  # workspace.server and its credentials secret keys (M5, M9)
    if "template" in text:
        return "template"
    if any(w in text for w in ("network", "datastore", "folder", "resource pool", "datacenter")):
        return "placement"
    if reason == "FailedCreate":
        return "placement"
    return "unknown"


def is_fatal(reason: str, message: str) -> bool:
    """Whether a Warning means waiting cannot help: WMCO deleting a Machine for a key it cannot
    use, or a check of the image's content that failed. An unreachable sshd (G4) or a missing IP
    (G3b) right after boot is not: WMCO retries, and so does the wait."""
    if reason in ("AuthenticationFailed", "InvalidPrivateKey", "HostKeyMismatch"):
        return True
    if set(_STEP.findall(message)) & _PASSING_STEPS:
        return False
    return classify(reason, message) in FATAL_CAUSES


@dataclass(frozen=True)
class MachineLine:
    name: str
    phase: str
    error: str
    node: str | None
    node_ready: bool


@dataclass(frozen=True)
class EventLine:
    object_name: str
    type: str
    reason: str
    message: str
    count: int
    cause: Cause
    fatal: bool = False


@dataclass(frozen=True)
class Diagnosis:
    summary: str
    machines: list[MachineLine]
    events: list[EventLine]
    causes: list[Cause]  # most specific first, without duplicates
    fatal: bool = False  # a Machine in phase Failed, or a Warning waiting cannot cure

    def text(self) -> str:
        lines = [f"machineset: {self.summary}"]
        if self.causes:
            lines.append("explained by: " + "; ".join(CAUSE_TEXT[c] for c in self.causes))
        for m in self.machines:
            node = f", node {m.node} {'Ready' if m.node_ready else 'not Ready'}" if m.node else ""
            err = f", error: {m.error}" if m.error else ""
            lines.append(f"machine {m.name}: phase {m.phase}{node}{err}")
        for e in self.events:
            times = f" (x{e.count})" if e.count > 1 else ""
            lines.append(f"event {e.object_name}: {e.type} {e.reason}{times}: {e.message}")
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [f"**MachineSet**: {self.summary}", ""]
        if self.causes:
            out += ["**Explained by**: " + "; ".join(CAUSE_TEXT[c] for c in self.causes), ""]
        out += ["| machine | phase | node | error |", "|---|---|---|---|"]
        for m in self.machines:
            node = f"{m.node} ({'Ready' if m.node_ready else 'not Ready'})" if m.node else ""
            out.append(f"| {m.name} | {m.phase} | {node} | {_cell(m.error)} |")
        if self.events:
            out += ["", "| object | type | reason | message | cause |", "|---|---|---|---|---|"]
            for e in self.events:
                out.append(
                    f"| {e.object_name} | {e.type} | {e.reason} | {_cell(e.message)} | {e.cause} |"
                )
        return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _event_time(e: Obj) -> str:
    return str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or "") + str(
        e.get("metadata", {}).get("resourceVersion", "")
    ).zfill(20)


def _provider_error(status: Obj) -> str:
    """machine-api's vSphere actuator cannot even check a Machine (credentials secret without the
    `<workspace.server>.*` keys, an unreachable workspace.server): no errorMessage, no phase, only
    condition InstanceExists=Unknown with reason ErrorCheckingProvider and the error."""
    for c in status.get("conditions") or []:
        if c.get("reason") == "ErrorCheckingProvider" and c.get("status") != "True":
            return str(c.get("message") or "")
    return ""


def diagnose(snap: SetSnapshot, *, max_events: int = 20) -> Diagnosis:
    """Each Machine's phase and error, the recent Warning/Normal Events on the set's Machines and the
    set itself, and the causes they point at (Machine errors first, then Warning Events)."""
    r = readiness(snap)
    machines = []
    causes: list[Cause] = []
    fatal_causes: list[Cause] = []
    fatal_seen = False
    for m in live_machines(snap):
        st = m.get("status") or {}
        node_name = _node_of(m)
        err = str(st.get("errorMessage") or "") or _provider_error(st)
        machines.append(
            MachineLine(
                m["metadata"]["name"],
                _phase(m),
                err,
                node_name,
                node_ready(snap.nodes.get(node_name)) if node_name else False,
            )
        )
        if err or _phase(m) == "Failed":
            cause = classify(str(st.get("errorReason") or "FailedCreate"), err)
            causes.append(cause)
            if _phase(m) == "Failed":
                fatal_seen = True
                fatal_causes.append(cause)
    events = sorted(snap.events, key=_event_time)[-max_events:]
    lines = []
    for e in events:
        reason, msg = str(e.get("reason") or ""), str(e.get("message") or "")
        warning = e.get("type") == "Warning"
        cause = classify(reason, msg) if warning else "unknown"
        event_fatal = warning and is_fatal(reason, msg)
        fatal_seen = fatal_seen or event_fatal
        lines.append(
            EventLine(
                str((e.get("involvedObject") or {}).get("name") or ""),
                str(e.get("type") or ""),
                reason,
                msg,
                int(e.get("count") or 1),
                cause,
                event_fatal,
            )
        )
        if warning:
            causes.append(cause)
            if event_fatal:
                fatal_causes.append(cause)
    # what stops the wait comes first; passing trouble (a guest still booting) after it
    ordered: list[Cause] = [c for c in dict.fromkeys(fatal_causes + causes) if c != "unknown"]
    if not ordered and causes:
        ordered = ["unknown"]
    return Diagnosis(r.summary, machines, lines, ordered, fatal_seen)


def fatal(snap: SetSnapshot) -> Diagnosis | None:
    """A diagnosis when the set cannot become ready by waiting (see FATAL_CAUSES), else None.

    Only evidence about Machines that still exist or Events newer than nothing is ignored: a
    Warning on a Machine WMCO deleted for a key mismatch is exactly the evidence that matters."""
    d = diagnose(snap)
    return d if d.fatal else None


def relevant_event(event: Obj, set_name: str, machine_names: Sequence[str]) -> bool:
    """Events about the set or its Machines (current or deleted ones: `<set>-xxxxx`)."""
    inv = event.get("involvedObject") or {}
    name = str(inv.get("name") or "")
    kind = inv.get("kind")
    if kind == "MachineSet":
        return name == set_name
    if kind == "Machine":
        return name in machine_names or name.startswith(set_name + "-")
    return False
