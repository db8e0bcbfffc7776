"""windows.py: what setup leaves, host keys, the admin key ACL rule, Tools' IP reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.guest import windows
from lab.guest.state import GuestDisk
from tests.lab.guest.emulator_helpers import MEDIA_CURRENT, MEDIA_OCP49, make_guest


@pytest.mark.parametrize(
    ("media", "kb", "build"),
    [(MEDIA_CURRENT, "KB5012637", 20348), (MEDIA_OCP49, "KB4565351", 19042)],
)
def test_fresh_install_per_profile(
    tmp_path: Path, media: dict[str, object], kb: str, build: int
) -> None:
    disk = make_guest(tmp_path, media)
    st = disk.load()
    assert st.installed and st.build == build and [h.hotfix_id for h in st.hotfixes] == [kb]
    assert st.product_name == media["product_name"] and st.computer_name == "winhost"
    assert st.machine_sid.startswith("S-1-5-21-")
    for absent in ("sshd", "vmtools", "docker"):
        assert absent not in st.services
    assert (st.services["winrm"].status, st.services["winrm"].start_type) == (
        "Running",
        "Automatic",
    )
    assert st.capabilities["OpenSSH.Client~~~~0.0.1.0"] == "Installed"
    assert st.capabilities["OpenSSH.Server~~~~0.0.1.0"] == "NotPresent"
    for port in (22, 10250, 9182):
        assert not st.allows_inbound_tcp(port)
    assert disk.host_path("C:\\Windows\\System32\\Sysprep\\sysprep.exe").is_file()
    for d in ("C:\\ProgramData", "C:\\Users\\Administrator", "C:\\Program Files"):
        assert disk.host_path(d).is_dir()
    assert st.tools_version == "" and st.container_runtime == ""


def test_ensure_host_keys_is_idempotent(tmp_path: Path) -> None:
    disk = make_guest(tmp_path)
    keys = windows.ensure_host_keys(disk)
    assert [Path(k).name for k in keys] == [
        "ssh_host_rsa_key",
        "ssh_host_ecdsa_key",
        "ssh_host_ed25519_key",
    ]
    before = Path(keys[0]).read_bytes()
    assert windows.ensure_host_keys(disk) == keys
    assert Path(keys[0]).read_bytes() == before
    Path(keys[0]).unlink()
    windows.ensure_host_keys(disk)
    assert Path(keys[0]).read_bytes() != before


def test_authorized_keys_acl(tmp_path: Path) -> None:
    disk = make_guest(tmp_path)
    path = disk.host_path(windows.ADMIN_KEYS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ssh-ed25519 AAAAC3 a\r\n\r\n# comment\r\nssh-rsa AAAAB3 b\r\n")
    assert windows.authorized_keys_for_admin(disk) == []  # default ACL: Users can read
    with disk.edit() as st:
        st.acls[windows.ADMIN_KEYS.lower()] = [
            "NT AUTHORITY\\SYSTEM:(F)",
            "BUILTIN\\Administrators:(F)",
        ]
    assert windows.authorized_keys_for_admin(disk) == ["ssh-ed25519 AAAAC3 a", "ssh-rsa AAAAB3 b"]
    with disk.edit() as st:
        st.acls[windows.ADMIN_KEYS.lower()].append("NT AUTHORITY\\Authenticated Users:(RX)")
    assert windows.authorized_keys_for_admin(disk) == []


def test_reports_ip(tmp_path: Path) -> None:
    disk: GuestDisk = make_guest(tmp_path)
    assert windows.reports_ip(disk)
    with disk.edit() as st:
        st.adapters.append("vEthernet (Ethernet0)")
    assert not windows.reports_ip(disk)
    conf = disk.host_path(windows.TOOLS_CONF)
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("[logging]\nlog=true\n")
    assert not windows.reports_ip(disk)
    conf.write_text("[guestinfo]\r\nexclude-nics=\r\n")
    assert windows.reports_ip(disk)
