"""M6, M7, M9 against vCenter: does every object a Windows MachineSet names exist, as machine-api
will look it up, in the vCenter `workspace.server` names?

machine-api resolves `template`, `workspace.folder`, `workspace.datastore` and
`workspace.resourcePool` with govmomi's finder inside `workspace.datacenter`: an absolute inventory
path as is, a relative path under the datacenter's `vm`/`datastore`/`host` folder (or the
datacenter itself), a bare name searched below that folder (and ambiguous if found twice). The
checks here resolve the same way, so a name that passes here is a name machine-api finds, and every
problem is reported at once, before the MachineSet is written.

The template must be a template, powered off, not the un-sysprepped base VM (M7), and a Windows
guest (`config.guestId` / `config.guestFullName`): the cluster's own RHCOS template passes every
other check, and a MachineSet pointed at it makes Linux VMs that WMCO never joins while the old
Windows nodes stay Ready. Its recorded provenance (custom attributes written at G10, e.g. the SSH key
fingerprint and `winnodes.build`) is returned for the PRE-3 comparison; a template without
`winnodes.build` was built elsewhere: a warning, or a problem with `require_provenance`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from winnodes import errors
from winnodes.errors import Problem
from winnodes.model.config import Workspace
from winnodes.vsphere import inventory, vms
from winnodes.vsphere.session import VSphereSession

#: Written at G10 by the golden image flow: a template without it was not built by winnodes.
PROVENANCE_ATTRIBUTE = "winnodes.build"


def _addresses(host: str) -> set[str]:
    try:
        return {str(a[4][0]) for a in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return set()


def server_problems(
    server: str,
    vcenter_host: str,
    vcenter_port: int,
    resolve: Callable[[str], set[str]] = _addresses,
) -> list[Problem]:
    """M9: `workspace.server` must name the vCenter these checks (and the golden image) talk to.
    machine-api connects to exactly that name (port 443 unless the cloud config says otherwise)
    and looks the credentials up under it, so a server naming another vCenter, or a typo, leaves
    the Machines without VMs. Another name of the same vCenter (FQDN vs IP) is accepted when both
    resolve to a common address; a `:port` suffix must be the vCenter's port."""
    fld = "machineset.workspace.server"
    host, _, port = server.strip().partition(":")
    if not host:
        return [Problem("M9", fld, "required", f"{fld}: the vCenter server is required (M9)")]
    if port and port != str(vcenter_port):
        return [
            Problem(
                "M9",
                fld,
                "same-vcenter",
                f"{fld}: {server!r} names port {port}, but the vCenter is at "
                f"{vcenter_host}:{vcenter_port} (M9)",
            )
        ]
    if host.lower() == vcenter_host.lower() or resolve(host) & resolve(vcenter_host):
        return []
    return [
        Problem(
            "M9",
            fld,
            "same-vcenter",
            f"{fld}: {server!r} is not the vCenter {vcenter_host} whose template, folder and "
            "datastore were checked; machine-api would connect to it and find none of them (M9)",
        )
    ]


@dataclass(frozen=True)
class TemplateFacts:
    path: str
    name: str
    is_template: bool
    power_state: str
    attributes: dict[str, str] = field(default_factory=dict)
    guest_id: str = ""
    guest_full_name: str = ""

    @property
    def is_windows(self) -> bool:
        """vSphere's Windows guest IDs all start with 'win' (windows2019srvNext_64Guest for WS2022,
        windows2022srvNext_64Guest for WS2025); the full name says 'Windows' when the ID is generic."""
        return self.guest_id.lower().startswith("win") or "windows" in self.guest_full_name.lower()


@dataclass(frozen=True)
class PlacementReport:
    problems: list[Problem]
    template: TemplateFacts | None
    evidence: list[str]


def _find(
    session: VSphereSession, dc_name: str, dc: Any, obj_type: type, sub: str, path: str
) -> Any:
    """govmomi-finder resolution: NotFound / Conflict (ambiguous) / wrong type -> NotFound."""
    if path.startswith("/"):
        obj = inventory.find_by_path(session, path)
    elif "/" in path:
        try:
            obj = inventory.find_by_path(session, f"/{dc_name}/{sub}/{path}")
        except errors.NotFound:
            obj = inventory.find_by_path(session, f"/{dc_name}/{path}")
    else:
        root = inventory.properties(session, dc, [f"{sub}Folder"])[f"{sub}Folder"]
        obj = inventory.by_name(session, root, obj_type, path).obj
    if not isinstance(obj, obj_type):
        raise errors.NotFound(f"{path} is a {type(obj).__name__}, not a {obj_type.__name__}")
    return obj


def check_placement(
    session: VSphereSession,
    *,
    workspace: Workspace,
    network: str,
    template: str,
    base_vm: str | None = None,
    require_provenance: bool = False,
) -> PlacementReport:
    """Every M6/M7/M9 problem of these values in vCenter (empty list: all exist and fit)."""
    problems: list[Problem] = []
    evidence: list[str] = []

    def problem(step: str, field_: str, rule: str, text: str) -> None:
        problems.append(Problem(step, field_, rule, f"{field_}: {text} ({step})"))

    problems += server_problems(workspace.server, session.host, session.port)
    try:
        dc = inventory.datacenter(session, workspace.datacenter)
    except (errors.NotFound, errors.Conflict) as exc:
        problem("M9", "machineset.workspace.datacenter", "exists", exc.message)
        return PlacementReport(problems, None, evidence)

    for step, fld, obj_type, sub, value in (
        ("M9", "machineset.workspace.folder", vim.Folder, "vm", workspace.folder),
        ("M9", "machineset.workspace.datastore", vim.Datastore, "datastore", workspace.datastore),
        (
            "M9",
            "machineset.workspace.resource_pool",
            vim.ResourcePool,
            "host",
            workspace.resource_pool,
        ),
    ):
        if not value:
            continue
        try:
            _find(session, workspace.datacenter, dc, obj_type, sub, value)
            evidence.append(f"{sub} {value} found")
        except (errors.NotFound, errors.Conflict) as exc:
            problem(
                step,
                fld,
                "exists",
                f"{value!r} not found in datacenter {workspace.datacenter}: {exc.message}",
            )
    try:
        inventory.network(session, dc, network)
        evidence.append(f"network {network!r} found")
    except (errors.NotFound, errors.Conflict) as exc:
        problem("M6", "machineset.network_name", "exists", f"network {network!r}: {exc.message}")

    facts: TemplateFacts | None = None
    try:
        obj = _find(session, workspace.datacenter, dc, vim.VirtualMachine, "vm", template)
        props = inventory.properties(
            session,
            obj,
            [
                "name",
                "config.template",
                "runtime.powerState",
                "config.guestId",
                "config.guestFullName",
            ],
        )
        facts = TemplateFacts(
            path=template,
            name=str(props.get("name")),
            is_template=bool(props.get("config.template")),
            power_state=str(props.get("runtime.powerState") or "unknown"),
            attributes=vms.custom_attributes(session, obj),
            guest_id=str(props.get("config.guestId") or ""),
            guest_full_name=str(props.get("config.guestFullName") or ""),
        )
        evidence.append(
            f"template {facts.name}: template={facts.is_template}, {facts.power_state}, guest "
            f"{facts.guest_id or '?'}"
        )
        if not facts.is_windows:
            problem(
                "M7",
                "machineset.template",
                "is-windows",
                f"{template!r} is not a Windows template (guestId {facts.guest_id or 'unset'}, "
                f"{facts.guest_full_name or 'no guest name'}); Windows Machines need the Windows "
                "golden image (G1-G10), not the cluster's RHCOS template",
            )
        build = facts.attributes.get(PROVENANCE_ATTRIBUTE)
        if build:
            evidence.append(f"provenance: winnodes build {build}")
        elif require_provenance:
            problem(
                "M7",
                "machineset.template",
                "provenance",
                f"{template!r} has no winnodes provenance ({PROVENANCE_ATTRIBUTE}): it was not "
                "built by the golden image flow (machineset.require_provenance is set)",
            )
        else:
            evidence.append(
                f"WARNING: {template!r} has no winnodes provenance ({PROVENANCE_ATTRIBUTE}); it "
                "was built elsewhere (set machineset.require_provenance to refuse such templates)"
            )
        if not facts.is_template:
            problem(
                "M7",
                "machineset.template",
                "is-template",
                f"{template!r} is a virtual machine, not a template; convert the sysprepped, "
                "powered-off clone to a template (G10)",
            )
        if facts.power_state not in ("poweredOff", "unknown"):
            problem(
                "M7",
                "machineset.template",
                "powered-off",
                f"{template!r} is {facts.power_state}; the template must stay powered off",
            )
        if base_vm and facts.name == base_vm.rstrip("/").rsplit("/", 1)[-1]:
            problem(
                "M7",
                "machineset.template",
                "not-base-vm",
                f"{template!r} is the un-sysprepped base VM; use the template built from its clone",
            )
    except (errors.NotFound, errors.Conflict) as exc:
        problem(
            "M7",
            "machineset.template",
            "exists",
            f"template {template!r} not found in datacenter {workspace.datacenter}: {exc.message}",
        )
    return PlacementReport(problems, facts, evidence)
