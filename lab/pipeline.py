"""The product's configuration for the lab: `<lab>/pipeline.yaml` and `<lab>/blocks.yaml` from the
variables of a running lab (`<lab>/lab.json`), so the demo and the end-to-end tests point the product
at the lab exactly as an administrator points it at a real site (with files, never by importing it).

Secrets are not written into these files: `blocks.yaml` refers to environment variables and files
(`{env: NAME}`, `{file: PATH}`) that `python -m deployments.register` resolves; `secret_env()` gives
the values for that process's environment.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml

from lab.dns import read_tsig_key

BLOCK_VSPHERE = "lab-vsphere"
BLOCK_WINDOWS = "lab-windows"
BLOCK_OPENSHIFT = "lab-openshift"
BLOCK_DNS = "lab-dns"
BLOCK_NOTIFY = "winnodes-notify"  # deployments.register's default notification block name
ADMIN_PASSWORD_VAR = "WINNODES_LAB_ADMIN_PASSWORD"
TSIG_SECRET_VAR = "WINNODES_LAB_TSIG_SECRET"


def admin_password(root: Path) -> str:
    """The Windows Administrator password of the lab's builds, made once per lab run directory."""
    path = root / "ssh" / "admin-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Lab-{secrets.token_hex(8)}!")
        path.chmod(0o600)
    return path.read_text().strip()


def notify_block(url: str) -> dict[str, Any]:
    """A Custom Webhook notification block posting JSON to the lab's webhook receiver."""
    return {
        "type": "webhook",
        "name": "winnodes-lab",
        "url": url,
        "json_data": {"subject": "{{subject}}", "text": "{{body}}"},
    }


def blocks_spec(env: dict[str, str]) -> dict[str, Any]:
    """The lab's blocks; the failure notification block too when a webhook receiver runs
    (LAB_WEBHOOK_URL)."""
    key = read_tsig_key(Path(env["LAB_TSIG_KEYFILE"]))
    notify = (
        {BLOCK_NOTIFY: notify_block(env["LAB_WEBHOOK_URL"])} if "LAB_WEBHOOK_URL" in env else {}
    )
    return notify | {
        BLOCK_VSPHERE: {
            "type": "vsphere",
            "server": env["LAB_VSPHERE_SERVER"],
            "username": env["LAB_VSPHERE_USERNAME"],
            "password": {"env": "LAB_VSPHERE_PASSWORD"},
            "ca_bundle": env["LAB_VSPHERE_CA_FILE"],
        },
        BLOCK_WINDOWS: {
            "type": "windows",
            "ssh_private_key": {"file": env["LAB_SSH_PRIVATE_KEY"]},
            "administrator_password": {"env": ADMIN_PASSWORD_VAR},
        },
        BLOCK_OPENSHIFT: {"type": "openshift", "kubeconfig_path": env["KUBECONFIG"]},
        BLOCK_DNS: {
            "type": "dns",
            "server": env["LAB_DNS_SERVER"],
            "port": int(env["LAB_DNS_PORT"]),
            "zone": env["LAB_DNS_ZONE"],
            "key_name": key.name,
            "algorithm": key.algorithm,
            "secret": {"env": TSIG_SECRET_VAR},
        },
    }


def secret_env(env: dict[str, str]) -> dict[str, str]:
    """The secret values `blocks.yaml` refers to, for the registration command's environment."""
    root = Path(env["LAB_DIR"])
    return {
        "LAB_VSPHERE_PASSWORD": env["LAB_VSPHERE_PASSWORD"],
        ADMIN_PASSWORD_VAR: admin_password(root),
        TSIG_SECRET_VAR: read_tsig_key(Path(env["LAB_TSIG_KEYFILE"])).secret,
    }


def placement(env: dict[str, str]) -> dict[str, str]:
    """The golden image's `placement` in this lab (datacenter, cluster, datastore, folder,
    network), for the pipeline file, the flow tests and the benchmarks alike."""
    return {
        "datacenter": env["LAB_VSPHERE_DATACENTER"],
        "cluster": env["LAB_VSPHERE_CLUSTER"],
        "datastore": env["LAB_VSPHERE_DATASTORE"],
        "folder": env["LAB_VSPHERE_FOLDER"],
        "network": env["LAB_VSPHERE_NETWORK"],
    }


def hardware() -> dict[str, Any]:
    """Small VMs for the twin: EFI + PVSCSI (the defaults), boot key presses paced for the lab's
    scaled EFI boot prompt (2 s)."""
    return {
        "num_cpus": 2,
        "memory_mib": 4096,
        "disk_gib": 40,
        "boot_key_presses": 16,
        "boot_key_interval_seconds": 0.25,
    }


def pipeline(
    env: dict[str, str], *, replicas: int = 1, series: str = "lab-windows"
) -> dict[str, Any]:
    """A pipeline configuration for the lab: small VMs, short deadlines (the twin boots fast)."""
    return {
        "golden_image": {
            "profile": "current",
            "vsphere_credentials_block": BLOCK_VSPHERE,
            "windows_access_block": BLOCK_WINDOWS,
            "placement": placement(env),
            "source": {
                "mode": "iso",
                "windows_iso": env["LAB_WINDOWS_ISO_CURRENT"],
                "tools_iso": env["LAB_TOOLS_ISO"],
            },
            "hardware": hardware(),
            "unattend": {"computer_name": "winhost"},
            "names": {"base_vm": f"{series}-base", "template_series": series},
            "keep_templates": 2,
            "timeouts": {
                "vcenter_task_seconds": 120,
                "install_seconds": 300,
                "ssh_seconds": 60,
                "command_seconds": 120,
                "sysprep_seconds": 300,
            },
        },
        "cluster": {
            "name": env["LAB_CLUSTER_NAME"],
            "base_domain": env["LAB_BASE_DOMAIN"],
            "openshift_block": BLOCK_OPENSHIFT,
            "dns": {"dns_update_block": BLOCK_DNS},
        },
        "machineset": {
            "name": "winworker",
            "replicas": replicas,
            "num_cpus": 2,
            "memory_mib": 4096,
            "disk_gib": 128,
            "network_name": env["LAB_VSPHERE_NETWORK"],
            "workspace": {
                "datacenter": env["LAB_VSPHERE_DATACENTER"],
                "datastore": env["LAB_VSPHERE_DATASTORE"],
                "folder": env["LAB_VSPHERE_FOLDER"],
                "resource_pool": env["LAB_VSPHERE_RESOURCE_POOL"],
                "server": env["LAB_VSPHERE_SERVER"].split(":")[0],
            },
        },
        "waits": {"dns_seconds": 60, "machineset_ready_seconds": 600},
    }


def write(env: dict[str, str], **kwargs: Any) -> tuple[Path, Path]:
    """Write `<lab>/pipeline.yaml` and `<lab>/blocks.yaml`; return their paths."""
    root = Path(env["LAB_DIR"])
    config_path, blocks_path = root / "pipeline.yaml", root / "blocks.yaml"
    header = "# written by lab.pipeline from lab.json; no secret values here\n"
    config_path.write_text(header + yaml.safe_dump(pipeline(env, **kwargs), sort_keys=False))
    blocks_path.write_text(header + yaml.safe_dump(blocks_spec(env), sort_keys=False))
    return config_path, blocks_path
