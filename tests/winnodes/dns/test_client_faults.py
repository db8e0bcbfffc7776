"""DNS1's client under DNS faults: TSIG refusals are permanent and name the cause and the fix
(never the secret); an update applied whose answer was lost converges when retried; a lost
verification query is one more "not yet" within the wait. The lab tests use a real BIND behind the
lab's fault proxy (lab.dns_faults)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import dns.message
import dns.query
import dns.rdatatype
import dns.tsig
import pytest

from lab import dns as lab_dns
from lab.cli import LabContext
from lab.config import LabConfig
from lab.dns_faults import DnsFaultControl, FaultProxy
from lab.paths import LabPaths
from lab.process import free_port
from tasks import dns as dns_tasks
from winnodes import errors
from winnodes.dns import client
from winnodes.dns.records import ApiIntState

SECRET = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1iZS1zaG93bg=="


def _updater(
    server: str = "127.0.0.1",
    port: int = 53,
    zone: str = "winnodes.test",
    timeout: float = 5.0,
    key: str = "k1",
) -> client.TsigUpdater:
    return client.TsigUpdater(server, port, zone, key, "hmac-sha256", SECRET, timeout)


def _add(
    updater: client.TsigUpdater,
    api_int: str,
    api: str,
    addresses: list[str],
    record_type: Literal["A", "CNAME"] = "A",
) -> None:
    client.update_api_int(
        updater,
        api_int_name=api_int,
        api_name=api,
        api_addresses=addresses,
        record_type=record_type,
        ttl=60,
        replace=False,
    )


@pytest.mark.parametrize(
    ("exc", "cause", "fix"),
    [
        (dns.tsig.PeerBadTime, "clock skew", "check NTP on this host and on the DNS server"),
        (dns.tsig.BadTime, "clock skew", "check NTP on this host and on the DNS server"),
        (dns.tsig.PeerBadSignature, "BADSIG", "copy both again from the server's key file"),
        (dns.tsig.PeerBadKey, "BADKEY", "must be the name of a `key`"),
    ],
)
def test_tsig_refusals_are_permanent_and_name_cause_and_fix(
    monkeypatch: pytest.MonkeyPatch, exc: type[Exception], cause: str, fix: str
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise exc()

    monkeypatch.setattr(dns.query, "tcp", refuse)
    with pytest.raises(errors.AuthenticationError) as got:
        _add(_updater(), "api-int.c.winnodes.test", "api.c.winnodes.test", ["127.0.0.1"])
    assert not got.value.transient
    assert got.value.step_id == "DNS1"
    assert cause in str(got.value) and fix in str(got.value)
    assert SECRET not in str(got.value) and SECRET not in repr(got.value)


def test_dns1_add_starts_no_attempt_after_the_deadline() -> None:
    state = ApiIntState("api.c.winnodes.test", "api-int.c.winnodes.test", ["127.0.0.1"])
    past = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(errors.WaitTimeout) as got:
        dns_tasks.dns1_add.fn("no-such-block", state, "A", 60, False, None, past)
    assert got.value.step_id == "DNS1"


# ------------------------------------------------------------------------- against BIND + proxy
@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabContext]:
    root = tmp_path_factory.mktemp("dns-client-faults")
    cfg = dataclasses.replace(LabConfig.from_env(), dns_port=free_port())
    c = LabContext(
        paths=LabPaths(root=root, cache=root / "cache"), cfg=cfg, infra_id="dns-client", env={}
    )
    c.env.update(lab_dns.start(c))
    yield c
    lab_dns.stop(c)


@pytest.fixture
def proxy(ctx: LabContext) -> Iterator[FaultProxy]:
    with FaultProxy((ctx.cfg.dns_address, ctx.cfg.dns_port)) as p:
        yield p


def _names(ctx: LabContext, host: str) -> tuple[str, str]:
    domain = f"{ctx.cfg.cluster_name}.{ctx.cfg.base_domain}"
    return f"{host}.{domain}", f"api.{domain}"


def _lab_updater(ctx: LabContext, p: FaultProxy, timeout: float) -> client.TsigUpdater:
    key = lab_dns.read_tsig_key(Path(ctx.env["LAB_TSIG_KEYFILE"]))
    return client.TsigUpdater(
        p.host, p.port, ctx.env["LAB_DNS_ZONE"], key.name, key.algorithm, key.secret, timeout
    )


def _a_records(ctx: LabContext, name: str) -> list[str]:
    r = dns.query.udp(
        dns.message.make_query(name + ".", "A"),
        ctx.cfg.dns_address,
        port=ctx.cfg.dns_port,
        timeout=5,
    )
    return sorted(
        rd.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset
    )


@pytest.mark.lab
@pytest.mark.parametrize("record_type", ["A", "CNAME"])
def test_update_applied_but_answer_lost_converges_on_retry(
    ctx: LabContext, proxy: FaultProxy, record_type: Literal["A", "CNAME"]
) -> None:
    """The task retries a ConnectionLost update; the retry's prerequisite ("name not in use") fails
    on our own record, which must count as done, not as a Conflict."""
    api_int, api = _names(ctx, f"lost-answer-{record_type.lower()}")
    DnsFaultControl(proxy.control_url).add_rule("update", "lose", count=1)
    updater = _lab_updater(ctx, proxy, timeout=0.5)
    with pytest.raises(errors.ConnectionLost):
        _add(updater, api_int, api, ["127.0.0.1"], record_type)
    _add(updater, api_int, api, ["127.0.0.1"], record_type)  # the retry
    assert _a_records(ctx, api_int) == ["127.0.0.1"]
    state = client.read_state(client.Nameserver(proxy.host, proxy.port), api, api_int)
    assert state.state == "ok" and (state.cname is not None) == (record_type == "CNAME")


@pytest.mark.lab
def test_someone_elses_record_is_still_a_conflict(ctx: LabContext, proxy: FaultProxy) -> None:
    api_int, api = _names(ctx, "taken")
    updater = _lab_updater(ctx, proxy, timeout=2)
    _add(updater, api_int, api, ["127.0.0.7"])
    with pytest.raises(errors.Conflict):
        _add(updater, api_int, api, ["127.0.0.1"])
    assert _a_records(ctx, api_int) == ["127.0.0.7"]


@pytest.mark.lab
def test_a_lost_verification_query_is_not_yet_not_a_failure(
    ctx: LabContext, proxy: FaultProxy
) -> None:
    api_int, api = _names(ctx, "verified")
    updater = _lab_updater(ctx, proxy, timeout=2)
    _add(updater, api_int, api, ["127.0.0.1"])
    control = DnsFaultControl(proxy.control_url)
    control.add_rule("verify:A:api", "drop", count=1)
    where = client.Nameserver(proxy.host, proxy.port, timeout=0.5)
    state = client.wait_resolves(where, api, api_int, timeout=30)
    assert state.state == "ok"
    assert [r["hits"] for r in control.rules()] == [1]
