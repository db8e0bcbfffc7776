"""Every configuration rule of the procedure as a pure function that returns Problems.

Each function takes plain values (not the whole configuration) plus the field path to report, so a
rule can be table-tested on its own and reused by the CLI, the flows and the tasks. A rule never
raises: it returns a list, empty when the value is fine, so `validate_all` can show every mistake at
once before anything touches vCenter, the cluster or DNS.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from winnodes.errors import Problem
from winnodes.model.profiles import MIN_HARDWARE_VERSION, get_profile

if TYPE_CHECKING:
    from winnodes.model.config import GoldenImageConfig

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: vSphere machine names are the set name + "-" + 5 random characters; the computer name derived
#: from them must fit Windows' 15-character (NetBIOS) limit: 15 - 6 = 9 (M2).
MAX_MACHINESET_NAME = 9
MAX_COMPUTER_NAME = 15
MAX_VSPHERE_NAME = 80
PASSWORD_PLACEHOLDER = "MyPassword"
MIN_WINDOWS_MEMORY_MIB = 2048
MIN_WINDOWS_DISK_GIB = 32
DATASTORE_PATH = re.compile(r"^\[(?P<ds>[^\]]*)\] ?(?P<path>\S.*)$")


def _p(step: str, field: str, rule: str, text: str) -> Problem:
    return Problem(step_id=step, field=field, rule=rule, message=f"{field}: {text} ({step})")


def check_machineset_name(name: str, field: str = "machineset.name") -> list[Problem]:
    """M2: at most 9 characters and a DNS-1123 label."""
    out: list[Problem] = []
    if len(name) > MAX_MACHINESET_NAME:
        out.append(
            _p(
                "M2",
                field,
                "max-length",
                f"machine set name {name!r} is {len(name)} characters; vSphere Windows machine sets "
                f"allow at most {MAX_MACHINESET_NAME} (machine names add a 6-character suffix and "
                f"Windows computer names are limited to {MAX_COMPUTER_NAME})",
            )
        )
    if not DNS1123_LABEL.match(name):
        out.append(
            _p(
                "M2",
                field,
                "dns-1123-label",
                f"machine set name {name!r} is not a DNS-1123 label (lower-case letters, digits and "
                "'-', starting and ending with a letter or digit)",
            )
        )
    return out


def check_computer_name(
    name: str, field: str = "golden_image.unattend.computer_name"
) -> list[Problem]:
    """G9: Kubernetes name rules (lower-case DNS-1123 label) and Windows' 15-character limit;
    Windows also rejects names made only of digits. '*' (a random name) is refused: Windows
    generates upper-case names, which break the Kubernetes rules the procedure requires."""
    out: list[Problem] = []
    if len(name) > MAX_COMPUTER_NAME:
        out.append(
            _p(
                "G9",
                field,
                "max-length",
                f"ComputerName {name!r} is {len(name)} characters; Windows (NetBIOS) allows at "
                f"most {MAX_COMPUTER_NAME}",
            )
        )
    if not DNS1123_LABEL.match(name):
        out.append(
            _p(
                "G9",
                field,
                "dns-1123-label",
                f"ComputerName {name!r} must follow the Kubernetes name rules: a DNS-1123 label of "
                "lower-case letters, digits and '-', starting and ending with a letter or digit",
            )
        )
    elif name.isdigit():
        out.append(
            _p("G9", field, "not-numeric", f"ComputerName {name!r} must not consist of digits only")
        )
    return out


def check_hardware_version(
    version: str, field: str = "golden_image.hardware.hardware_version"
) -> list[Problem]:
    """G1: 'vmx-NN' with NN >= 15."""
    m = re.fullmatch(r"vmx-(\d+)", version)
    if not m:
        return [_p("G1", field, "format", f"hardware version {version!r} must look like 'vmx-15'")]
    if int(m.group(1)) < MIN_HARDWARE_VERSION:
        return [
            _p(
                "G1",
                field,
                "min-hardware-version",
                f"hardware version {version!r} is older than vmx-{MIN_HARDWARE_VERSION}, the "
                "minimum of OpenShift's vSphere infrastructure requirements",
            )
        ]
    return []


def check_sizes(
    *,
    num_cpus: int,
    num_cores_per_socket: int,
    memory_mib: int,
    disk_gib: int,
    step: str,
    prefix: str,
) -> list[Problem]:
    """Disk, memory and CPU sanity for a Windows VM (G1 for the base VM, M5 for machines)."""
    out: list[Problem] = []
    if num_cpus < 1:
        out.append(_p(step, f"{prefix}.num_cpus", "min", f"numCPUs is {num_cpus}; at least 1"))
    if num_cores_per_socket < 1 or (num_cpus >= 1 and num_cpus % num_cores_per_socket):
        out.append(
            _p(
                step,
                f"{prefix}.num_cores_per_socket",
                "divides-cpus",
                f"{num_cores_per_socket} cores per socket must divide the {num_cpus} CPUs "
                "(vSphere builds sockets of equal size)",
            )
        )
    if memory_mib < MIN_WINDOWS_MEMORY_MIB:
        out.append(
            _p(
                step,
                f"{prefix}.memory_mib",
                "min-memory",
                f"memory is {memory_mib} MiB; Windows Server needs at least {MIN_WINDOWS_MEMORY_MIB}",
            )
        )
    elif memory_mib % 4:
        out.append(
            _p(
                step,
                f"{prefix}.memory_mib",
                "multiple-of-4",
                f"memory is {memory_mib} MiB; vSphere requires a multiple of 4 MiB",
            )
        )
    if disk_gib < MIN_WINDOWS_DISK_GIB:
        out.append(
            _p(
                step,
                f"{prefix}.disk_gib",
                "min-disk",
                f"disk is {disk_gib} GiB; Windows Server needs at least {MIN_WINDOWS_DISK_GIB}",
            )
        )
    return out


def check_disk_not_smaller_than_template(
    machine_disk_gib: int, template_disk_gib: int, field: str = "machineset.disk_gib"
) -> list[Problem]:
    """M5: a clone's disk can be grown, never shrunk below the template's."""
    if machine_disk_gib < template_disk_gib:
        return [
            _p(
                "M5",
                field,
                "disk-not-below-template",
                f"diskGiB {machine_disk_gib} is smaller than the template's {template_disk_gib} GiB "
                "disk; vSphere can grow a cloned disk but never shrink it",
            )
        ]
    return []


def check_replicas(replicas: int, field: str = "machineset.replicas") -> list[Problem]:
    if replicas < 0:
        return [_p("M5", field, "min", f"replicas is {replicas}; must be 0 or more")]
    return []


def _last(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def check_template_not_base_vm(
    template: str, base_vm: str, field: str = "machineset.template"
) -> list[Problem]:
    """M7: the MachineSet must never use the original, un-sysprepped VM."""
    if template and _last(template) == _last(base_vm):
        return [
            _p(
                "M7",
                field,
                "not-base-vm",
                f"template {template!r} is the un-sysprepped base VM {base_vm!r}; use the "
                "sysprepped template built from its clone",
            )
        ]
    return []


def check_vsphere_name(name: str, field: str, step: str) -> list[Problem]:
    out: list[Problem] = []
    if not name.strip():
        out.append(_p(step, field, "not-empty", "a vSphere object name must not be empty"))
    elif len(name) > MAX_VSPHERE_NAME:
        out.append(
            _p(
                step,
                field,
                "max-length",
                f"name {name!r} is longer than {MAX_VSPHERE_NAME} characters",
            )
        )
    elif "/" in name or "\\" in name or "%" in name:
        out.append(
            _p(
                step,
                field,
                "no-path-characters",
                f"name {name!r} must not contain '/', '\\' or '%'",
            )
        )
    return out


def check_folder_path(folder: str, datacenter: str, field: str, step: str) -> list[Problem]:
    """M9 (and G1): a VM folder is an inventory path under /<datacenter>/vm/."""
    prefix = f"/{datacenter}/vm"
    under = folder.startswith(prefix + "/") and not folder.endswith("/")
    if (folder == prefix or under) and "//" not in folder:
        return []
    return [
        _p(
            step,
            field,
            "folder-under-datacenter-vm",
            f"folder {folder!r} must be an inventory path under {prefix}/ (e.g. {prefix}/windows)",
        )
    ]


def check_resource_pool_path(pool: str, datacenter: str, field: str, step: str) -> list[Problem]:
    """M9: an absolute resource pool path lives under /<datacenter>/host/."""
    if not pool.startswith("/"):
        return []  # a bare name: resolved (and checked) in vCenter
    prefix = f"/{datacenter}/host/"
    if pool.startswith(prefix) and len(pool) > len(prefix) and "//" not in pool:
        return []
    return [
        _p(
            step,
            field,
            "resource-pool-under-datacenter-host",
            f"resource pool {pool!r} must be an inventory path under {prefix} "
            f"(e.g. {prefix}cluster1/Resources)",
        )
    ]


def check_datastore_path(path: str | None, field: str, step: str = "G1") -> list[Problem]:
    """G1: an ISO given as a datastore path '[datastore] dir/file.iso'."""
    if not path:
        return [
            _p(
                step,
                field,
                "required",
                "a datastore path such as '[datastore1] iso/x.iso' is required",
            )
        ]
    m = DATASTORE_PATH.match(path)
    if not m or not m.group("path").lower().endswith(".iso"):
        return [
            _p(
                step,
                field,
                "datastore-path",
                f"{path!r} is not a datastore path to an ISO, like '[datastore1] iso/windows.iso'",
            )
        ]
    return []


def check_image_name(
    image_name: str, profile: str, field: str = "golden_image.source.image_name"
) -> list[Problem]:
    """G1: /IMAGE/NAME must name an image of the profile's Windows ISOs, exactly as install.wim
    spells it; Windows Setup fails with "Windows cannot find the Microsoft Software License Terms"
    for a name the ISO does not carry."""
    images = get_profile(profile).images
    if not images or image_name in images:
        return []
    near = [i for i in images if i.lower() == image_name.strip().lower()]
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return [
        _p(
            "G1",
            field,
            "image-of-profile",
            f"/IMAGE/NAME {image_name!r} is not an image of the {profile} profile's Windows "
            f"ISOs ({', '.join(images)}){hint}; Windows Setup would stop with 'Windows cannot "
            "find the Microsoft Software License Terms'",
        )
    ]


def check_dns_label(value: str, field: str, step: str = "DNS1") -> list[Problem]:
    if not DNS1123_LABEL.match(value) or len(value) > 63:
        return [
            _p(
                step,
                field,
                "dns-label",
                f"{value!r} is not a DNS label (lower-case letters, digits, '-', at most 63)",
            )
        ]
    return []


def check_dns_name(value: str, field: str, step: str = "DNS1") -> list[Problem]:
    name = value.rstrip(".")
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(DNS1123_LABEL.match(x) and len(x) <= 63 for x in labels)
    ):
        return [
            _p(
                step,
                field,
                "dns-name",
                f"{value!r} is not a valid DNS name (lower-case labels of letters, digits and '-', "
                "separated by dots, at most 253 characters)",
            )
        ]
    return []


def check_zone_contains(name: str, zone: str, field: str = "cluster.dns.zone") -> list[Problem]:
    """DNS1: the zone to update must contain api-int.<cluster>.<base_domain>."""
    n, z = name.rstrip(".").lower(), zone.rstrip(".").lower()
    if n == z or n.endswith("." + z):
        return []
    return [_p("DNS1", field, "zone-contains-record", f"zone {zone!r} does not contain {name!r}")]


def check_server(server: str, field: str = "machineset.workspace.server") -> list[Problem]:
    """M9: vCenter server IP or FQDN (no scheme, no path)."""
    try:
        ipaddress.ip_address(server)
        return []
    except ValueError:
        pass
    if check_dns_name(server.lower(), field, "M9") or server != server.lower():
        return [
            _p(
                "M9",
                field,
                "ip-or-fqdn",
                f"server {server!r} must be the vCenter IP address or FQDN (no 'https://', no path)",
            )
        ]
    return []


def check_admin_password(
    password: str | None, field: str = "windows_access.administrator_password"
) -> list[Problem]:
    """G9: the Administrator password of unattend.xml. Never empty, never the seed's `MyPassword`
    placeholder, and complex enough for Windows Server's default policy (3 of: upper, lower, digit,
    symbol; at least 8 characters; not containing 'Administrator'), otherwise OOBE fails to set it.
    The message never shows the password."""
    if not password:
        return [_p("G9", field, "not-empty", "the Administrator password must not be empty")]
    if password.strip().lower() == PASSWORD_PLACEHOLDER.lower():
        return [
            _p(
                "G9",
                field,
                "not-placeholder",
                f"the Administrator password is still the {PASSWORD_PLACEHOLDER!r} placeholder",
            )
        ]
    classes = sum(
        (
            any(c.isupper() for c in password),
            any(c.islower() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if len(password) < 8 or classes < 3 or "administrator" in password.lower():
        return [
            _p(
                "G9",
                field,
                "complexity",
                "the Administrator password does not meet Windows' default complexity policy (at "
                "least 8 characters from 3 of: upper case, lower case, digits, symbols; not "
                "containing the account name)",
            )
        ]
    return []


def check_template_pattern(
    pattern: str, field: str = "golden_image.names.template_pattern"
) -> list[Problem]:
    """G10: the pattern must contain {build_id} (else every build has the same template name) and
    only the known placeholders."""
    placeholders = set(re.findall(r"{([^{}]*)}", pattern))
    if "build_id" not in placeholders or placeholders - {"series", "build_id"}:
        return [
            _p(
                "G10",
                field,
                "placeholders",
                f"template pattern {pattern!r} must contain {{build_id}} and may use only "
                "{series} and {build_id}",
            )
        ]
    return []


_PROXY = re.compile(r"^(https?://)?[A-Za-z0-9.-]+:[0-9]{1,5}/?$")


def check_offline_source(
    gi: GoldenImageConfig, prefix: str = "golden_image.source"
) -> list[Problem]:
    """An offline site (source.offline) cannot download OpenSSH (Features on Demand come from
    Windows Update/WSUS) nor, for ocp-4.9, Docker from PSGallery: name what is missing (G4, G6)."""
    src = gi.source
    out: list[Problem] = []
    if src.openssh_msi is not None:
        m = DATASTORE_PATH.match(src.openssh_msi)
        if not m or not m.group("path").lower().endswith(".msi"):
            out.append(
                _p("G4", f"{prefix}.openssh_msi", "msi-file",
                   f"{src.openssh_msi!r} is not a datastore path to an .msi "
                   "file (the Win32-OpenSSH release MSI), like "
                   "'[datastore1] iso/OpenSSH-Win64-v9.5.0.0.msi'")
            )  # fmt: skip
        if src.mode != "iso":
            out.append(
                _p("G4", f"{prefix}.openssh_msi", "iso-mode-only",
                   "the MSI is installed from the answer media, which only source.mode 'iso' uses")
            )  # fmt: skip
    if src.winhttp_proxy is not None and not _PROXY.match(src.winhttp_proxy.strip()):
        out.append(
            _p("G4", f"{prefix}.winhttp_proxy", "host-port",
               f"{src.winhttp_proxy!r} is not 'host:port'")
        )  # fmt: skip
    if not src.offline or src.winhttp_proxy:
        return out
    if src.mode == "iso" and not src.openssh_msi:
        out.append(
            _p("G4", f"{prefix}.openssh_msi", "offline-openssh-source",
               f"{prefix}.offline is true but neither {prefix}.openssh_msi nor "
               f"{prefix}.winhttp_proxy is set: without Windows Update, Add-WindowsCapability "
               "OpenSSH.Server fails (DISM 0x800f0954) and sshd never starts")
        )  # fmt: skip
    if get_profile(gi.profile).runtime == "docker":
        out.append(
            _p("G6", f"{prefix}.winhttp_proxy", "offline-psgallery",
               f"{prefix}.offline is true and profile {gi.profile} installs Docker from "
               f"PSGallery (DockerMsftProvider), which needs the internet: set "
               f"{prefix}.winhttp_proxy")
        )  # fmt: skip
    return out
