"""`winnodes validate | plan | run | status CONFIG`: the pipeline from a terminal.

`validate` and `plan` are pure (the model, validate and render layers only): they need no vCenter,
cluster or Prefect server, so they are safe to run anywhere, e.g. in a merge request's CI. `run`
hands the configuration to the Prefect deployment of the parent flow (a worker runs it), shows each
step as it starts and ends, and prints the run's address in the Prefect UI; `--in-process` runs the
flow in this process instead (no worker needed). `status` reads vCenter and the cluster (through the
blocks the configuration names) and prints the series' templates, who uses each, the MachineSet, its
nodes with their template and what a rotation would do.

Exit codes: 0 success, 1 the run failed (the failing step's ID and the error are printed), 2 the
configuration is invalid (for `--only PART`, with the rules that part's run applies).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from winnodes.errors import ConfigError
from winnodes.model.config import PipelineConfig, load_config
from winnodes.model.naming import next_build_id, template_name

PARTS = ("all", "golden-image", "cluster-prep", "machineset", "rotate")
DEFAULT_DEPLOYMENT = "windows-nodes/end-to-end"
INFRA_PLACEHOLDER = "<infrastructure-id>"


def template_path(config: PipelineConfig, build_id: str) -> str:
    """The template's path as a MachineSet names it (M7): the folder below `/<dc>/vm/`, then the
    template's name."""
    gi = config.golden_image
    folder = gi.placement.folder.rstrip("/")
    prefix = f"/{gi.placement.datacenter}/vm"
    relative = folder[len(prefix) :].strip("/") if folder.startswith(prefix) else folder.strip("/")
    name = template_name(gi.names, build_id)
    return f"{relative}/{name}" if relative else name


def plan_text(
    config: PipelineConfig,
    *,
    only: str = "all",
    infrastructure_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """What a run would create or change, and the rendered MachineSet, as text (pure)."""
    from winnodes.render.machineset import machineset_yaml, render_machineset

    gi, cl, ms = config.golden_image, config.cluster, config.machineset
    build_id = next_build_id(gi.names, now=now or datetime.now(UTC))
    tpl = ms.template or template_name(gi.names, build_id)
    lines: list[str] = []
    if only in ("all", "golden-image"):
        src = (
            f"install from {gi.source.windows_iso} (Tools {gi.source.tools_iso})"
            if gi.source.mode == "iso"
            else "rebuild from the kept base VM (it must exist)"
        )
        lines += [
            f"golden image (G1-G10), profile {gi.profile}, vCenter block "
            f"'{gi.vsphere_credentials_block}', Windows block '{gi.windows_access_block}':",
            f"  base VM      {gi.placement.folder}/{gi.names.base_vm}: create if missing; {src}",
            f"  template     {gi.placement.folder}/{template_name(gi.names, build_id)} "
            f"(build {build_id}; {gi.names.build_id_scheme} scheme)",
            "  updates      G6u Windows updates from "
            + (
                "nowhere (off)"
                if gi.windows_update.source == "off"
                else gi.windows_update.wsus_server or "Windows Update"
            )
            + f", rounds with restarts until none is pending (<= {gi.timeouts.updates_seconds}s)",
            f"  retention    keep the newest {gi.keep_templates} of series "
            f"'{gi.names.template_series}'",
            f"  hardware     {gi.hardware.num_cpus} vCPU, {gi.hardware.memory_mib} MiB, "
            f"{gi.hardware.disk_gib} GiB, {gi.hardware.firmware}, {gi.hardware.hardware_version}",
        ]
    if only in ("all", "cluster-prep"):
        dns = (
            f"create {cl.dns.record_type} via block '{cl.dns.dns_update_block}' if missing"
            if cl.dns.dns_update_block
            else "check only (no DNS update block)"
        )
        lines += [
            f"cluster preparation (PRE, DNS1, PRE-3), OpenShift block '{cl.openshift_block}':",
            "  check        Infrastructure is vSphere, WMCO installed, hybrid overlay (PRE-1, PRE-4)",
            f"  DNS record   {cl.api_int_name} -> {cl.api_name}: {dns}",
            "  Secret       openshift-windows-machine-config-operator/cloud-private-key "
            f"(private-key.pem from block '{gi.windows_access_block}')",
        ]
    if only in ("all", "machineset"):
        infra = infrastructure_id or INFRA_PLACEHOLDER
        lines += [
            f"MachineSet (M1-M9, C1-C3, V1): openshift-machine-api/{ms.name}, "
            f"{ms.replicas} replica(s), template {tpl}",
        ]
        if ms.take_from_existing_linux_machineset:
            lines.append(
                "  workspace, network and credentials secret: taken at run time from a Running "
                "Linux worker Machine of the cluster's Linux MachineSet (C2)"
            )
        else:
            manifest = render_machineset(ms, infrastructure_id=infra, template=tpl)
            lines += ["  manifest:", "---", machineset_yaml(manifest).rstrip()]
        lines.append(
            f"  then wait   until {ms.replicas} node(s) are Ready "
            f"(deadline {config.waits.machineset_ready_seconds}s, V1)"
        )
    if only == "rotate" or (only in ("all", "golden-image") and config.rotation.rollout):
        lines += [
            f"rotation (ROT1-ROT4) of {ms.name} onto {ms.template or 'the newest template'}: one "
            "machine at a time, surge 1 (scale +1, wait Ready, cordon + drain the oldest node on an "
            f"older template within {config.rotation.drain_seconds}s, delete it, scale back); then "
            f"retention keeps the newest {gi.keep_templates} and every template still in use",
        ]
    return "\n".join(lines) + "\n"


def _load_valid(path: str, err: TextIO, only: str = "all") -> PipelineConfig | None:
    """The configuration, checked with the rules the run of `only` applies (None: invalid)."""
    from winnodes.errors import ValidationError
    from winnodes.validate import part_problems

    try:
        config = load_config(path)
        problems = part_problems(config, only)
        if problems:
            raise ValidationError(problems)
    except ConfigError as exc:
        print(str(exc), file=err)
        return None
    return config


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = _load_valid(args.config, err, args.only)
    if config is None:
        return 2
    print(
        f"{args.config}: valid{'' if args.only == 'all' else ' for --only ' + args.only} (golden image '{config.golden_image.names.template_series}', "
        f"cluster {config.cluster.name}.{config.cluster.base_domain}, "
        f"MachineSet {config.machineset.name})",
        file=out,
    )
    return 0


def cmd_plan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = _load_valid(args.config, err)
    if config is None:
        return 2
    try:
        text = plan_text(config, only=args.only, infrastructure_id=args.infrastructure_id)
    except ConfigError as exc:
        print(str(exc), file=err)
        return 2
    out.write(text)
    return 0


def build_mode(args: argparse.Namespace) -> str | None:
    """--rebuild -> "new", --resume -> "resume", neither -> the flow's default (documented in
    RUN_EPILOG)."""
    if args.rebuild:
        return "new"
    if args.resume:
        return "resume"
    return None


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if (args.rebuild or args.resume) and args.only not in ("all", "golden-image"):
        print(
            "--rebuild and --resume apply to the golden image (--only golden-image or all)",
            file=err,
        )
        return 2
    config = _load_valid(args.config, err, args.only)
    if config is None:
        return 2
    # The CLI is the application's top: only `run` reaches up to Prefect and the deployments.
    from deployments import run as runner

    runner.quiet_shutdown()
    build = build_mode(args)
    if args.in_process:
        return runner.run_in_process(config, args.only, out, build)
    return runner.run_deployment_and_watch(
        config, args.only, deployment=args.deployment, out=out, timeout=args.timeout, build=build
    )


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Templates of the series, the MachineSet, nodes with their template, what a rotation would do."""
    config = _load_valid(args.config, err)
    if config is None:
        return 2
    from deployments import status as reader  # reads vCenter and the cluster through the blocks
    from winnodes.errors import WinNodesError

    try:
        out.write(reader.status(config))
    except WinNodesError as exc:
        print(f"status: {exc}", file=err)
        return 1
    return 0


RUN_EPILOG = """golden image builds: `--only golden-image` starts a NEW build (new build ID, new template,
from the kept base VM when it exists) on every run, like the golden-image-rebuild deployment and its
schedule; `--only all` (the default) reuses the series' newest template and builds only when there
is none. --rebuild forces a new build; --resume continues the unfinished build found in vCenter (a
failed run's base VM marker or clone) instead of starting another. Retrying a failed flow run from
the Prefect UI always continues that run's own build."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="winnodes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("validate", help="check the configuration, every rule, no side effects")
    p.add_argument("config", help="pipeline configuration (YAML)")
    p.add_argument(
        "--only", choices=PARTS, default="all", help="the rules a run of this part applies"
    )
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("plan", help="what a run would create or change, and the MachineSet")
    p.add_argument("config")
    p.add_argument("--only", choices=PARTS, default="all", help="one part of the pipeline")
    p.add_argument(
        "--infrastructure-id",
        help="the cluster's infrastructure ID (M1) for the manifest; a placeholder otherwise",
    )
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser(
        "run",
        help="run the pipeline through its Prefect deployment",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--rebuild", action="store_true", help="golden image: start a new build (new template)"
    )
    which.add_argument(
        "--resume",
        action="store_true",
        help="golden image: continue the unfinished build found in vCenter",
    )
    p.add_argument("--only", choices=PARTS, default="all", help="run one part alone")
    p.add_argument("--deployment", default=DEFAULT_DEPLOYMENT, help="'flow/deployment' to run")
    p.add_argument(
        "--in-process", action="store_true", help="run the flow here instead of on a worker"
    )
    p.add_argument("--timeout", type=float, default=4 * 3600, help="give up watching after (s)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "status", help="templates, MachineSet, nodes and their template, what a rotation would do"
    )
    p.add_argument("config")
    p.set_defaults(func=cmd_status)
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    # Library deprecation notices (cryptography via paramiko, Prefect) are for developers, not for
    # the operator reading this terminal; the test suite still sees them.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*deprecated.*")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(version("winnodes"), file=out)
        return 0
    func: Any = getattr(args, "func", None)
    if func is None:
        parser.print_help(out)
        return 0
    return int(func(args, out, err))


if __name__ == "__main__":
    sys.exit(main())
