"""The answer media: autounattend.xml + first-logon scripts, as an ISO read back with pycdlib."""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET

import pycdlib
import pytest

from tests.winnodes.conftest import GOOD_PASSWORD
from winnodes.model import PipelineConfig
from winnodes.render import answer_media as am

NS = {"u": "urn:schemas-microsoft-com:unattend"}
PUBKEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 winnodes"


def _read_iso(data: bytes) -> dict[str, bytes]:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    files: dict[str, bytes] = {}
    facade = iso.get_joliet_facade()

    def walk(d: str) -> None:
        for child in facade.list_children(d):
            name = child.file_identifier().decode("utf-16-be")
            if name in ("\x00", "\x01", ".", ".."):
                continue
            full = f"{d.rstrip('/')}/{name}"
            if child.is_dir():
                walk(full)
            else:
                out = io.BytesIO()
                facade.get_file_from_iso_fp(out, joliet_path=full)
                files[full] = out.getvalue()

    walk("/")
    assert iso.has_rock_ridge()
    iso.close()
    return files


def test_answer_iso_holds_autounattend_at_the_root(config: PipelineConfig) -> None:
    files = am.answer_media_files(config.golden_image, GOOD_PASSWORD, PUBKEY)
    back = _read_iso(am.render_answer_iso(files))
    assert back == files
    assert "/autounattend.xml" in back
    ET.fromstring(back["/autounattend.xml"])


def test_long_names_survive_in_rock_ridge() -> None:
    data = am.render_answer_iso({"/a/long-directory-name/some.long.file-name.ps1": b"x"})
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    rr = iso.get_rock_ridge_facade()
    out = io.BytesIO()
    rr.get_file_from_iso_fp(out, rr_path="/a/long-directory-name/some.long.file-name.ps1")
    iso.close()
    assert out.getvalue() == b"x"


def test_iso_name_collisions_are_refused() -> None:
    with pytest.raises(ValueError, match="collides"):
        am.render_answer_iso({"/abcdefghij1.ps1": b"1", "/abcdefghij2.ps1": b"2"})


def test_first_logon_commands_run_each_script_from_whichever_cd(config: PipelineConfig) -> None:
    files = am.answer_media_files(config.golden_image, GOOD_PASSWORD, PUBKEY)
    root = ET.fromstring(files["/autounattend.xml"])
    lines = [c.text or "" for c in root.iterfind(".//u:SynchronousCommand/u:CommandLine", NS)]
    scripts = [am.TOOLS_CONF_SCRIPT, am.TOOLS_SCRIPT, am.OPENSSH_SCRIPT]
    assert len(lines) == 3
    for line, script in zip(lines, scripts, strict=True):
        assert line.startswith("powershell.exe -NoProfile -ExecutionPolicy Bypass -EncodedCommand ")
        assert len(line) < 1024  # Windows' limit for a SynchronousCommand
        assert not set(line) & set("$\"'%&|")  # nothing cmd.exe or a PowerShell parent interprets
        decoded = base64.b64decode(line.split()[-1]).decode("utf-16-le")
        assert decoded == (
            "'D:','E:','F:','G:','H:','I:','J:' | "
            f'ForEach-Object {{ "$_\\winnodes\\{script}" }} | '
            "Where-Object { Test-Path -Path $_ } | ForEach-Object { & $_ }"
        )
        assert f"/winnodes/{script}" in files


def test_scripts_do_what_g2_g3a_g4_g5_need(config: PipelineConfig) -> None:
    files = am.answer_media_files(config.golden_image, GOOD_PASSWORD, PUBKEY)
    tools = files[f"/winnodes/{am.TOOLS_SCRIPT}"].decode()
    conf = files[f"/winnodes/{am.TOOLS_CONF_SCRIPT}"].decode()
    ssh = files[f"/winnodes/{am.OPENSSH_SCRIPT}"].decode()
    for s in (tools, conf, ssh):
        assert "\r\n" in s and s.isascii()
        assert "$ErrorActionPreference = 'Stop'" in s
    assert "'D:\\setup64.exe'" in tools
    assert "Start-Process -FilePath $setup -ArgumentList '/s /v \"/qn REBOOT=R\"' -Wait" in tools
    assert (
        "Set-Content -Path 'C:\\ProgramData\\VMware\\VMware Tools\\tools.conf' "
        "-Value '[guestinfo]','exclude-nics='" in conf
    )
    assert "Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0'" in ssh
    for svc in ("sshd", "ssh-agent"):
        assert f"Set-Service -Name '{svc}' -StartupType Automatic" in ssh
        assert f"Start-Service -Name '{svc}'" in ssh
    assert f"-Value '{PUBKEY}'" in ssh
    assert '/inheritance:r /grant "Administrators:F" /grant "SYSTEM:F"' in ssh
    assert "-LocalPort 22" in ssh and "Where-Object { $_.Name -eq 'OpenSSH-Server-In-TCP' }" in ssh
    # the key is written before the ACL is tightened, and after sshd created the directory
    assert ssh.index("Start-Service -Name 'sshd'") < ssh.index("Set-Content") < ssh.index("icacls")
    assert "Out-File" not in ssh  # UTF-16 in Windows PowerShell 5.1: sshd cannot read it
    # no PowerShell outside the subset: functions, try/catch, loops, .NET calls
    for s in (tools, conf, ssh):
        for banned in ("function ", "try {", "catch", "foreach (", "while (", "[System.", "::"):
            assert banned not in s


def test_password_is_only_in_autounattend(config: PipelineConfig) -> None:
    files = am.answer_media_files(config.golden_image, GOOD_PASSWORD, PUBKEY)
    holding = [p for p, data in files.items() if GOOD_PASSWORD.encode() in data]
    assert holding == ["/autounattend.xml"]


def test_install_cds_put_the_tools_cd_on_e() -> None:
    assert am.INSTALL_CDS == ("windows", "tools", "answer")
    assert [am.cd_letter(r) for r in am.INSTALL_CDS] == ["D", "E", "F"]


@pytest.mark.parametrize(("controller", "driver_paths"), [("pvscsi", 1), ("lsilogic-sas", 0)])
def test_driver_paths_only_for_pvscsi(
    config: PipelineConfig, controller: str, driver_paths: int
) -> None:
    gi = config.golden_image.model_copy(
        update={
            "hardware": config.golden_image.hardware.model_copy(
                update={"disk_controller": controller}
            )
        }
    )
    xml = am.answer_media_files(gi, GOOD_PASSWORD, PUBKEY)["/autounattend.xml"].decode()
    paths = ET.fromstring(xml).findall(".//u:DriverPaths/u:PathAndCredentials/u:Path", NS)
    assert len(paths) == driver_paths
    if paths:
        assert paths[0].text is not None and paths[0].text.startswith(am.cd_letter("tools") + ":\\")


def test_first_logon_progress_names_the_last_completed_and_the_pending_command() -> None:
    from winnodes.render.answer_media import first_logon_progress

    none = first_logon_progress(None)
    assert none.last_done is None and none.pending is not None and none.pending.order == 1
    started = first_logon_progress("3 started G4/G5 OpenSSH and admin key")
    assert started.last_done is not None and started.last_done.order == 2
    assert started.pending is not None and started.pending.order == 3
    assert "last completed first-logon command: 2 (G2 install VMware Tools)" in started.describe()
    done = first_logon_progress("3 done G4/G5 OpenSSH and admin key")
    assert done.pending is None and done.last_done is not None and done.last_done.order == 3


def test_openssh_script_variants() -> None:
    from winnodes.render.answer_media import PROGRESS_KEY, openssh_script

    online = openssh_script("ssh-rsa AAAA x")
    assert "Add-WindowsCapability -Online" in online and "msiexec" not in online
    assert f"info-set {PROGRESS_KEY} 3 started" in online and f"{PROGRESS_KEY} 3 done" in online
    offline = openssh_script("ssh-rsa AAAA x", from_msi=True, winhttp_proxy="proxy:3128")
    assert "Add-WindowsCapability" not in offline and "msiexec.exe" in offline
    assert "netsh winhttp set proxy proxy-server='proxy:3128'" in offline
