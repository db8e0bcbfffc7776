"""The lab's API server is a real one: kubectl and the Python client see the seeded OpenShift objects,
OpenShift's CRD schemas reject what OpenShift rejects, TLS is enforced both ways, and data survives a
restart. The module starts only the kube component, in a temporary run directory on free ports
(binaries come from the per-machine cache; the first run on a machine compiles them)."""

from __future__ import annotations

import copy
import dataclasses
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client import ApiException

from lab import kube
from lab.cli import LabContext
from lab.config import LabConfig
from lab.paths import LabPaths
from lab.process import LabError, free_port, read_pid
from lab.seed.openshift import MACHINE_API_NAMESPACE, WMCO_CSV, WMCO_NAMESPACE

pytestmark = pytest.mark.lab

MAPI = ("machine.openshift.io", "v1beta1")


def _custom(api: Any) -> Any:
    """CustomObjectsApi, untyped: custom objects are plain dicts."""
    return k8s.CustomObjectsApi(api)


def _context(name: str, tmp_path_factory: pytest.TempPathFactory) -> LabContext:
    root = tmp_path_factory.mktemp(name)
    etcd, peer, api = free_port(), free_port(), free_port()
    cfg = dataclasses.replace(
        LabConfig.from_env(), etcd_port=etcd, etcd_peer_port=peer, apiserver_port=api
    )
    paths = LabPaths(root=root, cache=LabPaths.default().cache)
    return LabContext(paths=paths, cfg=cfg, infra_id="lab-t3st1", env={})


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabContext]:
    c = _context("lab-kube", tmp_path_factory)
    kube.build(c)
    try:
        c.env.update(kube.start(c))
        yield c
    finally:
        kube.stop(c)


@pytest.fixture(scope="module")
def api(ctx: LabContext) -> Iterator[Any]:
    a = kube.client(kube.kubeconfig_path(ctx.paths))
    yield a
    a.close()


def _machineset(ctx: LabContext, name: str) -> dict[str, Any]:
    """A Windows MachineSet as procedure C1 writes it, from the seeded Linux one's providerSpec."""
    linux = _custom(kube.client(kube.kubeconfig_path(ctx.paths)))
    seeded = linux.get_namespaced_custom_object(
        *MAPI, MACHINE_API_NAMESPACE, "machinesets", f"{ctx.infra_id}-worker"
    )
    provider = copy.deepcopy(seeded["spec"]["template"]["spec"]["providerSpec"]["value"])
    provider.update(template="windows-golden-images/windows-server-2022-template")
    provider["userDataSecret"] = {"name": "windows-user-data"}
    labels = {
        "machine.openshift.io/cluster-api-cluster": ctx.infra_id,
        "machine.openshift.io/cluster-api-machineset": name,
    }
    return {
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "MachineSet",
        "metadata": {"name": name, "namespace": MACHINE_API_NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": {
                        **labels,
                        "machine.openshift.io/os-id": "Windows",
                        "machine.openshift.io/cluster-api-machine-role": "worker",
                        "machine.openshift.io/cluster-api-machine-type": "worker",
                    }
                },
                "spec": {
                    "metadata": {"labels": {"node-role.kubernetes.io/worker": ""}},
                    "taints": [{"key": "os", "value": "Windows", "effect": "NoSchedule"}],
                    "providerSpec": {"value": provider},
                },
            },
        },
    }


def _create_machineset(api: Any, body: dict[str, Any], **kw: Any) -> Any:
    return _custom(api).create_namespaced_custom_object(
        *MAPI, MACHINE_API_NAMESPACE, "machinesets", body, **kw
    )


def _rejection(api: Any, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        _create_machineset(api, body)
    assert info.value.status == 422
    return str(json.loads(info.value.body or "{}")["message"])


# ---------------------------------------------------------------------------------- seeded state
def test_published_variables(ctx: LabContext) -> None:
    assert ctx.env["LAB_APISERVER_URL"] == f"https://127.0.0.1:{ctx.cfg.apiserver_port}"
    assert ctx.env["LAB_APISERVER_ADDRESS"] == "127.0.0.1"
    assert ctx.env["KUBECONFIG"] == str(ctx.paths.root / "kubeconfig")
    assert kube.status(ctx).startswith("running")


def test_kubectl_reads_infrastructure_name(ctx: LabContext) -> None:
    out = kube.kubectl(
        ctx, "get", "infrastructure", "cluster", "-o", "jsonpath={.status.infrastructureName}"
    )
    assert out.stdout == ctx.infra_id


def test_kubectl_lists_worker_machineset(ctx: LabContext) -> None:
    out = kube.kubectl(ctx, "get", "machinesets", "-n", MACHINE_API_NAMESPACE)
    header, *rows = out.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "DESIRED", "CURRENT", "READY"]
    assert [r.split()[0] for r in rows] == [f"{ctx.infra_id}-worker"]


def test_kubectl_is_the_pinned_version(ctx: LabContext) -> None:
    out = kube.kubectl(ctx, "version", "-o", "json")
    versions = json.loads(out.stdout)
    assert versions["clientVersion"]["gitVersion"] == "v1.36.3"
    assert versions["serverVersion"]["gitVersion"] == "v1.36.3"


def test_python_client_reads_seed(ctx: LabContext, api: Any) -> None:
    custom = _custom(api)
    infra = custom.get_cluster_custom_object(
        "config.openshift.io", "v1", "infrastructures", "cluster"
    )
    domain = f"{ctx.cfg.cluster_name}.{ctx.cfg.base_domain}"
    assert infra["status"]["platformStatus"]["type"] == "VSphere"
    assert infra["status"]["apiServerInternalURI"] == f"https://api-int.{domain}:6443"
    assert infra["spec"]["platformSpec"]["type"] == "VSphere"

    ms = custom.get_namespaced_custom_object(
        *MAPI, MACHINE_API_NAMESPACE, "machinesets", f"{ctx.infra_id}-worker"
    )
    provider = ms["spec"]["template"]["spec"]["providerSpec"]["value"]
    assert provider["template"] == f"{ctx.infra_id}-rhcos"
    assert provider["workspace"]["folder"].endswith(f"/vm/{ctx.infra_id}")
    assert provider["credentialsSecret"] == {"name": "vsphere-cloud-credentials"}

    net = custom.get_cluster_custom_object("operator.openshift.io", "v1", "networks", "cluster")
    hybrid = net["spec"]["defaultNetwork"]["ovnKubernetesConfig"]["hybridOverlayConfig"]
    assert hybrid == {
        "hybridClusterNetwork": [{"cidr": "10.132.0.0/14", "hostPrefix": 23}],
        "hybridOverlayVXLANPort": 9898,
    }

    csv = custom.get_namespaced_custom_object(
        "operators.coreos.com", "v1alpha1", WMCO_NAMESPACE, "clusterserviceversions", WMCO_CSV
    )
    assert csv["status"]["phase"] == "Succeeded"
    deployment = k8s.AppsV1Api(api).read_namespaced_deployment(
        "windows-machine-config-operator", WMCO_NAMESPACE
    )
    assert deployment.status is not None
    assert deployment.status.available_replicas == 1

    secret = k8s.CoreV1Api(api).read_namespaced_secret(
        "vsphere-cloud-credentials", MACHINE_API_NAMESPACE
    )
    assert secret.data is not None
    assert sorted(secret.data) == ["127.0.0.1.password", "127.0.0.1.username"]


# ---------------------------------------------------------------------- OpenShift's CRD schemas
def test_valid_windows_machineset_passes_server_side_dry_run(ctx: LabContext, api: Any) -> None:
    body = _machineset(ctx, "winworker")
    created = _create_machineset(api, body, dry_run="All")
    assert created["metadata"]["name"] == "winworker"
    with pytest.raises(ApiException) as info:
        _custom(api).get_namespaced_custom_object(
            *MAPI, MACHINE_API_NAMESPACE, "machinesets", "winworker"
        )
    assert info.value.status == 404


def test_kubectl_server_side_dry_run(ctx: LabContext, tmp_path: Any) -> None:
    manifest = tmp_path / "ms.json"
    manifest.write_text(json.dumps(_machineset(ctx, "winkubectl")))
    out = kube.kubectl(ctx, "create", "--dry-run=server", "-f", str(manifest))
    assert "winkubectl created (server dry run)" in out.stdout
    missing = kube.kubectl(
        ctx, "get", "machineset", "winkubectl", "-n", MACHINE_API_NAMESPACE, check=False
    )
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr


def test_wrong_type_for_replicas_is_rejected(ctx: LabContext, api: Any) -> None:
    body = _machineset(ctx, "winbad1")
    body["spec"]["replicas"] = "two"
    message = _rejection(api, body)
    assert "spec.replicas" in message
    assert 'must be of type integer: "string"' in message


def test_taint_without_effect_is_rejected(ctx: LabContext, api: Any) -> None:
    body = _machineset(ctx, "winbad2")
    del body["spec"]["template"]["spec"]["taints"][0]["effect"]
    message = _rejection(api, body)
    assert "spec.template.spec.taints[0].effect: Required value" in message


def test_unknown_delete_policy_is_rejected(ctx: LabContext, api: Any) -> None:
    body = _machineset(ctx, "winbad3")
    body["spec"]["deletePolicy"] = "Biggest"
    message = _rejection(api, body)
    assert "spec.deletePolicy: Unsupported value" in message


def test_replicas_default_to_one_as_in_openshift(ctx: LabContext, api: Any) -> None:
    body = _machineset(ctx, "windefault")
    del body["spec"]["replicas"]
    created = _create_machineset(api, body, dry_run="All")
    assert created["spec"]["replicas"] == 1


# --------------------------------------------------------------------------------------------- TLS
def _get(ctx: LabContext, path: str, sslctx: ssl.SSLContext) -> int:
    try:
        with urllib.request.urlopen(ctx.env["LAB_APISERVER_URL"] + path, context=sslctx) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_kubeconfig_ca_verifies_the_server(ctx: LabContext) -> None:
    pki = kube.Pki(ctx.paths.pki / "kube")
    assert _get(ctx, "/version", ssl.create_default_context(cafile=str(pki.serving_ca_crt))) == 200
    with pytest.raises(urllib.error.URLError) as info:
        _get(ctx, "/version", ssl.create_default_context())  # the system's CAs do not know it
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


def test_client_without_certificate_is_refused(ctx: LabContext) -> None:
    pki = kube.Pki(ctx.paths.pki / "kube")
    anonymous = ssl.create_default_context(cafile=str(pki.serving_ca_crt))
    assert _get(ctx, "/api/v1/namespaces", anonymous) in (401, 403)
    admin = ssl.create_default_context(cafile=str(pki.serving_ca_crt))
    admin.load_cert_chain(str(pki.admin_crt), str(pki.admin_key))
    assert _get(ctx, "/api/v1/namespaces", admin) == 200


# ------------------------------------------------------------------------------------ lifecycle
@pytest.mark.parametrize(
    ("field", "variable"),
    [("etcd_port", "LAB_ETCD_PORT"), ("apiserver_port", "LAB_APISERVER_PORT")],
)
def test_port_in_use_is_refused_before_anything_starts(
    ctx: LabContext, tmp_path_factory: pytest.TempPathFactory, field: str, variable: str
) -> None:
    other = _context("lab-kube-busy", tmp_path_factory)
    busy = {field: getattr(ctx.cfg, field)}  # held by the module's running lab
    other = dataclasses.replace(other, cfg=dataclasses.replace(other.cfg, **busy))
    with pytest.raises(LabError, match=variable):
        kube.start(other)
    assert read_pid(other.paths, "etcd") is None
    assert read_pid(other.paths, "kube-apiserver") is None


def test_second_start_is_idempotent(ctx: LabContext) -> None:
    pids = (read_pid(ctx.paths, "etcd"), read_pid(ctx.paths, "kube-apiserver"))
    env = kube.start(ctx)
    assert env == {k: ctx.env[k] for k in env}
    assert (read_pid(ctx.paths, "etcd"), read_pid(ctx.paths, "kube-apiserver")) == pids


def test_restart_keeps_data_and_changes(ctx: LabContext) -> None:
    api = kube.client(kube.kubeconfig_path(ctx.paths))
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(
        "openshift-config",
        k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="survivor"), data={"k": "v"}),
    )
    _custom(api).patch_namespaced_custom_object(
        *MAPI,
        MACHINE_API_NAMESPACE,
        "machinesets",
        f"{ctx.infra_id}-worker",
        {"spec": {"replicas": 2}},
    )
    api.close()

    kube.stop(ctx)
    assert kube.status(ctx) == "stopped"
    kube.start(ctx)

    api = kube.client(kube.kubeconfig_path(ctx.paths))
    try:
        cm = k8s.CoreV1Api(api).read_namespaced_config_map("survivor", "openshift-config")
        assert cm.data == {"k": "v"}
        ms = _custom(api).get_namespaced_custom_object(
            *MAPI, MACHINE_API_NAMESPACE, "machinesets", f"{ctx.infra_id}-worker"
        )
        assert ms["spec"]["replicas"] == 2  # the seed does not undo what a run changed
    finally:
        api.close()
