"""The golden image flow end to end against the lab (vcsim + the Windows guest twin).

Each test builds through the real flow (Prefect test harness, blocks saved by name, pyvmomi over
HTTPS to vcsim, paramiko to the guests' real sshd) and checks the end state in vCenter and in the
guest, independently of the product where it matters (the lab's own `scenario` helpers).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.vsphere import VSphereCredentials
from blocks.windows import WindowsAccess
from flows.golden_image import GoldenImageResult, golden_image
from lab import scenario
from tests.winnodes.vsphere.lab_support import small_lab
from winnodes import errors
from winnodes.model.config import GoldenImageConfig
from winnodes.vsphere import connect, inventory, vms
from winnodes.vsphere.tls import TlsTrust

pytestmark = pytest.mark.lab

PASSWORD = "Lab-Passw0rd!"
VC_BLOCK = "golden-vsphere"
WIN_BLOCK = "golden-windows"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from small_lab(tmp_path_factory.mktemp("lab-golden"))


@pytest.fixture(scope="module")
def blocks(env: dict[str, str], prefect_api: None) -> None:
    VSphereCredentials(
        server=env["LAB_VSPHERE_SERVER"],
        username=env["LAB_VSPHERE_USERNAME"],
        password=SecretStr(env["LAB_VSPHERE_PASSWORD"]),
        ca_bundle=env["LAB_VSPHERE_CA_FILE"],
    ).save(VC_BLOCK, overwrite=True)
    WindowsAccess(
        ssh_private_key=SecretStr(Path(env["LAB_SSH_PRIVATE_KEY"]).read_text()),
        administrator_password=SecretStr(PASSWORD),
    ).save(WIN_BLOCK, overwrite=True)


def make_config(env: dict[str, str], profile: str = "current", **over: Any) -> GoldenImageConfig:
    tag = uuid.uuid4().hex[:5]
    data: dict[str, Any] = {
        "profile": profile,
        "vsphere_credentials_block": VC_BLOCK,
        "windows_access_block": WIN_BLOCK,
        "placement": {
            "datacenter": env["LAB_VSPHERE_DATACENTER"],
            "cluster": env["LAB_VSPHERE_CLUSTER"],
            "datastore": env["LAB_VSPHERE_DATASTORE"],
            "folder": env["LAB_VSPHERE_FOLDER"],
            "network": env["LAB_VSPHERE_NETWORK"],
        },
        "source": {
            "windows_iso": env[
                "LAB_WINDOWS_ISO_OCP49" if profile == "ocp-4.9" else "LAB_WINDOWS_ISO_CURRENT"
            ],
            "tools_iso": env["LAB_TOOLS_ISO"],
        },
        "hardware": {"num_cpus": 2, "memory_mib": 4096, "disk_gib": 40},
        "unattend": {"computer_name": "winworker"},
        "names": {"base_vm": f"gi-base-{tag}", "template_series": f"gi-{tag}"},
        "keep_templates": 2,
        "timeouts": {
            "vcenter_task_seconds": 60,
            "install_seconds": 60,
            "ssh_seconds": 20,
            "command_seconds": 60,
            "sysprep_seconds": 60,
        },
    }
    for key, value in over.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return GoldenImageConfig.model_validate(data)


@pytest.fixture
def session(env: dict[str, str]) -> Iterator[Any]:
    with connect(
        env["LAB_VSPHERE_SERVER"],
        env["LAB_VSPHERE_USERNAME"],
        env["LAB_VSPHERE_PASSWORD"],
        trust=TlsTrust(ca_bundle=env["LAB_VSPHERE_CA_FILE"]),
    ) as s:
        yield s


def vm_names(session: Any, env: dict[str, str], prefix: str) -> list[str]:
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    found = inventory.contents(session, folder, vms.vim.VirtualMachine, ["name"], recursive=False)
    return sorted(f.props["name"] for f in found if f.props["name"].startswith(prefix))


def assert_valid_template(
    session: Any, env: dict[str, str], gi: GoldenImageConfig, result: GoldenImageResult
) -> None:
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    ref = vms.find_vm(session, folder, result.template)
    assert ref is not None and ref.template and ref.power_state == "poweredOff"
    attrs = vms.custom_attributes(session, ref.obj)
    assert attrs["winnodes.build"] == result.build_id
    assert attrs["winnodes.profile"] == gi.profile
    assert attrs["winnodes.ssh.fingerprint"] == result.ssh_fingerprint
    assert attrs["winnodes.tools.version"] == "12.1.5"
    assert attrs["winnodes.flow.run"]
    # The base VM stays un-sysprepped, and the answer media (Administrator password) is gone.
    base = vms.find_vm(session, folder, gi.names.base_vm)
    assert base is not None and not base.template and base.power_state == "poweredOn"
    assert not inventory.datastore_file_exists(
        session, f"[{gi.placement.datastore}] winnodes/{gi.names.base_vm}-answers.iso"
    )


@pytest.mark.parametrize("profile", ["current", "ocp-4.9"])
def test_full_build_per_profile(
    env: dict[str, str], blocks: None, session: Any, profile: str
) -> None:
    gi = make_config(env, profile)
    t0 = time.monotonic()
    result = golden_image(gi)
    print(f"\nbuild {profile}: {time.monotonic() - t0:.1f}s wall")
    assert result.created
    assert_valid_template(session, env, gi, result)
