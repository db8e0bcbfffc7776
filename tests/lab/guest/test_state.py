"""The guest's disk: locked edits, case-insensitive Windows paths, clones copy disk but not runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.guest.state import FirewallRule, GuestDisk, Runtime, Service


def test_edit_persists_and_clone_copies_disk_not_runtime(tmp_path: Path) -> None:
    src = GuestDisk(tmp_path / "vm-1")
    src.create()
    with src.edit() as st:
        st.installed = True
        st.computer_name = "win-base"
        st.put_service(Service(name="VMTools", display_name="VMware Tools", status="Running"))
    keys = src.host_path("C:\\ProgramData\\ssh")
    keys.mkdir(parents=True)
    (keys / "ssh_host_ed25519_key").write_text("k")
    src.save_runtime(Runtime(vm="vm-1", ip="127.77.0.10", powered_on=True))

    dst = GuestDisk(tmp_path / "vm-2")
    src.clone_to(dst)
    state = dst.load()
    assert state.installed and state.computer_name == "win-base"
    svc = state.service("vmtools")
    assert svc is not None and svc.status == "Running"
    assert dst.host_path("c:\\programdata\\SSH\\SSH_HOST_ED25519_KEY").read_text() == "k"
    assert dst.runtime() == Runtime()  # a clone is a new VM: no IP, not running


def test_edit_does_not_save_on_error(tmp_path: Path) -> None:
    disk = GuestDisk(tmp_path / "vm")
    disk.create()
    with pytest.raises(RuntimeError), disk.edit() as st:
        st.computer_name = "half-done"
        raise RuntimeError("boom")
    assert disk.load().computer_name == ""


def test_only_c_drive_is_on_the_disk(tmp_path: Path) -> None:
    disk = GuestDisk(tmp_path / "vm")
    disk.create()
    with pytest.raises(ValueError, match="C: drive"):
        disk.host_path("D:\\setup64.exe")


@pytest.mark.parametrize(
    ("rule", "port", "allowed"),
    [
        (FirewallRule(name="a", display_name="a", local_port=["22"]), 22, True),
        (FirewallRule(name="a", display_name="a", local_port=["10250"]), 22, False),
        (FirewallRule(name="a", display_name="a", local_port=["9000-9999"]), 9182, True),
        (FirewallRule(name="a", display_name="a", local_port=["22"], enabled=False), 22, False),
        (FirewallRule(name="a", display_name="a", local_port=["22"], action="Block"), 22, False),
        (
            FirewallRule(name="a", display_name="a", local_port=["22"], direction="Outbound"),
            22,
            False,
        ),
        (FirewallRule(name="a", display_name="a", local_port=["22"], protocol="UDP"), 22, False),
        (FirewallRule(name="a", display_name="a"), 10250, True),
    ],
)
def test_firewall_rule_matching(rule: FirewallRule, port: int, allowed: bool) -> None:
    assert rule.allows_inbound_tcp(port) is allowed
