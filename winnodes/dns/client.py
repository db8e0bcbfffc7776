"""DNS1 over the wire: resolve api/api-int, add api-int with an RFC 2136 update signed with TSIG.

Queries go to a named server (the site's authoritative or recursive server) or, without one, to the
system resolver; no cache, so a check right after an update sees the update. Updates carry a
prerequisite (RFC 2136 §2.4.5 "name is not in use") unless overwriting was allowed, so a record an
administrator added a moment ago is never replaced by a race. With overwriting allowed, the update
deletes every record of the name before adding: BIND silently ignores a CNAME added next to other
data (field-notes).

dnspython's exceptions are mapped here: a wrong TSIG secret or unknown key -> AuthenticationError,
a TSIG time refused (BADTIME, clock skew) -> AuthenticationError naming NTP, REFUSED/NOTAUTH ->
AuthenticationError (the server does not allow this key to update the zone), YXDOMAIN (the
prerequisite failed) -> Conflict unless the name already holds exactly our records, timeouts and
resets -> ConnectionLost.

Idempotency. An update can be applied while its answer is lost (timeout): the task's retry then
meets its own record, the "name is not in use" prerequisite fails (YXDOMAIN), and the retry checks
that the name holds exactly what it adds before calling that a success.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update

from winnodes import errors
from winnodes.dns.records import ApiIntState, fqdn, relative_to

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Nameserver:
    """Where to ask: an address and port, or None for the system resolver."""

    address: str | None = None
    port: int = 53
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def parse(cls, value: str | None, timeout: float = DEFAULT_TIMEOUT) -> Nameserver:
        """'10.0.0.2', '10.0.0.2:5353', '[::1]:53' or None."""
        if not value:
            return cls(None, 53, timeout)
        v = value.strip()
        if v.startswith("["):
            host, _, rest = v[1:].partition("]")
            return cls(host, int(rest.lstrip(":") or 53), timeout)
        if v.count(":") == 1:
            host, port = v.split(":")
            return cls(host, int(port), timeout)
        return cls(v, 53, timeout)

    def __str__(self) -> str:
        return f"{self.address}:{self.port}" if self.address else "the system resolver"

    def resolver(self) -> dns.resolver.Resolver:
        if self.address is None:
            r = dns.resolver.Resolver(configure=True)
        else:
            r = dns.resolver.Resolver(configure=False)
            r.nameservers = [self.address]
            r.port = self.port
        r.lifetime = self.timeout
        r.cache = None  # type: ignore[assignment]
        return r


@dataclass(frozen=True)
class TsigUpdater:
    """An authoritative server that accepts RFC 2136 updates of `zone` signed with a TSIG key."""

    server: str
    port: int
    zone: str
    key_name: str
    algorithm: str
    secret: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def nameserver(self) -> Nameserver:
        return Nameserver(self.server, self.port, self.timeout)


def _lookup(
    r: dns.resolver.Resolver, name: str, rdtype: str, where: Nameserver
) -> list[str] | None:
    """The records of `name`/`rdtype` as text, [] when the name has no such data, None when the
    name does not exist. Transport problems raise ConnectionLost."""
    try:
        ans = r.resolve(fqdn(name), rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return None
    except (dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
        raise errors.ConnectionLost(
            f"cannot resolve {name} {rdtype} through {where}: {type(exc).__name__}",
            step_id="DNS1",
        ) from exc
    except dns.exception.DNSException as exc:
        raise errors.ConnectionLost(
            f"cannot resolve {name} {rdtype} through {where}: {exc}", step_id="DNS1"
        ) from exc
    if ans.rrset is None:
        return []
    if rdtype == "CNAME":
        return [r.target.to_text() for r in ans.rrset]
    return sorted(r.address for r in ans.rrset)


def read_state(where: Nameserver, api_name: str, api_int_name: str) -> ApiIntState:
    """DNS1 check: api's addresses (NotFound if api does not resolve) and api-int as it is."""
    r = where.resolver()
    api = _lookup(r, api_name, "A", where)
    if not api:
        raise errors.NotFound(
            f"{api_name} does not resolve through {where}; it is created by the cluster "
            "installation and api-int must point to it (DNS1)",
            step_id="DNS1",
        )
    cname_list = _lookup(r, api_int_name, "CNAME", where)
    cname = cname_list[0] if cname_list else None
    addresses = _lookup(r, api_int_name, "A", where) or []
    return ApiIntState(api_name, api_int_name, api, cname, addresses)


#: RFC 8945 §5.2.3: a TSIG time outside the fudge (BIND: 300 s) is refused with BADTIME.
CLOCK_SKEW_FIX = (
    "the clocks of this host and the DNS server differ by more than the TSIG fudge (300 s): "
    "check NTP on this host and on the DNS server"
)


def _update_error(exc: BaseException, updater: TsigUpdater) -> errors.WinNodesError:
    """dnspython's exception of an update -> the product's, naming the cause and the fix (the key's
    name, never its secret). TSIG refusals are permanent: the same signed message fails again."""
    where = f"{updater.server}:{updater.port}"
    key = repr(updater.key_name)
    if isinstance(exc, (dns.tsig.PeerBadTime, dns.tsig.BadTime)):
        who = "the DNS server" if isinstance(exc, dns.tsig.PeerBadTime) else "this host"
        return errors.AuthenticationError(
            f"clock skew: {who} rejected the TSIG time of the update to {where} (BADTIME): "
            f"{CLOCK_SKEW_FIX} (DNS1)",
            step_id="DNS1",
        )
    if isinstance(exc, (dns.tsig.PeerBadSignature, dns.tsig.BadSignature)):
        return errors.AuthenticationError(
            f"the DNS server {where} refused the TSIG signature of key {key} (BADSIG): the secret "
            "or the algorithm in the DNS update block does not match the server's key; copy both "
            "again from the server's key file (DNS1)",
            step_id="DNS1",
        )
    if isinstance(exc, dns.tsig.PeerBadKey):
        return errors.AuthenticationError(
            f"the DNS server {where} does not know the TSIG key {key} (BADKEY): the key name in the "
            "DNS update block must be the name of a `key` the server's zone allows to update "
            "(DNS1)",
            step_id="DNS1",
        )
    if isinstance(exc, dns.tsig.PeerError):
        return errors.AuthenticationError(
            f"the DNS server {where} refused the TSIG key {key}: {type(exc).__name__} (DNS1)",
            step_id="DNS1",
        )
    if isinstance(exc, dns.exception.Timeout):
        return errors.ConnectionLost(
            f"the DNS server {where} did not answer the update within {updater.timeout:g}s (the "
            "DNS update block's timeout_seconds): it is slow or unreachable over TCP (DNS1)",
            step_id="DNS1",
        )
    if isinstance(exc, (OSError, EOFError)):
        return errors.ConnectionLost(
            f"DNS update to {where} failed: {type(exc).__name__}: {exc}", step_id="DNS1"
        )
    return errors.PermanentError(
        f"DNS update to {where} failed: {type(exc).__name__}: {exc}", step_id="DNS1"
    )


def _already_applied(
    updater: TsigUpdater,
    api_int_name: str,
    api_name: str,
    api_addresses: list[str],
    record_type: Literal["CNAME", "A"],
) -> bool:
    """Does the update server already hold exactly the records this update adds? (Our own earlier
    attempt applied, its answer lost: the retry's "name not in use" prerequisite then fails.)"""
    where = updater.nameserver
    r = where.resolver()
    cname = _lookup(r, api_int_name, "CNAME", where)
    if record_type == "CNAME":
        return bool(cname) and [fqdn(c).lower() for c in cname or []] == [fqdn(api_name).lower()]
    if cname:
        return False
    return (_lookup(r, api_int_name, "A", where) or []) == sorted(api_addresses)


def update_api_int(
    updater: TsigUpdater,
    *,
    api_int_name: str,
    api_name: str,
    api_addresses: list[str],
    record_type: Literal["CNAME", "A"],
    ttl: int,
    replace: bool,
) -> None:
    """Add api-int (CNAME to api, or A records with api's addresses) with one signed update.

    Without `replace`, the update only applies while the name does not exist (RFC 2136 prerequisite);
    with it, every record of the name is deleted first in the same update."""
    try:
        rel = relative_to(api_int_name, updater.zone)
    except ValueError as exc:
        raise errors.ConfigError(f"{exc} (DNS1)", step_id="DNS1") from exc
    try:
        keyring = dns.tsigkeyring.from_text({updater.key_name: (updater.algorithm, updater.secret)})
    except Exception as exc:  # a secret that is not base64, an unknown algorithm
        raise errors.ConfigError(
            f"the TSIG key {updater.key_name!r} is invalid ({type(exc).__name__}): the secret must "
            "be base64 and the algorithm one of hmac-sha256, hmac-sha512, ... (DNS1)",
            step_id="DNS1",
        ) from None
    key_name = dns.name.from_text(updater.key_name)
    upd = dns.update.UpdateMessage(fqdn(updater.zone), keyring=keyring, keyname=key_name)
    if replace:
        upd.delete(rel)
    else:
        upd.absent(rel)
    if record_type == "CNAME":
        upd.add(rel, ttl, "CNAME", fqdn(api_name))
    else:
        for a in sorted(api_addresses):
            upd.add(rel, ttl, "A", a)
    try:
        resp = dns.query.tcp(upd, updater.server, port=updater.port, timeout=updater.timeout)
    except Exception as exc:
        raise _update_error(exc, updater) from exc
    rcode = resp.rcode()
    if rcode == dns.rcode.NOERROR:
        return
    text = dns.rcode.to_text(rcode)
    where = f"{updater.server}:{updater.port}"
    if rcode == dns.rcode.YXDOMAIN:
        if _already_applied(updater, api_int_name, api_name, api_addresses, record_type):
            return  # an earlier attempt of ours was applied and its answer lost: converged
        raise errors.Conflict(
            f"{api_int_name} appeared while it was being added (the update's prerequisite "
            "failed); it is not overwritten (DNS1)",
            step_id="DNS1",
        )
    if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
        raise errors.AuthenticationError(
            f"the DNS server {where} answered {text} to the update of zone {updater.zone} with key "
            f"{updater.key_name!r}: it does not allow this key to update the zone; the zone's "
            "allow-update/update-policy must name this key (DNS1)",
            step_id="DNS1",
        )
    if rcode == dns.rcode.NOTZONE:
        raise errors.ConfigError(
            f"{api_int_name} is not in zone {updater.zone} at {where} (NOTZONE) (DNS1)",
            step_id="DNS1",
        )
    if rcode == dns.rcode.SERVFAIL:
        raise errors.ApiUnavailable(
            f"the DNS server {where} answered SERVFAIL (DNS1)", step_id="DNS1"
        )
    raise errors.PermanentError(f"the DNS server {where} answered {text} (DNS1)", step_id="DNS1")


def wait_resolves(
    where: Nameserver, api_name: str, api_int_name: str, *, timeout: float
) -> ApiIntState:
    """Until api-int resolves to api (a created record can take a moment on secondaries).

    DNS has no change notification a client can subscribe to, so this is a bounded re-query with
    backoff (0.1 s doubling to 5 s); an authoritative server answers right on the first try. A
    query that times out or is reset is one more "not yet" within `timeout` (the update was sent:
    re-sending it because a verification query was lost is not needed)."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            state = read_state(where, api_name, api_int_name)
        except errors.TransientError as exc:
            seen = f"the last query failed: {exc.message}"
        else:
            if state.state == "ok":
                return state
            seen = state.describe()
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.WaitTimeout(
                f"{api_int_name} does not resolve to {api_name} through {where} after "
                f"{timeout:.0f}s: {seen} (DNS1)",
                step_id="DNS1",
            )
        time.sleep(min(delay, left))
        delay = min(delay * 2, 5.0)
