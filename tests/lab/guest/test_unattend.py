"""unattend.py: the seed's example parses; each sysprep rule is reported with its element."""

from __future__ import annotations

from lab.guest import unattend

SEED_UNATTEND = """\
<?xml version="1.0" encoding="UTF-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
   <settings pass="specialize">
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-International-Core" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <InputLocale>0409:00000409</InputLocale>
         <SystemLocale>en-US</SystemLocale>
         <UILanguage>en-US</UILanguage>
         <UILanguageFallback>en-US</UILanguageFallback>
         <UserLocale>en-US</UserLocale>
      </component>
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-Security-SPP-UX" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <SkipAutoActivation>true</SkipAutoActivation>
      </component>
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-SQMApi" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <CEIPEnabled>0</CEIPEnabled>
      </component>
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <ComputerName>winhost</ComputerName>
      </component>
   </settings>
   <settings pass="oobeSystem">
      <component xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
         <AutoLogon>
            <Enabled>false</Enabled>
         </AutoLogon>
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
         <RegisteredOrganization>Organization</RegisteredOrganization>
         <RegisteredOwner>Owner</RegisteredOwner>
         <DisableAutoDaylightTimeSet>false</DisableAutoDaylightTimeSet>
         <TimeZone>Eastern Standard Time</TimeZone>
         <UserAccounts>
            <AdministratorPassword>
               <Value>MyPassword</Value>
               <PlainText>true</PlainText>
            </AdministratorPassword>
         </UserAccounts>
      </component>
   </settings>
</unattend>
"""


def test_seed_example_parses() -> None:
    u = unattend.parse(SEED_UNATTEND)
    assert u.computer_name == "winhost"
    assert u.time_zone == "Eastern Standard Time"
    assert (u.organization, u.owner) == ("Organization", "Owner")
    assert u.admin_password == unattend.AdminPassword("MyPassword", True)
    assert u.autologon_enabled is False
    assert u.passes == ["specialize", "oobeSystem"]
    # the documentation says it must be edited: only the placeholder password is wrong
    problems = u.validate_for_sysprep()
    assert len(problems) == 1 and "MyPassword" in problems[0]


def test_fixed_seed_is_valid() -> None:
    u = unattend.parse(SEED_UNATTEND.replace("MyPassword", "Xq7!secret"))
    assert u.validate_for_sysprep() == []


def test_rules() -> None:
    def problems(**repl: str) -> list[str]:
        text = SEED_UNATTEND.replace("MyPassword", "Xq7!secret")
        for a, b in repl.items():
            text = text.replace(a, b)
        return unattend.parse(text).validate_for_sysprep()

    assert any("ComputerName" in p and "Kubernetes" in p for p in problems(winhost="Win_Host"))
    assert any("at most 15" in p for p in problems(winhost="abcdefghijklmnop"))
    assert any("ComputerName" in p for p in problems(winhost="*"))
    assert any(
        "AutoLogon" in p
        for p in problems(**{"<Enabled>false</Enabled>": "<Enabled>true</Enabled>"})
    )
    assert any("empty" in p for p in problems(**{"<Value>Xq7!secret</Value>": "<Value></Value>"}))
    assert any(
        "well-formed" in p
        for p in unattend.parse("<unattend><x></unattend>").validate_for_sysprep()
    )
    assert any("root element" in p for p in unattend.parse("<foo/>").validate_for_sysprep())


def test_first_logon_commands_ordered() -> None:
    text = """<unattend xmlns="urn:schemas-microsoft-com:unattend"><settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup"><FirstLogonCommands>
      <SynchronousCommand><Order>2</Order><CommandLine>b</CommandLine><Description>second</Description></SynchronousCommand>
      <SynchronousCommand><Order>1</Order><CommandLine>a</CommandLine></SynchronousCommand>
    </FirstLogonCommands></component></settings></unattend>"""
    assert unattend.parse(text).first_logon_commands == [(1, "a", ""), (2, "b", "second")]
