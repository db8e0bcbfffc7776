"""TLS trust for vCenter: verified by default, a pinned certificate thumbprint done safely.

Three ways to trust a vCenter, chosen by the caller (the `VSphereCredentials` block):

* `ca_bundle` (PEM text or a file path): the certificate chain and host name are verified.
* `thumbprint` (SHA-1 or SHA-256 hex of the server certificate, colons optional, as vCenter's UI and
  `govc about.cert` print it): the certificate the server offers is fetched once and compared, then
  exactly that certificate becomes the only trust anchor of the context (OpenSSL partial-chain mode),
  so *every* later connection of the pool is verified against it. We do not use pyvmomi's own
  `thumbprint=` argument: on the first mismatch with the CA store it switches the shared SSL context
  to CERT_NONE and later pooled connections are no longer checked at all.
* `insecure=True`: no verification. Only when explicitly asked (labs); a warning is logged.

With none of these, the system's CA store verifies the server (a vCenter with a public certificate).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import ssl
from dataclasses import dataclass

from winnodes import errors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsTrust:
    """How the server's certificate is trusted. At most one of ca_bundle/thumbprint/insecure."""

    ca_bundle: str | None = None  # PEM text, or a path to a PEM file
    thumbprint: str | None = None  # SHA-1 (40 hex) or SHA-256 (64 hex), colons allowed
    insecure: bool = False

    def __post_init__(self) -> None:
        chosen = [
            n for n, v in (("ca_bundle", self.ca_bundle), ("thumbprint", self.thumbprint)) if v
        ]
        if self.insecure:
            chosen.append("insecure")
        if len(chosen) > 1:
            raise errors.ConfigError(
                f"vsphere TLS: choose one of ca_bundle, thumbprint, insecure (got {', '.join(chosen)})"
            )
        if self.thumbprint:
            normalize_thumbprint(self.thumbprint)


def normalize_thumbprint(value: str) -> str:
    """`AB:CD:...` / `abcd...` -> lower-case hex without separators; SHA-1 or SHA-256 only."""
    hexed = value.strip().replace(":", "").replace(" ", "").lower()
    if len(hexed) not in (40, 64) or any(c not in "0123456789abcdef" for c in hexed):
        raise errors.ConfigError(
            "vsphere thumbprint: expected the SHA-1 (40 hex digits) or SHA-256 (64 hex digits) "
            "fingerprint of the vCenter certificate, colons allowed"
        )
    return hexed


def certificate_thumbprint(der: bytes, length: int = 64) -> str:
    """Hex thumbprint of a DER certificate: SHA-256 for length 64, SHA-1 for length 40."""
    algo = hashlib.sha256 if length == 64 else hashlib.sha1
    return algo(der).hexdigest()


def check_thumbprint(der: bytes, expected: str) -> None:
    """Raise Conflict (permanent, a security stop) unless `der` has the `expected` thumbprint."""
    want = normalize_thumbprint(expected)
    got = certificate_thumbprint(der, len(want))
    if not hmac.compare_digest(got, want):
        algo = "SHA-256" if len(want) == 64 else "SHA-1"
        raise errors.Conflict(
            f"vCenter certificate {algo} thumbprint is {_colons(got)}, "
            f"but {_colons(want)} is pinned: refusing to connect"
        )


def _colons(h: str) -> str:
    return ":".join(h[i : i + 2] for i in range(0, len(h), 2)).upper()


def fetch_certificate(
    host: str, port: int, timeout: float = 15.0, proxy: str | None = None
) -> bytes:
    """The DER certificate the server offers (no verification: the caller compares it)."""
    from winnodes.proxy import tunnel

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        (
            tunnel(proxy, host, port, timeout)
            if proxy
            else socket.create_connection((host, port), timeout=timeout)
        ) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise errors.ConnectionLost(f"{host}:{port} offered no TLS certificate")
    return der


def _looks_like_pem(value: str) -> bool:
    return "-----BEGIN CERTIFICATE-----" in value


def ssl_context(
    trust: TlsTrust, host: str, port: int, timeout: float = 15.0, proxy: str | None = None
) -> ssl.SSLContext:
    """An SSLContext for every connection to `host:port` (SOAP and datastore HTTP) per `trust`.

    Raises:
        Conflict: the pinned thumbprint does not match (permanent).
        ConfigError: the CA bundle cannot be read.
    """
    if trust.insecure:
        log.warning("TLS verification of vCenter %s:%s is DISABLED (insecure=True)", host, port)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if trust.thumbprint:
        der = fetch_certificate(host, port, timeout, proxy)
        check_thumbprint(der, trust.thumbprint)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # the pin replaces the name check: it names one certificate
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.load_verify_locations(cadata=der)
        return ctx
    if trust.ca_bundle:
        try:
            if _looks_like_pem(trust.ca_bundle):
                return ssl.create_default_context(cadata=trust.ca_bundle)
            if not os.path.isfile(trust.ca_bundle):
                raise errors.ConfigError(
                    "vsphere ca_bundle: neither PEM text nor an existing file path"
                )
            return ssl.create_default_context(cafile=trust.ca_bundle)
        except ssl.SSLError as exc:
            raise errors.ConfigError(f"vsphere ca_bundle: not a usable PEM bundle ({exc})") from exc
    return ssl.create_default_context()
