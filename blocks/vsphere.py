"""The vCenter connection as a Prefect block: server, credentials, TLS trust -> a logged-in session.

A block holds connection settings and builds the client, nothing else (the prefect-aws /
prefect-kubernetes shape): tasks load it by name and call `connect()`. The password is a `SecretStr`,
stored encrypted by Prefect and never shown in repr, logs or exceptions. TLS is verified by default;
`insecure` exists for labs and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from winnodes.errors import ConfigError
from winnodes.vsphere import TlsTrust, VSphereSession, connect
from winnodes.vsphere.session import DEFAULT_TIMEOUT, parse_server


class VSphereCredentials(Block):
    """Connection to a vCenter server: where, who, and how its TLS certificate is trusted.

    Exactly one trust option applies: `ca_bundle` (verify chain and host name), `thumbprint` (pin
    the server certificate), or `insecure` (no verification, labs only). With none, the system CA
    store verifies the server.

    Example:
        ```python
        creds = VSphereCredentials.load("vsphere-credentials")
        with creds.connect() as session:
            ...
        ```
    """

    _block_type_name = "vSphere Credentials"
    _block_type_slug = "winnodes-vsphere-credentials"
    _description = (
        "vCenter server, user and password, with TLS verified by CA bundle or thumbprint."
    )

    model_config = ConfigDict(hide_input_in_errors=True)

    server: str = Field(
        description="vCenter host name or IP, optionally with ':port' (default 443), e.g. "
        "'vcenter.example.com'.",
    )
    username: str = Field(description="vCenter user, e.g. 'administrator@vsphere.local'.")
    password: SecretStr = Field(description="Password of the vCenter user.")
    ca_bundle: str | None = Field(
        default=None,
        description="CA certificate(s) that signed vCenter's certificate: PEM text, or the path of a "
        "PEM file on the worker. The chain and the host name are verified.",
    )
    thumbprint: str | None = Field(
        default=None,
        description="Pinned SHA-256 (or SHA-1) thumbprint of vCenter's certificate, hex with or "
        "without colons (as `govc about.cert -thumbprint` or the vSphere UI shows it). Only that "
        "exact certificate is accepted.",
    )
    insecure: bool = Field(
        default=False,
        description="DANGER: skip TLS verification entirely, so anyone on the network path can "
        "read the password and impersonate vCenter. Only for throw-away labs.",
    )
    https_proxy: str | None = Field(
        default=None,
        description="HTTP proxy 'host:port' between the product's workers and vCenter (SOAP and "
        "datastore transfers tunnel through it with CONNECT; TLS stays verified end to end).",
    )
    timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT,
        gt=5,
        description="Timeout of each HTTP request to vCenter (connect and read), in seconds.",
    )

    @model_validator(mode="after")
    def _check(self) -> VSphereCredentials:
        try:
            parse_server(self.server)
            self.trust()
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return self

    def trust(self) -> TlsTrust:
        """The TLS trust these settings describe."""
        return TlsTrust(
            ca_bundle=self.ca_bundle, thumbprint=self.thumbprint, insecure=self.insecure
        )

    def login(self) -> VSphereSession:
        """A logged-in vCenter session that the caller must `logout()` (see `connect()` for the
        errors): for sessions shared beyond one `with` block, e.g. by the tasks of a flow run."""
        return VSphereSession(
            self.server,
            self.username,
            self.password.get_secret_value(),
            trust=self.trust(),
            timeout=self.timeout_seconds,
        ).login()

    def identity(self) -> str:
        """A digest of everything a session depends on (server, user, password, TLS trust,
        timeout): equal digests may share a session. Never shows the password."""
        parts = [
            self.server,
            self.username,
            self.password.get_secret_value(),
            self.ca_bundle or "",
            self.thumbprint or "",
            str(self.insecure),
            str(self.timeout_seconds),
        ]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    @contextlib.contextmanager
    def connect(self) -> Iterator[VSphereSession]:
        """A logged-in vCenter session, logged out when the block exits.

        Raises:
            AuthenticationError: wrong user or password (permanent).
            Conflict: the certificate is not trusted / the pin does not match (permanent).
            ConnectionLost / ApiUnavailable: vCenter unreachable or failing (transient).
        """
        with connect(
            self.server,
            self.username,
            self.password.get_secret_value(),
            trust=self.trust(),
            timeout=self.timeout_seconds,
            proxy=self.https_proxy,
        ) as session:
            yield session
