"""Parse and validate unattend.xml / autounattend.xml answer files.

Windows setup reads `autounattend.xml` from the installation's answer media; sysprep takes an
`unattend.xml` with `/unattend:`. The procedure (G9) puts rules on the latter that a real sysprep only
partly enforces but a failed node join punishes later; the twin enforces them at sysprep time so the
automation learns at the step that caused the problem.

ComputerName: Windows accepts `*` (generate a random name) and NetBIOS names of up to 15 characters;
the procedure requires the Kubernetes node-name rules on top (the name becomes the node name): a
DNS-1123 label in lower case. `*` is therefore rejected by `validate_for_sysprep` (WMCO renames the
host to the Machine name anyway, but a `WIN-...` name is not a valid Kubernetes name), and setup
(`parse` for autounattend) accepts it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

NS = "urn:schemas-microsoft-com:unattend"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PLACEHOLDER_PASSWORD = "MyPassword"


class UnattendError(ValueError):
    """The file is not well-formed XML or not an unattend document."""


@dataclass
class AdminPassword:
    value: str
    plain_text: bool


@dataclass
class Unattend:
    computer_name: str | None = None
    time_zone: str | None = None
    organization: str | None = None
    owner: str | None = None
    admin_password: AdminPassword | None = None
    autologon_enabled: bool = False
    first_logon_commands: list[tuple[int, str, str]] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # found while parsing (e.g. not well formed)
    # windowsPE pass: ImageInstall/OSImage/InstallFrom/MetaData (key, value) pairs, and the
    # Microsoft-Windows-PnpCustomizationsWinPE DriverPaths/PathAndCredentials/Path values.
    image_metadata: list[tuple[str, str]] = field(default_factory=list)
    driver_paths: list[str] = field(default_factory=list)

    def validate_for_sysprep(self) -> list[str]:
        """Problems that make the file unusable for the procedure's sysprep (G9), each naming the
        element and the rule. Empty when the file is acceptable."""
        out = list(self.problems)
        if out:
            return out
        name = self.computer_name
        if name is None or name.strip() == "":
            out.append(
                "specialize/Microsoft-Windows-Shell-Setup/ComputerName: missing; it must be a "
                "valid Kubernetes name (lower-case DNS-1123 label) of at most 15 characters"
            )
        else:
            name = name.strip()
            if len(name) > 15:
                out.append(
                    f"ComputerName '{name}': {len(name)} characters; a NetBIOS computer name has "
                    "at most 15"
                )
            if not _DNS1123_LABEL.match(name):
                out.append(
                    f"ComputerName '{name}': not a valid Kubernetes name (lower-case letters, "
                    "digits and '-', starting and ending with a letter or digit)"
                )
            elif name.isdigit():
                out.append(f"ComputerName '{name}': a computer name cannot be only digits")
        if self.autologon_enabled:
            out.append(
                "oobeSystem/Microsoft-Windows-Shell-Setup/AutoLogon/Enabled: must be false "
                "(AutoLogon opens an administrator session at every boot)"
            )
        pw = self.admin_password
        if pw is None:
            out.append(
                "oobeSystem/Microsoft-Windows-Shell-Setup/UserAccounts/AdministratorPassword: "
                "missing; the built-in Administrator would keep an empty password"
            )
        elif pw.value == "":
            out.append("UserAccounts/AdministratorPassword/Value: empty password")
        elif pw.value == PLACEHOLDER_PASSWORD or (
            not pw.plain_text and _b64_password(pw.value) == PLACEHOLDER_PASSWORD
        ):
            out.append(
                "UserAccounts/AdministratorPassword/Value: still the 'MyPassword' placeholder of "
                "the documentation's example"
            )
        if "oobeSystem" not in self.passes:
            out.append("settings pass='oobeSystem': missing")
        return out


def _b64_password(value: str) -> str:
    """Windows' 'hidden' form: base64 of UTF-16LE(password + 'AdministratorPassword')."""
    import base64

    try:
        raw = base64.b64decode(value, validate=True).decode("utf-16-le")
    except (ValueError, UnicodeDecodeError):
        return ""
    return raw.removesuffix("AdministratorPassword")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _text(el: ET.Element | None) -> str | None:
    if el is None:
        return None
    return (el.text or "").strip()


def parse(text: str | bytes) -> Unattend:
    """Parse an answer file. A document that is not well formed yields an Unattend whose
    `problems` say so (validate_for_sysprep reports it)."""
    u = Unattend()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        u.problems.append(f"unattend.xml: not well-formed XML ({e})")
        return u
    if _local(root.tag) != "unattend" or not root.tag.startswith("{" + NS + "}"):
        u.problems.append(
            f'unattend.xml: root element must be <unattend xmlns="{NS}">, found <{_local(root.tag)}>'
        )
        return u
    for settings in root:
        if _local(settings.tag) != "settings":
            continue
        pass_name = settings.get("pass", "")
        u.passes.append(pass_name)
        for comp in settings:
            if _local(comp.tag) != "component":
                continue
            cname = comp.get("name", "")
            if pass_name == "windowsPE":
                _windows_pe(u, cname, comp)
                continue
            if cname != "Microsoft-Windows-Shell-Setup":
                continue
            for el in comp:
                tag = _local(el.tag)
                if tag == "ComputerName":
                    u.computer_name = _text(el)
                elif tag == "TimeZone":
                    u.time_zone = _text(el)
                elif tag == "RegisteredOrganization":
                    u.organization = _text(el)
                elif tag == "RegisteredOwner":
                    u.owner = _text(el)
                elif tag == "AutoLogon":
                    en = _text(_child(el, "Enabled"))
                    u.autologon_enabled = (en or "").lower() == "true"
                elif tag == "UserAccounts":
                    ap = _child(el, "AdministratorPassword")
                    if ap is not None:
                        u.admin_password = AdminPassword(
                            _text(_child(ap, "Value")) or "",
                            (_text(_child(ap, "PlainText")) or "true").lower() == "true",
                        )
                elif tag == "FirstLogonCommands":
                    for sync in el:
                        if _local(sync.tag) != "SynchronousCommand":
                            continue
                        order_txt = _text(_child(sync, "Order")) or "0"
                        try:
                            order = int(order_txt)
                        except ValueError:
                            u.problems.append(
                                f"FirstLogonCommands: Order '{order_txt}' is not a number"
                            )
                            continue
                        u.first_logon_commands.append(
                            (
                                order,
                                _text(_child(sync, "CommandLine")) or "",
                                _text(_child(sync, "Description")) or "",
                            )
                        )
    u.first_logon_commands.sort(key=lambda c: c[0])
    return u


def _windows_pe(u: Unattend, cname: str, comp: ET.Element) -> None:
    """What Windows PE takes from the windowsPE pass: the image to install and the driver paths."""
    if cname == "Microsoft-Windows-PnpCustomizationsWinPE":
        for pc in comp.iter():
            if _local(pc.tag) == "PathAndCredentials":
                path = _text(_child(pc, "Path"))
                if path:
                    u.driver_paths.append(path)
    elif cname == "Microsoft-Windows-Setup":
        for el in comp.iter():
            if _local(el.tag) == "InstallFrom":
                for md in el:
                    if _local(md.tag) == "MetaData":
                        key = _text(_child(md, "Key")) or ""
                        u.image_metadata.append((key, _text(_child(md, "Value")) or ""))
