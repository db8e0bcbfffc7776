"""Access to the Windows guests as a Prefect block: the administrator's SSH key and password.

The SSH private key is the one WMCO will use from the `cloud-private-key` secret (PRE-3), so the block
checks it with WMCO's rules when it is created (`winnodes.validate.keys`: PEM, no passphrase, RSA of
at least 2048 bits unless other types are explicitly allowed), not when a Machine fails to join
hours later. The Administrator password goes into unattend.xml (G9) and is checked the same way
(`winnodes.validate.rules.check_admin_password`: not empty, not the `MyPassword` placeholder, Windows
complexity). Neither secret appears in repr, logs or exceptions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from winnodes.guest import GuestSession, connect_guest
from winnodes.guest.ssh import DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT
from winnodes.validate.keys import FIELD, check_private_key, inspect_private_key
from winnodes.validate.rules import check_admin_password


class WindowsAccess(Block):
    """Administrator access to the Windows guests: SSH key (WMCO's rules) and unattend password.

    Example:
        ```python
        access = WindowsAccess.load("windows-access")
        with access.ssh("10.0.0.5", host_key=recorded_key) as guest:
            guest.run_checked("Get-Service sshd", step_id="G4")
        ```
    """

    _block_type_name = "Windows Access"
    _block_type_slug = "winnodes-windows-access"
    _description = "Administrator SSH key (as in cloud-private-key) and the unattend.xml password."

    model_config = ConfigDict(hide_input_in_errors=True)

    admin_user: str = Field(
        default="Administrator",
        description="Windows account WMCO and the golden image flow log in as over SSH.",
    )
    ssh_private_key: SecretStr = Field(
        description="Private key (PEM text, no passphrase; RSA >= 2048 bits) whose public half goes "
        "into administrators_authorized_keys; the same key as the cluster's cloud-private-key secret.",
    )
    administrator_password: SecretStr = Field(
        description="Administrator password written into unattend.xml at sysprep (G9). Never empty, "
        "never the 'MyPassword' placeholder; must meet Windows' complexity policy.",
    )
    allow_non_rsa_key: bool = Field(
        default=False,
        description="Accept an Ed25519/ECDSA key. WMCO documents RSA only; enable consciously.",
    )
    ssh_proxy: str | None = Field(
        default=None,
        description="HTTP CONNECT proxy 'host:port' between the product's workers and the guests' "
        "SSH port, for sites where the VM network is reachable only through it.",
    )
    connect_timeout_seconds: float = Field(
        default=DEFAULT_CONNECT_TIMEOUT, gt=0, description="SSH connect/handshake timeout."
    )
    command_timeout_seconds: float = Field(
        default=DEFAULT_COMMAND_TIMEOUT, gt=0, description="Default deadline of one guest command."
    )

    @model_validator(mode="after")
    def _check(self) -> WindowsAccess:
        problems = check_private_key(
            self.ssh_private_key.get_secret_value(),
            field=FIELD,
            allow_non_rsa=self.allow_non_rsa_key,
        )
        problems += check_admin_password(self.administrator_password.get_secret_value())
        if problems:
            raise ValueError("; ".join(p.message for p in problems))
        return self

    def public_key(self, comment: str = "") -> str:
        """The OpenSSH public key line (`ssh-rsa AAAA... [comment]`) for authorized keys (G5)."""
        info, _ = inspect_private_key(self.ssh_private_key.get_secret_value(), allow_non_rsa=True)
        assert info is not None  # validated on construction
        return f"{info.public_openssh} {comment}".strip()

    def fingerprint(self) -> str:
        """`SHA256:...` of the key, as `ssh-keygen -l` prints it (recorded on the template, G10)."""
        info, _ = inspect_private_key(self.ssh_private_key.get_secret_value(), allow_non_rsa=True)
        assert info is not None
        return info.fingerprint

    @contextlib.contextmanager
    def ssh(
        self,
        host: str,
        host_key: str,
        *,
        port: int = 22,
        step_id: str | None = None,
        command_timeout: float | None = None,
    ) -> Iterator[GuestSession]:
        """A verified SSH session to a guest (see `winnodes.guest.ssh` for where `host_key`, an
        OpenSSH key line or a `SHA256:` fingerprint, comes from). Closed when the block exits.
        `command_timeout` (default: the block's) also bounds each SFTP transfer."""
        with connect_guest(
            host,
            port=port,
            username=self.admin_user,
            private_key=self.ssh_private_key.get_secret_value(),
            host_key=host_key,
            connect_timeout=self.connect_timeout_seconds,
            command_timeout=command_timeout or self.command_timeout_seconds,
            secrets=[
                self.administrator_password.get_secret_value(),
                self.ssh_private_key.get_secret_value(),
            ],
            step_id=step_id,
            proxy=self.ssh_proxy,
        ) as session:
            yield session
