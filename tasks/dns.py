"""Prefect tasks for DNS1: check api-int, and add it with a TSIG-signed update.

The flow decides between them (add only when missing and credentials exist; replace only when
allowed). The DNS server asked is the explicit resolver, else the update block's server, else the
system resolver.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import task

from blocks.dns import DnsUpdateCredentials
from tasks.policy import seconds_left, transient_retries
from winnodes.dns import client
from winnodes.dns.records import ApiIntState


def _nameserver(resolver: str | None, block: Any) -> client.Nameserver:
    if resolver:
        return client.Nameserver.parse(resolver)
    if block is not None:
        ns: client.Nameserver = block.nameserver()
        return ns
    return client.Nameserver()


@task(name="DNS1 check api-int", **transient_retries())
def dns1_check(
    api_name: str, api_int_name: str, dns_update_block: str | None, resolver: str | None
) -> ApiIntState:
    """api's addresses and api-int as DNS has it (NotFound when api itself does not resolve)."""
    block = DnsUpdateCredentials.load(dns_update_block) if dns_update_block else None
    return client.read_state(_nameserver(resolver, block), api_name, api_int_name)


@task(name="DNS1 add api-int record", **transient_retries())
def dns1_add(
    dns_update_block: str,
    state: ApiIntState,
    record_type: Literal["CNAME", "A"],
    ttl: int,
    replace: bool,
    resolver: str | None,
    deadline: datetime,
) -> ApiIntState:
    """RFC 2136 update signed with TSIG (never replacing unless `replace`), then verify that
    api-int resolves to api by `deadline` (computed once by the flow: retries share it).

    A retry after a lost answer re-sends the update; the client recognises its own applied record
    (idempotent), so the attempts converge on one record."""
    seconds_left(deadline, step_id="DNS1", what="DNS1 add api-int")  # no attempt after it
    block: Any = DnsUpdateCredentials.load(dns_update_block)
    client.update_api_int(
        block.updater(),
        api_int_name=state.api_int_name,
        api_name=state.api_name,
        api_addresses=state.api_addresses,
        record_type=record_type,
        ttl=ttl,
        replace=replace,
    )
    left = seconds_left(deadline, step_id="DNS1", what="DNS1 verify api-int")
    return client.wait_resolves(
        _nameserver(resolver, block), state.api_name, state.api_int_name, timeout=left
    )
