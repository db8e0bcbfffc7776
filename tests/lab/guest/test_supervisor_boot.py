"""What a boot does to a guest's disk (lab.guest.boot), without vCenter: setup only with media and an
answer file, FirstLogonCommands through the emulator, OOBE from the pending unattend, normal boots."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import media
from lab.guest import boot
from lab.guest.control import ControlError, ControlServer
from lab.guest.state import AUTOMATIC, MANUAL, RUNNING, STOPPED, GuestDisk, Runtime, Service
from lab.guest.timing import Timing

ANSWER = """<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend" xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State">
  <settings pass="windowsPE">{windows_pe}</settings>
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup"><ComputerName>{name}</ComputerName></component>
  </settings>
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup">
      {accounts}
      <TimeZone>UTC</TimeZone>
      <FirstLogonCommands>
        <SynchronousCommand wcm:action="add"><Order>2</Order><CommandLine>Set-Content -Path C:\\second.txt -Value 2</CommandLine></SynchronousCommand>
        <SynchronousCommand wcm:action="add"><Order>1</Order><CommandLine>D:\\setup64.exe /S /v "/qn REBOOT=R"</CommandLine></SynchronousCommand>
        <SynchronousCommand wcm:action="add"><Order>3</Order><CommandLine>Get-NoSuchThing</CommandLine></SynchronousCommand>
      </FirstLogonCommands>
    </component>
  </settings>
</unattend>
"""
IMAGE = (
    '<component name="Microsoft-Windows-Setup"><ImageInstall><OSImage><InstallFrom><MetaData '
    'wcm:action="add"><Key>/IMAGE/NAME</Key><Value>{image}</Value></MetaData></InstallFrom>'
    "</OSImage></ImageInstall></component>"
)
DRIVERS = (
    '<component name="Microsoft-Windows-PnpCustomizationsWinPE"><DriverPaths><PathAndCredentials '
    'wcm:action="add" wcm:keyValue="1"><Path>{path}</Path></PathAndCredentials></DriverPaths>'
    "</component>"
)
WS2022 = "Windows Server 2022 SERVERDATACENTERCORE"
PVSCSI = r"Program Files\VMware\VMware Tools\Drivers\pvscsi\Win8\amd64"


def answer(name: str = "web1", accounts: str | None = None, windows_pe: str | None = None) -> str:
    return ANSWER.format(
        name=name,
        accounts=ACCOUNTS if accounts is None else accounts,
        windows_pe=IMAGE.format(image=WS2022) if windows_pe is None else windows_pe,
    )


ACCOUNTS = "<UserAccounts><AdministratorPassword><Value>Passw0rd!</Value><PlainText>true</PlainText></AdministratorPassword></UserAccounts>"


@pytest.fixture(scope="module")
def isos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("isos")
    out = {
        "windows": d / "win.iso",
        "tools": d / "tools.iso",
        "answer": d / "answer.iso",
        "nopw": d / "nopw.iso",
    }
    media.build_windows_iso(out["windows"], media.WINDOWS_MEDIA["current"])
    media.build_tools_iso(out["tools"], media.TOOLS_MEDIA["current"])
    media.build_iso(
        out["answer"],
        {"/autounattend.xml": answer().encode()},
        "A",
    )
    media.build_iso(out["nopw"], {"/autounattend.xml": answer(accounts="").encode()}, "A")
    return out


def guest(tmp_path: Path, cdroms: dict[str, Path]) -> tuple[GuestDisk, list[str]]:
    disk = GuestDisk(tmp_path / "vm-1")
    disk.create()
    disk.save_runtime(Runtime(vm="vm-1", name="t", ip="127.0.0.9", powered_on=True,
                              cdroms={k: str(v) for k, v in cdroms.items()}))  # fmt: skip
    return disk, []


def test_empty_disk_without_media_finds_no_os(tmp_path: Path) -> None:
    disk, lines = guest(tmp_path, {})
    out = boot.boot(disk, lines.append)
    assert (out.running, out.kind) == (False, "no-os")
    assert not disk.load().installed


def test_setup_waits_without_answer_file(tmp_path: Path, isos: dict[str, Path]) -> None:
    disk, lines = guest(tmp_path, {"D": isos["tools"], "E": isos["windows"]})
    out = boot.boot(disk, lines.append)
    assert (out.running, out.kind) == (False, "setup-waits")
    assert "autounattend.xml" in out.reason and not disk.load().installed


def test_setup_installs_and_runs_first_logon_commands_in_order(
    tmp_path: Path, isos: dict[str, Path]
) -> None:
    disk, lines = guest(tmp_path, {"D": isos["tools"], "E": isos["windows"], "F": isos["answer"]})
    out = boot.boot(disk, lines.append)
    assert (out.running, out.kind) == (True, "setup")
    # Windows runs before the first logon's commands: they are handed to the supervisor, in Order.
    assert [c[0] for c in out.first_logon] == [1, 2, 3]
    assert not disk.load().tools_version
    events: list[str] = []
    host = type("H", (), {"notify": lambda self, e, **d: events.append(e)})()
    boot.run_first_logon(disk, out.first_logon, host, lines.append, Timing(), lambda: True)
    st = disk.load()
    assert st.installed and st.build == 20348 and st.computer_name == "web1"
    assert "changed" in events
    assert st.tools_version == "12.1.5"  # order 1 ran from D:
    assert disk.host_path("C:\\second.txt").exists()  # order 2
    logged = [x for x in lines if x.startswith("FirstLogonCommand")]
    assert [x.split()[1] for x in logged] == ["1", "2", "3"]
    assert "exit 0" in logged[0] and "exit 0" not in logged[2]  # an unknown cmdlet fails
    assert any("FirstLogonCommand 3" in x for x in st.log)


def test_setup_without_password_stops_at_oobe(tmp_path: Path, isos: dict[str, Path]) -> None:
    disk, lines = guest(tmp_path, {"D": isos["tools"], "E": isos["windows"], "F": isos["nopw"]})
    out = boot.boot(disk, lines.append)
    assert (out.running, out.kind) == (False, "oobe-waits")
    assert disk.load().installed and not disk.load().tools_version


def test_oobe_applies_the_pending_unattend(tmp_path: Path) -> None:
    disk, lines = guest(tmp_path, {})
    disk.host_path("C:\\Windows").mkdir(parents=True)
    disk.host_path("C:\\Windows\\unattend.xml").write_text(answer(name="node-a"))
    with disk.edit() as st:
        st.installed, st.generalized, st.machine_sid = True, True, ""
        st.pending_unattend = "C:\\Windows\\unattend.xml"
    out = boot.boot(disk, lines.append)
    st = disk.load()
    assert out.kind == "oobe" and out.running
    assert st.computer_name == "node-a" and st.machine_sid.startswith("S-1-5-21-")
    assert not st.generalized and st.pending_unattend == ""


def test_normal_boot_starts_automatic_services_and_applies_a_pending_rename(tmp_path: Path) -> None:
    disk, lines = guest(tmp_path, {})
    with disk.edit() as st:
        st.installed, st.computer_name, st.pending_computer_name = True, "old", "new"
        st.put_service(Service("sshd", "OpenSSH SSH Server", STOPPED, AUTOMATIC))
        st.put_service(Service("ssh-agent", "OpenSSH Authentication Agent", RUNNING, MANUAL))
    out = boot.boot(disk, lines.append)
    st = disk.load()
    assert out.kind == "boot" and st.computer_name == "new" and st.boot_count == 1
    assert st.service("sshd").status == RUNNING  # type: ignore[union-attr]
    assert st.service("ssh-agent").status == STOPPED  # type: ignore[union-attr]


def test_control_socket_path_too_long(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="too long"):
        ControlServer(tmp_path / ("x" * 120) / "s.sock", lambda vm, event, data: None)


# -- G1 fidelity (docs/lab-fidelity.md "G1 boot and disk (h2)") ----------------------------------------
def _ignore(_line: str) -> None:
    """A boot log that is not looked at."""


def g1_guest(
    tmp_path: Path, isos: dict[str, Path], xml: str, *, controller: str, firmware: str = "bios"
) -> GuestDisk:
    """Windows ISO D:, Tools ISO E:, answer media F:, as the product attaches them."""
    answer_iso = tmp_path / "answer.iso"
    media.build_iso(answer_iso, {"/autounattend.xml": xml.encode()}, "A")
    disk = GuestDisk(tmp_path / "vm-g1")
    disk.create()
    cdroms = {"D": str(isos["windows"]), "E": str(isos["tools"]), "F": str(answer_iso)}
    disk.save_runtime(
        Runtime(vm="vm-g1", name="g1", ip="127.0.0.9", powered_on=True, cdroms=cdroms,
                firmware=firmware, boot_disk_controller=controller)
    )  # fmt: skip
    return disk


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (None, "has no Microsoft-Windows-PnpCustomizationsWinPE DriverPaths"),
        ("F:\\" + PVSCSI, "no pvscsi.inf there on F:"),  # the answer CD, not the Tools CD
        ("G:\\" + PVSCSI, "no drive G: in Windows PE"),
        ("E:\\Program Files\\VMware\\VMware Tools\\Drivers\\vmxnet3", "no pvscsi.inf there on E:"),
    ],
)
def test_pvscsi_disk_without_a_reachable_driver_fails_setup(
    tmp_path: Path, isos: dict[str, Path], path: str | None, why: str
) -> None:
    pe = IMAGE.format(image=WS2022) + (DRIVERS.format(path=path) if path else "")
    disk = g1_guest(tmp_path, isos, answer(windows_pe=pe), controller="pvscsi")
    out = boot.boot(disk, _ignore)
    assert (out.running, out.kind) == (False, "setup-failed")
    assert boot.DISK_CONFIGURATION_ERROR in out.reason and why in out.reason
    assert not disk.load().installed


def test_pvscsi_disk_with_driver_paths_on_the_tools_cd_installs(
    tmp_path: Path, isos: dict[str, Path]
) -> None:
    pe = IMAGE.format(image=WS2022) + DRIVERS.format(path="E:\\" + PVSCSI)
    disk = g1_guest(tmp_path, isos, answer(windows_pe=pe), controller="pvscsi")
    assert boot.boot(disk, _ignore).kind == "setup"


def test_lsi_logic_sas_disk_needs_no_driver(tmp_path: Path, isos: dict[str, Path]) -> None:
    disk = g1_guest(tmp_path, isos, answer(), controller="lsilogic-sas")
    assert boot.boot(disk, _ignore).kind == "setup"


@pytest.mark.parametrize(
    ("pe", "kind", "text"),
    [
        (IMAGE.format(image="Windows Server 2025 SERVERDATACENTERCORE"), "setup-failed",
         boot.LICENSE_TERMS_ERROR),
        (IMAGE.format(image="windows server 2022 serverdatacentercore"), "setup-failed",
         boot.LICENSE_TERMS_ERROR),
        (IMAGE.replace("/IMAGE/NAME", "/IMAGE/INDEX").format(image="7"), "setup-failed",
         boot.LICENSE_TERMS_ERROR),
        ("", "setup-waits", "Select the operating system you want to install"),
    ],
)  # fmt: skip
def test_image_selection_must_name_an_image_of_the_iso(
    tmp_path: Path, isos: dict[str, Path], pe: str, kind: str, text: str
) -> None:
    disk = g1_guest(tmp_path, isos, answer(windows_pe=pe), controller="lsilogic-sas")
    out = boot.boot(disk, _ignore)
    assert (out.running, out.kind) == (False, kind)
    assert text in out.reason and not disk.load().installed


def test_every_stand_in_iso_lists_its_images() -> None:
    assert media.WINDOWS_MEDIA["current"].images == (
        "Windows Server 2022 SERVERSTANDARDCORE",
        "Windows Server 2022 SERVERSTANDARD",
        "Windows Server 2022 SERVERDATACENTERCORE",
        "Windows Server 2022 SERVERDATACENTER",
    )
    assert media.WINDOWS_MEDIA["current-2025"].images[2] == (
        "Windows Server 2025 SERVERDATACENTERCORE"
    )
    assert all(m.images for m in media.WINDOWS_MEDIA.values())


def test_tools_iso_carries_the_pvscsi_driver(isos: dict[str, Path]) -> None:
    with media.Iso(isos["tools"]) as iso:
        assert iso.exists("E:\\" + PVSCSI + "\\pvscsi.inf")


def test_only_an_empty_efi_disk_with_the_installer_needs_a_boot_key(
    tmp_path: Path, isos: dict[str, Path]
) -> None:
    efi = g1_guest(tmp_path / "a", isos, answer(), controller="pvscsi", firmware="efi")
    bios = g1_guest(tmp_path / "b", isos, answer(), controller="pvscsi", firmware="bios")
    assert boot.needs_boot_key(efi) and not boot.needs_boot_key(bios)
    with efi.edit() as st:
        st.installed = True  # the prompt times out and Windows boots from the disk
    assert not boot.needs_boot_key(efi)


def test_a_key_counts_only_while_the_prompt_shows() -> None:
    keys = [{"at": 99.9}, {"at": 101.5}]
    assert boot.key_in_window(keys, 100.0, 2.0) == pytest.approx(1.5)
    assert boot.key_in_window(keys[:1], 100.0, 2.0) is None  # before the prompt: lost
    assert boot.key_in_window([{"at": 102.5}], 100.0, 2.0) is None  # after it timed out


def test_first_logon_stops_when_windows_goes_down(tmp_path: Path, isos: dict[str, Path]) -> None:
    disk, lines = guest(tmp_path, {"D": isos["tools"], "E": isos["windows"], "F": isos["answer"]})
    out = boot.boot(disk, lines.append)
    host = type("H", (), {"notify": lambda self, e, **d: None})()
    boot.run_first_logon(disk, out.first_logon, host, lines.append, Timing(), lambda: False)
    assert not disk.load().tools_version
    assert any("not run (Windows went down)" in x for x in lines)


def test_setup_keeps_the_answer_file_in_panther(tmp_path: Path, isos: dict[str, Path]) -> None:
    """Windows Setup caches the answer file it used in %WINDIR%\\Panther; the password stays."""
    disk, lines = guest(tmp_path, {"D": isos["tools"], "E": isos["windows"], "F": isos["answer"]})
    boot.boot(disk, lines.append)
    cached = disk.host_path(boot.PANTHER_UNATTEND)
    assert cached.is_file() and "Passw0rd!" in cached.read_text()


def _encoded(script: str) -> str:
    import base64

    return base64.b64encode(script.encode("utf-16-le")).decode()


def test_setup_complete_runs_after_oobe_of_a_generalized_image(tmp_path: Path) -> None:
    disk, lines = guest(tmp_path, {})
    from lab.guest import windows

    windows.fresh_install(disk, media.WINDOWS_MEDIA["current"].info(), "base")
    secret = disk.host_path("C:\\Windows\\Temp\\secret.xml")
    secret.write_text("Passw0rd!")
    script = disk.host_path(boot.SETUP_COMPLETE)
    script.parent.mkdir(parents=True, exist_ok=True)
    rm = _encoded("Remove-Item -Path 'C:\\Windows\\Temp\\secret.xml' -Force")
    script.write_text(f"@echo off\r\npowershell.exe -NoProfile -EncodedCommand {rm}\r\n")
    with disk.edit() as st:
        st.generalized = True
    assert boot.boot(disk, lines.append).kind == "oobe"
    assert not secret.exists()
    log = disk.host_path("C:\\Windows\\Panther\\UnattendGC\\setupact.log").read_text()
    assert "SetupComplete" in log and "exit 0" in log


def test_setup_complete_does_not_run_at_a_normal_boot(tmp_path: Path) -> None:
    disk, lines = guest(tmp_path, {})
    from lab.guest import windows

    windows.fresh_install(disk, media.WINDOWS_MEDIA["current"].info(), "base")
    keep = disk.host_path("C:\\Windows\\Temp\\keep.txt")
    keep.write_text("x")
    script = disk.host_path(boot.SETUP_COMPLETE)
    script.parent.mkdir(parents=True, exist_ok=True)
    rm = _encoded("Remove-Item -Path 'C:\\Windows\\Temp\\keep.txt' -Force")
    script.write_text(f"powershell.exe -EncodedCommand {rm}\r\n")
    assert boot.boot(disk, lines.append).kind == "boot"
    assert keep.exists()
