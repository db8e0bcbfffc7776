"""The lab's DNS fault points (lab.dns_faults): the proxy forwards to the real BIND unless a rule
says otherwise (drop, delay, lose the answer), counts its hits and names DNS1's operations; a
second BIND whose clock runs ahead answers BADTIME itself (RFC 8945 §5.2.3). Own named per module."""

from __future__ import annotations

import dataclasses
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from lab import dns as lab_dns
from lab.cli import LabContext
from lab.config import LabConfig
from lab.dns_faults import DnsFaultControl, FaultProxy, operation, start_skewed_named
from lab.paths import LabPaths
from lab.process import free_port

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabContext]:
    root = tmp_path_factory.mktemp("lab-dns-faults")
    cfg = dataclasses.replace(LabConfig.from_env(), dns_port=free_port())
    c = LabContext(
        paths=LabPaths(root=root, cache=LabPaths.default().cache),
        cfg=cfg,
        infra_id="lab-test-dns-faults",
        env={},
    )
    c.env.update(lab_dns.start(c))
    c.env.update({"LAB_CLUSTER_NAME": cfg.cluster_name, "LAB_BASE_DOMAIN": cfg.base_domain})
    yield c
    lab_dns.stop(c)


@pytest.fixture
def proxy(ctx: LabContext) -> Iterator[FaultProxy]:
    with FaultProxy((ctx.cfg.dns_address, ctx.cfg.dns_port)) as p:
        yield p


def _name(ctx: LabContext, host: str) -> str:
    return f"{host}.{ctx.cfg.cluster_name}.{ctx.cfg.base_domain}."


def _query(where: tuple[str, int], name: str, timeout: float = 1.0) -> dns.message.Message:
    return dns.query.udp(
        dns.message.make_query(name, "A"), where[0], port=where[1], timeout=timeout
    )


def _update(ctx: LabContext, host: str, address: str = "127.0.0.9") -> dns.update.UpdateMessage:
    key = lab_dns.read_tsig_key(Path(ctx.env["LAB_TSIG_KEYFILE"]))
    ring = dns.tsigkeyring.from_text({key.name: (key.algorithm, key.secret)})
    upd = dns.update.UpdateMessage(
        ctx.env["LAB_DNS_ZONE"], keyring=ring, keyname=dns.name.from_text(key.name)
    )
    upd.delete(_name(ctx, host))
    upd.add(_name(ctx, host), 60, "A", address)
    return upd


def _bind(ctx: LabContext) -> tuple[str, int]:
    return ctx.cfg.dns_address, ctx.cfg.dns_port


def _via(p: FaultProxy) -> tuple[str, int]:
    return p.host, p.port


def test_operation_names_what_dns1_does(ctx: LabContext) -> None:
    q = dns.message.make_query(_name(ctx, "api-int"), "CNAME").to_wire()
    assert operation(q, updated=False) == "check:CNAME:api-int"
    assert operation(q, updated=True) == "verify:CNAME:api-int"
    assert operation(_update(ctx, "x").to_wire(), updated=False) == "update"
    assert operation(b"\x00garbage", updated=False) == "other"


def test_forwards_unchanged_and_reports_what_it_saw(ctx: LabContext, proxy: FaultProxy) -> None:
    assert (
        _query(_via(proxy), _name(ctx, "api")).answer
        == _query(_bind(ctx), _name(ctx, "api")).answer
    )
    assert DnsFaultControl(proxy.control_url).seen() == {"check:A:api": 1}


def test_udp_drop_once_then_answers(ctx: LabContext, proxy: FaultProxy) -> None:
    control = DnsFaultControl(proxy.control_url)
    control.add_rule("check:A:api", "drop", count=1)
    with pytest.raises(dns.exception.Timeout):
        _query(_via(proxy), _name(ctx, "api"), timeout=0.5)
    assert _query(_via(proxy), _name(ctx, "api")).rcode() == dns.rcode.NOERROR
    assert [r["hits"] for r in control.rules()] == [1]


def test_tcp_drop_accepts_stays_silent_and_bind_never_sees_it(
    ctx: LabContext, proxy: FaultProxy
) -> None:
    DnsFaultControl(proxy.control_url).add_rule("update", "drop", count=0)
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(_update(ctx, "dropped"), proxy.host, port=proxy.port, timeout=0.5)
    assert _query(_bind(ctx), _name(ctx, "dropped")).rcode() == dns.rcode.NXDOMAIN


def test_lost_answer_update_is_applied_and_later_queries_are_verify(
    ctx: LabContext, proxy: FaultProxy
) -> None:
    control = DnsFaultControl(proxy.control_url)
    control.add_rule("update", "lose", count=1)
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(_update(ctx, "lost"), proxy.host, port=proxy.port, timeout=0.5)
    assert [rd.address for rd in _query(_bind(ctx), _name(ctx, "lost")).answer[0]] == ["127.0.0.9"]
    _query(_via(proxy), _name(ctx, "lost"))
    assert control.seen() == {"update": 1, "verify:A:lost": 1}


def test_delay_within_the_timeout_still_answers(ctx: LabContext, proxy: FaultProxy) -> None:
    control = DnsFaultControl(proxy.control_url)
    control.add_rule("*", "delay", count=0, delay_ms=200)
    assert _query(_via(proxy), _name(ctx, "api"), timeout=5).rcode() == dns.rcode.NOERROR
    r = dns.query.tcp(_update(ctx, "slow"), proxy.host, port=proxy.port, timeout=5)
    assert r.rcode() == dns.rcode.NOERROR
    assert [r["hits"] for r in control.rules()] == [2]


def test_control_endpoint_rejects_unknown_actions_and_clears(proxy: FaultProxy) -> None:
    control = DnsFaultControl(proxy.control_url)
    with pytest.raises(urllib.error.HTTPError) as exc:
        control.add_rule("update", "explode")
    assert exc.value.code == 400
    control.add_rule("update", "drop", count=3)
    assert [(r["op"], r["count"], r["hits"]) for r in control.rules()] == [("update", 3, 0)]
    control.clear_rules()
    assert control.rules() == []


def test_bind_with_its_clock_ahead_answers_badtime(ctx: LabContext, tmp_path: Path) -> None:
    """RFC 8945 §5.2.3: BIND itself refuses a signed update whose time is beyond the fudge (300 s)
    and signs its BADTIME answer; within the fudge the same update is accepted."""
    skewed, env = start_skewed_named(ctx.env, tmp_path / "ahead", 600)
    try:
        where = (env["LAB_DNS_SERVER"], int(env["LAB_DNS_PORT"]))
        with pytest.raises(dns.tsig.PeerBadTime):
            dns.query.tcp(_update(ctx, "skewed"), where[0], port=where[1], timeout=5)
        assert _query(where, _name(ctx, "skewed")).rcode() == dns.rcode.NXDOMAIN
        assert "BADTIME" in (skewed.paths.logs / "named.log").read_text()
    finally:
        lab_dns.stop(skewed)
    near, env = start_skewed_named(ctx.env, tmp_path / "near", 100)
    try:
        r = dns.query.tcp(
            _update(ctx, "near"), env["LAB_DNS_SERVER"], port=int(env["LAB_DNS_PORT"]), timeout=5
        )
        assert r.rcode() == dns.rcode.NOERROR
    finally:
        lab_dns.stop(near)
