"""One command registers everything a site needs in Prefect: blocks, storage, work pool, the vCenter
clone concurrency limit, the deployments of `deployments/prefect.yaml` and the automations.

    python -m deployments.register --blocks BLOCKS.yaml --config PIPELINE.yaml [--results-dir DIR]

BLOCKS.yaml names each block, its type and its fields; a secret field is never written in the file
but taken from the environment or from a file on this machine, so the file can be kept in git:

    vsphere-credentials:
      type: vsphere                 # vsphere | windows | openshift | dns | secret
      server: vcenter.example.com
      username: administrator@vsphere.local
      password: {env: VSPHERE_PASSWORD}
      ca_bundle: {file: /etc/pki/vcenter-ca.pem}

PIPELINE.yaml (see examples/pipeline.example.yaml) is validated and becomes the deployments' default
parameters (it only names blocks). Prefect's address comes from PREFECT_API_URL as for any Prefect
command. Re-running the command converges (blocks are overwritten, the rest is upserted).

It also registers two automations (`automations()`, upserted by name):
- zombie runs: a flow run whose heartbeats stop (its worker host died, the process was killed) is
  marked Crashed after `--heartbeat-window` seconds; workers must send heartbeats more often than
  that (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, Prefect's default is 180 s, minimum 30 s). Without it a
  killed run stays "Running" forever and its deployment's concurrency slot stays taken.
- failure notification: a run of a scheduled deployment (`golden-image-rebuild`, `rotate`) that
  ends Failed or Crashed sends a message through the notification block named by `--notify-block`
  (a `webhook` block in BLOCKS.yaml: Prefect's Custom Webhook, e.g. a Slack or Teams incoming
  webhook URL given as `{env: NAME}`); skipped, with a note, when that block does not exist.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from winnodes.errors import ConfigError
from winnodes.model.config import PipelineConfig, load_config

PROJECT_DIR = Path(__file__).resolve().parents[1]
PREFECT_FILE = PROJECT_DIR / "deployments" / "prefect.yaml"
WORK_POOL = "winnodes"
RESULTS_BLOCK = "winnodes-results"  # a LocalFileSystem block: flows.windows_nodes.RESULT_STORAGE
CLONE_LIMIT = "vcenter-clone"  # global concurrency limit used around vCenter clone operations
DEFAULT_CLONE_SLOTS = 2

# Block types by the short name used in BLOCKS.yaml: "module:Class", imported only when used.
BLOCK_TYPES = {
    "vsphere": "blocks.vsphere:VSphereCredentials",
    "windows": "blocks.windows:WindowsAccess",
    "openshift": "blocks.openshift:OpenShiftCredentials",
    "dns": "blocks.dns:DnsUpdateCredentials",
    "secret": "prefect.blocks.system:Secret",
    "webhook": "prefect.blocks.notifications:CustomWebhookNotificationBlock",
}
ZOMBIE_AUTOMATION = "winnodes: crash flow runs whose heartbeats stopped"
NOTIFY_AUTOMATION = "winnodes: notify when a scheduled rebuild or rotation fails"
NOTIFY_BLOCK = "winnodes-notify"  # default name of the notification (webhook) block
NOTIFY_DEPLOYMENTS = ("golden-image-rebuild", "rotate")
DEFAULT_HEARTBEAT_WINDOW = 600  # seconds without a heartbeat before a run is marked Crashed
NOTIFY_BODY = (
    "Flow run {{ flow_run.name }} of deployment {{ deployment.name }} ended "
    "{{ flow_run.state.name }}: {{ flow_run.state.message }}\n{{ flow_run|ui_url }}"
)


def block_class(kind: str) -> type[Any]:
    try:
        target = BLOCK_TYPES[kind]
    except KeyError:
        raise ConfigError(
            f"unknown block type {kind!r}; use one of {', '.join(sorted(BLOCK_TYPES))}"
        ) from None
    module, _, name = target.partition(":")
    mod = importlib.import_module(module)
    if not hasattr(mod, name):  # the class may be named differently: take the module's only Block
        from prefect.blocks.core import Block

        found = [
            v
            for v in vars(mod).values()
            if isinstance(v, type) and issubclass(v, Block) and v.__module__ == mod.__name__
        ]
        if len(found) != 1:
            raise ConfigError(f"{module} has no block class {name}")
        return found[0]
    cls: type[Any] = getattr(mod, name)
    return cls


def resolve_value(value: Any, where: str, env: Mapping[str, str]) -> Any:
    """`{env: NAME}` -> the environment variable, `{file: PATH}` -> the file's text; else as is."""
    if isinstance(value, dict) and set(value) == {"env"}:
        name = str(value["env"])
        if name not in env:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return env[name]
    if isinstance(value, dict) and set(value) == {"file"}:
        path = Path(str(value["file"])).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from exc
    if isinstance(value, dict):
        return {k: resolve_value(v, f"{where}.{k}", env) for k, v in value.items()}
    return value


def build_blocks(spec: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Block instances by name from a BLOCKS.yaml mapping (validated, not yet saved)."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    for name, fields in spec.items():
        if not isinstance(fields, dict) or "type" not in fields:
            raise ConfigError(f"block {name!r}: a mapping with a 'type' is required")
        values = {k: resolve_value(v, f"{name}.{k}", env) for k, v in fields.items() if k != "type"}
        cls = block_class(str(fields["type"]))
        try:
            out[str(name)] = cls(**values)
        except (
            ValueError
        ) as exc:  # pydantic's error never contains the input (hide_input_in_errors)
            raise ConfigError(f"block {name!r} ({fields['type']}): {exc}") from None
    return out


def save_blocks(blocks: Mapping[str, Any]) -> None:
    for name, block in blocks.items():
        block.save(name, overwrite=True)


def ensure_infrastructure(results_dir: Path, clone_slots: int = DEFAULT_CLONE_SLOTS) -> None:
    """The results storage block, the process work pool and the clone concurrency limit."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
        WorkPoolCreate,
    )
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.filesystems import LocalFileSystem

    results_dir.mkdir(parents=True, exist_ok=True)
    LocalFileSystem(basepath=str(results_dir)).save(RESULTS_BLOCK, overwrite=True)
    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
        try:
            client.read_global_concurrency_limit_by_name(CLONE_LIMIT)
            client.update_global_concurrency_limit(
                CLONE_LIMIT, GlobalConcurrencyLimitUpdate(limit=clone_slots)
            )
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=CLONE_LIMIT, limit=clone_slots)
            )


def automations(heartbeat_window: int, notify_block_id: Any | None) -> list[Any]:
    """The automations the site needs (see the module docstring), as Prefect objects.

    The zombie-run automation is the one Prefect documents for flow run heartbeats: after a
    heartbeat, expect another heartbeat or a final state within the window, per flow run
    (Proactive: it fires on the absence of events)."""
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    final = ("Completed", "Failed", "Cancelled", "Crashed")
    zombie = AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="A flow run with no heartbeat and no final state for "
        f"{heartbeat_window}s is marked Crashed (its worker or process died).",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in final)},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=heartbeat_window),
        ),
        actions=[
            ChangeFlowRunState(
                name="Crashed",
                state=StateType.CRASHED,
                message=f"Flow run marked as crashed: no heartbeat for {heartbeat_window}s.",
                force=False,
            )
        ],
    )
    out = [zombie]
    if notify_block_id is not None:
        out.append(
            AutomationCore(
                name=NOTIFY_AUTOMATION,
                description="A run of " + ", ".join(NOTIFY_DEPLOYMENTS) + " ended Failed/Crashed.",
                trigger=EventTrigger(
                    match={"prefect.resource.id": "prefect.flow-run.*"},
                    match_related={
                        "prefect.resource.role": "deployment",
                        "prefect.resource.name": list(NOTIFY_DEPLOYMENTS),
                    },
                    expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                    posture=Posture.Reactive,
                    threshold=1,
                    within=timedelta(0),
                ),
                actions=[
                    SendNotification(
                        block_document_id=notify_block_id,
                        subject="winnodes: {{ deployment.name }} {{ flow_run.state.name }}",
                        body=NOTIFY_BODY,
                    )
                ],
            )
        )
    return out


def ensure_automations(
    heartbeat_window: int = DEFAULT_HEARTBEAT_WINDOW, notify_block: str | None = NOTIFY_BLOCK
) -> list[str]:
    """Create or update the automations by name (extra copies of the same name are removed, so a
    re-run converges). Returns their names."""
    from prefect.client.orchestration import get_client

    notify_id = None
    with get_client(sync_client=True) as client:
        if notify_block:
            docs = client.read_block_documents(include_secrets=False)
            found = [
                d.id
                for d in docs
                if d.name == notify_block
                and d.block_schema is not None
                and "notify" in d.block_schema.capabilities
            ]
            notify_id = found[0] if found else None
    if notify_block and notify_id is None:
        print(
            f"note: no notification block {notify_block!r}; failure notifications are off "
            "(add a `webhook` block of that name to BLOCKS.yaml)"
        )
    wanted = automations(heartbeat_window, notify_id)
    with get_client(sync_client=True) as client:
        for automation in wanted:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                for extra in existing[1:]:
                    client.delete_automation(extra.id)
            else:
                client.create_automation(automation)
        if notify_id is None:  # no block (any more): no notification automation either
            for stale in client.read_automations_by_name(NOTIFY_AUTOMATION):
                client.delete_automation(stale.id)
    return [a.name for a in wanted]


def deployment_parameters(prefect_file: Path = PREFECT_FILE) -> dict[str, dict[str, Any]]:
    """Each deployment's own parameters in prefect.yaml, by 'flow/deployment' name."""
    data = yaml.safe_load(prefect_file.read_text())
    return {
        f"windows-nodes/{d['name']}": dict(d.get("parameters") or {}) for d in data["deployments"]
    }


def deploy(config: PipelineConfig, prefect_file: Path = PREFECT_FILE) -> list[str]:
    """`prefect deploy --all` from the project directory, then the configuration as each
    deployment's default parameters. Returns the 'flow/deployment' names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, WINNODES_PROJECT_DIR=str(PROJECT_DIR))
    if api := PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = api
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        str(prefect_file),
    ]
    proc = subprocess.run(cmd, cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(
            f"`prefect deploy --all` failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
            f"{proc.stderr[-3000:]}"
        )
    names = []
    with get_client(sync_client=True) as client:
        for name, params in deployment_parameters(prefect_file).items():
            dep = client.read_deployment_by_name(name)
            merged = {**params, "config": config.model_dump(mode="json")}
            client.update_deployment(dep.id, DeploymentUpdate(parameters=merged))
            names.append(name)
    return names


def register(
    *,
    blocks_file: Path | None,
    config_file: Path,
    results_dir: Path,
    clone_slots: int = DEFAULT_CLONE_SLOTS,
    heartbeat_window: int = DEFAULT_HEARTBEAT_WINDOW,
    notify_block: str | None = NOTIFY_BLOCK,
) -> list[str]:
    """Everything, in the order that fails early: parse and validate, then save and deploy."""
    from winnodes.validate import validate_all

    config = load_config(config_file)
    validate_all(config)
    blocks: dict[str, Any] = {}
    if blocks_file is not None:
        spec = yaml.safe_load(blocks_file.read_text()) or {}
        if not isinstance(spec, dict):
            raise ConfigError(f"{blocks_file}: a mapping of block name -> fields is required")
        blocks = build_blocks(spec)
    save_blocks(blocks)
    ensure_infrastructure(results_dir, clone_slots)
    names = deploy(config)
    ensure_automations(heartbeat_window, notify_block)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.register", description=__doc__)
    parser.add_argument("--blocks", type=Path, help="BLOCKS.yaml (omit to keep existing blocks)")
    parser.add_argument("--config", type=Path, required=True, help="PIPELINE.yaml")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path(os.environ.get("WINNODES_RESULTS_DIR", "~/.winnodes/results")).expanduser(),
        help="where persisted results go (the worker's disk); default $WINNODES_RESULTS_DIR",
    )
    parser.add_argument("--clone-slots", type=int, default=DEFAULT_CLONE_SLOTS)
    parser.add_argument(
        "--heartbeat-window",
        type=int,
        default=DEFAULT_HEARTBEAT_WINDOW,
        help="seconds without a flow run heartbeat before the run is marked Crashed; longer than "
        "the workers' PREFECT_FLOWS_HEARTBEAT_FREQUENCY (default %(default)s)",
    )
    parser.add_argument(
        "--notify-block",
        default=NOTIFY_BLOCK,
        help="notification block for failed scheduled rebuilds/rotations (default %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        names = register(
            blocks_file=args.blocks,
            config_file=args.config,
            results_dir=args.results_dir,
            clone_slots=args.clone_slots,
            heartbeat_window=args.heartbeat_window,
            notify_block=args.notify_block or None,
        )
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print("registered deployments: " + ", ".join(names))
    print(f"start a worker with: prefect worker start --pool {WORK_POOL}")
    print(
        f"workers send flow run heartbeats: PREFECT_FLOWS_HEARTBEAT_FREQUENCY < "
        f"{args.heartbeat_window}s (runs silent that long are marked Crashed)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
