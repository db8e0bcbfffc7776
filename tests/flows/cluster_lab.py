"""Shared set-up of the cluster-side flow tests against the whole lab: saved blocks, a DNS helper
that edits api-int by hand (as an administrator would), and golden templates built by hand with
lab.scenario (G1-G10), with the key fingerprint recorded as the golden image flow records it.

The fixtures here (`env`, `blocks`, `cluster`, `prepared`) reach the tests of tests/flows through
its conftest.py; a module that defines a fixture of the same name (its own `env`) keeps its own."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.query
import dns.tsigkeyring
import dns.update
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client as k8s
from pydantic import SecretStr

from blocks.dns import DnsUpdateCredentials
from blocks.openshift import OpenShiftCredentials
from blocks.vsphere import VSphereCredentials
from blocks.windows import WindowsAccess
from flows.cluster_prep import cluster_prep
from lab import scenario
from lab.dns import read_tsig_key
from tasks.vsphere import ATTR_FINGERPRINT
from winnodes.model.config import ClusterConfig, DnsConfig, MachineSetConfig, Workspace
from winnodes.vsphere import connect, inventory, vms
from winnodes.vsphere.tls import TlsTrust

PASSWORD = "Lab-Passw0rd!"
OCP_BLOCK = "j-openshift"
VC_BLOCK = "j-vsphere"
WIN_BLOCK = "j-windows"
DNS_BLOCK = "j-dns"
WMCO_NS = "openshift-windows-machine-config-operator"
MAPI_NS = "openshift-machine-api"


@pytest.fixture(scope="session")
def env(lab_env: dict[str, str]) -> dict[str, str]:
    needed = ("KUBECONFIG", "GOVC_URL", "LAB_DNS_SERVER", "LAB_GUESTS_DIR", "LAB_TSIG_KEYFILE")
    if not all(lab_env.get(v) for v in needed):
        pytest.skip(f"needs the whole lab ({', '.join(needed)})")
    return lab_env


def save_vcenter_and_windows_blocks(
    env: dict[str, str], vsphere: str, windows: str, password: str = PASSWORD
) -> None:
    """Save the lab's vCenter credentials and Windows access (its SSH key, `password`) as blocks
    (the flow tests and the benchmarks)."""
    VSphereCredentials(
        server=env["LAB_VSPHERE_SERVER"],
        username=env["LAB_VSPHERE_USERNAME"],
        password=SecretStr(env["LAB_VSPHERE_PASSWORD"]),
        ca_bundle=env["LAB_VSPHERE_CA_FILE"],
    ).save(vsphere, overwrite=True)
    WindowsAccess(
        ssh_private_key=SecretStr(Path(env["LAB_SSH_PRIVATE_KEY"]).read_text()),
        administrator_password=SecretStr(password),
    ).save(windows, overwrite=True)


@pytest.fixture(scope="session")
def blocks(env: dict[str, str], prefect_api: None) -> None:
    save_blocks(env)


def save_blocks(env: dict[str, str]) -> None:
    """Save the lab's four blocks (OpenShift, vCenter, Windows access, DNS update) under the
    names above (the flow tests' fixture, and benchmarks/rotation.py)."""
    OpenShiftCredentials(kubeconfig_path=env["KUBECONFIG"]).save(OCP_BLOCK, overwrite=True)
    save_vcenter_and_windows_blocks(env, VC_BLOCK, WIN_BLOCK)
    key = read_tsig_key(Path(env["LAB_TSIG_KEYFILE"]))
    DnsUpdateCredentials(
        server=env["LAB_DNS_SERVER"],
        port=int(env["LAB_DNS_PORT"]),
        zone=env["LAB_DNS_ZONE"],
        key_name=key.name,
        algorithm=key.algorithm,
        secret=SecretStr(key.secret),
    ).save(DNS_BLOCK, overwrite=True)


def cluster_config(
    env: dict[str, str], *, dns_block: bool = True, **dns_over: Any
) -> ClusterConfig:
    return ClusterConfig(
        name=env["LAB_CLUSTER_NAME"],
        base_domain=env["LAB_BASE_DOMAIN"],
        openshift_block=OCP_BLOCK,
        dns=DnsConfig(dns_update_block=DNS_BLOCK if dns_block else None, **dns_over),
    )


def resolver(env: dict[str, str]) -> str:
    return f"{env['LAB_DNS_SERVER']}:{env['LAB_DNS_PORT']}"


def machineset_config(
    env: dict[str, str], name: str, template: str, **over: Any
) -> MachineSetConfig:
    data: dict[str, Any] = {
        "name": name,
        "replicas": 1,
        "template": template,
        "network_name": env["LAB_VSPHERE_NETWORK"],
        "disk_gib": 128,
        "workspace": Workspace(
            datacenter=env["LAB_VSPHERE_DATACENTER"],
            datastore=env["LAB_VSPHERE_DATASTORE"],
            folder=env["LAB_VSPHERE_FOLDER"],
            resource_pool=env["LAB_VSPHERE_RESOURCE_POOL"],
            server=env["LAB_VSPHERE_SERVER"].split(":")[0],
        ),
    }
    data.update(over)
    return MachineSetConfig(**data)


class Cluster:
    """The lab's cluster and DNS as an administrator sees them (independent of the flows)."""

    def __init__(self, env: dict[str, str]) -> None:
        from kubernetes import config as k8s_config

        self.env = env
        self.api = k8s_config.new_client_from_config(config_file=env["KUBECONFIG"])
        self.core: Any = k8s.CoreV1Api(self.api)
        self.custom: Any = k8s.CustomObjectsApi(self.api)

    def machineset(self, name: str) -> dict[str, Any] | None:
        try:
            obj: Any = self.custom.get_namespaced_custom_object(
                "machine.openshift.io", "v1beta1", MAPI_NS, "machinesets", name
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(obj)

    def delete_machineset(self, name: str) -> None:
        with contextlib.suppress(k8s.ApiException):
            self.custom.delete_namespaced_custom_object(
                "machine.openshift.io", "v1beta1", MAPI_NS, "machinesets", name
            )
        with contextlib.suppress(k8s.ApiException):
            self.custom.delete_collection_namespaced_custom_object(
                "machine.openshift.io",
                "v1beta1",
                MAPI_NS,
                "machines",
                label_selector=f"machine.openshift.io/cluster-api-machineset={name}",
            )

    def key_secret(self) -> Any:
        try:
            return self.core.read_namespaced_secret("cloud-private-key", WMCO_NS)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete_key_secret(self) -> None:
        with contextlib.suppress(k8s.ApiException):
            self.core.delete_namespaced_secret("cloud-private-key", WMCO_NS)

    def set_api_int(self, rdtype: str | None, value: str = "") -> None:
        """api-int by hand: None deletes it."""
        key = read_tsig_key(Path(self.env["LAB_TSIG_KEYFILE"]))
        ring = dns.tsigkeyring.from_text({key.name: (key.algorithm, key.secret)})
        zone = self.env["LAB_DNS_ZONE"]
        rel = f"api-int.{self.env['LAB_CLUSTER_NAME']}"
        upd = dns.update.UpdateMessage(zone, keyring=ring, keyname=dns.name.from_text(key.name))
        upd.delete(rel)
        if rdtype:
            upd.add(rel, 60, rdtype, value)
        r = dns.query.tcp(
            upd, self.env["LAB_DNS_SERVER"], port=int(self.env["LAB_DNS_PORT"]), timeout=5
        )
        assert r.rcode() == 0, r


@pytest.fixture(scope="session")
def cluster(env: dict[str, str]) -> Cluster:
    return Cluster(env)


@pytest.fixture(scope="module")
def prepared(env: dict[str, str], blocks: None, cluster: Cluster) -> None:
    """PRE, DNS1 (api-int created through the update block), PRE-3 (the key secret)."""
    cluster.set_api_int(None)
    result = cluster_prep(
        cluster_config(env), windows_access_block=WIN_BLOCK, dns_resolver=resolver(env)
    )
    assert result.api_int in ("created", "present")


def windows_fingerprint() -> str:
    """The fingerprint of the Windows access block's key (what G10 records on a template)."""
    fp: str = WindowsAccess.load(WIN_BLOCK).fingerprint()  # type: ignore[union-attr]
    return fp


@contextlib.contextmanager
def vcenter(env: dict[str, str]) -> Iterator[Any]:
    with connect(
        env["LAB_VSPHERE_SERVER"],
        env["LAB_VSPHERE_USERNAME"],
        env["LAB_VSPHERE_PASSWORD"],
        trust=TlsTrust(ca_bundle=env["LAB_VSPHERE_CA_FILE"]),
    ) as session:
        yield session


def other_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def build_template(
    env: dict[str, str],
    kind: str,
    *,
    public_key: str | None = None,
    fingerprint: str | None = None,
    firewall_ports: tuple[int, ...] = (10250, 9182),
) -> str:
    """G1-G10 by hand (lab.scenario), then the provenance the golden image flow records (G10)."""
    site = scenario.Site.from_env(env)
    access = WindowsAccess.load(WIN_BLOCK)
    tag = uuid.uuid4().hex[:4]
    name = f"j-{kind}-tmpl-{tag}"
    with scenario.connect(site) as si:
        base, _ = scenario.install_windows(
            si,
            site,
            f"j-{kind}-{tag}",
            public_key or access.public_key(),  # type: ignore[union-attr]
            firewall_ports=firewall_ports,
            admin_password=PASSWORD,
        )
        scenario.make_template(
            si, site, base, env["LAB_SSH_PRIVATE_KEY"], name, admin_password=PASSWORD
        )
        scenario.destroy(si, base)
    if fingerprint:
        with vcenter(env) as session:
            tpl = inventory.vm(session, name).obj
            vms.set_custom_attributes(session, tpl, {ATTR_FINGERPRINT: fingerprint})
    return name


def remove_template(env: dict[str, str], name: str) -> None:
    """Remove what build_template made (the template, its answer ISO): the session lab is shared."""
    site = scenario.Site.from_env(env)
    with contextlib.suppress(Exception), scenario.connect(site) as si:
        scenario.remove_golden(si, site, name, name.replace("-tmpl-", "-"))
