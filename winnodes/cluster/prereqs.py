"""What the cluster must already be before Windows machines can join: PRE-1, PRE-4 (and vSphere),
M1's infrastructure ID, PRE-3's key secret, and C2's existing compute machine sets.

Each check reads what an administrator would read (`oc get infrastructure cluster`, the WMCO
namespace's Deployment and OLM objects, `networks.operator.openshift.io cluster`) and the whole
prerequisite check returns *every* missing item at once, so one run tells the administrator all
that is missing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from winnodes import errors
from winnodes.cluster.api import Obj, boundary
from winnodes.errors import Problem
from winnodes.render.machineset import NAMESPACE as MACHINE_API_NAMESPACE
from winnodes.render.machineset import is_linux_compute_machineset

WMCO_NAMESPACE = "openshift-windows-machine-config-operator"
WMCO_DEPLOYMENT = "windows-machine-config-operator"
KEY_SECRET = "cloud-private-key"
KEY_SECRET_DATA = "private-key.pem"
FIELD_MANAGER = "winnodes"


def _get_cluster(
    api: k8s.ApiClient, group: str, version: str, plural: str, name: str
) -> Obj | None:
    try:
        obj: Any = k8s.CustomObjectsApi(api).get_cluster_custom_object(group, version, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(obj)


def _list_ns(api: k8s.ApiClient, group: str, version: str, ns: str, plural: str) -> list[Obj]:
    try:
        res: Any = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
            group, version, ns, plural
        )
    except ApiException as exc:
        if exc.status == 404:  # the CRD is not installed (no OLM)
            return []
        raise
    return list(res.get("items") or [])


def infrastructure(api: k8s.ApiClient) -> Obj:
    """`infrastructure cluster` (config.openshift.io/v1); NotFound when this is not OpenShift."""
    with boundary("M1", "read infrastructure cluster"):
        obj = _get_cluster(api, "config.openshift.io", "v1", "infrastructures", "cluster")
    if obj is None:
        raise errors.NotFound(
            "infrastructure/cluster does not exist: is this an OpenShift cluster?", step_id="M1"
        )
    return obj


def infrastructure_id(api: k8s.ApiClient) -> str:
    """M1: `.status.infrastructureName` of `infrastructure cluster`."""
    name = (infrastructure(api).get("status") or {}).get("infrastructureName")
    if not name:
        raise errors.NotFound(
            "infrastructure/cluster has no status.infrastructureName yet", step_id="M1"
        )
    return str(name)


def platform_of(infra: Obj) -> str:
    st = infra.get("status") or {}
    return str(
        (st.get("platformStatus") or {}).get("type")
        or st.get("platform")
        or ((infra.get("spec") or {}).get("platformSpec") or {}).get("type")
        or ""
    )


def _wmco_problems(api: k8s.ApiClient) -> tuple[list[Problem], list[str]]:
    problems: list[Problem] = []
    seen: list[str] = []
    apps = k8s.AppsV1Api(api)
    try:
        dep = apps.read_namespaced_deployment(WMCO_DEPLOYMENT, WMCO_NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise
        dep = None
    if dep is None:
        problems.append(
            Problem(
                "PRE-1",
                "cluster",
                "wmco-installed",
                f"Deployment {WMCO_DEPLOYMENT} does not exist in {WMCO_NAMESPACE}: install the "
                "Windows Machine Config Operator from OperatorHub (PRE-1)",
            )
        )
    else:
        available = any(
            c.type == "Available" and c.status == "True"
            for c in ((dep.status.conditions if dep.status else None) or [])
        )
        seen.append(f"Deployment {WMCO_DEPLOYMENT}: available={available}")
        if not available:
            problems.append(
                Problem(
                    "PRE-1",
                    "cluster",
                    "wmco-available",
                    f"Deployment {WMCO_DEPLOYMENT} in {WMCO_NAMESPACE} is not Available (PRE-1)",
                )
            )
    csvs = _list_ns(
        api, "operators.coreos.com", "v1alpha1", WMCO_NAMESPACE, "clusterserviceversions"
    )
    wmco_csvs = [c for c in csvs if str(c["metadata"]["name"]).startswith(WMCO_DEPLOYMENT)]
    subs = _list_ns(api, "operators.coreos.com", "v1alpha1", WMCO_NAMESPACE, "subscriptions")
    sub = next((s for s in subs if (s.get("spec") or {}).get("name") == WMCO_DEPLOYMENT), None)
    if sub is None:
        problems.append(
            Problem(
                "PRE-1",
                "cluster",
                "wmco-subscription",
                f"no OLM Subscription for {WMCO_DEPLOYMENT} in {WMCO_NAMESPACE} (PRE-1)",
            )
        )
    else:
        seen.append(f"Subscription installedCSV={(sub.get('status') or {}).get('installedCSV')}")
    version = installed_wmco_version(wmco_csvs)
    if version:
        seen.append(f"WMCO {version}")
    if not any((c.get("status") or {}).get("phase") == "Succeeded" for c in wmco_csvs):
        phases = ", ".join(
            f"{c['metadata']['name']}={(c.get('status') or {}).get('phase')}" for c in wmco_csvs
        )
        problems.append(
            Problem(
                "PRE-1",
                "cluster",
                "wmco-csv",
                f"no ClusterServiceVersion of {WMCO_DEPLOYMENT} in phase Succeeded in "
                f"{WMCO_NAMESPACE} ({phases or 'none found'}) (PRE-1)",
            )
        )
    else:
        seen.append("CSV Succeeded")
    return problems, seen


def installed_wmco_version(csvs: list[Obj]) -> str | None:
    """The version of the Succeeded WMCO ClusterServiceVersion (`spec.version`, else the `.vX.Y.Z`
    of its name), as `oc get csv -n openshift-windows-machine-config-operator` shows it."""
    for csv in csvs:
        name = str((csv.get("metadata") or {}).get("name") or "")
        if not name.startswith(WMCO_DEPLOYMENT):
            continue
        if (csv.get("status") or {}).get("phase") != "Succeeded":
            continue
        version = (csv.get("spec") or {}).get("version")
        if not version and ".v" in name:
            version = name.rsplit(".v", 1)[1]
        return str(version) if version else None
    return None


def wmco_version(api: k8s.ApiClient) -> str | None:
    """PRE-1: the installed WMCO's version (None when no Succeeded WMCO CSV is found)."""
    with boundary("PRE-1", "read the WMCO ClusterServiceVersion"):
        csvs = _list_ns(
            api, "operators.coreos.com", "v1alpha1", WMCO_NAMESPACE, "clusterserviceversions"
        )
    return installed_wmco_version(csvs)


def _network_problems(api: k8s.ApiClient) -> tuple[list[Problem], list[str]]:
    net = _get_cluster(api, "operator.openshift.io", "v1", "networks", "cluster")
    default = ((net or {}).get("spec") or {}).get("defaultNetwork") or {}
    if default.get("type") != "OVNKubernetes":
        return [
            Problem(
                "PRE-4",
                "cluster",
                "ovn-kubernetes",
                f"the cluster network is {default.get('type') or 'unknown'}, not OVNKubernetes; "
                "Windows nodes need OVN-Kubernetes with hybrid overlay networking (PRE-4)",
            )
        ], []
    hybrid = (default.get("ovnKubernetesConfig") or {}).get("hybridOverlayConfig") or {}
    if not hybrid.get("hybridClusterNetwork"):
        return [
            Problem(
                "PRE-4",
                "cluster",
                "hybrid-overlay",
                "networks.operator.openshift.io cluster has no "
                "defaultNetwork.ovnKubernetesConfig.hybridOverlayConfig.hybridClusterNetwork: "
                "configure hybrid overlay networking (on vSphere with a custom "
                "hybridOverlayVXLANPort) (PRE-4)",
            )
        ], []
    port = hybrid.get("hybridOverlayVXLANPort")
    return [], [f"hybrid overlay {hybrid['hybridClusterNetwork']} VXLAN port {port or 'default'}"]


@dataclass(frozen=True)
class PrerequisiteReport:
    """Every missing prerequisite (empty when all hold) and what was seen, for the report."""

    problems: list[Problem]
    evidence: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_prerequisites(api: k8s.ApiClient) -> PrerequisiteReport:
    """Platform vSphere (Infrastructure), PRE-1 (WMCO Deployment + OLM Subscription/CSV) and PRE-4
    (hybrid overlay). Reads only; never raises for a missing prerequisite, only for API errors."""
    problems: list[Problem] = []
    evidence: list[str] = []
    with boundary("PRE-1", "read the cluster's prerequisites"):
        infra = _get_cluster(api, "config.openshift.io", "v1", "infrastructures", "cluster")
        platform = platform_of(infra) if infra else ""
        if platform != "VSphere":
            problems.append(
                Problem(
                    "PRE-1",
                    "cluster",
                    "platform-vsphere",
                    f"infrastructure/cluster platform is {platform or 'missing'}, not VSphere: "
                    "this procedure is for OpenShift on vSphere",
                )
            )
        else:
            evidence.append("platform VSphere")
        p, e = _wmco_problems(api)
        problems += p
        evidence += e
        p, e = _network_problems(api)
        problems += p
        evidence += e
    return PrerequisiteReport(problems, evidence)


# ---- PRE-3 ---------------------------------------------------------------------------------------
KeySecretAction = Literal["created", "updated", "unchanged"]


def ensure_key_secret(api: k8s.ApiClient, private_key_pem: str) -> KeySecretAction:
    """PRE-3: Secret `cloud-private-key` (data key `private-key.pem`) holds exactly this key.

    The caller validated the key (the WindowsAccess block does on load, with WMCO's rules). An
    existing secret with another key is replaced: the block is the source of truth. Note that WMCO
    re-creates every Windows Machine when the key changes."""
    core = k8s.CoreV1Api(api)
    data = {KEY_SECRET_DATA: base64.b64encode(private_key_pem.encode()).decode()}
    body: Any = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": KEY_SECRET, "namespace": WMCO_NAMESPACE},
        "type": "Opaque",
        "data": data,
    }
    secrets = [private_key_pem]
    with boundary("PRE-3", f"read secret {WMCO_NAMESPACE}/{KEY_SECRET}", secrets):
        try:
            current = core.read_namespaced_secret(KEY_SECRET, WMCO_NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            current = None
    if current is None:
        with boundary("PRE-3", f"create secret {WMCO_NAMESPACE}/{KEY_SECRET}", secrets):
            core.create_namespaced_secret(WMCO_NAMESPACE, body, field_manager=FIELD_MANAGER)
        return "created"
    if (current.data or {}).get(KEY_SECRET_DATA) == data[KEY_SECRET_DATA]:
        return "unchanged"
    with boundary("PRE-3", f"update secret {WMCO_NAMESPACE}/{KEY_SECRET}", secrets):
        core.patch_namespaced_secret(
            KEY_SECRET, WMCO_NAMESPACE, {"data": data}, field_manager=FIELD_MANAGER
        )
    return "updated"


# ---- C2 ------------------------------------------------------------------------------------------
def list_machinesets(api: k8s.ApiClient) -> list[Obj]:
    """Every MachineSet in openshift-machine-api."""
    with boundary("C2", "list machine sets"):
        res: Any = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
            "machine.openshift.io", "v1beta1", MACHINE_API_NAMESPACE, "machinesets"
        )
    return list(res.get("items") or [])


def linux_compute_machineset(api: k8s.ApiClient, name: str | None = None) -> Obj:
    """C2: the Linux compute machine set to copy from: `name`, or the only one there is."""
    sets = [m for m in list_machinesets(api) if is_linux_compute_machineset(m)]
    if name:
        for m in sets:
            if m["metadata"]["name"] == name:
                return m
        raise errors.NotFound(
            f"no Linux compute machine set named {name!r} in {MACHINE_API_NAMESPACE} (C2)",
            step_id="C2",
        )
    if len(sets) != 1:
        names = ", ".join(m["metadata"]["name"] for m in sets) or "none"
        raise errors.ConfigError(
            f"{len(sets)} Linux compute machine sets ({names}); name one in "
            "machineset.linux_machineset (C2)",
            step_id="C2",
        )
    return sets[0]


def running_linux_worker_machine(api: k8s.ApiClient, machineset: str | None = None) -> Obj | None:
    """C2, as WMCO's hack/machineset.sh does (`oc get machines -l
    machine.openshift.io/cluster-api-machine-role=worker`): a Running Linux worker Machine (of
    `machineset` when given), whose providerSpec is what machine-api really used; None if none."""
    selector = "machine.openshift.io/cluster-api-machine-role=worker"
    if machineset:
        selector += f",machine.openshift.io/cluster-api-machineset={machineset}"
    with boundary("C2", "list worker machines"):
        res: Any = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
            "machine.openshift.io",
            "v1beta1",
            MACHINE_API_NAMESPACE,
            "machines",
            label_selector=selector,
        )
    running = [
        m
        for m in res.get("items") or []
        if (m.get("metadata", {}).get("labels") or {}).get("machine.openshift.io/os-id")
        != "Windows"
        and (m.get("status") or {}).get("phase") == "Running"
        and not m.get("metadata", {}).get("deletionTimestamp")
    ]
    return min(running, key=lambda m: m["metadata"]["name"]) if running else None


# ---- M5 ------------------------------------------------------------------------------------------
def credentials_secret_problems(api: k8s.ApiClient, secret: str, server: str) -> list[Problem]:
    """M5/M9: machine-api's vSphere provider reads `<workspace.server>.username` and
    `<workspace.server>.password` from the credentials secret in openshift-machine-api; without the
    secret or those keys the Machines never get a VM. Only key names are read into messages."""
    fld = "machineset.credentials_secret"
    where = f"{MACHINE_API_NAMESPACE}/{secret}"
    with boundary("M5", f"read secret {where}"):
        try:
            obj = k8s.CoreV1Api(api).read_namespaced_secret(secret, MACHINE_API_NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            obj = None
    if obj is None:
        return [
            Problem(
                "M5",
                fld,
                "exists",
                f"{fld}: secret {where} does not exist; machine-api reads the vCenter user and "
                "password from it (M5)",
            )
        ]
    keys = set(obj.data or {}) | set(getattr(obj, "string_data", None) or {})
    missing = [k for k in (f"{server}.username", f"{server}.password") if k not in keys]
    if not missing:
        return []
    return [
        Problem(
            "M5",
            fld,
            "has-server-keys",
            f"{fld}: secret {where} has no {' and no '.join(repr(k) for k in missing)}: "
            f"machine-api looks the credentials up by workspace.server {server!r}, so both keys "
            "must be named after it exactly (M5, M9)",
        )
    ]
