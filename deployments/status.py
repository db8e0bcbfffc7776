"""What `winnodes status CONFIG` reads: the series' templates in vCenter, the Windows MachineSet,
its Machines and Nodes, and every template reference in openshift-machine-api. Read only.

The CLI is the application's top, so this module may load the Prefect blocks the configuration names
(it needs PREFECT_API_URL, like `winnodes run`); the text is rendered by the pure
`winnodes.plan.status`.
"""

from __future__ import annotations

from typing import Any

from blocks.openshift import OpenShiftCredentials
from blocks.vsphere import VSphereCredentials
from winnodes.cluster.rotation import all_machine_templates, read_state
from winnodes.model.config import PipelineConfig
from winnodes.plan.retention import TemplateRef
from winnodes.plan.status import StatusInput, status_text
from winnodes.vsphere import inventory, vms


def gather(config: PipelineConfig) -> StatusInput:
    gi = config.golden_image
    vc: Any = VSphereCredentials.load(gi.vsphere_credentials_block)
    with vc.connect() as session:
        folder = inventory.find_by_path(session, gi.placement.folder)
        series = vms.list_templates(session, folder, gi.names.template_series)
    templates = [
        TemplateRef(t.name, t.build_id, t.created.isoformat() if t.created else "") for t in series
    ]
    ocp: Any = OpenShiftCredentials.load(config.cluster.openshift_block)
    with ocp.get_client() as api:
        state = read_state(api, config.machineset.name, step_id="V1")
        users = all_machine_templates(api, step_id="V1")
    return StatusInput(gi.names.template_series, templates, state, users)


def status(config: PipelineConfig) -> str:
    return status_text(gather(config))
