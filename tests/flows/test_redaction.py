"""The redaction filter: unit behaviour on log records, and end to end through a Prefect server
(a secret logged by a task, in its message, its arguments or a traceback, never reaches the API)."""

from __future__ import annotations

import logging
import uuid

import pytest
from prefect import flow, get_run_logger, task
from prefect.blocks.system import Secret
from pydantic import BaseModel, SecretStr

from flows import redaction


class _Creds(BaseModel):
    user: str
    password: SecretStr
    nested: dict[str, SecretStr]


def test_secret_values_walks_models_and_mappings() -> None:
    creds = _Creds(
        user="admin", password=SecretStr("pw-1234"), nested={"k": SecretStr("tsig-5678")}
    )
    assert sorted(redaction.secret_values(creds)) == ["pw-1234", "tsig-5678"]


def test_filter_redacts_message_args_and_traceback() -> None:
    r = redaction.SecretRedactor()
    r.add("S3cret-value", "abc")  # shorter than 4 characters: ignored, it would shred text
    try:
        raise RuntimeError("login failed for S3cret-value")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "pw=%s and abc", ("S3cret-value",), sys.exc_info()
        )
    assert r.filter(record)
    assert record.getMessage() == "pw=*** and abc"
    assert record.exc_text and "S3cret-value" not in record.exc_text and "***" in record.exc_text


def test_filter_catches_escaped_and_multiline_forms() -> None:
    r = redaction.SecretRedactor()
    pem = "-----BEGIN KEY-----\nAAAAlineone\nBBBBlinetwo\n-----END KEY-----"
    r.add("a<b&c'd", pem)
    out = r.redact("xml a&lt;b&amp;c'd ps a<b&c''d line BBBBlinetwo")
    assert "BBBBlinetwo" not in out and "a&lt;b" not in out and "c''d" not in out


@pytest.mark.usefixtures("prefect_api")
def test_secret_logged_by_a_task_never_reaches_the_api() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    secret = f"Pw-{uuid.uuid4().hex}"
    name = f"redaction-{uuid.uuid4().hex[:8]}"
    Secret(value=SecretStr(secret)).save(name)

    @task
    def leaky() -> None:
        logger = get_run_logger()
        logger.info("the password is %s", secret)
        logger.warning(f"inline {secret}")
        try:
            raise ValueError(f"bad credentials {secret}")
        except ValueError:
            logger.exception("failed")
        print(f"printed {secret}")

    @flow(log_prints=True)
    def uses_a_secret() -> str:
        redaction.protect_blocks((Secret, name))
        get_run_logger().info("flow sees %s", secret)
        leaky()
        from prefect.runtime import flow_run

        return str(flow_run.id)

    try:
        run_id = uses_a_secret()
    finally:
        redaction.REDACTOR.clear()
    for handler in logging.getLogger("prefect.flow_runs").handlers:
        handler.flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)]))
        )
    text = "\n".join(log.message for log in logs)
    assert "the password is ***" in text and "bad credentials ***" in text
    assert "printed ***" in text
    assert secret not in text
