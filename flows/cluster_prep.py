"""Cluster preparation (PRE-1, PRE-4, DNS1, PRE-3): what the cluster needs before Windows nodes.

Composes `tasks.openshift` and `tasks.dns`, decides, reports; calls no client. Usable on its own or
from the parent flow. Order: load the blocks (a key WMCO would refuse fails here) -> read everything
(PRE-1, PRE-4, api/api-int) -> decide, and fail with the complete list of what is missing *before*
any write -> DNS1 add (only when missing and update credentials are named; replace only when
`allow_overwrite`) -> PRE-3 key secret. A re-run changes nothing that is already right.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import BaseModel

from blocks.dns import DnsUpdateCredentials
from blocks.openshift import OpenShiftCredentials
from blocks.windows import WindowsAccess
from flows.redaction import protect_blocks
from flows.reporting import RunReport
from tasks import dns as dns_tasks
from tasks import openshift as ocp
from tasks.policy import deadline_after
from winnodes import errors
from winnodes.cluster.prereqs import PrerequisiteReport
from winnodes.dns.records import ApiIntState, record_lines
from winnodes.model.config import ClusterConfig
from winnodes.model.steps import CLUSTER_PREP_STEPS, StepId
from winnodes.validate import rules


class ClusterPrepResult(BaseModel):
    prerequisites: list[str]
    api_int: str  # "present", "created", "replaced"
    api_int_state: str
    key_secret: str  # "created", "updated", "unchanged"


def load_blocks(refs: list[tuple[str, type[Any], str | None]], step: str) -> list[Any]:
    """Load every named block (registering its secrets for log redaction); one ValidationError
    listing every block that is missing or whose stored values fail its rules."""
    problems: list[errors.Problem] = []
    loaded: list[Any] = []
    for field, cls, name in refs:
        try:
            loaded += protect_blocks((cls, name))
        except Exception as exc:
            reason = str(exc).splitlines()[0][:300]
            problems.append(
                errors.Problem(
                    step, field, "block", f"{field}: block {name!r} unusable: {reason} ({step})"
                )
            )
            loaded.append(None)
    if problems:
        raise errors.ValidationError(problems)
    return loaded


def _cluster_problems(cluster: ClusterConfig) -> list[errors.Problem]:
    out = rules.check_dns_label(cluster.name, "cluster.name")
    out += rules.check_dns_name(cluster.base_domain, "cluster.base_domain")
    if cluster.dns.zone and not out:
        out += rules.check_zone_contains(cluster.api_int_name, cluster.dns.zone)
    return out


@flow(name="cluster-prep", log_prints=True)
def cluster_prep(
    cluster: ClusterConfig,
    windows_access_block: str = "windows-access",
    dns_resolver: str | None = None,
    dns_wait_seconds: int = 120,
) -> ClusterPrepResult:
    """Check PRE-1/PRE-4, ensure api-int (DNS1) and the WMCO key secret (PRE-3).

    Args:
        cluster: cluster name, base domain, block names (OpenShift access, DNS update) and the
            api-int settings.
        windows_access_block: block with the SSH key that becomes `cloud-private-key`.
        dns_resolver: DNS server ('host' or 'host:port') to check api/api-int with; default: the
            DNS update block's server, else the system resolver.
        dns_wait_seconds: DNS1's budget for adding api-int and seeing it resolve, across retries
            of a lost update or query.

    Raises:
        ValidationError: bad inputs or unusable blocks, before anything is read or written.
        ConfigError: prerequisites missing (every one listed), nothing written.
        NotFound: api does not resolve, or api-int is missing and no DNS update block is named
            (the message holds the exact record to add), nothing written.
        Conflict: api-int points elsewhere and overwriting is not allowed, nothing written.
    """
    _validate(cluster, windows_access_block)
    report = RunReport(
        f"Cluster preparation {cluster.name}.{cluster.base_domain}",
        CLUSTER_PREP_STEPS,
        "cluster-prep-" + "-".join(f"{cluster.name}.{cluster.base_domain}".split(".")),
    ).start()
    try:
        pre = _pre1_pre4_prerequisites(cluster, report)
        action, state = _dns1_api_int(cluster, report, dns_resolver, dns_wait_seconds)
        key_action = _pre3_key_secret(cluster, report, windows_access_block)
    finally:
        report.publish()
    return ClusterPrepResult(
        prerequisites=pre.evidence,
        api_int=action,
        api_int_state=state.describe(),
        key_secret=key_action,
    )


def _validate(cluster: ClusterConfig, windows_access_block: str) -> None:
    """Before anything is read or written: the cluster's names, then every block loads (a key
    WMCO would refuse fails here, PRE-3)."""
    problems = _cluster_problems(cluster)
    if problems:
        raise errors.ValidationError(problems)
    load_blocks(
        [
            ("cluster.openshift_block", OpenShiftCredentials, cluster.openshift_block),
            ("windows_access_block", WindowsAccess, windows_access_block),
            ("cluster.dns.dns_update_block", DnsUpdateCredentials, cluster.dns.dns_update_block),
        ],
        "PRE-3",
    )


def _pre1_pre4_prerequisites(cluster: ClusterConfig, report: RunReport) -> PrerequisiteReport:
    """PRE-1, PRE-4: read every prerequisite first, one report row each, and fail with the
    complete list of what is missing before any write."""
    pre = ocp.pre_prerequisites(cluster.openshift_block)
    failed: list[errors.Problem] = []
    for step in (StepId.PRE1, StepId.PRE4):
        mine = [p for p in pre.problems if p.step_id == step.value]
        try:
            with report.step(step) as out:
                if mine:
                    raise errors.ConfigError("; ".join(p.message for p in mine), step_id=step)
                out.ok("; ".join(pre.evidence))
        except errors.ConfigError:
            failed += mine
    if failed:
        lines = "\n".join(f"  - {p.message}" for p in failed)
        raise errors.ConfigError(
            f"{len(failed)} cluster prerequisite(s) missing:\n{lines}", problems=failed
        )
    return pre


def _dns1_api_int(
    cluster: ClusterConfig, report: RunReport, dns_resolver: str | None, dns_wait_seconds: int
) -> tuple[str, ApiIntState]:
    """DNS1: api-int present, or added (only when missing and update credentials are named;
    replaced only when `allow_overwrite`). Returns the action and the final DNS state."""
    dns_block = cluster.dns.dns_update_block
    with report.step(StepId.DNS1) as out:
        state = dns_tasks.dns1_check(
            cluster.api_name, cluster.api_int_name, dns_block, dns_resolver
        )
        wanted = record_lines(
            cluster.api_int_name,
            cluster.api_name,
            state.api_addresses,
            cluster.dns.record_type,
            cluster.dns.ttl,
        )
        if state.state == "ok":
            action = "present"
        elif state.state == "conflict" and not cluster.dns.allow_overwrite:
            raise errors.Conflict(
                f"{state.describe()}: api-int points elsewhere and cluster.dns.allow_overwrite "
                f"is false; fix it to: {' / '.join(wanted)}",
                step_id="DNS1",
            )
        elif dns_block is None:
            raise errors.NotFound(
                f"{state.describe()}; no DNS update credentials (cluster.dns.dns_update_block)"
                f": add this record to the zone: {' / '.join(wanted)}",
                step_id="DNS1",
            )
        else:
            replace = state.state == "conflict"
            state = dns_tasks.dns1_add(
                dns_block,
                state,
                cluster.dns.record_type,
                cluster.dns.ttl,
                replace,
                dns_resolver,
                deadline_after(dns_wait_seconds),
            )
            action = "replaced" if replace else "created"
            report.created("DNS record", cluster.api_int_name, action, " / ".join(wanted))
        if action == "present":
            out.ok(state.describe())
        else:
            out.repaired(f"{action}: {state.describe()}")
    return action, state


def _pre3_key_secret(cluster: ClusterConfig, report: RunReport, windows_access_block: str) -> str:
    """PRE-3: the Secret cloud-private-key holds the WindowsAccess key. Returns the action."""
    with report.step(StepId.PRE3) as out:
        key_action = ocp.pre3_key_secret(cluster.openshift_block, windows_access_block)
        text = f"Secret cloud-private-key/private-key.pem {key_action}"
        if key_action == "unchanged":
            out.ok(text)
        else:
            out.repaired(text)
            report.created("Secret", "cloud-private-key", key_action)
    return key_action
