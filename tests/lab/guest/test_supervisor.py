"""The guest supervisor's pure decisions and its control socket (no servers needed)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from lab.guest.control import ControlError, ControlServer, SupervisorClient
from lab.guest.sshd import SSHD, render_config
from lab.guest.supervisor import (
    apipa_address,
    cdrom_letters,
    encode_tools_version,
    guest_ip,
    tools_version_status,
)


@pytest.mark.parametrize(
    ("version", "encoded"),
    [("12.1.5", 12325), ("11.0.6", 11270), ("10.3.10", 10346), ("", 0)],
)
def test_tools_version_encoding(version: str, encoded: int) -> None:
    assert encode_tools_version(version) == encoded


def test_tools_version_status() -> None:
    assert tools_version_status("12.1.5") == "guestToolsCurrent"
    assert tools_version_status("10.3.10") == "guestToolsSupportedOld"
    assert tools_version_status("") == "guestToolsNotInstalled"


def test_addresses() -> None:
    assert guest_ip("78", 0) == "127.78.0.1"
    assert guest_ip("78", 254) == "127.78.1.1"
    assert len({guest_ip("78", n) for n in range(1000)}) == 1000
    a = apipa_address("vm-42")
    assert a.startswith("169.254.") and a == apipa_address("vm-42") != apipa_address("vm-43")


def _cd(ctrl: int, unit: int, iso: str | None, connected: bool = True) -> Any:
    backing = vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=iso) if iso else None
    return vim.vm.device.VirtualCdrom(
        key=3000 + ctrl * 2 + unit,
        controllerKey=ctrl,
        unitNumber=unit,
        backing=backing,
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(
            connected=connected, startConnected=connected
        ),
    )


def test_cdrom_letters_follow_device_order(tmp_path: Path) -> None:
    (tmp_path / "iso").mkdir()
    for n in ("a.iso", "b.iso", "c.iso"):
        (tmp_path / "iso" / n).write_bytes(b"x")
    devices = [
        _cd(201, 0, "[LocalDS_0] iso/c.iso"),
        _cd(200, 1, "[LocalDS_0] iso/b.iso"),
        _cd(200, 0, "[LocalDS_0] iso/a.iso"),
        _cd(201, 1, "[OtherDS] iso/d.iso"),
    ]
    cds, notes = cdrom_letters(devices, "LocalDS_0", tmp_path)
    assert cds == {
        "D": str(tmp_path / "iso/a.iso"),
        "E": str(tmp_path / "iso/b.iso"),
        "F": str(tmp_path / "iso/c.iso"),
    }
    assert notes and "G:" in notes[0]


def test_disconnected_or_missing_isos_get_no_drive_content(tmp_path: Path) -> None:
    devices = [
        _cd(200, 0, "[LocalDS_0] iso/missing.iso"),
        _cd(200, 1, "[LocalDS_0] iso/x.iso", connected=False),
    ]
    cds, notes = cdrom_letters(devices, "LocalDS_0", tmp_path)
    assert cds == {} and len(notes) == 2


def test_control_roundtrip(tmp_path: Path) -> None:
    got: list[tuple[str, str, dict[str, Any]]] = []
    done = threading.Event()

    def handler(vm: str, event: str, data: dict[str, Any]) -> None:
        if event == "bogus":
            raise ValueError("unknown event")
        got.append((vm, event, data))
        done.set()

    sock = tmp_path / "s.sock"
    server = ControlServer(sock, handler)
    server.start()
    try:
        client = SupervisorClient(sock)
        assert client.ping()
        client.notify("vm-7", "changed", what="service", name="sshd")
        assert done.wait(5)
        assert got == [("vm-7", "changed", {"what": "service", "name": "sshd"})]
        with pytest.raises(ControlError, match="unknown event"):
            client.notify("vm-7", "bogus")
        with pytest.raises(ControlError, match="already answers"):
            ControlServer(sock, handler)
    finally:
        server.close()
    assert not SupervisorClient(sock, timeout=0.5).ping()
    with pytest.raises(ControlError):
        SupervisorClient(sock, timeout=0.5).notify("vm-7", "changed")


def test_sshd_config_is_accepted_by_openssh(tmp_path: Path) -> None:
    key = tmp_path / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    conf = tmp_path / "sshd_config"
    text = render_config(
        ip="127.0.0.1", host_keys=[str(key)], pid_file=tmp_path / "pid", guest_dir=tmp_path
    )
    conf.write_text(text)
    Path("/run/sshd").mkdir(exist_ok=True)
    res = subprocess.run([str(SSHD), "-t", "-f", str(conf)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for line in (
        "PasswordAuthentication no",
        "UsePAM no",
        "AllowUsers Administrator",
        "AuthorizedKeysFile none",
    ):
        assert line in text.splitlines()
    assert "-m lab.guest.emulator --guest" in text
