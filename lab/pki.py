"""The lab's certificates: CAs and the server/client certificates they sign, made once per run dir.

vCenter and the Kubernetes API server both serve TLS that clients verify by default, so the lab needs
real CAs; this module is the one place that makes them. Every file is created only when missing, so a
restarted server keeps its certificates and the kubeconfig or CA bundle a client holds stays valid.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def write_key(path: Path) -> rsa.RSAPrivateKey:
    """A new RSA-2048 private key in PEM (PKCS#1), readable by the owner only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key


def _name(cn: str, orgs: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CertDir:
    """`<stem>.crt` + `<stem>.key` pairs in one directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    def crt(self, stem: str) -> Path:
        return self.dir / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.dir / f"{stem}.key"

    def _load(self, stem: str) -> tuple[Any, x509.Certificate]:
        key = serialization.load_pem_private_key(self.key(stem).read_bytes(), None)
        return key, x509.load_pem_x509_certificate(self.crt(stem).read_bytes())

    def ca(self, stem: str, cn: str, orgs: Sequence[str] = (), days: int = 3650) -> Path:
        """A self-signed CA (key usage: sign certificates and CRLs)."""
        if self.crt(stem).exists():
            return self.crt(stem)
        key = write_key(self.key(stem))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs))
            .issuer_name(_name(cn, orgs))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now)
            .not_valid_after(self._now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        self.crt(stem).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return self.crt(stem)

    def leaf(
        self,
        stem: str,
        ca_stem: str,
        cn: str,
        *,
        orgs: Sequence[str] = (),
        server: bool,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        days: int = 365,
    ) -> tuple[Path, Path]:
        """A certificate signed by `ca_stem`, for server auth (with `dns`/`ips` as SANs) or client
        auth (subject `cn` + organisations, e.g. O=system:masters). Returns (crt, key)."""
        if self.crt(stem).exists() and self.key(stem).exists():
            return self.crt(stem), self.key(stem)
        ca_key, ca_cert = self._load(ca_stem)
        key = write_key(self.key(stem))
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now)
            .not_valid_after(self._now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                ),
                False,
            )
        )
        if dns or ips:
            alt: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            alt += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        self.crt(stem).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return self.crt(stem), self.key(stem)
