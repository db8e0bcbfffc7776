"""The parent flow: golden image -> cluster preparation -> MachineSet -> Ready Windows nodes.

This is what users start first (the `end-to-end` deployment, `winnodes run`). Each part is a subflow,
so the Prefect UI shows them as separate runs with their own step reports, and `only` runs one part
alone (the scheduled `golden-image-rebuild` and the on-demand `machineset` and `rotate`
deployments use it). With `rotation.rollout`, a successful golden image build is followed by the
rolling rotation of the Windows Machines onto the new template (flows/rotate.py).

Parameters are the typed `PipelineConfig` (Prefect renders it as a form) and `only`; the
configuration names blocks, never secrets. The flow loads those blocks first, to register their
secret values with the log redaction filter before anything can log them.

Results are persisted to the `winnodes-results` storage block (`deployments/register.py` creates
it), so the UI's Retry on a failed run resumes it: finished tasks are read back, not re-run.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from blocks.dns import DnsUpdateCredentials
from blocks.openshift import OpenShiftCredentials
from blocks.vsphere import VSphereCredentials
from blocks.windows import WindowsAccess
from flows import redaction
from flows.cluster_prep import cluster_prep
from flows.golden_image import golden_image
from flows.machineset import machineset as machineset_flow
from flows.rotate import rotate as rotate_flow
from winnodes.model.config import PipelineConfig

Part = Literal["all", "golden-image", "cluster-prep", "machineset", "rotate"]
Build = Literal["new", "resume", "latest"]
RESULT_STORAGE = "local-file-system/winnodes-results"


class WindowsNodesResult(BaseModel):
    """What the run produced (also the summary artifact and what `winnodes run` prints)."""

    only: str
    template: str | None = Field(default=None, description="Template path of the build (G10).")
    template_action: str | None = Field(
        default=None, description="'built' (this run made it) or 'reused' (it existed)."
    )
    build_id: str | None = Field(default=None, description="The golden image's build ID.")
    machineset: str | None = Field(default=None, description="namespace/name of the MachineSet.")
    machineset_template: str | None = Field(default=None, description="Its template (M7).")
    replicas: int | None = Field(default=None, description="Replicas of the MachineSet.")
    ready: str | None = Field(default=None, description="V1: what was seen Ready.")
    rotation: str | None = Field(default=None, description="ROT1-ROT4: Machines replaced.")


def _protect_secrets(config: PipelineConfig) -> None:
    """Load every block the configuration names and register its secrets for redaction."""

    gi, cl = config.golden_image, config.cluster
    for cls, name in (
        (VSphereCredentials, gi.vsphere_credentials_block),
        (WindowsAccess, gi.windows_access_block),
        (OpenShiftCredentials, cl.openshift_block),
        (DnsUpdateCredentials, cl.dns.dns_update_block),
    ):
        if not name:
            continue
        # A missing or invalid block is reported, with its step, by the subflow that needs it.
        with contextlib.suppress(Exception):
            redaction.protect_blocks((cls, name))


def _summary_markdown(result: WindowsNodesResult) -> str:
    rows = [
        ("Part run", result.only),
        (f"Template {result.template_action or ''}".strip(), result.template or "-"),
        ("Build", result.build_id or "-"),
        ("MachineSet", result.machineset or "-"),
        ("MachineSet template (M7)", result.machineset_template or "-"),
        ("Replicas", "-" if result.replicas is None else str(result.replicas)),
        ("Ready (V1)", result.ready or "-"),
        ("Rotation (ROT1-ROT4)", result.rotation or "-"),
    ]
    lines = ["# Windows nodes", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


@flow(
    name="windows-nodes",
    log_prints=True,
    persist_result=True,
    result_storage=RESULT_STORAGE,
)
def windows_nodes(
    config: PipelineConfig, only: Part = "all", build: Build | None = None
) -> dict[str, Any]:
    """Build the golden image, prepare the cluster, apply the Windows MachineSet and wait until its
    nodes are Ready; or one of these parts alone.

    Args:
        config: the whole pipeline's configuration; secrets are in the blocks it names.
        only: "all", or the one part to run: "golden-image", "cluster-prep", "machineset",
            "rotate" (move the Machines onto machineset.template or the series' newest template).
        build: which golden image build to work on: "new" (a new build and template), "resume"
            (continue the unfinished build vCenter holds) or "latest" (reuse the newest template,
            build only if there is none). Default: "new" for only="golden-image" (the
            golden-image-rebuild deployment and its schedule), "latest" otherwise. A retry of
            this same flow run always continues the build it started.

    Returns:
        `WindowsNodesResult` as a dict (the worker loads this file as a top-level module, so a
        pickled class of it could not be read back elsewhere): template, MachineSet, Ready nodes.

    Raises:
        The failing subflow's error (ValidationError, PermanentError or TransientError subclasses
        with the step ID in the message); the subflows' reports say which step failed.
    """
    redaction.install()
    _protect_secrets(config)
    gi = config.golden_image
    result = WindowsNodesResult(only=only)
    template = config.machineset.template
    built = None
    if only in ("all", "golden-image"):
        mode = build or ("new" if only == "golden-image" else "latest")
        built = golden_image(config=gi, build=mode, openshift_block=config.cluster.openshift_block)
        result.template = built.template_path
        result.template_action = built.action
        result.build_id = built.build_id
        template = template or built.template
    if only in ("all", "cluster-prep"):
        cluster_prep(
            cluster=config.cluster,
            windows_access_block=gi.windows_access_block,
            dns_wait_seconds=config.waits.dns_seconds,
        )
    if only in ("all", "machineset"):
        applied = machineset_flow(
            cluster=config.cluster,
            machineset=config.machineset,
            waits=config.waits,
            vsphere_credentials_block=gi.vsphere_credentials_block,
            windows_access_block=gi.windows_access_block,
            template=template,
            base_vm=gi.names.base_vm,
        )
        result.machineset = f"openshift-machine-api/{applied.name}"
        result.machineset_template = applied.template
        result.replicas = applied.replicas
        result.ready = applied.ready
    if only == "rotate" or (built is not None and config.rotation.rollout):
        rotated = rotate_flow(config=config, template=built.template if built else None)
        result.rotation = (
            f"{len(rotated.replaced)} machine(s) replaced, all on {rotated.template}; "
            f"{rotated.retention}"
        )
        result.ready = rotated.ready or result.ready
    create_markdown_artifact(
        markdown=_summary_markdown(result),
        key="windows-nodes-summary",
        description="Windows nodes: template, MachineSet, Ready nodes",
    )
    return result.model_dump()
