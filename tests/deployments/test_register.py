"""`python -m deployments.register`: blocks from a file + environment, then the work pool, the clone
concurrency limit, the result storage and the deployments of prefect.yaml in a Prefect server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments import register
from winnodes.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pipeline.example.yaml"


def test_values_come_from_environment_and_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    spec = {
        "vc": {
            "type": "vsphere",
            "server": "vc.example.com",
            "username": "admin",
            "password": {"env": "VC_PW"},
            "ca_bundle": {"file": str(ca)},
        }
    }
    blocks = register.build_blocks(spec, env={"VC_PW": "Secret-Pw-123"})
    vc = blocks["vc"]
    assert vc.password.get_secret_value() == "Secret-Pw-123"
    assert vc.ca_bundle == "PEM"


def test_missing_environment_variable_is_named() -> None:
    spec = {"s": {"type": "secret", "value": {"env": "NOPE_NOT_SET"}}}
    with pytest.raises(ConfigError, match="NOPE_NOT_SET"):
        register.build_blocks(spec, env={})


def test_invalid_block_error_never_shows_the_secret() -> None:
    spec = {"vc": {"type": "vsphere", "server": "", "username": "u", "password": "Hidden-Pw-987"}}
    with pytest.raises(ConfigError) as info:
        register.build_blocks(spec, env={})
    assert "Hidden-Pw-987" not in str(info.value)


def test_unknown_block_type() -> None:
    with pytest.raises(ConfigError, match="unknown block type"):
        register.build_blocks({"x": {"type": "nope"}}, env={})


def test_prefect_yaml_shares_definitions_and_declares_the_schedule() -> None:
    text = register.PREFECT_FILE.read_text()
    data = yaml.safe_load(text)
    assert "definitions" in data and "&winnodes_pool" in text
    by_name = {d["name"]: d for d in data["deployments"]}
    assert set(by_name) == {
        "end-to-end",
        "golden-image-rebuild",
        "machineset",
        "rotate",
        "golden-image",
    }
    assert by_name["rotate"]["parameters"] == {"only": "rotate"}
    assert "concurrency_limit" not in by_name["golden-image"]  # series build in parallel
    (schedule,) = by_name["golden-image-rebuild"]["schedules"]
    assert schedule["cron"] and schedule["timezone"]
    assert by_name["golden-image-rebuild"]["concurrency_limit"]["limit"] == 1
    assert {d["work_pool"]["name"] for d in by_name.values()} == {register.WORK_POOL}


@pytest.mark.usefixtures("prefect_api")
def test_register_creates_blocks_pool_limit_and_deployments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client

    name = f"reg-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("REG_TEST_SECRET", "Value-Of-The-Secret")
    blocks_file = tmp_path / "blocks.yaml"
    blocks_file.write_text(
        yaml.safe_dump({name: {"type": "secret", "value": {"env": "REG_TEST_SECRET"}}})
    )

    names = register.register(
        blocks_file=blocks_file, config_file=EXAMPLE, results_dir=tmp_path / "results"
    )
    assert sorted(names) == [
        "windows-nodes/end-to-end",
        "windows-nodes/golden-image",
        "windows-nodes/golden-image-rebuild",
        "windows-nodes/machineset",
        "windows-nodes/rotate",
    ]
    secret: Any = Secret.load(name)
    assert secret.get() == "Value-Of-The-Secret"
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(register.WORK_POOL)
        assert pool.type == "process"
        limit = client.read_global_concurrency_limit_by_name(register.CLONE_LIMIT)
        assert limit.limit == register.DEFAULT_CLONE_SLOTS
        rebuild = client.read_deployment_by_name("windows-nodes/golden-image-rebuild")
        assert rebuild.parameters["only"] == "golden-image"
        assert rebuild.parameters["config"]["cluster"]["name"] == "ocp"
        assert rebuild.work_pool_name == register.WORK_POOL
        (sched,) = rebuild.schedules
        assert sched.schedule.cron == "0 2 * * 0"  # type: ignore[union-attr]
        assert sched.schedule.timezone == "Europe/Berlin"  # type: ignore[union-attr]
        assert rebuild.global_concurrency_limit is not None
        assert rebuild.global_concurrency_limit.limit == 1
        schema = rebuild.parameter_openapi_schema
        assert schema is not None
        assert "config" in schema["properties"] and "only" in schema["properties"]
        e2e = client.read_deployment_by_name("windows-nodes/end-to-end")
        assert e2e.parameters["only"] == "all" and not e2e.schedules
    # registering again converges: no error, same deployments
    assert sorted(
        register.register(blocks_file=None, config_file=EXAMPLE, results_dir=tmp_path)
    ) == sorted(names)


def test_blocks_example_matches_the_pipeline_example() -> None:
    """The two example files a site starts from agree: every block the pipeline names is described,
    with a known type, and no secret value is written in the blocks file."""
    blocks = yaml.safe_load((ROOT / "examples" / "blocks.example.yaml").read_text())
    pipeline = yaml.safe_load(EXAMPLE.read_text())
    named: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k.endswith("_block") and isinstance(v, str):
                    named.add(v)
                walk(v)

    walk(pipeline)
    assert named and named <= set(blocks)
    for name, spec in blocks.items():
        register.block_class(spec["type"])  # known type
        for field in ("password", "secret", "administrator_password", "ssh_private_key", "token"):
            if field in spec:
                assert isinstance(spec[field], dict), f"{name}.{field} must come from env or file"


def test_zombie_automation_is_prefects_heartbeat_automation() -> None:
    (zombie,) = register.automations(45, None)
    trigger: Any = zombie.trigger
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.expect == {
        "prefect.flow-run.heartbeat",
        "prefect.flow-run.Completed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed",
    }
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.posture == "Proactive" and trigger.within.total_seconds() == 45
    (action,) = zombie.actions
    assert action.type == "change-flow-run-state" and action.state == "CRASHED"


def test_failure_notification_covers_the_scheduled_deployments() -> None:
    block_id = uuid.uuid4()
    _, notify = register.automations(600, block_id)
    trigger: Any = notify.trigger
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    related = trigger.match_related
    assert related.root["prefect.resource.role"] == "deployment"
    assert set(related.root["prefect.resource.name"]) == {"golden-image-rebuild", "rotate"}
    (action,) = notify.actions
    assert action.type == "send-notification" and action.block_document_id == block_id


@pytest.mark.usefixtures("prefect_api")
def test_automations_converge_and_notification_needs_its_block(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    block = f"notify-{uuid.uuid4().hex[:6]}"
    assert register.ensure_automations(120, block) == [register.ZOMBIE_AUTOMATION]
    assert f"no notification block {block!r}" in capsys.readouterr().out
    webhook: Any = CustomWebhookNotificationBlock.model_validate(
        {"name": "t", "url": "http://127.0.0.1:9/hook", "json_data": {"text": "{{body}}"}}
    )
    webhook.save(block, overwrite=True)
    register.ensure_automations(90, block)
    register.ensure_automations(60, block)  # a re-run updates in place
    with get_client(sync_client=True) as client:
        (zombie,) = client.read_automations_by_name(register.ZOMBIE_AUTOMATION)
        (notify,) = client.read_automations_by_name(register.NOTIFY_AUTOMATION)
    assert zombie.trigger.within.total_seconds() == 60  # type: ignore[union-attr]
    assert notify.actions[0].type == "send-notification"
