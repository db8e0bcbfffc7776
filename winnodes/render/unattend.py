"""Answer files for Windows setup: `unattend.xml` for sysprep (G9) and `autounattend.xml` for the
unattended installation from ISO (G1).

`render_unattend` reproduces the seed document's example (docs: "unattend.xml 示例") element for element;
only the values the procedure tells the user to change are parameters: ComputerName, the time zone,
organization, owner and the Administrator password in place of the `MyPassword` placeholder.
AutoLogon stays disabled — the procedure says it must not be changed — and is not a parameter.

Every value is XML-escaped; the renderers refuse what sysprep or WMCO would choke on (an invalid
ComputerName, an empty or placeholder password) with a ConfigError naming the step, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from winnodes.errors import ConfigError
from winnodes.model.config import GoldenImageConfig, UnattendSettings
from winnodes.model.profiles import get_profile
from winnodes.validate.rules import check_admin_password, check_computer_name

_NS_ATTRS = (
    'xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)
_COMPONENT_ATTRS = (
    'processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" '
    'versionScope="nonSxS"'
)


def _component(name: str, body: str, indent: str = "      ") -> str:
    return f'{indent}<component {_NS_ATTRS} name="{name}" {_COMPONENT_ATTRS}>\n{body}{indent}</component>\n'


def _x(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _check(settings: UnattendSettings, admin_password: str) -> None:
    problems = check_computer_name(settings.computer_name) + check_admin_password(admin_password)
    if problems:
        raise ConfigError("; ".join(p.message for p in problems), step_id="G9", problems=problems)


def _international(indent: str) -> str:
    i = indent + "   "
    return _component(
        "Microsoft-Windows-International-Core",
        f"{i}<InputLocale>0409:00000409</InputLocale>\n"
        f"{i}<SystemLocale>en-US</SystemLocale>\n"
        f"{i}<UILanguage>en-US</UILanguage>\n"
        f"{i}<UILanguageFallback>en-US</UILanguageFallback>\n"
        f"{i}<UserLocale>en-US</UserLocale>\n",
        indent,
    )


def _specialize(settings: UnattendSettings) -> str:
    ind = "      "
    i = ind + "   "
    return (
        '   <settings pass="specialize">\n'
        + _international(ind)
        + _component(
            "Microsoft-Windows-Security-SPP-UX",
            f"{i}<SkipAutoActivation>true</SkipAutoActivation>\n",
        )
        + _component("Microsoft-Windows-SQMApi", f"{i}<CEIPEnabled>0</CEIPEnabled>\n")
        + _component(
            "Microsoft-Windows-Shell-Setup",
            f"{i}<ComputerName>{_x(settings.computer_name)}</ComputerName>\n",
        )
        + "   </settings>\n"
    )


_OOBE = """\
         <OOBE>
            <HideEULAPage>true</HideEULAPage>
            <HideLocalAccountScreen>true</HideLocalAccountScreen>
            <HideOEMRegistrationScreen>true</HideOEMRegistrationScreen>
            <HideOnlineAccountScreens>true</HideOnlineAccountScreens>
            <HideWirelessSetupInOOBE>true</HideWirelessSetupInOOBE>
            <NetworkLocation>Work</NetworkLocation>
            <ProtectYourPC>1</ProtectYourPC>
            <SkipMachineOOBE>true</SkipMachineOOBE>
            <SkipUserOOBE>true</SkipUserOOBE>
         </OOBE>
"""


def _oobe_system(
    settings: UnattendSettings, admin_password: str, autologon: str, extra: str
) -> str:
    i = "         "
    body = (
        autologon
        + _OOBE
        + f"{i}<RegisteredOrganization>{_x(settings.organization)}</RegisteredOrganization>\n"
        + f"{i}<RegisteredOwner>{_x(settings.owner)}</RegisteredOwner>\n"
        + f"{i}<DisableAutoDaylightTimeSet>false</DisableAutoDaylightTimeSet>\n"
        + f"{i}<TimeZone>{_x(settings.time_zone)}</TimeZone>\n"
        + f"{i}<UserAccounts>\n"
        + f"{i}   <AdministratorPassword>\n"
        + f"{i}      <Value>{_x(admin_password)}</Value>\n"
        + f"{i}      <PlainText>true</PlainText>\n"
        + f"{i}   </AdministratorPassword>\n"
        + f"{i}</UserAccounts>\n"
        + extra
    )
    return (
        '   <settings pass="oobeSystem">\n'
        + _component("Microsoft-Windows-Shell-Setup", body)
        + "   </settings>\n"
    )


_AUTOLOGON_DISABLED = """\
         <AutoLogon>
            <Enabled>false</Enabled>
         </AutoLogon>
"""

_HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n<unattend xmlns="urn:schemas-microsoft-com:unattend">\n'
_FOOTER = "</unattend>\n"


def render_unattend(settings: UnattendSettings, admin_password: str) -> str:
    """G9: the sysprep answer file, exactly the seed's example with the settings filled in.

    Raises ConfigError (step G9) for an invalid ComputerName or an empty/placeholder/weak password."""
    _check(settings, admin_password)
    return (
        _HEADER
        + _specialize(settings)
        + _oobe_system(settings, admin_password, _AUTOLOGON_DISABLED, "")
        + _FOOTER
    )


@dataclass(frozen=True)
class FirstLogonCommand:
    """One `SynchronousCommand` of oobeSystem/FirstLogonCommands (run in Order, as Administrator)."""

    order: int
    command_line: str
    description: str


#: Where the VMware Tools ISO keeps the PVSCSI driver for Windows 8 / Server 2012 and later
#: (rancher/windows and v12n-io/packer vSphere templates for WS2022/2025 point DriverPaths here).
PVSCSI_DRIVER_PATH = r"Program Files\VMware\VMware Tools\Drivers\pvscsi\Win8\amd64"


def _driver_paths(tools_drive: str, indent: str) -> str:
    """Microsoft-Windows-PnpCustomizationsWinPE: Windows PE loads the PVSCSI driver from the
    Tools CD, so setup sees the system disk (without it DiskID 0 does not exist)."""
    i = indent + "   "
    return _component(
        "Microsoft-Windows-PnpCustomizationsWinPE",
        f"{i}<DriverPaths>\n"
        f'{i}   <PathAndCredentials wcm:action="add" wcm:keyValue="1">\n'
        f"{i}      <Path>{_x(tools_drive.rstrip(':'))}:\\{PVSCSI_DRIVER_PATH}</Path>\n"
        f"{i}   </PathAndCredentials>\n"
        f"{i}</DriverPaths>\n",
        indent,
    )


def image_name(gi: GoldenImageConfig) -> str:
    """/IMAGE/NAME to install: `source.image_name`, else the profile's default edition."""
    return gi.source.image_name or get_profile(gi.profile).image_name


def _windows_pe(gi: GoldenImageConfig, tools_drive: str | None = None) -> str:
    ind = "      "
    i = ind + "   "
    efi = gi.hardware.firmware == "efi"
    if efi:
        partitions = (
            f'{i}      <CreatePartition wcm:action="add"><Order>1</Order><Type>EFI</Type><Size>100</Size></CreatePartition>\n'
            f'{i}      <CreatePartition wcm:action="add"><Order>2</Order><Type>MSR</Type><Size>16</Size></CreatePartition>\n'
            f'{i}      <CreatePartition wcm:action="add"><Order>3</Order><Type>Primary</Type><Extend>true</Extend></CreatePartition>\n'
        )
        modify = (
            f'{i}      <ModifyPartition wcm:action="add"><Order>1</Order><PartitionID>1</PartitionID><Format>FAT32</Format><Label>System</Label></ModifyPartition>\n'
            f'{i}      <ModifyPartition wcm:action="add"><Order>2</Order><PartitionID>3</PartitionID><Format>NTFS</Format><Label>Windows</Label><Letter>C</Letter></ModifyPartition>\n'
        )
        install_partition = 3
    else:
        partitions = f'{i}      <CreatePartition wcm:action="add"><Order>1</Order><Type>Primary</Type><Extend>true</Extend></CreatePartition>\n'
        modify = f'{i}      <ModifyPartition wcm:action="add"><Order>1</Order><PartitionID>1</PartitionID><Format>NTFS</Format><Label>Windows</Label><Letter>C</Letter><Active>true</Active></ModifyPartition>\n'
        install_partition = 1
    image = image_name(gi)
    key = (
        f"{i}   <ProductKey><Key>{_x(gi.source.product_key)}</Key><WillShowUI>OnError</WillShowUI></ProductKey>\n"
        if gi.source.product_key
        else ""
    )
    setup = (
        f"{i}<DiskConfiguration>\n"
        f'{i}   <Disk wcm:action="add">\n'
        f"{i}      <DiskID>0</DiskID>\n"
        f"{i}      <WillWipeDisk>true</WillWipeDisk>\n"
        f"{i}      <CreatePartitions>\n{partitions}{i}      </CreatePartitions>\n"
        f"{i}      <ModifyPartitions>\n{modify}{i}      </ModifyPartitions>\n"
        f"{i}   </Disk>\n"
        f"{i}</DiskConfiguration>\n"
        f"{i}<ImageInstall>\n"
        f"{i}   <OSImage>\n"
        f"{i}      <InstallFrom>\n"
        f'{i}         <MetaData wcm:action="add"><Key>/IMAGE/NAME</Key><Value>{_x(image)}</Value></MetaData>\n'
        f"{i}      </InstallFrom>\n"
        f"{i}      <InstallTo><DiskID>0</DiskID><PartitionID>{install_partition}</PartitionID></InstallTo>\n"
        f"{i}   </OSImage>\n"
        f"{i}</ImageInstall>\n"
        f"{i}<UserData>\n"
        f"{i}   <AcceptEula>true</AcceptEula>\n"
        f"{i}   <FullName>{_x(gi.unattend.owner)}</FullName>\n"
        f"{i}   <Organization>{_x(gi.unattend.organization)}</Organization>\n"
        f"{key}"
        f"{i}</UserData>\n"
    )
    winpe_intl = _component(
        "Microsoft-Windows-International-Core-WinPE",
        f"{i}<SetupUILanguage><UILanguage>en-US</UILanguage></SetupUILanguage>\n"
        f"{i}<InputLocale>0409:00000409</InputLocale>\n"
        f"{i}<SystemLocale>en-US</SystemLocale>\n"
        f"{i}<UILanguage>en-US</UILanguage>\n"
        f"{i}<UserLocale>en-US</UserLocale>\n",
    )
    return (
        '   <settings pass="windowsPE">\n'
        + winpe_intl
        + (_driver_paths(tools_drive, ind) if tools_drive else "")
        + _component("Microsoft-Windows-Setup", setup)
        + "   </settings>\n"
    )


def render_autounattend(
    gi: GoldenImageConfig,
    admin_password: str,
    commands: list[FirstLogonCommand],
    *,
    tools_drive: str | None = None,
) -> str:
    """G1: the answer file for an unattended installation from the Windows ISO.

    windowsPE wipes disk 0 and partitions it for the firmware (EFI: EFI/MSR/Windows; BIOS: one
    active partition), installs the profile's edition (or `source.image_name`), and with
    `tools_drive` (the letter Windows PE gives the Tools CD, e.g. 'E') loads the PVSCSI driver
    from it; specialize is the sysprep file's; oobeSystem sets the password and runs `commands`
    at the first logon.

    FirstLogonCommands only run when a user logs on, so this file — unlike the sysprep unattend.xml,
    whose AutoLogon stays disabled — logs the Administrator on automatically exactly once
    (LogonCount 1). The template is generalized later with the G9 file, which disables AutoLogon."""
    _check(gi.unattend, admin_password)
    i = "         "
    autologon = (
        f"{i}<AutoLogon>\n"
        f"{i}   <Enabled>true</Enabled>\n"
        f"{i}   <LogonCount>1</LogonCount>\n"
        f"{i}   <Username>Administrator</Username>\n"
        f"{i}   <Password>\n"
        f"{i}      <Value>{_x(admin_password)}</Value>\n"
        f"{i}      <PlainText>true</PlainText>\n"
        f"{i}   </Password>\n"
        f"{i}</AutoLogon>\n"
    )
    cmds = "".join(
        f'{i}   <SynchronousCommand wcm:action="add">\n'
        f"{i}      <Order>{c.order}</Order>\n"
        f"{i}      <CommandLine>{_x(c.command_line)}</CommandLine>\n"
        f"{i}      <Description>{_x(c.description)}</Description>\n"
        f"{i}   </SynchronousCommand>\n"
        for c in sorted(commands, key=lambda c: c.order)
    )
    extra = f"{i}<FirstLogonCommands>\n{cmds}{i}</FirstLogonCommands>\n" if commands else ""
    return (
        _HEADER
        + _windows_pe(gi, tools_drive)
        + _specialize(gi.unattend)
        + _oobe_system(gi.unattend, admin_password, autologon, extra)
        + _FOOTER
    )
