"""DNS update credentials as a Prefect block: the server, the zone and the TSIG key for DNS1.

With this block, DNS1 adds `api-int` itself (RFC 2136, signed with TSIG); without it, DNS1 only
checks and reports the exact record an administrator must add. The TSIG secret is a `SecretStr`,
never shown in repr, logs or exceptions.
"""

from __future__ import annotations

import base64
import binascii

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from winnodes.dns.client import DEFAULT_TIMEOUT, Nameserver, TsigUpdater

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5")


class DnsUpdateCredentials(Block):
    """An authoritative DNS server that accepts TSIG-signed dynamic updates of the cluster's zone.

    Example:
        ```python
        creds = DnsUpdateCredentials.load("dns-update")
        updater = creds.updater()  # winnodes.dns.client.TsigUpdater
        ```
    """

    _block_type_name = "DNS Update Credentials"
    _block_type_slug = "winnodes-dns-update-credentials"
    _description = "DNS server, zone and TSIG key for RFC 2136 updates of api-int (DNS1)."

    model_config = ConfigDict(hide_input_in_errors=True)

    server: str = Field(description="Primary (authoritative) DNS server: IP address or host name.")
    port: int = Field(default=53, ge=1, le=65535, description="DNS port (TCP is used for updates).")
    zone: str = Field(
        description="Zone to update, e.g. 'example.com' (contains api-int.<cluster>)."
    )
    key_name: str = Field(description="TSIG key name, as in the server's `key` statement.")
    algorithm: str = Field(
        default="hmac-sha256",
        description="TSIG algorithm, e.g. 'hmac-sha256' (tsig-keygen's default).",
    )
    secret: SecretStr = Field(description="TSIG secret (base64), as `tsig-keygen` prints it.")
    timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT, gt=0, description="Timeout of one query or update, in seconds."
    )

    @model_validator(mode="after")
    def _check(self) -> DnsUpdateCredentials:
        if self.algorithm.lower().rstrip(".") not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
        try:
            raw = base64.b64decode(self.secret.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("secret is not base64 (copy it from the tsig-keygen output)") from None
        if len(raw) < 16:
            raise ValueError("secret is shorter than 128 bits")
        return self

    def nameserver(self) -> Nameserver:
        """The server as a resolver target (api-int is checked where it is updated)."""
        return Nameserver(self.server, self.port, self.timeout_seconds)

    def updater(self) -> TsigUpdater:
        """What `winnodes.dns.client.update_api_int` needs, secret included."""
        return TsigUpdater(
            server=self.server,
            port=self.port,
            zone=self.zone.rstrip("."),
            key_name=self.key_name,
            algorithm=self.algorithm.lower().rstrip("."),
            secret=self.secret.get_secret_value(),
            timeout=self.timeout_seconds,
        )
