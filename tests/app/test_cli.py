"""`winnodes validate` and `plan`: pure, no servers; exit codes and what they print."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import yaml

from app import cli
from winnodes.model.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline.example.yaml"


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(list(argv), out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def _bad_config(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["machineset"]["name"] = "much-too-long-name"
    data["golden_image"]["hardware"]["hardware_version"] = "vmx-13"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_validate_accepts_the_example() -> None:
    rc, out, err = _run("validate", str(EXAMPLE))
    assert (rc, err) == (0, "")
    assert "valid" in out and "winworker" in out


def test_validate_lists_every_problem_with_its_step(tmp_path: Path) -> None:
    rc, out, err = _run("validate", str(_bad_config(tmp_path)))
    assert rc == 2 and out == ""
    assert "M2" in err and "machineset.name" in err
    assert "G1" in err and "hardware_version" in err


def test_validate_reports_a_missing_file(tmp_path: Path) -> None:
    rc, _, err = _run("validate", str(tmp_path / "nope.yaml"))
    assert rc == 2 and "cannot read" in err


def test_plan_shows_objects_and_the_rendered_machineset() -> None:
    rc, out, _ = _run("plan", str(EXAMPLE), "--infrastructure-id", "ocp-7xk2p")
    assert rc == 0
    assert "/dc1/vm/golden-images/windows-golden-base" in out
    assert "api-int.ocp.example.com" in out and "cloud-private-key" in out
    manifest = yaml.safe_load(out.split("\n---\n", 1)[1].split("\n  then wait")[0])
    assert manifest["kind"] == "MachineSet"
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels["machine.openshift.io/cluster-api-cluster"] == "ocp-7xk2p"
    value = manifest["spec"]["template"]["spec"]["providerSpec"]["value"]
    assert value["template"].startswith("windows-golden-")


def test_plan_of_one_part_only() -> None:
    rc, out, _ = _run("plan", str(EXAMPLE), "--only", "cluster-prep")
    assert rc == 0
    assert "DNS record" in out and "MachineSet" not in out and "base VM" not in out


def test_plan_is_invalid_config_safe(tmp_path: Path) -> None:
    rc, out, err = _run("plan", str(_bad_config(tmp_path)))
    assert rc == 2 and out == "" and "M2" in err


def test_template_path_is_relative_to_the_datacenter_vm_folder() -> None:
    config = load_config(EXAMPLE)
    assert cli.template_path(config, "7") == "golden-images/windows-golden-7"
    text = cli.plan_text(config, only="golden-image", now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert "windows-golden-20260102030405" in text


def test_no_command_prints_help() -> None:
    rc, out, _ = _run()
    assert rc == 0 and "validate" in out and "plan" in out and "run" in out


def test_plan_of_a_rotation_says_what_it_does() -> None:
    rc, out, err = _run("plan", str(EXAMPLE), "--only", "rotate")
    assert (rc, err) == (0, "")
    assert "rotation (ROT1-ROT4) of winworker" in out and "surge 1" in out
    assert "every template still in use" in out


def test_status_refuses_an_invalid_configuration_before_reading_anything(tmp_path: Path) -> None:
    rc, out, err = _run("status", str(_bad_config(tmp_path)))
    assert rc == 2 and out == "" and "(M2)" in err


def test_validate_only_machineset_applies_the_machineset_runs_rules() -> None:
    """The example leaves machineset.template to the golden image: valid for the whole pipeline,
    but a machineset-only run rejects it at once (M7), so validate --only machineset must too."""
    assert _run("validate", str(EXAMPLE))[0] == 0
    rc, out, err = _run("validate", str(EXAMPLE), "--only", "machineset")
    assert rc == 2 and out == ""
    assert "machineset.template" in err and "(M7)" in err


def test_validate_only_machineset_accepts_a_template(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["machineset"]["template"] = "golden-images/windows-golden-20260101000000"
    path = tmp_path / "ms.yaml"
    path.write_text(yaml.safe_dump(data))
    rc, out, err = _run("validate", str(path), "--only", "machineset")
    assert (rc, err) == (0, "") and "valid for --only machineset" in out


def test_run_build_flags() -> None:
    parser = cli.build_parser()
    assert cli.build_mode(parser.parse_args(["run", "c.yaml"])) is None
    assert cli.build_mode(parser.parse_args(["run", "c.yaml", "--rebuild"])) == "new"
    assert cli.build_mode(parser.parse_args(["run", "c.yaml", "--resume"])) == "resume"
    rc, _, err = _run("run", str(EXAMPLE), "--only", "machineset", "--rebuild")
    assert rc == 2 and "--rebuild and --resume apply to the golden image" in err


def test_run_help_documents_the_build_default() -> None:
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()  # type: ignore[union-attr,index]
    assert "--rebuild" in help_text and "--resume" in help_text
    assert "NEW build" in help_text and "reuses the series' newest template" in help_text


def test_failure_lines_name_the_step_and_the_error() -> None:
    from deployments.run import failure_lines
    from winnodes import errors

    msg = "Flow run encountered an exception: GuestCommandFailed: [G7] New-NetFirewallRule failed"
    assert failure_lines(msg) == [
        "failed at step G7: GuestCommandFailed: [G7] New-NetFirewallRule failed"
    ]
    exc = errors.GuestCheckFailed("G6u", "Windows Update (wsus) search failed: HRESULT 0x8024402C")
    (line,) = failure_lines("ignored", exc)
    assert line.startswith("failed at step G6u: GuestCheckFailed: [G6u] Windows Update")
    assert failure_lines(None) == ["failed: (no message)"]


def test_summary_says_built_or_reused() -> None:
    from deployments.run import summary_lines
    from flows.windows_nodes import WindowsNodesResult, _summary_markdown

    result = WindowsNodesResult(
        only="golden-image",
        template="/dc/vm/golden/w-20260101000000",
        template_action="reused",
        build_id="20260101000000",
    )
    (line,) = summary_lines(result.model_dump())
    assert line.endswith("(reused, build 20260101000000)") and "built" not in line
    md = _summary_markdown(result)
    assert "| Template reused | /dc/vm/golden/w-20260101000000 |" in md and "built" not in md
    built = result.model_copy(update={"template_action": "built"})
    assert "| Template built |" in _summary_markdown(built)
