"""Facts about Windows that both the PowerShell emulator and the guest supervisor need.

What Windows setup leaves on a fresh disk, what Windows' sshd does when it starts without host keys,
which `administrators_authorized_keys` Windows OpenSSH accepts, and when VMware Tools can report the
guest's IP. Keeping these rules in one place means the SSH path (emulator) and the boot path
(supervisor) cannot drift apart.
"""

from __future__ import annotations

import configparser
import datetime as dt
import secrets
import string
import subprocess
from pathlib import Path
from typing import Any

from lab.guest.state import (
    AUTOMATIC,
    DISABLED,
    MANUAL,
    RUNNING,
    STOPPED,
    FirewallRule,
    GuestDisk,
    GuestState,
    HotFix,
    Service,
)

SSH_DIR = "C:\\ProgramData\\ssh"
ADMIN_KEYS = SSH_DIR + "\\administrators_authorized_keys"
TOOLS_CONF = "C:\\ProgramData\\VMware\\VMware Tools\\tools.conf"
HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")

# ACEs as icacls prints them. A file without an explicit entry in GuestState.acls inherits this one,
# which (as on Windows, from C:\ProgramData) lets BUILTIN\Users read it: sshd then refuses the
# administrators_authorized_keys file until the automation tightens it with icacls.
DEFAULT_ACL = [
    "NT AUTHORITY\\SYSTEM:(I)(F)",
    "BUILTIN\\Administrators:(I)(F)",
    "BUILTIN\\Users:(I)(RX)",
]
ADMIN_PRINCIPALS = {"nt authority\\system", "builtin\\administrators"}

# (name, display name, status, start type) of a fresh Windows Server install, as Get-Service shows.
BASE_SERVICES = [
    ("BFE", "Base Filtering Engine", RUNNING, AUTOMATIC),
    ("CryptSvc", "Cryptographic Services", RUNNING, AUTOMATIC),
    ("Dhcp", "DHCP Client", RUNNING, AUTOMATIC),
    ("Dnscache", "DNS Client", RUNNING, AUTOMATIC),
    ("EventLog", "Windows Event Log", RUNNING, AUTOMATIC),
    ("LanmanServer", "Server", RUNNING, AUTOMATIC),
    ("LanmanWorkstation", "Workstation", RUNNING, AUTOMATIC),
    ("mpssvc", "Windows Defender Firewall", RUNNING, AUTOMATIC),
    ("nsi", "Network Store Interface Service", RUNNING, AUTOMATIC),
    ("PlugPlay", "Plug and Play", RUNNING, MANUAL),
    ("RpcSs", "Remote Procedure Call (RPC)", RUNNING, AUTOMATIC),
    ("Schedule", "Task Scheduler", RUNNING, AUTOMATIC),
    ("Spooler", "Print Spooler", RUNNING, AUTOMATIC),
    # Part of the OpenSSH client that ships installed: present but disabled, as on Windows.
    ("ssh-agent", "OpenSSH Authentication Agent", STOPPED, DISABLED),
    ("TermService", "Remote Desktop Services", STOPPED, MANUAL),
    ("TrustedInstaller", "Windows Modules Installer", STOPPED, MANUAL),
    ("W32Time", "Windows Time", STOPPED, MANUAL),
    ("Winmgmt", "Windows Management Instrumentation", RUNNING, AUTOMATIC),
    ("WinRM", "Windows Remote Management (WS-Management)", RUNNING, AUTOMATIC),
    ("wuauserv", "Windows Update", STOPPED, MANUAL),
]

BASE_CAPABILITIES = {
    "Browser.InternetExplorer~~~~0.0.11.0": "Installed",
    "Language.Basic~~~en-US~0.0.1.0": "Installed",
    "Microsoft.Windows.PowerShell.ISE~~~~0.0.1.0": "Installed",
    "OpenSSH.Client~~~~0.0.1.0": "Installed",
    "OpenSSH.Server~~~~0.0.1.0": "NotPresent",
    "Rsat.ActiveDirectory.DS-LDS.Tools~~~~0.0.1.0": "NotPresent",
}

BASE_FIREWALL = [
    FirewallRule(
        "CoreNet-DHCP-In",
        "Core Networking - Dynamic Host Configuration Protocol (DHCP-In)",
        protocol="UDP",
        local_port=["68"],
        group="Core Networking",
    ),
    FirewallRule(
        "CoreNet-IPv6-In",
        "Core Networking - IPv6 (IPv6-In)",
        protocol="41",
        group="Core Networking",
    ),
    FirewallRule(
        "RemoteDesktop-UserMode-In-TCP",
        "Remote Desktop - User Mode (TCP-In)",
        local_port=["3389"],
        enabled=False,
        group="Remote Desktop",
    ),
    FirewallRule(
        "WINRM-HTTP-In-TCP",
        "Windows Remote Management (HTTP-In)",
        local_port=["5985"],
        group="Windows Remote Management",
        profile="Domain, Private",
    ),
    FirewallRule(
        "FPS-SMB-In-TCP",
        "File and Printer Sharing (SMB-In)",
        local_port=["445"],
        enabled=False,
        group="File and Printer Sharing",
    ),
    FirewallRule(
        "FPS-ICMP4-ERQ-In",
        "File and Printer Sharing (Echo Request - ICMPv4-In)",
        protocol="ICMPv4",
        enabled=False,
        group="File and Printer Sharing",
    ),
]

BASE_DIRS = [
    "Windows\\System32\\Sysprep\\Panther",
    "Windows\\System32\\OpenSSH",
    "Windows\\Panther",
    "Windows\\Temp",
    "ProgramData\\Microsoft\\Windows",
    "Users\\Administrator\\Desktop",
    "Users\\Administrator\\Documents",
    "Users\\Administrator\\AppData\\Local\\Temp",
    "Users\\Public",
    "Program Files\\WindowsPowerShell\\Modules",
    "Program Files (x86)",
]
BASE_FILES = {
    "Windows\\System32\\Sysprep\\sysprep.exe": b"MZ lab stand-in for System Preparation Tool 3.14\n",
    "Windows\\System32\\OpenSSH\\ssh.exe": b"MZ lab stand-in for OpenSSH client\n",
    "Windows\\System32\\icacls.exe": b"MZ lab stand-in\n",
    "Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe": b"MZ lab stand-in\n",
    "Windows\\System32\\cmd.exe": b"MZ lab stand-in\n",
}


def random_computer_name() -> str:
    """What Windows picks when no name is given: WIN- and 11 upper-case letters/digits."""
    alphabet = string.ascii_uppercase + string.digits
    return "WIN-" + "".join(secrets.choice(alphabet) for _ in range(11))


def new_machine_sid() -> str:
    return "S-1-5-21-" + "-".join(str(secrets.randbelow(4_000_000_000)) for _ in range(3))


def fresh_install(disk: GuestDisk, media_info: dict[str, Any], computer_name: str) -> None:
    """What Windows setup leaves from the installation media: OS identity, hotfixes, services,
    capabilities, default firewall rules, the directory tree, a machine SID."""
    disk.create()
    root = disk.disk / "C:"
    for d in BASE_DIRS:
        (root / Path(*d.split("\\"))).mkdir(parents=True, exist_ok=True)
    for f, data in BASE_FILES.items():
        p = root / Path(*f.split("\\"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    today = dt.date.today()
    installed_on = f"{today.month}/{today.day}/{today.year}"
    with disk.edit() as st:
        st.installed = True
        st.product_name = str(media_info.get("product_name", ""))
        st.edition_id = str(media_info.get("edition_id", ""))
        st.display_version = str(media_info.get("display_version", ""))
        st.build = int(media_info.get("build", 0))
        st.ubr = int(media_info.get("ubr", 0))
        st.install_media = str(media_info.get("install_media", st.install_media))
        st.hotfixes = [
            HotFix(h, "Security Update" if i else "Update", installed_on)
            for i, h in enumerate(media_info.get("hotfixes", []))
        ]
        st.computer_name = computer_name
        st.machine_sid = new_machine_sid()
        st.services = {}
        for name, display, status, start in BASE_SERVICES:
            st.put_service(Service(name, display, status, start,
                                   f"C:\\Windows\\system32\\svchost.exe -k {name}"))  # fmt: skip
        st.capabilities = dict(BASE_CAPABILITIES)
        st.firewall_rules = [FirewallRule(**vars(r)) for r in BASE_FIREWALL]
        st.acls = {}
        st.adapters = ["Ethernet0"]
        st.generalized = False
        st.log.append(f"setup: {st.product_name} {st.display_version} build {st.build}.{st.ubr}")


# ---- OpenSSH ------------------------------------------------------------------------------------
DEFAULT_SSHD_CONFIG = """\
# This is the sshd server system-wide configuration file.  See
# sshd_config(5) for more information.

#Port 22
#AddressFamily any
#ListenAddress 0.0.0.0
#ListenAddress ::

#HostKey __PROGRAMDATA__/ssh/ssh_host_rsa_key
#HostKey __PROGRAMDATA__/ssh/ssh_host_dsa_key
#HostKey __PROGRAMDATA__/ssh/ssh_host_ecdsa_key
#HostKey __PROGRAMDATA__/ssh/ssh_host_ed25519_key

# Logging
#SyslogFacility AUTH
#LogLevel INFO

# Authentication:

#LoginGraceTime 2m
#PermitRootLogin prohibit-password
#StrictModes yes
#MaxAuthTries 6
#MaxSessions 10

#PubkeyAuthentication yes

# The default is to check both .ssh/authorized_keys and .ssh/authorized_keys2
# but this is overridden so installations will only check .ssh/authorized_keys
AuthorizedKeysFile	.ssh/authorized_keys

#AuthorizedPrincipalsFile none

# To disable tunneled clear text passwords, change to no here!
#PasswordAuthentication yes
#PermitEmptyPasswords no

#AllowAgentForwarding yes
#AllowTcpForwarding yes
#GatewayPorts no
#PermitTTY yes
#PrintMotd yes
#PrintLastLog yes
#TCPKeepAlive yes
#UseLogin no
#PermitUserEnvironment no
#ClientAliveInterval 0
#ClientAliveCountMax 3
#UseDNS no
#PidFile /var/run/sshd.pid
#MaxStartups 10:30:100
#PermitTunnel no
#ChrootDirectory none
#VersionAddendum none

# no default banner path
#Banner none

# override default of no subsystems
Subsystem	sftp	sftp-server.exe

# Example of overriding settings on a per-user basis
#Match User anoncvs
#	AllowTcpForwarding no
#	PermitTTY no
#	ForceCommand cvs server

Match Group administrators
       AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys
"""


def ensure_host_keys(disk: GuestDisk) -> list[str]:
    """What Windows' sshd does when it starts: generate the missing ssh_host_*_key pairs in
    C:\\ProgramData\\ssh (and a default sshd_config). Returns the host paths of the private keys."""
    ssh_dir = disk.host_path(SSH_DIR)
    ssh_dir.mkdir(parents=True, exist_ok=True)
    cfg = disk.host_path(SSH_DIR + "\\sshd_config")
    if not cfg.exists():
        cfg.write_bytes(DEFAULT_SSHD_CONFIG.replace("\n", "\r\n").encode())
    keys: list[str] = []
    for kind in HOST_KEY_TYPES:
        key = disk.host_path(f"{SSH_DIR}\\ssh_host_{kind}_key")
        pub = key.with_name(key.name + ".pub")
        if not key.exists() or not pub.exists():
            key.unlink(missing_ok=True)
            pub.unlink(missing_ok=True)
            cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(key)]
            if kind == "rsa":
                cmd[4:4] = ["-b", "3072"]
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            key.chmod(0o600)
        keys.append(str(key))
    return keys


def effective_acl(state: GuestState, win_path: str) -> list[str]:
    return list(state.acls.get(win_path.lower(), DEFAULT_ACL))


def acl_principal(ace: str) -> str:
    return ace.rsplit(":", 1)[0].strip().lower()


def authorized_keys_for_admin(disk: GuestDisk) -> list[str]:
    """The keys Windows OpenSSH accepts for an administrator: the lines of
    administrators_authorized_keys, none if the file is missing or its ACL grants anyone besides
    Administrators and SYSTEM. Lines are returned as sshd would read them (bytes as UTF-8: a UTF-16
    file written by `>`/Out-File in PowerShell 5.1 yields nothing usable, a BOM spoils the first key)."""
    path = disk.host_path(ADMIN_KEYS)
    if not path.is_file():
        return []
    with disk.locked():
        state = disk.load()
    if any(acl_principal(a) not in ADMIN_PRINCIPALS for a in effective_acl(state, ADMIN_KEYS)):
        return []
    raw = path.read_bytes()
    if b"\x00" in raw:
        return []
    text = raw.decode("utf-8", errors="replace")
    out = []
    for line in text.splitlines():
        line = line.strip("\r\n\t ")
        if line and not line.startswith("#"):
            out.append(line)
    return out


# ---- VMware Tools -------------------------------------------------------------------------------
def tools_conf_keeps_all_nics(disk: GuestDisk) -> bool:
    """True when tools.conf has `exclude-nics=` with an empty value in [guestinfo]."""
    path = disk.host_path(TOOLS_CONF)
    if not path.is_file():
        return False
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "utf-16"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        return False
    if "\x00" in text:
        return False
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    try:
        cp.read_string(text)
    except configparser.Error:
        return False
    for section in cp.sections():
        if section.strip().lower() == "guestinfo":
            for k, v in cp.items(section):
                if k.strip().lower() == "exclude-nics" and v.strip() == "":
                    return True
    return False


def reports_ip(disk: GuestDisk) -> bool:
    """VMware Tools' view: False when the host IP sits on an adapter Tools excludes. Tools' default
    exclude-nics pattern covers vEthernet*, where the IP moves once the hybrid overlay creates its
    HNS network; an empty `exclude-nics=` in tools.conf's [guestinfo] keeps it reported."""
    with disk.locked():
        state = disk.load()
    if not any(a.lower().startswith("vethernet") for a in state.adapters):
        return True
    return tools_conf_keeps_all_nics(disk)


def feature_state(state: GuestState, name: str) -> str:
    """A Windows feature's state: an install finishes at the first boot after it was requested
    (the value "InstallPending:<boot_count>" records when)."""
    raw = next((v for k, v in state.features.items() if k.lower() == name.lower()), "Available")
    if raw.startswith("InstallPending:"):
        at = int(raw.split(":", 1)[1] or 0)
        return "Installed" if state.boot_count > at else "InstallPending"
    return raw


# ---- the guest network's way out ----------------------------------------------------------------
#: Lab-wide setting next to the guests' disks: {"internet": bool, "proxy": "host:port" or ""}.
NETWORK_FILE = "network.json"


def set_network(guests_dir: Path, *, internet: bool, proxy: str = "") -> None:
    """Mark the lab's guest network online or offline (lab-side only: the product never sees it).
    Offline with `proxy`: only that HTTP proxy reaches the internet (a proxied site)."""
    import json

    guests_dir.mkdir(parents=True, exist_ok=True)
    (guests_dir / NETWORK_FILE).write_text(json.dumps({"internet": internet, "proxy": proxy}))


def network(disk: GuestDisk) -> dict[str, Any]:
    import json

    path = disk.root.parent / NETWORK_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"internet": True, "proxy": ""}
    return {"internet": bool(data.get("internet", True)), "proxy": str(data.get("proxy") or "")}


def internet_reachable(disk: GuestDisk) -> bool:
    """Can the guest reach Windows Update / PSGallery? Directly when the network is online; on an
    offline network only through the site's proxy, when WinHTTP is set to it (Windows Update and
    DISM's Features-on-Demand download use WinHTTP's proxy, not the user's IE settings)."""
    net = network(disk)
    if net["internet"]:
        return True
    if not net["proxy"]:
        return False
    with disk.locked():
        state = disk.load()
    return state.winhttp_proxy.strip().lower() == net["proxy"].strip().lower()
