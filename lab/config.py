"""The lab's settings: ports, names and versions, each overridable by an environment variable.

Defaults are chosen to stay out of the way of common services on a developer machine. Names follow
what an OpenShift-on-vSphere installation creates, so configuration written for the lab reads like
configuration for a real site.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass

from lab.paths import LabPaths

# Pinned versions of what the lab builds with Go (the cache is keyed by these).
GOVMOMI_VERSION = "v0.56.0"  # simulator package used by lab/vcsim
GOVC_VERSION = "v0.46.3"  # the last release `go install` can fetch
KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"


def _int(var: str, default: int) -> int:
    raw = os.environ.get(var)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{var}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


@dataclass(frozen=True)
class LabConfig:
    host: str
    vcsim_port: int
    vcsim_control_port: int
    etcd_port: int
    etcd_peer_port: int
    apiserver_port: int
    dns_address: str
    dns_port: int
    guest_net: str  # guests get 127.<guest_net>.x.y
    vsphere_user: str
    cluster_name: str
    base_domain: str
    boot_delay: float  # seconds from power-on to Tools reporting (a real boot takes minutes)
    # how long an EFI guest shows "Press any key to boot from CD or DVD" (a few seconds on real
    # hardware; scaled like boot_delay)
    efi_key_window: float = 2.0

    @classmethod
    def from_env(cls) -> LabConfig:
        return cls(
            host="127.0.0.1",
            vcsim_port=_int("LAB_VCSIM_PORT", 18989),
            vcsim_control_port=_int("LAB_VCSIM_CONTROL_PORT", 18990),
            etcd_port=_int("LAB_ETCD_PORT", 12379),
            etcd_peer_port=_int("LAB_ETCD_PEER_PORT", 12380),
            apiserver_port=_int("LAB_APISERVER_PORT", 16443),
            dns_address=os.environ.get("LAB_DNS_ADDRESS", "127.0.0.1"),
            dns_port=_int("LAB_DNS_LISTEN_PORT", 15353),
            guest_net=os.environ.get("LAB_GUEST_NET", "77"),
            vsphere_user=os.environ.get("LAB_VSPHERE_USER", "administrator@vsphere.local"),
            cluster_name=os.environ.get("LAB_CLUSTER", "lab"),
            base_domain=os.environ.get("LAB_BASE_DOMAIN", "winnodes.test"),
            boot_delay=float(os.environ.get("LAB_BOOT_DELAY", "0.5")),
            efi_key_window=float(os.environ.get("LAB_EFI_KEY_WINDOW", "2.0")),
        )


def random_suffix(n: int = 5) -> str:
    """Lower-case letters and digits, as OpenShift's installer and machine-api use."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def infrastructure_id(paths: LabPaths, cfg: LabConfig) -> str:
    """The lab's random infrastructure ID (`<cluster>-<5 chars>`), made once per run directory and
    shared by the vCenter folder and the cluster's Infrastructure object."""
    f = paths.infrastructure_id_file
    if f.exists():
        return f.read_text().strip()
    paths.ensure()
    value = f"{cfg.cluster_name}-{random_suffix()}"
    f.write_text(value + "\n")
    return value
