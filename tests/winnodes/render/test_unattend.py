"""unattend.xml (G9) equals the seed's example with the settings filled in; autounattend.xml (G1)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.winnodes.conftest import GOOD_PASSWORD
from winnodes.errors import ConfigError
from winnodes.model import PipelineConfig
from winnodes.model.config import UnattendSettings
from winnodes.render.unattend import FirstLogonCommand, render_autounattend, render_unattend

NS = {"u": "urn:schemas-microsoft-com:unattend"}
WCM = "{http://schemas.microsoft.com/WMIConfig/2002/State}action"
SEED = Path(__file__).parent / "data" / "unattend-seed.xml"


def _shell_setup(root: ET.Element, pass_name: str) -> ET.Element:
    comp = root.find(
        f"u:settings[@pass='{pass_name}']/u:component[@name='Microsoft-Windows-Shell-Setup']", NS
    )
    assert comp is not None
    return comp


def _text(el: ET.Element, path: str) -> str | None:
    found = el.find(path, NS)
    return None if found is None else found.text


def test_equals_the_seed_example_with_the_seed_values() -> None:
    seed = SEED.read_text()
    settings = UnattendSettings(
        computer_name="winhost",
        time_zone="Eastern Standard Time",
        organization="Organization",
        owner="Owner",
    )
    rendered = render_unattend(settings, "Str0ng!Passw0rd")
    assert rendered == seed.replace("MyPassword", "Str0ng!Passw0rd")


def test_parses_back_with_the_settings() -> None:
    settings = UnattendSettings(
        computer_name="win-01", time_zone="UTC", organization="A & B", owner="<me>"
    )
    password = "P<a>&\"ss'w0rd"
    root = ET.fromstring(render_unattend(settings, password))
    spec = _shell_setup(root, "specialize")
    assert _text(spec, "u:ComputerName") == "win-01"
    oobe = _shell_setup(root, "oobeSystem")
    assert _text(oobe, "u:AutoLogon/u:Enabled") == "false"
    assert _text(oobe, "u:UserAccounts/u:AdministratorPassword/u:Value") == password
    assert _text(oobe, "u:UserAccounts/u:AdministratorPassword/u:PlainText") == "true"
    assert _text(oobe, "u:RegisteredOrganization") == "A & B"
    assert _text(oobe, "u:RegisteredOwner") == "<me>"
    assert _text(oobe, "u:TimeZone") == "UTC"
    assert _text(oobe, "u:OOBE/u:NetworkLocation") == "Work"
    assert _text(oobe, "u:OOBE/u:ProtectYourPC") == "1"
    passes = [s.get("pass") for s in root.findall("u:settings", NS)]
    assert passes == ["specialize", "oobeSystem"]
    assert "MyPassword" not in render_unattend(settings, password)


@pytest.mark.parametrize(
    ("name", "password", "rule"),
    [
        ("winhost", "MyPassword", "not-placeholder"),
        ("winhost", "", "not-empty"),
        ("WINHOST", GOOD_PASSWORD, "dns-1123-label"),
        ("a-very-long-computer-name", GOOD_PASSWORD, "max-length"),
    ],
)
def test_refuses_what_sysprep_would(name: str, password: str, rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        render_unattend(UnattendSettings(computer_name=name), password)
    assert [p.rule for p in info.value.problems] == [rule]
    assert info.value.step_id == "G9"
    if password:
        assert password not in str(info.value).replace("'MyPassword' placeholder", "")


@pytest.mark.parametrize(("firmware", "partition"), [("efi", "3"), ("bios", "1")])
def test_autounattend(config: PipelineConfig, firmware: str, partition: str) -> None:
    gi = config.golden_image.model_copy(
        update={"hardware": config.golden_image.hardware.model_copy(update={"firmware": firmware})}
    )
    cmds = [
        FirstLogonCommand(2, "powershell.exe -Command \"& 'x'\"", "second"),
        FirstLogonCommand(1, "cmd /c echo <1>", "first"),
    ]
    root = ET.fromstring(render_autounattend(gi, GOOD_PASSWORD, cmds))
    passes = [s.get("pass") for s in root.findall("u:settings", NS)]
    assert passes == ["windowsPE", "specialize", "oobeSystem"]
    setup = root.find(
        "u:settings[@pass='windowsPE']/u:component[@name='Microsoft-Windows-Setup']", NS
    )
    assert setup is not None
    assert _text(setup, "u:ImageInstall/u:OSImage/u:InstallTo/u:PartitionID") == partition
    meta = setup.find("u:ImageInstall/u:OSImage/u:InstallFrom/u:MetaData", NS)
    assert meta is not None and meta.get(WCM) == "add"
    assert _text(meta, "u:Value") == "Windows Server 2022 SERVERDATACENTERCORE"
    assert _text(setup, "u:UserData/u:AcceptEula") == "true"
    types = [t.text for t in setup.findall(".//u:CreatePartition/u:Type", NS)]
    assert types == (["EFI", "MSR", "Primary"] if firmware == "efi" else ["Primary"])
    oobe = _shell_setup(root, "oobeSystem")
    # FirstLogonCommands need a logon: one automatic logon, then never again.
    assert _text(oobe, "u:AutoLogon/u:Enabled") == "true"
    assert _text(oobe, "u:AutoLogon/u:LogonCount") == "1"
    assert _text(oobe, "u:AutoLogon/u:Username") == "Administrator"
    assert _text(oobe, "u:UserAccounts/u:AdministratorPassword/u:Value") == GOOD_PASSWORD
    sync = oobe.findall("u:FirstLogonCommands/u:SynchronousCommand", NS)
    assert [(_text(s, "u:Order"), _text(s, "u:CommandLine")) for s in sync] == [
        ("1", "cmd /c echo <1>"),
        ("2", "powershell.exe -Command \"& 'x'\""),
    ]
    assert _text(_shell_setup(root, "specialize"), "u:ComputerName") == "winhost"


def test_autounattend_product_key_and_image_name(config: PipelineConfig) -> None:
    gi = config.golden_image.model_copy(
        update={
            "profile": "ocp-4.9",
            "source": config.golden_image.source.model_copy(update={"product_key": "AAAAA-BBBBB"}),
        }
    )
    root = ET.fromstring(render_autounattend(gi, GOOD_PASSWORD, []))
    assert root.find(".//u:ProductKey/u:Key", NS) is not None
    assert root.find(".//u:FirstLogonCommands", NS) is None
    assert "SERVERDATACENTERACORE" in ET.tostring(root, encoding="unicode")


def test_autounattend_refuses_the_placeholder(config: PipelineConfig) -> None:
    with pytest.raises(ConfigError, match=r"\(G9\)"):
        render_autounattend(config.golden_image, "MyPassword", [])


def _windows_pe(root: ET.Element, component: str) -> ET.Element | None:
    return root.find(f"u:settings[@pass='windowsPE']/u:component[@name='{component}']", NS)


def test_autounattend_driver_paths_name_the_tools_cd(config: PipelineConfig) -> None:
    root = ET.fromstring(
        render_autounattend(config.golden_image, GOOD_PASSWORD, [], tools_drive="E")
    )
    pnp = _windows_pe(root, "Microsoft-Windows-PnpCustomizationsWinPE")
    assert pnp is not None
    paths = [p.text for p in pnp.findall(".//u:PathAndCredentials/u:Path", NS)]
    assert paths == [r"E:\Program Files\VMware\VMware Tools\Drivers\pvscsi\Win8\amd64"]
    # Windows PE reads DriverPaths before it looks for disk 0: same pass as DiskConfiguration.
    assert _windows_pe(root, "Microsoft-Windows-Setup") is not None


def test_autounattend_without_tools_drive_has_no_driver_paths(config: PipelineConfig) -> None:
    root = ET.fromstring(render_autounattend(config.golden_image, GOOD_PASSWORD, []))
    assert _windows_pe(root, "Microsoft-Windows-PnpCustomizationsWinPE") is None


@pytest.mark.parametrize(
    ("profile", "image", "expected"),
    [
        ("current", None, "Windows Server 2022 SERVERDATACENTERCORE"),
        ("ocp-4.9", None, "Windows Server SERVERDATACENTERACORE"),
        (
            "current",
            "Windows Server 2025 SERVERSTANDARDCORE",
            "Windows Server 2025 SERVERSTANDARDCORE",
        ),
    ],
)
def test_autounattend_image_name_per_profile(
    config: PipelineConfig, profile: str, image: str | None, expected: str
) -> None:
    gi = config.golden_image.model_copy(
        update={
            "profile": profile,
            "source": config.golden_image.source.model_copy(update={"image_name": image}),
        }
    )
    root = ET.fromstring(render_autounattend(gi, GOOD_PASSWORD, []))
    md = root.find(".//u:ImageInstall/u:OSImage/u:InstallFrom/u:MetaData", NS)
    assert md is not None
    assert (_text(md, "u:Key"), _text(md, "u:Value")) == ("/IMAGE/NAME", expected)
