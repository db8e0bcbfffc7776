"""The objects an installed OpenShift 4.18 cluster on vSphere (IPI) with WMCO carries, as plain dicts.

The flows discover the cluster the way an administrator does (`oc get infrastructure cluster`,
`oc get machinesets -n openshift-machine-api`, the WMCO namespace and its OLM objects, the network
operator's hybrid overlay settings), so the lab's API server must answer those reads with the shapes
a real cluster has. The values come from the lab's vCenter (the `LAB_VSPHERE_*` variables published by
`lab.vcsim`) when it runs, and from vcsim's default inventory names otherwise.

Nothing here talks to a server: `seed_objects(site)` returns the objects in creation order and
`lab.kube` creates the missing ones. Fields under `status` are written through the status
subresource when the CRD has one, as the owning operator would.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

OPENSHIFT_VERSION = "4.18.21"
RELEASE_IMAGE = f"quay.io/openshift-release-dev/ocp-release:{OPENSHIFT_VERSION}-x86_64"
WMCO_VERSION = "10.18.1"  # WMCO 10.18.z ships for OpenShift 4.18
WMCO_NAME = "windows-machine-config-operator"
WMCO_CSV = f"{WMCO_NAME}.v{WMCO_VERSION}"
WMCO_IMAGE = (
    f"registry.redhat.io/openshift4-wincw/windows-machine-config-rhel9-operator:v{WMCO_VERSION}"
)

MACHINE_API_NAMESPACE = "openshift-machine-api"
WMCO_NAMESPACE = "openshift-windows-machine-config-operator"
CONFIG_NAMESPACE = "openshift-config"

CLUSTER_NETWORK = "10.128.0.0/14"
SERVICE_NETWORK = "172.30.0.0/16"  # also the API server's --service-cluster-ip-range
HYBRID_CLUSTER_NETWORK = "10.132.0.0/14"
HYBRID_OVERLAY_VXLAN_PORT = 9898  # the custom VXLAN port the WMCO docs require on vSphere

LAB_MADE = {"winnodes.lab/lab-made": "true"}
Obj = dict[str, Any]


@dataclass(frozen=True)
class Site:
    """What the seeded objects say about the cluster and its vCenter."""

    infra_id: str
    cluster_name: str
    base_domain: str
    api_address: str
    vcenter: str  # host name or IP only: it prefixes the credential secret's keys
    vcenter_username: str
    vcenter_password: str
    datacenter: str
    compute_cluster: str  # inventory path /<dc>/host/<cluster>
    datastore: str  # inventory path /<dc>/datastore/<ds>
    network: str
    folder: str  # inventory path /<dc>/vm/<infra_id>
    resource_pool: str  # inventory path /<dc>/host/<cluster>/Resources
    ca_bundle_pem: str = ""
    template: str = ""  # the RHCOS template's name; `<infra_id>-rhcos` when empty
    # The Linux worker VMs in the vCenter (name, guest IP): each gets a Running Machine and a Node
    workers: tuple[tuple[str, str], ...] = ()

    @property
    def api_url(self) -> str:
        return f"https://api.{self.cluster_name}.{self.base_domain}:6443"

    @property
    def api_int_url(self) -> str:
        return f"https://api-int.{self.cluster_name}.{self.base_domain}:6443"

    @property
    def worker_machineset(self) -> str:
        return f"{self.infra_id}-worker"

    @property
    def rhcos_template(self) -> str:
        return self.template or f"{self.infra_id}-rhcos"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        infra_id: str,
        cluster_name: str,
        base_domain: str,
        api_address: str,
        vsphere_user: str,
        ca_bundle_pem: str = "",
    ) -> Site:
        """Values from the variables `lab.vcsim` publishes; vcsim's default inventory otherwise."""
        dc = _leaf(env.get("LAB_VSPHERE_DATACENTER") or env.get("GOVC_DATACENTER") or "DC0")
        cluster = _leaf(env.get("LAB_VSPHERE_CLUSTER") or "DC0_C0")
        server = env.get("LAB_VSPHERE_SERVER") or urlsplit(env.get("GOVC_URL", "")).netloc
        host = (server.rsplit("@", 1)[-1].rsplit(":", 1)[0] if server else "") or "127.0.0.1"
        return cls(
            infra_id=infra_id,
            cluster_name=cluster_name,
            base_domain=base_domain,
            api_address=api_address,
            vcenter=host,
            vcenter_username=env.get("GOVC_USERNAME") or vsphere_user,
            vcenter_password=env.get("GOVC_PASSWORD", ""),
            datacenter=dc,
            compute_cluster=f"/{dc}/host/{cluster}",
            datastore=_path(env.get("LAB_VSPHERE_DATASTORE") or "LocalDS_0", f"/{dc}/datastore"),
            network=_leaf(env.get("LAB_VSPHERE_NETWORK") or "VM Network"),
            folder=_path(env.get("LAB_VSPHERE_FOLDER") or infra_id, f"/{dc}/vm"),
            resource_pool=env.get("LAB_VSPHERE_RESOURCE_POOL") or f"/{dc}/host/{cluster}/Resources",
            ca_bundle_pem=ca_bundle_pem,
            template=_leaf(env.get("LAB_VSPHERE_TEMPLATE", "")),
            workers=_workers(env.get("LAB_VSPHERE_WORKERS", "")),
        )


def _workers(value: str) -> tuple[tuple[str, str], ...]:
    """`name=ip,name=ip` (lab.vcsim's LAB_VSPHERE_WORKERS) -> ((name, ip), ...)."""
    out = []
    for item in value.split(","):
        name, _, ip = item.strip().partition("=")
        if name:
            out.append((name, ip))
    return tuple(out)


def _leaf(value: str) -> str:
    return value.rstrip("/").rsplit("/", 1)[-1]


def _path(value: str, parent: str) -> str:
    return value if value.startswith("/") else f"{parent}/{value}"


@dataclass(frozen=True)
class SeedObject:
    """One object to create if missing, and the status its owner would have written."""

    api_version: str
    kind: str
    plural: str
    name: str
    namespace: str | None
    body: Obj
    status: Obj | None = None
    status_subresource: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def collection_path(self) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespace:
            base += f"/namespaces/{self.namespace}"
        return f"{base}/{self.plural}"

    @property
    def path(self) -> str:
        return f"{self.collection_path}/{self.name}"

    def describe(self) -> str:
        where = f" -n {self.namespace}" if self.namespace else ""
        return f"{self.kind}/{self.name}{where}"


def _obj(
    api_version: str,
    kind: str,
    plural: str,
    name: str,
    namespace: str | None = None,
    *,
    spec: Obj | None = None,
    status: Obj | None = None,
    status_subresource: bool = True,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    **top: Any,
) -> SeedObject:
    metadata: Obj = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    body: Obj = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if spec is not None:
        body["spec"] = spec
    body.update(top)
    if status is not None and not status_subresource:
        body["status"] = status
    return SeedObject(
        api_version,
        kind,
        plural,
        name,
        namespace,
        body,
        status,
        status_subresource=status_subresource,
    )


def namespaces() -> list[SeedObject]:
    return [
        _obj("v1", "Namespace", "namespaces", CONFIG_NAMESPACE, status_subresource=False),
        _obj(
            "v1",
            "Namespace",
            "namespaces",
            MACHINE_API_NAMESPACE,
            labels={"openshift.io/cluster-monitoring": "true"},
        ),
        # As the WMCO documentation asks the administrator to create it before installing.
        _obj(
            "v1",
            "Namespace",
            "namespaces",
            WMCO_NAMESPACE,
            labels={"openshift.io/cluster-monitoring": "true"},
        ),
    ]


def infrastructure(site: Site) -> SeedObject:
    topology = {
        "datacenter": site.datacenter,
        "computeCluster": site.compute_cluster,
        "datastore": site.datastore,
        "networks": [site.network],
        "resourcePool": site.resource_pool,
        "folder": site.folder,
        "template": f"{site.folder}/{site.rhcos_template}",
    }
    return _obj(
        "config.openshift.io/v1",
        "Infrastructure",
        "infrastructures",
        "cluster",
        spec={
            "cloudConfig": {"name": ""},
            "platformSpec": {
                "type": "VSphere",
                "vsphere": {
                    "vcenters": [{"server": site.vcenter, "datacenters": [site.datacenter]}],
                    "failureDomains": [
                        {
                            "name": "generated-failure-domain",
                            "region": "generated-region",
                            "zone": "generated-zone",
                            "server": site.vcenter,
                            "topology": topology,
                        }
                    ],
                    "apiServerInternalIPs": [site.api_address],
                    "ingressIPs": [site.api_address],
                    "nodeNetworking": {"external": {}, "internal": {}},
                },
            },
        },
        status={
            "apiServerURL": site.api_url,
            "apiServerInternalURI": site.api_int_url,
            "controlPlaneTopology": "HighlyAvailable",
            "infrastructureTopology": "HighlyAvailable",
            "cpuPartitioning": "None",
            "etcdDiscoveryDomain": "",
            "infrastructureName": site.infra_id,
            "platform": "VSphere",
            "platformStatus": {
                "type": "VSphere",
                "vsphere": {
                    "apiServerInternalIP": site.api_address,
                    "apiServerInternalIPs": [site.api_address],
                    "ingressIP": site.api_address,
                    "ingressIPs": [site.api_address],
                },
            },
        },
    )


def cluster_version(site: Site) -> SeedObject:
    # Stable per infrastructure ID, so a re-seed or another run on the same lab agrees.
    cluster_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{site.infra_id}.{site.base_domain}"))
    installed = "2026-01-01T00:00:00Z"
    return _obj(
        "config.openshift.io/v1",
        "ClusterVersion",
        "clusterversions",
        "version",
        spec={"clusterID": cluster_id, "channel": "stable-4.18"},
        status={
            "desired": {
                "version": OPENSHIFT_VERSION,
                "image": RELEASE_IMAGE,
                "channels": ["candidate-4.18", "eus-4.18", "fast-4.18", "stable-4.18"],
            },
            "history": [
                {
                    "state": "Completed",
                    "version": OPENSHIFT_VERSION,
                    "image": RELEASE_IMAGE,
                    "startedTime": installed,
                    "completionTime": installed,
                    "verified": False,
                }
            ],
            "observedGeneration": 1,
            "versionHash": "lab",
            "availableUpdates": None,
            "capabilities": {
                "enabledCapabilities": ["MachineAPI", "OperatorLifecycleManager"],
                "knownCapabilities": ["MachineAPI", "OperatorLifecycleManager"],
            },
            "conditions": [
                _condition("Available", "True", "", f"Done applying {OPENSHIFT_VERSION}"),
                _condition("Failing", "False"),
                _condition("Progressing", "False", "", f"Cluster version is {OPENSHIFT_VERSION}"),
            ],
        },
    )


def _condition(type_: str, status: str, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {"type": type_, "status": status, "lastTransitionTime": "2026-01-01T00:00:00Z"}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def networks() -> list[SeedObject]:
    cluster_network = [{"cidr": CLUSTER_NETWORK, "hostPrefix": 23}]
    config = _obj(
        "config.openshift.io/v1",
        "Network",
        "networks",
        "cluster",
        spec={
            "clusterNetwork": cluster_network,
            "serviceNetwork": [SERVICE_NETWORK],
            "networkType": "OVNKubernetes",
            "externalIP": {"policy": {}},
        },
        # config.openshift.io networks have no status subresource: status is part of the object.
        status={
            "clusterNetwork": cluster_network,
            "serviceNetwork": [SERVICE_NETWORK],
            "networkType": "OVNKubernetes",
            "clusterNetworkMTU": 1400,
        },
        status_subresource=False,
    )
    operator = _obj(
        "operator.openshift.io/v1",
        "Network",
        "networks",
        "cluster",
        spec={
            "managementState": "Managed",
            "logLevel": "Normal",
            "operatorLogLevel": "Normal",
            "clusterNetwork": cluster_network,
            "serviceNetwork": [SERVICE_NETWORK],
            "defaultNetwork": {
                "type": "OVNKubernetes",
                "ovnKubernetesConfig": {
                    "genevePort": 6081,
                    "mtu": 1400,
                    # PRE-4: what the WMCO documentation asks for on vSphere.
                    "hybridOverlayConfig": {
                        "hybridClusterNetwork": [
                            {"cidr": HYBRID_CLUSTER_NETWORK, "hostPrefix": 23}
                        ],
                        "hybridOverlayVXLANPort": HYBRID_OVERLAY_VXLAN_PORT,
                    },
                },
            },
        },
    )
    return [config, operator]


def vsphere_credentials(site: Site) -> SeedObject:
    return _obj(
        "v1",
        "Secret",
        "secrets",
        "vsphere-cloud-credentials",
        MACHINE_API_NAMESPACE,
        status_subresource=False,
        type="Opaque",
        stringData={
            f"{site.vcenter}.username": site.vcenter_username,
            f"{site.vcenter}.password": site.vcenter_password,
        },
    )


def worker_user_data(site: Site) -> SeedObject:
    """The stub Ignition config the installer stores for workers: it points at the machine-config
    server on api-int and trusts the cluster's CA."""
    ca = base64.b64encode(site.ca_bundle_pem.encode()).decode()
    ignition = {
        "ignition": {
            "config": {
                "merge": [{"source": f"{site.api_int_url.rsplit(':', 1)[0]}:22623/config/worker"}]
            },
            "security": {
                "tls": {
                    "certificateAuthorities": [
                        {"source": f"data:text/plain;charset=utf-8;base64,{ca}"}
                    ]
                }
            },
            "version": "3.2.0",
        }
    }
    return _obj(
        "v1",
        "Secret",
        "secrets",
        "worker-user-data",
        MACHINE_API_NAMESPACE,
        status_subresource=False,
        type="Opaque",
        stringData={"userData": json.dumps(ignition), "disableTemplating": "true"},
    )


def _worker_labels(site: Site) -> dict[str, str]:
    return {
        "machine.openshift.io/cluster-api-cluster": site.infra_id,
        "machine.openshift.io/cluster-api-machine-role": "worker",
        "machine.openshift.io/cluster-api-machine-type": "worker",
        "machine.openshift.io/cluster-api-machineset": site.worker_machineset,
    }


def _worker_provider_spec(site: Site) -> Obj:
    return {
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "VSphereMachineProviderSpec",
        "credentialsSecret": {"name": "vsphere-cloud-credentials"},
        "diskGiB": 120,
        "memoryMiB": 16384,
        "metadata": {},
        "network": {"devices": [{"networkName": site.network}]},
        "numCPUs": 4,
        "numCoresPerSocket": 4,
        "snapshot": "",
        "template": site.rhcos_template,
        "userDataSecret": {"name": "worker-user-data"},
        "workspace": {
            "datacenter": site.datacenter,
            "datastore": site.datastore,
            "folder": site.folder,
            "resourcePool": site.resource_pool,
            "server": site.vcenter,
        },
    }


def worker_machineset(site: Site) -> SeedObject:
    """The Linux compute MachineSet an IPI installation creates, with one replica per Linux worker
    VM of the vCenter (their Machines are `worker_machines`; the lab's machine-api adopts them)."""
    name = site.worker_machineset
    cluster_label = {"machine.openshift.io/cluster-api-cluster": site.infra_id}
    set_label = {"machine.openshift.io/cluster-api-machineset": name}
    n = len(site.workers)
    return _obj(
        "machine.openshift.io/v1beta1",
        "MachineSet",
        "machinesets",
        name,
        MACHINE_API_NAMESPACE,
        labels=cluster_label,
        annotations={
            "machine.openshift.io/memoryMb": "16384",
            "machine.openshift.io/vCPU": "4",
        },
        spec={
            "replicas": n,
            "selector": {"matchLabels": {**cluster_label, **set_label}},
            "template": {
                "metadata": {"labels": _worker_labels(site)},
                "spec": {
                    "lifecycleHooks": {},
                    "metadata": {},
                    "providerSpec": {"value": _worker_provider_spec(site)},
                },
            },
        },
        status={
            "observedGeneration": 1,
            "replicas": n,
            "fullyLabeledReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        },
    )


def worker_nodes(site: Site) -> list[SeedObject]:
    """The Linux (RHCOS) worker Nodes of the worker Machines, Ready."""
    out = []
    for name, ip in site.workers:
        addresses = [{"type": "Hostname", "address": name}]
        if ip:
            addresses.insert(0, {"type": "InternalIP", "address": ip})
        out.append(
            _obj(
                "v1",
                "Node",
                "nodes",
                name,
                labels={
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                    "node-role.kubernetes.io/worker": "",
                    "node.openshift.io/os_id": "rhcos",
                },
                annotations={"machine.openshift.io/machine": f"{MACHINE_API_NAMESPACE}/{name}"},
                status={
                    "addresses": addresses,
                    "conditions": [
                        _condition(
                            "Ready", "True", "KubeletReady", "kubelet is posting ready status"
                        )
                    ],
                    "nodeInfo": {
                        "architecture": "amd64",
                        "bootID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"boot.{name}")),
                        "containerRuntimeVersion": "cri-o://1.31.10",
                        "kernelVersion": "5.14.0-427.81.1.el9_4.x86_64",
                        "kubeProxyVersion": "",
                        "kubeletVersion": "v1.31.10",
                        "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, f"machine.{name}").hex,
                        "operatingSystem": "linux",
                        "osImage": "Red Hat Enterprise Linux CoreOS 418.94.202507221259-0",
                        "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"system.{name}")),
                    },
                },
            )
        )
    return out


def worker_machines(site: Site) -> list[SeedObject]:
    """The worker MachineSet's Machines, one per Linux worker VM, as an installed cluster has them
    (WMCO's hack/machineset.sh reads `oc get machines -l ...cluster-api-machine-role=worker`):
    named like their VMs, Running, with a nodeRef. No ownerReference (its UID is the API server's):
    the lab's machine-api adopts them as the MachineSet's, finds each VM by name, and sets
    providerID and addresses from vCenter."""
    out = []
    for name, ip in site.workers:
        addresses = [{"type": "InternalDNS", "address": name}]
        if ip:
            addresses.insert(0, {"type": "InternalIP", "address": ip})
        out.append(
            _obj(
                "machine.openshift.io/v1beta1",
                "Machine",
                "machines",
                name,
                MACHINE_API_NAMESPACE,
                labels=_worker_labels(site),
                spec={
                    "lifecycleHooks": {},
                    "metadata": {},
                    "providerSpec": {"value": _worker_provider_spec(site)},
                },
                status={
                    "phase": "Running",
                    "nodeRef": {"kind": "Node", "name": name},
                    "addresses": addresses,
                    "lastUpdated": "2026-01-01T00:00:00Z",
                },
            )
        )
    return out


def wmco() -> list[SeedObject]:
    """WMCO as OLM installs it: OperatorGroup, Subscription, CSV (lab-made CRDs) and the operator's
    Deployment. No controller-manager, scheduler or node runs in the lab, so the Deployment never gets
    Pods; its status says what a healthy installation reports, and the lab's WMCO simulator
    (lab.controllers) does the operator's work."""
    ns = WMCO_NAMESPACE
    olm_owner = {
        "olm.owner": WMCO_CSV,
        "olm.owner.kind": "ClusterServiceVersion",
        "olm.owner.namespace": ns,
    }
    pod_labels = {"name": WMCO_NAME}
    return [
        _obj(
            "operators.coreos.com/v1",
            "OperatorGroup",
            "operatorgroups",
            WMCO_NAME,
            ns,
            labels=LAB_MADE,
            spec={"targetNamespaces": [ns], "upgradeStrategy": "Default"},
            status={"namespaces": [ns], "lastUpdated": "2026-01-01T00:00:00Z"},
        ),
        _obj(
            "operators.coreos.com/v1alpha1",
            "Subscription",
            "subscriptions",
            WMCO_NAME,
            ns,
            labels=LAB_MADE,
            spec={
                "channel": "stable",
                "installPlanApproval": "Automatic",
                "name": WMCO_NAME,
                "source": "redhat-operators",
                "sourceNamespace": "openshift-marketplace",
            },
            status={
                "currentCSV": WMCO_CSV,
                "installedCSV": WMCO_CSV,
                "state": "AtLatestKnown",
                "lastUpdated": "2026-01-01T00:00:00Z",
            },
        ),
        _obj(
            "operators.coreos.com/v1alpha1",
            "ClusterServiceVersion",
            "clusterserviceversions",
            WMCO_CSV,
            ns,
            labels=LAB_MADE,
            spec={
                "displayName": "Windows Machine Config Operator",
                "version": WMCO_VERSION,
                "provider": {"name": "Red Hat"},
                "install": {"strategy": "deployment"},
            },
            status={
                "phase": "Succeeded",
                "reason": "InstallSucceeded",
                "message": "install strategy completed with no errors",
            },
        ),
        _obj(
            "apps/v1",
            "Deployment",
            "deployments",
            WMCO_NAME,
            ns,
            labels={**olm_owner},
            annotations={
                "winnodes.lab/note": "no nodes in the lab: never runs; lab.controllers simulates WMCO"
            },
            spec={
                "replicas": 1,
                "selector": {"matchLabels": pod_labels},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "serviceAccountName": WMCO_NAME,
                        "containers": [
                            {
                                "name": "manager",
                                "image": WMCO_IMAGE,
                                "command": ["/usr/local/bin/windows-machine-config-operator"],
                                "env": [
                                    {
                                        "name": "WATCH_NAMESPACE",
                                        "valueFrom": {
                                            "fieldRef": {
                                                "fieldPath": "metadata.annotations['olm.targetNamespaces']"
                                            }
                                        },
                                    },
                                    {"name": "OPERATOR_NAME", "value": WMCO_NAME},
                                ],
                            }
                        ],
                    },
                },
            },
            status={
                "observedGeneration": 1,
                "replicas": 1,
                "updatedReplicas": 1,
                "readyReplicas": 1,
                "availableReplicas": 1,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True",
                        "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability.",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "lastUpdateTime": "2026-01-01T00:00:00Z",
                    }
                ],
            },
        ),
    ]


def seed_objects(site: Site) -> list[SeedObject]:
    """Every seeded object, in an order that creates namespaces before what lives in them."""
    return [
        *namespaces(),
        infrastructure(site),
        cluster_version(site),
        *networks(),
        vsphere_credentials(site),
        worker_user_data(site),
        worker_machineset(site),
        *worker_nodes(site),
        *worker_machines(site),
        *wmco(),
    ]
