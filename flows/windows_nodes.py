"""The parent flow: golden image -> cluster preparation -> MachineSet -> Ready Windows nodes.

This is what users start first (the `end-to-end` deployment, `winnodes run`). Each part is a subflow,
so the Prefect UI shows them as separate runs with their own step reports, and `only` runs one part
alone (the scheduled `golden-image-rebuild` and the on-demand `machineset` deployments use it).

Parameters are the typed `PipelineConfig` (Prefect renders it as a form) and `only`; the
configuration names blocks, never secrets. The flow loads those blocks first, to register their
secret values with the log redaction filter before anything can log them.

Results are persisted to the `winnodes-results` storage block (`deployments/register.py` creates
it), so the UI's Retry on a failed run resumes it: finished tasks are read back, not re-run.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from flows import redaction
from winnodes.model.config import PipelineConfig

Part = Literal["all", "golden-image", "cluster-prep", "machineset"]
RESULT_STORAGE = "local-file-system/winnodes-results"


class WindowsNodesResult(BaseModel):
    """What the run produced (also the summary artifact and what `winnodes run` prints)."""

    only: str
    template: str | None = Field(default=None, description="Template path (M7).")
    machineset: str | None = Field(default=None, description="namespace/name of the MachineSet.")
    ready_nodes: list[str] | None = Field(default=None, description="Ready Windows nodes.")


def _protect_secrets(config: PipelineConfig) -> None:
    """Load every block the configuration names and register its secrets for redaction."""
    from blocks.dns import DnsUpdateCredentials
    from blocks.openshift import OpenShiftCredentials
    from blocks.vsphere import VSphereCredentials
    from blocks.windows import WindowsAccess

    gi, cl = config.golden_image, config.cluster
    for cls, name in (
        (VSphereCredentials, gi.vsphere_credentials_block),
        (WindowsAccess, gi.windows_access_block),
        (OpenShiftCredentials, cl.openshift_block),
        (DnsUpdateCredentials, cl.dns.dns_update_block),
    ):
        if not name:
            continue
        try:
            redaction.protect_blocks((cls, name))
        except (
            Exception
        ):  # missing/invalid block: the subflow that needs it reports it with its step
            continue


def _call(child: Any, config: PipelineConfig, **extra: Any) -> Any:
    """Call a child flow with the parts of the configuration it declares (config, golden_image,
    cluster, machineset, waits) and whichever of `extra` it accepts."""
    accepted = inspect.signature(child.fn).parameters
    available: dict[str, Any] = {
        "config": config,
        "golden_image": config.golden_image,
        "cluster": config.cluster,
        "machineset": config.machineset,
        "waits": config.waits,
        **extra,
    }
    kwargs = {k: v for k, v in available.items() if k in accepted and v is not None}
    return child(**kwargs)


def _get(result: Any, *names: str) -> Any:
    for name in names:
        value = result.get(name) if isinstance(result, dict) else getattr(result, name, None)
        if value is not None:
            return value
    return None


def _summary_markdown(result: WindowsNodesResult) -> str:
    nodes = result.ready_nodes
    rows = [
        ("Part run", result.only),
        ("Template", result.template or "-"),
        ("MachineSet", result.machineset or "-"),
        ("Ready Windows nodes", "-" if nodes is None else f"{len(nodes)}: {', '.join(nodes)}"),
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
def windows_nodes(config: PipelineConfig, only: Part = "all") -> WindowsNodesResult:
    """Build the golden image, prepare the cluster, apply the Windows MachineSet and wait until its
    nodes are Ready; or one of these parts alone.

    Args:
        config: the whole pipeline's configuration; secrets are in the blocks it names.
        only: "all", or the one part to run: "golden-image", "cluster-prep", "machineset".

    Returns:
        The template, the MachineSet and the Ready Windows nodes (what was run).

    Raises:
        The failing subflow's error (ValidationError, PermanentError or TransientError subclasses
        with the step ID in the message); the subflows' reports say which step failed.
    """
    redaction.install()
    _protect_secrets(config)
    result = WindowsNodesResult(only=only)
    template = config.machineset.template
    fingerprint = None
    if only in ("all", "golden-image"):
        from flows.golden_image import golden_image

        built = golden_image(config=config.golden_image)
        result.template = built.template_path
        template = template or _relative_template(config, built.template_path)
        fingerprint = built.ssh_fingerprint
    if only in ("all", "cluster-prep"):
        from flows.cluster_prep import cluster_prep

        _call(cluster_prep, config)
    if only in ("all", "machineset"):
        from flows.machineset import machineset as machineset_flow

        applied = _call(
            machineset_flow, config, template=template, expected_fingerprint=fingerprint
        )
        ns = _get(applied, "namespace") or "openshift-machine-api"
        name = _get(applied, "name", "machineset") or config.machineset.name
        result.machineset = f"{ns}/{name}"
        result.template = result.template or _get(applied, "template")
        nodes = _get(applied, "ready_nodes", "nodes")
        result.ready_nodes = list(nodes) if nodes is not None else None
    create_markdown_artifact(
        markdown=_summary_markdown(result),
        key="windows-nodes-summary",
        description="Windows nodes: template, MachineSet, Ready nodes",
    )
    return result


def _relative_template(config: PipelineConfig, path: str) -> str:
    """A template inventory path as a MachineSet names it (M7): relative to `/<dc>/vm/`."""
    prefix = f"/{config.golden_image.placement.datacenter}/vm/"
    return path[len(prefix) :] if path.startswith(prefix) else path
