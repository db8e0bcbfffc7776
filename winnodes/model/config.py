"""The typed configuration of a run: golden image build, cluster side, MachineSet, waits.

These models become the flows' parameters, so they must render as a Prefect UI form: plain pydantic
types, a description on every field, and **no secrets** (a deployment run stores its parameters in
plain text, see field-notes). Secrets live in Prefect blocks; the configuration names the blocks.

Structural checks (types, ranges, enumerations) are pydantic's; the procedure's rules with step IDs
(name lengths, inventory paths, cross-field rules) live in `winnodes.validate`, which reports all of
them at once instead of stopping at the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from winnodes.errors import ConfigError, Problem
from winnodes.model.profiles import ProfileName

# Defaults from docs/procedure.md (M5) and the seed's examples.
DEFAULT_DISK_GIB = 128
DEFAULT_MEMORY_MIB = 16384
DEFAULT_NUM_CPUS = 4
DEFAULT_CORES_PER_SOCKET = 1
DEFAULT_CREDENTIALS_SECRET = "vsphere-cloud-credentials"
DEFAULT_USER_DATA_SECRET = "windows-user-data"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- golden image (issue 4) ----------------------------------------------------------------------
class Placement(_Model):
    """Where the build's VMs and templates live in vCenter."""

    datacenter: str = Field(description="vCenter datacenter name, e.g. 'dc1'.")
    cluster: str | None = Field(
        default=None,
        description="Compute cluster name; its root resource pool is used unless resource_pool is set.",
    )
    resource_pool: str | None = Field(
        default=None,
        description="Resource pool inventory path, e.g. '/dc1/host/cluster1/Resources/images'.",
    )
    datastore: str = Field(description="Datastore for the VMs' disks and the answer media.")
    folder: str = Field(
        description="VM folder inventory path for the base VM and templates, e.g. '/dc1/vm/golden-images'."
    )
    network: str = Field(
        description="Port group (network) name for the VM's NIC, e.g. 'VM Network'."
    )


class Source(_Model):
    """Where Windows comes from: a fresh install from ISO, or an existing un-sysprepped base VM."""

    mode: Literal["iso", "base", "base_vm"] = Field(
        default="iso",
        description="'iso': install the base VM from the Windows ISO when it does not exist yet (an "
        "existing base VM is rebuilt from, as with 'base'); 'base': rebuild from the kept, "
        "un-sysprepped base VM named in names.base_vm (power on, Windows updates G6u, re-verify "
        "G2-G7, then G8-G10); it must exist. 'base_vm' is the old name of 'base'.",
    )
    windows_iso: str | None = Field(
        default=None,
        description="Datastore path of the Windows Server installation ISO, e.g. "
        "'[datastore1] iso/windows-server-2022.iso' (mode 'iso').",
    )
    tools_iso: str | None = Field(
        default=None,
        description="Datastore path of the VMware Tools ISO, e.g. '[datastore1] iso/vmware-tools.iso' "
        "(mode 'iso'). Often the host's '[] /usr/lib/vmware/isoimages/windows.iso'.",
    )
    image_name: str | None = Field(
        default=None,
        description="/IMAGE/NAME of the edition to install from install.wim, e.g. 'Windows Server "
        "2022 SERVERDATACENTERCORE' or 'Windows Server 2025 SERVERSTANDARDCORE'; must be one the "
        "profile's Windows ISOs carry. Default per profile (Datacenter, Server Core).",
    )
    product_key: str | None = Field(
        default=None,
        description="Generic (KMS client setup) product key, if the media needs one. Not a secret: "
        "Microsoft publishes these; never put a retail or MAK key here.",
    )
    offline: bool = Field(
        default=False,
        description="The guest network reaches neither Windows Update/WSUS nor the internet "
        "(air-gapped site): OpenSSH must come from `openssh_msi` (or through `winhttp_proxy`); "
        "checked before anything is created (G4, and G6 for ocp-4.9's Docker from PSGallery).",
    )
    openssh_msi: str | None = Field(
        default=None,
        description="Datastore path of the Win32-OpenSSH release MSI, e.g. "
        "'[datastore1] iso/OpenSSH-Win64-v9.5.0.0.msi' (github.com/PowerShell/Win32-OpenSSH "
        "releases). Put on the answer media and installed with msiexec at first logon instead of "
        "the Features-on-Demand download (`Add-WindowsCapability -Online`), which needs Windows "
        "Update. Needed when `offline` is true and no `winhttp_proxy` is set.",
    )
    winhttp_proxy: str | None = Field(
        default=None,
        description="HTTP proxy 'host:port' the guest uses for Windows Update and PSGallery: set "
        "with `netsh winhttp set proxy` at first logon, before OpenSSH is added.",
    )
    winhttp_bypass: str = Field(
        default="<local>",
        description="WinHTTP proxy bypass list (with `winhttp_proxy`), e.g. '<local>;*.corp'.",
    )


class Hardware(_Model):
    """Virtual hardware of the base VM (and so of the template)."""

    num_cpus: int = Field(default=DEFAULT_NUM_CPUS, ge=1, description="Virtual CPUs.")
    num_cores_per_socket: int = Field(
        default=DEFAULT_CORES_PER_SOCKET, ge=1, description="Cores per virtual socket."
    )
    memory_mib: int = Field(default=DEFAULT_MEMORY_MIB, ge=1, description="Memory in MiB.")
    disk_gib: int = Field(
        default=DEFAULT_DISK_GIB,
        ge=1,
        description="System disk in GiB. MachineSets can grow it (diskGiB) but never shrink it.",
    )
    firmware: Literal["bios", "efi"] = Field(
        default="efi",
        description="Firmware: 'bios' or 'efi'. EFI shows 'Press any key to boot from CD or DVD': "
        "G1 answers it with key presses through vCenter (PutUsbScanCodes).",
    )
    disk_controller: Literal["pvscsi", "lsilogic-sas"] = Field(
        default="pvscsi",
        description="Controller of the system disk: 'pvscsi' (VMware Paravirtual; Windows setup "
        "loads its driver from the Tools ISO, see DriverPaths) or 'lsilogic-sas' (inbox driver).",
    )
    boot_key_presses: int = Field(
        default=10,
        ge=1,
        le=100,
        description="EFI: how many spacebar presses G1 sends after power-on to start the installer "
        "from the ISO (Packer's boot_command does the same).",
    )
    boot_key_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="EFI: seconds between the boot key presses; presses x interval must cover the "
        "boot loader's prompt (a few seconds, shown shortly after power-on).",
    )
    hardware_version: str = Field(
        default="vmx-15",
        description="Virtual hardware version as 'vmx-NN'; OpenShift needs 15 or later (G1).",
    )
    guest_id: str | None = Field(
        default=None, description="vSphere guest OS identifier; default per profile."
    )


class UnattendSettings(_Model):
    """Settings of the sysprep unattend.xml (G9) and of the installation's answer file (G1)."""

    computer_name: str = Field(
        default="winhost",
        description="ComputerName: a lower-case DNS-1123 label of at most 15 characters (G9).",
    )
    time_zone: str = Field(
        default="UTC", description="Windows time zone ID, e.g. 'Eastern Standard Time' or 'UTC'."
    )
    organization: str = Field(default="Organization", description="RegisteredOrganization.")
    owner: str = Field(default="Owner", description="RegisteredOwner.")


class Names(_Model):
    """Names of the base VM and of the templates built from it."""

    base_vm: str = Field(
        default="windows-golden-base",
        description="The un-sysprepped base VM (created from ISO, or the existing one to reuse). "
        "It is never generalized and never used as a MachineSet template (M7).",
    )
    template_series: str = Field(
        default="windows-golden", description="Series name shared by every template of this build."
    )
    template_pattern: str = Field(
        default="{series}-{build_id}",
        description="Template name pattern; placeholders {series} and {build_id}.",
    )
    build_id_scheme: Literal["timestamp", "counter"] = Field(
        default="timestamp",
        description="'timestamp': UTC YYYYMMDDHHMMSS; 'counter': 1 + the highest existing number.",
    )


class WindowsUpdate(_Model):
    """G6u: where the base VM gets its Windows updates from (Windows Update Agent API)."""

    source: Literal["windows-update", "wsus", "off"] = Field(
        default="windows-update",
        description="'windows-update': Microsoft Update over the internet; 'wsus': the WSUS server "
        "in wsus_server (set as the WUServer/UseWUServer policy); 'off': skip G6u.",
    )
    wsus_server: str | None = Field(
        default=None,
        description="WSUS server URL for source 'wsus', e.g. 'http://wsus.example.com:8530'.",
    )
    max_rounds: int = Field(
        default=8,
        ge=1,
        le=50,
        description="At most this many search -> install (-> restart) rounds.",
    )


class GoldenImageTimeouts(_Model):
    """Deadlines of the golden image's waits, in seconds."""

    vcenter_task_seconds: int = Field(default=600, ge=1, description="One vCenter task.")
    install_seconds: int = Field(
        default=5400,
        ge=1,
        description="G1/G2: Windows setup and first logon until Tools report an IPv4 address.",
    )
    ssh_seconds: int = Field(default=600, ge=1, description="G4/G5: until SSH answers.")
    command_seconds: int = Field(default=900, ge=1, description="One command in the guest.")
    sysprep_seconds: int = Field(
        default=1800, ge=1, description="G9: sysprep until the clone is powered off."
    )
    updates_seconds: int = Field(
        default=7200,
        ge=1,
        description="G6u: every round of Windows updates with its restarts, until none is pending.",
    )


class GoldenImageConfig(_Model):
    """One golden image build (issue 4): G1-G10."""

    profile: ProfileName = Field(
        default="current", description="Requirement profile: 'ocp-4.9' or 'current'."
    )
    vsphere_credentials_block: str = Field(
        default="vsphere-credentials",
        description="Name of the Prefect block with the vCenter server and credentials.",
    )
    windows_access_block: str = Field(
        default="windows-access",
        description="Name of the Prefect block with the Administrator password and SSH key.",
    )
    placement: Placement = Field(description="vCenter placement of the VMs and templates.")
    source: Source = Field(default_factory=Source, description="Installation source.")
    hardware: Hardware = Field(default_factory=Hardware, description="Virtual hardware.")
    unattend: UnattendSettings = Field(
        default_factory=UnattendSettings, description="unattend.xml settings."
    )
    names: Names = Field(default_factory=Names, description="VM and template names.")
    keep_templates: int = Field(
        default=3, ge=1, description="Retention: keep the newest N templates of the series."
    )
    windows_update: WindowsUpdate = Field(
        default_factory=WindowsUpdate, description="G6u: Windows updates on the base VM."
    )
    timeouts: GoldenImageTimeouts = Field(
        default_factory=GoldenImageTimeouts, description="Deadlines of the waits."
    )
    keep_failed_build: bool = Field(
        default=False,
        description="Keep a failed build's clone for debugging instead of deleting it.",
    )


# ---- cluster side (issue 5) ----------------------------------------------------------------------
class DnsConfig(_Model):
    """DNS1: the api-int record."""

    zone: str | None = Field(
        default=None, description="Zone to update; default: the cluster's base domain."
    )
    record_type: Literal["CNAME", "A"] = Field(
        default="CNAME", description="Create api-int as a CNAME to api, or as A records."
    )
    ttl: int = Field(default=300, ge=1, description="TTL of a created record, in seconds.")
    allow_overwrite: bool = Field(
        default=False,
        description="Replace an existing api-int record that points elsewhere (default: refuse).",
    )
    dns_update_block: str | None = Field(
        default=None,
        description="Name of the Prefect block with the DNS server and TSIG key; without it DNS1 "
        "only checks and reports the record to add.",
    )


class ClusterConfig(_Model):
    """The OpenShift cluster the Windows nodes join."""

    name: str = Field(
        description="Cluster name (the <cluster_name> of api.<cluster_name>.<base_domain>)."
    )
    base_domain: str = Field(description="Base domain, e.g. 'example.com'.")
    openshift_block: str = Field(
        default="openshift", description="Name of the Prefect block with the cluster access."
    )
    dns: DnsConfig = Field(default_factory=DnsConfig, description="api-int record (DNS1).")

    @property
    def api_name(self) -> str:
        return f"api.{self.name}.{self.base_domain}"

    @property
    def api_int_name(self) -> str:
        return f"api-int.{self.name}.{self.base_domain}"


class Workspace(_Model):
    """providerSpec.workspace (M9)."""

    datacenter: str = Field(description="vCenter datacenter name.")
    datastore: str = Field(description="Datastore for the machines' disks.")
    folder: str = Field(description="VM folder path, e.g. '/dc1/vm/<infrastructure_id>'.")
    resource_pool: str | None = Field(default=None, description="Resource pool path (optional).")
    server: str = Field(description="vCenter server IP or FQDN.")


class MachineSetConfig(_Model):
    """The Windows MachineSet (M1-M9, C1-C3)."""

    name: str = Field(
        default="winworker",
        description="Machine set name: DNS-1123, at most 9 characters (M2).",
    )
    replicas: int = Field(default=1, ge=0, description="Number of Windows machines.")
    role: Literal["worker", "infra"] = Field(default="worker", description="Machine role.")
    num_cpus: int = Field(default=DEFAULT_NUM_CPUS, ge=1, description="numCPUs (M5).")
    num_cores_per_socket: int = Field(
        default=DEFAULT_CORES_PER_SOCKET, ge=1, description="numCoresPerSocket (M5)."
    )
    memory_mib: int = Field(default=DEFAULT_MEMORY_MIB, ge=1, description="memoryMiB (M5).")
    disk_gib: int = Field(
        default=DEFAULT_DISK_GIB,
        ge=1,
        description="diskGiB (M5): sizes the VMDK, not the Windows partition; >= the template's disk.",
    )
    network_name: str | None = Field(
        default=None,
        description="VM network of the cluster's Linux compute machines (M6); required unless "
        "taken from an existing Linux machine set.",
    )
    template: str | None = Field(
        default=None,
        description="Full path of the Windows template (M7); default: the template the golden "
        "image build produced.",
    )
    workspace: Workspace | None = Field(
        default=None,
        description="providerSpec.workspace (M9); required unless taken from a Linux machine set.",
    )
    credentials_secret: str = Field(
        default=DEFAULT_CREDENTIALS_SECRET, description="credentialsSecret.name (M5)."
    )
    user_data_secret: str = Field(
        default=DEFAULT_USER_DATA_SECRET, description="userDataSecret.name (M8)."
    )
    take_from_existing_linux_machineset: bool = Field(
        default=False,
        description="C2: take workspace, network and credentialsSecret from an existing Linux "
        "compute machine set instead of this configuration.",
    )
    linux_machineset: str | None = Field(
        default=None,
        description="Which Linux machine set to copy from (C2); required when several exist.",
    )
    require_provenance: bool = Field(
        default=False,
        description="M7: refuse a template without winnodes provenance (custom attribute "
        "winnodes.build, i.e. not built by the golden image flow); default: warn and continue.",
    )


class Waits(_Model):
    """Deadlines of the cluster side's waits, in seconds."""

    dns_seconds: int = Field(default=120, ge=1, description="DNS1: until api-int resolves.")
    machineset_ready_seconds: int = Field(
        default=3600,
        ge=1,
        description="V1: until DESIRED = CURRENT = READY = AVAILABLE and the nodes are Ready.",
    )


class RotationConfig(_Model):
    """Day 2: moving the Windows nodes onto a new template (ROT1-ROT4), one at a time, surge 1."""

    rollout: bool = Field(
        default=False,
        description="After a successful golden image build, rotate the MachineSet's Machines onto "
        "the new template (the parent flow, part 'all' or 'golden-image').",
    )
    drain_seconds: int = Field(
        default=900,
        ge=1,
        description="ROT3: deadline for draining one node (evictions blocked by a "
        "PodDisruptionBudget are retried until then); past it the rotation stops, deleting nothing.",
    )
    machine_deleted_seconds: int = Field(
        default=900, ge=1, description="ROT4: deadline for the retired Machine to be gone."
    )


class PipelineConfig(_Model):
    """Everything the parent flow needs: build the golden image, prepare the cluster, create the
    Windows MachineSet, wait for the nodes."""

    golden_image: GoldenImageConfig = Field(description="The golden image build (G1-G10).")
    cluster: ClusterConfig = Field(description="The cluster (PRE, DNS1).")
    machineset: MachineSetConfig = Field(
        default_factory=MachineSetConfig, description="The Windows MachineSet (M, C, V1)."
    )
    waits: Waits = Field(default_factory=Waits, description="Deadlines of the cluster waits.")
    rotation: RotationConfig = Field(
        default_factory=RotationConfig,
        description="Rolling rotation of the Windows nodes onto a new template (ROT1-ROT4).",
    )


def load_config(source: str | Path) -> PipelineConfig:
    """Load a PipelineConfig from a YAML file path or from YAML text.

    A `str` containing a newline or a ':' is YAML text; otherwise it is a path. Raises ConfigError
    listing every structural problem (field path, pydantic's rule, message)."""
    if isinstance(source, Path) or ("\n" not in source and ":" not in source):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
    else:
        text = source
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the configuration is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a YAML mapping with golden_image and cluster")
    return parse_config(data)


def parse_config(data: dict[str, Any]) -> PipelineConfig:
    """Build a PipelineConfig from a mapping; structural errors become one ConfigError."""
    try:
        return PipelineConfig.model_validate(data)
    except PydanticValidationError as exc:
        problems = [
            Problem(
                step_id=_step_for(err["loc"]),
                field=".".join(str(p) for p in err["loc"]),
                rule=err["type"],
                message=f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']} "
                f"[{err['type']}] ({_step_for(err['loc'])})",
            )
            for err in exc.errors(include_input=False, include_url=False)
        ]
        lines = [f"{len(problems)} configuration problem(s):"] + [f"  - {p}" for p in problems]
        raise ConfigError("\n".join(lines), problems=problems) from None


def _step_for(loc: tuple[int | str, ...]) -> str:
    """The step a configuration field belongs to, for structural (pydantic) errors."""
    parts = [str(p) for p in loc]
    head = parts[0] if parts else ""
    sub = parts[1] if len(parts) > 1 else ""
    if head == "golden_image":
        return {
            "placement": "G1",
            "source": "G1",
            "hardware": "G1",
            "unattend": "G9",
            "names": "G8",
            "keep_templates": "G10",
            "windows_update": "G6u",
        }.get(sub, "G1")
    if head == "cluster":
        return "DNS1"
    if head == "machineset":
        return {
            "name": "M2",
            "replicas": "M5",
            "role": "M3",
            "network_name": "M6",
            "template": "M7",
            "workspace": "M9",
            "user_data_secret": "M8",
            "take_from_existing_linux_machineset": "C2",
            "linux_machineset": "C2",
            "require_provenance": "M7",
        }.get(sub, "M5")
    if head == "rotation":
        return {"drain_seconds": "ROT3", "machine_deleted_seconds": "ROT4"}.get(sub, "ROT1")
    if head == "waits":
        return "V1"
    return "C1"
