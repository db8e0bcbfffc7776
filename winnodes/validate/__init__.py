"""Every rule of the procedure, run before the first side effect.

`collect_problems(config)` applies each rule of `rules` (and, given the secrets, of `keys` and the
password rule) to a PipelineConfig and returns every Problem; `validate_all` raises one
ValidationError listing all of them, so a user fixes the configuration once, not once per run.
Pure: nothing here talks to vCenter, the cluster, DNS or a guest. Rules that need them (does the
template exist? is the ISO the profile's?) belong to the tasks.
"""

from __future__ import annotations

import re

from winnodes.errors import Problem, ValidationError
from winnodes.model.config import GoldenImageConfig, MachineSetConfig, PipelineConfig
from winnodes.model.naming import template_name
from winnodes.validate import rules as r
from winnodes.validate.keys import (
    KeyInfo,
    check_private_key,
    fingerprint_of_public_key,
    inspect_private_key,
    private_key_fingerprint,
    public_key_line,
)

__all__ = [
    "KeyInfo",
    "Problem",
    "ValidationError",
    "check_private_key",
    "collect_problems",
    "fingerprint_of_public_key",
    "golden_image_problems",
    "inspect_private_key",
    "machineset_problems",
    "machineset_run_problems",
    "part_problems",
    "private_key_fingerprint",
    "public_key_line",
    "validate_all",
]


def golden_image_problems(gi: GoldenImageConfig, prefix: str = "golden_image") -> list[Problem]:
    """G1-G10 rules of a golden image build."""
    p = prefix
    out: list[Problem] = []
    pl = gi.placement
    out += r.check_vsphere_name(pl.datacenter, f"{p}.placement.datacenter", "G1")
    out += r.check_folder_path(pl.folder, pl.datacenter, f"{p}.placement.folder", "G1")
    if pl.resource_pool:
        out += r.check_resource_pool_path(
            pl.resource_pool, pl.datacenter, f"{p}.placement.resource_pool", "G1"
        )
    if not pl.cluster and not pl.resource_pool:
        out.append(
            r._p(
                "G1",
                f"{p}.placement.cluster",
                "cluster-or-resource-pool",
                "a compute cluster or a resource pool is required to place the VM",
            )
        )
    if gi.source.mode == "iso":
        out += r.check_datastore_path(gi.source.windows_iso, f"{p}.source.windows_iso")
        out += r.check_datastore_path(gi.source.tools_iso, f"{p}.source.tools_iso", "G2")
        if gi.source.image_name is not None:
            out += r.check_image_name(gi.source.image_name, gi.profile, f"{p}.source.image_name")
    out += r.check_offline_source(gi, f"{p}.source")
    wu = gi.windows_update
    if wu.source == "wsus" and not re.match(
        r"^https?://[A-Za-z0-9.-]+(:\d+)?/?$", wu.wsus_server or ""
    ):
        out.append(
            r._p(
                "G6u",
                f"{p}.windows_update.wsus_server",
                "wsus-url",
                "source 'wsus' needs the WSUS server's URL, e.g. 'http://wsus.example.com:8530'",
            )
        )
    hw = gi.hardware
    out += r.check_hardware_version(hw.hardware_version, f"{p}.hardware.hardware_version")
    out += r.check_sizes(
        num_cpus=hw.num_cpus,
        num_cores_per_socket=hw.num_cores_per_socket,
        memory_mib=hw.memory_mib,
        disk_gib=hw.disk_gib,
        step="G1",
        prefix=f"{p}.hardware",
    )
    out += r.check_computer_name(gi.unattend.computer_name, f"{p}.unattend.computer_name")
    if not gi.unattend.time_zone.strip():
        out.append(
            r._p("G9", f"{p}.unattend.time_zone", "not-empty", "the time zone must not be empty")
        )
    names = gi.names
    out += r.check_vsphere_name(names.base_vm, f"{p}.names.base_vm", "G1")
    pattern_problems = r.check_template_pattern(
        names.template_pattern, f"{p}.names.template_pattern"
    )
    out += pattern_problems
    if not pattern_problems:
        sample = template_name(names, "20260101000000")
        out += r.check_vsphere_name(sample, f"{p}.names.template_pattern", "G10")
        if sample == names.base_vm:
            out += r.check_template_not_base_vm(
                sample, names.base_vm, f"{p}.names.template_pattern"
            )
    return out


def machineset_problems(
    ms: MachineSetConfig,
    *,
    base_vm: str | None = None,
    template_disk_gib: int | None = None,
    prefix: str = "machineset",
) -> list[Problem]:
    """M2-M9 and C2 rules of the Windows MachineSet."""
    p = prefix
    out = r.check_machineset_name(ms.name, f"{p}.name")
    out += r.check_replicas(ms.replicas, f"{p}.replicas")
    out += r.check_sizes(
        num_cpus=ms.num_cpus,
        num_cores_per_socket=ms.num_cores_per_socket,
        memory_mib=ms.memory_mib,
        disk_gib=ms.disk_gib,
        step="M5",
        prefix=p,
    )
    if template_disk_gib is not None:
        out += r.check_disk_not_smaller_than_template(
            ms.disk_gib, template_disk_gib, f"{p}.disk_gib"
        )
    if ms.template and base_vm:
        out += r.check_template_not_base_vm(ms.template, base_vm, f"{p}.template")
    if not ms.take_from_existing_linux_machineset:
        if not ms.network_name:
            out.append(
                r._p(
                    "M6",
                    f"{p}.network_name",
                    "required",
                    "the VM network of the Linux compute machines is required (or set "
                    "take_from_existing_linux_machineset)",
                )
            )
        if ms.workspace is None:
            out.append(
                r._p(
                    "M9",
                    f"{p}.workspace",
                    "required",
                    "the workspace (datacenter, datastore, folder, server) is required (or set "
                    "take_from_existing_linux_machineset)",
                )
            )
    if ms.workspace is not None:
        ws = ms.workspace
        out += r.check_folder_path(ws.folder, ws.datacenter, f"{p}.workspace.folder", "M9")
        if ws.resource_pool:
            out += r.check_resource_pool_path(
                ws.resource_pool, ws.datacenter, f"{p}.workspace.resource_pool", "M9"
            )
        out += r.check_server(ws.server, f"{p}.workspace.server")
    return out


def machineset_run_problems(
    ms: MachineSetConfig, *, template: str | None, base_vm: str | None
) -> list[Problem]:
    """What the machineset part checks before it writes anything: the M2-M9 rules, plus M7's
    template, which must be given when no golden image is built in the same run."""
    problems = machineset_problems(ms, base_vm=base_vm)
    if not (template or ms.template):
        problems.append(
            Problem(
                "M7",
                "machineset.template",
                "required",
                "machineset.template: the Windows template's path is required (M7)",
            )
        )
    return problems


def part_problems(config: PipelineConfig, only: str = "all") -> list[Problem]:
    """The rules a run of one part (`winnodes run --only PART`) applies before its first write:
    `validate --only PART` uses this, so "valid" means the part will not reject the configuration."""
    if only == "all":
        return collect_problems(config)
    gi = config.golden_image
    if only == "golden-image":
        return golden_image_problems(gi)
    if only == "machineset":
        return machineset_run_problems(
            config.machineset, template=config.machineset.template, base_vm=gi.names.base_vm
        )
    return [p for p in collect_problems(config) if p.field.startswith("cluster")]


def collect_problems(
    config: PipelineConfig,
    *,
    admin_password: str | None = None,
    private_key: str | bytes | None = None,
    allow_non_rsa_keys: bool = False,
) -> list[Problem]:
    """Every problem of `config` (and of the secrets, when given: they come from blocks)."""
    gi = config.golden_image
    out = golden_image_problems(gi)
    ms = config.machineset
    out += machineset_problems(ms, base_vm=gi.names.base_vm, template_disk_gib=gi.hardware.disk_gib)
    cl = config.cluster
    out += r.check_dns_label(cl.name, "cluster.name")
    out += r.check_dns_name(cl.base_domain, "cluster.base_domain")
    if not r.check_dns_label(cl.name, "cluster.name") and not r.check_dns_name(cl.base_domain, "x"):
        out += r.check_dns_name(cl.api_int_name, "cluster.name")
        if cl.dns.zone:
            out += r.check_dns_name(cl.dns.zone, "cluster.dns.zone")
            out += r.check_zone_contains(cl.api_int_name, cl.dns.zone)
    if admin_password is not None:
        out += r.check_admin_password(admin_password)
    if private_key is not None:
        out += check_private_key(private_key, allow_non_rsa=allow_non_rsa_keys)
    return out


def validate_all(
    config: PipelineConfig,
    *,
    admin_password: str | None = None,
    private_key: str | bytes | None = None,
    allow_non_rsa_keys: bool = False,
) -> None:
    """Raise ValidationError listing every problem; return None when there is none."""
    problems = collect_problems(
        config,
        admin_password=admin_password,
        private_key=private_key,
        allow_non_rsa_keys=allow_non_rsa_keys,
    )
    if problems:
        raise ValidationError(problems)
