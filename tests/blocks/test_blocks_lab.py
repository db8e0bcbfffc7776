"""The blocks against the lab: configuration in, connected clients out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks.vsphere import VSphereCredentials
from blocks.windows import WindowsAccess
from lab import scenario
from tests.winnodes.vsphere.lab_support import small_lab
from winnodes import errors
from winnodes.guest import fetch_host_key
from winnodes.vsphere import inventory

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from small_lab(tmp_path_factory.mktemp("lab-blocks"))


def _creds(env: dict[str, str], **trust: str | bool) -> VSphereCredentials:
    return VSphereCredentials(
        server=env["LAB_VSPHERE_SERVER"],
        username=env["LAB_VSPHERE_USERNAME"],
        password=SecretStr(env["LAB_VSPHERE_PASSWORD"]),
        **trust,  # type: ignore[arg-type]
    )


def test_vsphere_credentials_connect(env: dict[str, str]) -> None:
    for trust in (
        {"ca_bundle": env["LAB_VSPHERE_CA_FILE"]},
        {"thumbprint": env["LAB_VSPHERE_THUMBPRINT"]},
        {"insecure": True},
    ):
        with _creds(env, **trust).connect() as session:
            assert inventory.datacenter(session, env["LAB_VSPHERE_DATACENTER"])
    with pytest.raises(errors.Conflict), _creds(env).connect():
        pass  # no trust configured: the system CAs do not know the lab's CA


def test_windows_access_ssh(env: dict[str, str]) -> None:
    access = WindowsAccess(
        ssh_private_key=SecretStr(Path(env["LAB_SSH_PRIVATE_KEY"]).read_text()),
        administrator_password=SecretStr("Lab-Passw0rd!"),
    )
    site = scenario.Site.from_env(env)
    with scenario.connect(site) as si:
        vm, ip = scenario.install_windows(
            si, site, f"h-blocks-{uuid.uuid4().hex[:6]}", access.public_key()
        )
        try:
            with access.ssh(ip, fetch_host_key(ip), step_id="G5") as guest:
                out = guest.run_checked(
                    "Get-Content -Path 'C:\\ProgramData\\ssh\\administrators_authorized_keys'",
                    step_id="G5",
                )
                assert access.public_key() in out.stdout
        finally:
            scenario.destroy(si, vm)
