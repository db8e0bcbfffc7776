"""The lab's BIND behaves like a site's DNS: `api` exists, `api-int` does not, and only TSIG-signed
updates with the lab's key are accepted. Each test module run starts its own named in a temporary run
directory on a free port, so it never disturbs a running lab."""

from __future__ import annotations

import base64
import dataclasses
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from lab import dns as lab_dns
from lab.cli import LabContext
from lab.config import LabConfig
from lab.paths import LabPaths
from lab.process import LabError, free_port

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabContext]:
    root = tmp_path_factory.mktemp("lab-dns")
    paths = LabPaths(root=root, cache=root / "cache")
    cfg = dataclasses.replace(LabConfig.from_env(), dns_port=free_port())
    c = LabContext(paths=paths, cfg=cfg, infra_id="lab-test1", env={})
    c.env.update(lab_dns.start(c))
    yield c
    lab_dns.stop(c)


def _query(ctx: LabContext, name: str, rdtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return dns.query.udp(q, ctx.cfg.dns_address, port=ctx.cfg.dns_port, timeout=2)


def _fqdn(ctx: LabContext, host: str) -> str:
    return f"{host}.{ctx.cfg.cluster_name}.{ctx.cfg.base_domain}."


def _keyring(ctx: LabContext, secret: str | None = None) -> dict[dns.name.Name, dns.tsig.Key]:
    key = lab_dns.read_tsig_key(Path(ctx.env["LAB_TSIG_KEYFILE"]))
    return dns.tsigkeyring.from_text(
        {key.name: (ctx.env["LAB_TSIG_ALGORITHM"], secret or key.secret)}
    )


def _update(
    ctx: LabContext, keyring: dict[dns.name.Name, dns.tsig.Key] | None
) -> dns.update.Update:
    zone = ctx.env["LAB_DNS_ZONE"]
    if keyring is None:
        return dns.update.UpdateMessage(zone)
    return dns.update.UpdateMessage(
        zone,
        keyring=keyring,
        keyname=dns.name.from_text(ctx.env["LAB_TSIG_KEY_NAME"]),
        keyalgorithm=dns.tsig.HMAC_SHA256,
    )


def test_publishes_the_variables_clients_need(ctx: LabContext) -> None:
    assert ctx.env["LAB_DNS_SERVER"] == "127.0.0.1"
    assert ctx.env["LAB_DNS_PORT"] == str(ctx.cfg.dns_port)
    assert ctx.env["LAB_DNS_ZONE"] == ctx.cfg.base_domain
    assert ctx.env["LAB_TSIG_ALGORITHM"] == "hmac-sha256"
    key = lab_dns.read_tsig_key(Path(ctx.env["LAB_TSIG_KEYFILE"]))
    assert key.name == ctx.env["LAB_TSIG_KEY_NAME"]
    assert len(base64.b64decode(key.secret)) == 32


def test_api_record_resolves(ctx: LabContext) -> None:
    r = _query(ctx, _fqdn(ctx, "api"))
    assert r.rcode() == dns.rcode.NOERROR
    assert [rd.address for rd in r.answer[0]] == ["127.0.0.1"]
    assert r.flags & dns.flags.AA


def test_api_int_is_nxdomain(ctx: LabContext) -> None:
    assert _query(ctx, _fqdn(ctx, "api-int")).rcode() == dns.rcode.NXDOMAIN


def test_apps_wildcard_resolves(ctx: LabContext) -> None:
    r = _query(ctx, "console-openshift-console.apps." + _fqdn(ctx, "")[1:])
    assert r.rcode() == dns.rcode.NOERROR and r.answer


def test_no_recursion(ctx: LabContext) -> None:
    r = _query(ctx, "example.com.")
    assert r.rcode() == dns.rcode.REFUSED
    assert not r.flags & dns.flags.RA


def test_dig_sees_the_same_zone(ctx: LabContext) -> None:
    out = subprocess.run(
        [
            "dig",
            "+short",
            "-p",
            str(ctx.cfg.dns_port),
            f"@{ctx.cfg.dns_address}",
            _fqdn(ctx, "api"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.split()
    assert out == ["127.0.0.1"]


def test_unsigned_update_is_refused(ctx: LabContext) -> None:
    u = _update(ctx, None)
    u.add(_fqdn(ctx, "api-int"), 60, "A", "127.0.0.1")
    r = dns.query.tcp(u, ctx.cfg.dns_address, port=ctx.cfg.dns_port, timeout=5)
    assert r.rcode() == dns.rcode.REFUSED
    assert _query(ctx, _fqdn(ctx, "api-int")).rcode() == dns.rcode.NXDOMAIN


def test_wrong_secret_fails_tsig(ctx: LabContext) -> None:
    wrong = base64.b64encode(b"\x01" * 32).decode()
    u = _update(ctx, _keyring(ctx, wrong))
    u.add(_fqdn(ctx, "api-int"), 60, "A", "127.0.0.1")
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.tcp(u, ctx.cfg.dns_address, port=ctx.cfg.dns_port, timeout=5)
    assert _query(ctx, _fqdn(ctx, "api-int")).rcode() == dns.rcode.NXDOMAIN


def test_signed_update_adds_a_record(ctx: LabContext) -> None:
    name = _fqdn(ctx, "dns-test")
    u = _update(ctx, _keyring(ctx))
    u.delete(name)
    u.add(name, 60, "CNAME", _fqdn(ctx, "api"))
    r = dns.query.tcp(u, ctx.cfg.dns_address, port=ctx.cfg.dns_port, timeout=5)
    assert r.rcode() == dns.rcode.NOERROR
    answer = _query(ctx, name)
    assert answer.rcode() == dns.rcode.NOERROR
    types = {rrset.rdtype for rrset in answer.answer}
    assert types == {dns.rdatatype.CNAME, dns.rdatatype.A}


def test_start_is_idempotent(ctx: LabContext) -> None:
    pid = lab_dns.read_pid(ctx.paths, lab_dns.NAME)
    assert lab_dns.start(ctx) == {k: v for k, v in ctx.env.items() if k.startswith("LAB_")}
    assert lab_dns.read_pid(ctx.paths, lab_dns.NAME) == pid
    assert lab_dns.status(ctx).startswith("running")


def test_port_in_use_is_a_clear_lab_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        cfg = dataclasses.replace(LabConfig.from_env(), dns_port=port)
        c = LabContext(
            paths=LabPaths(root=tmp_path, cache=tmp_path / "cache"), cfg=cfg, infra_id="lab-test2"
        )
        with pytest.raises(LabError, match=rf"port 127\.0\.0\.1:{port} .*LAB_DNS_LISTEN_PORT"):
            lab_dns.start(c)
        assert lab_dns.status(c) == "stopped"
