"""The lab's Kubernetes/OpenShift API: a real kube-apiserver on a real etcd, serving OpenShift's CRDs.

The flows talk to the cluster with the `kubernetes` client over HTTPS, and what they get wrong
(a mistyped MachineSet field, a missing label, a wrong namespace) must fail as it would against
OpenShift. So the lab runs the upstream servers, built from the pinned Go modules in
`lab/go/kube/` (k8s.io/kubernetes at KUBERNETES_VERSION, etcd's server module at ETCD_VERSION), the
way controller-runtime's envtest runs them, installs OpenShift's own CRDs unmodified (so validation
is the real schema's), and seeds the objects of an installed cluster (`lab.seed.openshift`).

kube-controller-manager (same module, same release) runs the controllers a cluster has and the
flows depend on: the garbage collector (deleting a MachineSet deletes its Machines, as their owner
references say), the disruption controller (PodDisruptionBudget status, which the eviction API reads
during a drain) and the pod garbage collector (pods of a deleted node go away).

Component interface (lab/cli.py): `build(ctx)` compiles into the per-machine cache (skipped when
cached); `start(ctx)` starts etcd, kube-apiserver and kube-controller-manager, installs CRDs,
seeds, writes `<lab>/kubeconfig`
and returns KUBECONFIG, LAB_KUBECTL, LAB_APISERVER_URL, LAB_APISERVER_ADDRESS, LAB_ETCD_URL;
`stop(ctx)`; `status(ctx)`. Data lives in `<lab>/etcd` and survives stop/start; PKI in `<lab>/pki/kube`.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lab.config import ETCD_VERSION, KUBERNETES_VERSION
from lab.paths import REPO_ROOT, LabPaths
from lab.pki import CertDir, write_key
from lab.process import (
    LabError,
    log_file,
    read_pid,
    require_binary,
    require_free_port,
    start_daemon,
    stop_daemon,
)
from lab.seed import OLM_CRDS
from lab.seed.openshift import (
    MACHINE_API_NAMESPACE,
    SERVICE_NETWORK,
    SeedObject,
    Site,
    seed_objects,
)

if TYPE_CHECKING:
    from lab.cli import LabContext

GO_DIR = Path(__file__).resolve().parent / "go" / "kube"

# OpenShift's CRDs: github.com/openshift/api at this commit (Default feature set), found in the Go
# module cache when `go mod download` could fetch it, else in the shared directory beside the repo.
OPENSHIFT_API_MODULE = "github.com/openshift/api"
OPENSHIFT_API_COMMIT = "2a3d73913b5a7caec4c57d5c3d04f51106ec4da3"
SHARED_CRDS = REPO_ROOT.parent / "shared" / "crds"
OPENSHIFT_CRDS = [
    "0000_10_machine-api_01_machinesets-Default.crd.yaml",
    "0000_10_machine-api_01_machines-Default.crd.yaml",
    "0000_10_machine-api_01_machinehealthchecks.crd.yaml",
    "0000_10_config-operator_01_infrastructures-Default.crd.yaml",
    "0000_00_cluster-version-operator_01_clusterversions-Default.crd.yaml",
    "0000_10_config-operator_01_networks-Default.crd.yaml",
    "0000_70_network_01_networks-Default.crd.yaml",
]

FIELD_MANAGER = "winnodes-lab"
SERVICE_IP = str(next(ipaddress.ip_network(SERVICE_NETWORK).hosts()))  # 172.30.0.1, as OpenShift
KUBE_VERSION_LDFLAGS = " ".join(
    f"-X {pkg}.{var}={value}"
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for var, value in (
        ("gitVersion", KUBERNETES_VERSION),
        ("gitMajor", KUBERNETES_VERSION.lstrip("v").split(".")[0]),
        ("gitMinor", KUBERNETES_VERSION.lstrip("v").split(".")[1]),
        ("gitTreeState", "clean"),
    )
)


# --------------------------------------------------------------------------------------- binaries
@dataclass(frozen=True)
class GoBinary:
    name: str
    module: Path
    package: str
    version: str
    ldflags: str

    def source_hash(self) -> str:
        h = hashlib.sha256(self.ldflags.encode())
        for f in sorted(self.module.rglob("*")):
            if f.is_file() and (f.suffix == ".go" or f.name in ("go.mod", "go.sum")):
                h.update(str(f.relative_to(self.module)).encode() + b"\0" + f.read_bytes())
        return h.hexdigest()[:10]

    def path(self, paths: LabPaths) -> Path:
        """Cached binary, keyed by the pinned version and the hash of the lab's Go sources."""
        return paths.bin(self.name, f"{self.version}-{self.source_hash()}")


BINARIES = {
    "etcd": GoBinary("etcd", GO_DIR / "etcd", ".", ETCD_VERSION, "-s -w"),
    "kube-apiserver": GoBinary(
        "kube-apiserver",
        GO_DIR / "k8s",
        "./cmd/kube-apiserver",
        KUBERNETES_VERSION,
        "-s -w " + KUBE_VERSION_LDFLAGS,
    ),
    "kube-controller-manager": GoBinary(
        "kube-controller-manager",
        GO_DIR / "k8s",
        "./cmd/kube-controller-manager",
        KUBERNETES_VERSION,
        "-s -w " + KUBE_VERSION_LDFLAGS,
    ),
    "kubectl": GoBinary(
        "kubectl",
        GO_DIR / "k8s",
        "./cmd/kubectl",
        KUBERNETES_VERSION,
        "-s -w " + KUBE_VERSION_LDFLAGS,
    ),
}


def binary(paths: LabPaths, name: str) -> Path:
    return BINARIES[name].path(paths)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    return env


def build(ctx: LabContext) -> None:
    """Compile etcd, kube-apiserver and kubectl into the cache unless already there. The first
    build on a machine takes several minutes (all of kube-apiserver); later ones are no-ops."""
    go = shutil.which("go")
    for b in BINARIES.values():
        target = b.path(ctx.paths)
        if target.is_file():
            continue
        if go is None:
            raise LabError(f"building {b.name} needs Go (>= 1.26) on PATH; install it and retry")
        print(f"  building {b.name} {b.version} into {target.parent} (first time: minutes)...")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        t0 = time.monotonic()
        argv = [
            "nice",
            "-n",
            "10",
            go,
            "build",
            "-trimpath",
            f"-ldflags={b.ldflags}",
            "-o",
            str(tmp),
        ]
        proc = subprocess.run(
            [*argv, b.package], cwd=b.module, env=_go_env(), capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
            raise LabError(f"`go build` of {b.name} in {b.module} failed:\n{tail}")
        tmp.replace(target)
        print(
            f"  built {b.name} in {time.monotonic() - t0:.0f}s ({target.stat().st_size >> 20} MiB)"
        )
    _fetch_openshift_api(ctx.paths)


# ------------------------------------------------------------------------------------------- CRDs
def _gomodcache() -> Path:
    if env := os.environ.get("GOMODCACHE"):
        return Path(env)
    gopath = os.environ.get("GOPATH", "").split(os.pathsep)[0] or str(Path.home() / "go")
    return Path(gopath) / "pkg" / "mod"


def _openshift_api_dir() -> Path | None:
    hits = sorted(
        _gomodcache().glob(f"{OPENSHIFT_API_MODULE}@v0.0.0-*-{OPENSHIFT_API_COMMIT[:12]}")
    )
    return hits[-1] if hits else None


def _fetch_openshift_api(paths: LabPaths) -> None:
    """Try once per machine to get openshift/api at the pinned commit through the module proxy."""
    marker = paths.cache / f"openshift-api-{OPENSHIFT_API_COMMIT[:12]}.unavailable"
    if _openshift_api_dir() is not None or marker.exists() or shutil.which("go") is None:
        return
    proc = subprocess.run(
        ["go", "mod", "download", f"{OPENSHIFT_API_MODULE}@{OPENSHIFT_API_COMMIT}"],
        cwd=paths.cache,
        env=_go_env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        marker.write_text(proc.stderr)
        print(
            f"  {OPENSHIFT_API_MODULE}@{OPENSHIFT_API_COMMIT[:12]} unavailable; using {SHARED_CRDS}"
        )


def crd_files() -> list[Path]:
    """The OpenShift CRD manifests, from the Go module cache or the shared directory."""
    found: dict[str, Path] = {}
    if (module := _openshift_api_dir()) is not None:
        for f in module.rglob("*.crd.yaml"):
            if f.name in OPENSHIFT_CRDS:
                found.setdefault(f.name, f)
    for name in OPENSHIFT_CRDS:
        if name not in found and (SHARED_CRDS / name).is_file():
            found[name] = SHARED_CRDS / name
    missing = [n for n in OPENSHIFT_CRDS if n not in found]
    if missing:
        raise LabError(
            f"OpenShift CRDs not found: {', '.join(missing)}; expected them in "
            f"{OPENSHIFT_API_MODULE}@{OPENSHIFT_API_COMMIT[:12]} (module cache) or in {SHARED_CRDS}"
        )
    return [found[n] for n in OPENSHIFT_CRDS]


# -------------------------------------------------------------------------------------------- PKI
@dataclass(frozen=True)
class Pki:
    """Separate CAs for serving, client auth and the service-account signer, as envtest has."""

    dir: Path

    def __getattr__(self, name: str) -> Path:  # serving_ca_crt -> dir/serving-ca.crt
        stem, _, ext = name.rpartition("_")
        if ext not in ("crt", "key", "pub"):
            raise AttributeError(name)
        return self.dir / f"{stem.replace('_', '-')}.{ext}"


def ensure_pki(paths: LabPaths, sans_dns: list[str], sans_ip: list[str]) -> Pki:
    """Create what is missing; keep what exists (the kubeconfig stays valid across restarts)."""
    from cryptography.hazmat.primitives import serialization

    pki = Pki(paths.pki / "kube")
    certs = CertDir(pki.dir)
    certs.ca("serving-ca", "kube-apiserver-serving-ca")
    certs.leaf("apiserver", "serving-ca", "kube-apiserver", server=True, dns=sans_dns, ips=sans_ip)
    certs.ca("client-ca", "kube-apiserver-client-ca")
    certs.leaf("admin", "client-ca", "admin", orgs=("system:masters",), server=False)
    if not pki.service_account_key.exists():
        sa = write_key(pki.service_account_key)
        pki.service_account_pub.write_bytes(
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return pki


# ------------------------------------------------------------------------------------- kubeconfig
def kubeconfig_path(paths: LabPaths) -> Path:
    return paths.root / "kubeconfig"


def api_url(ctx: LabContext) -> str:
    return f"https://{ctx.cfg.host}:{ctx.cfg.apiserver_port}"


def write_kubeconfig(ctx: LabContext, pki: Pki) -> Path:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    cluster = ctx.cfg.cluster_name
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": api_url(ctx),
                    "certificate-authority-data": b64(pki.serving_ca_crt),
                },
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": b64(pki.admin_crt),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": "lab", "context": {"cluster": cluster, "user": "admin"}}],
        "current-context": "lab",
        "preferences": {},
    }
    path = kubeconfig_path(ctx.paths)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------------------------------- servers
def _etcd_url(ctx: LabContext) -> str:
    return f"http://{ctx.cfg.host}:{ctx.cfg.etcd_port}"


def _etcd_ready(ctx: LabContext) -> bool:
    with urllib.request.urlopen(_etcd_url(ctx) + "/health", timeout=1) as resp:
        return b'"health":"true"' in resp.read()


def _ssl_context(pki: Pki, *, client_cert: bool = True) -> ssl.SSLContext:
    sslctx = ssl.create_default_context(cafile=str(pki.serving_ca_crt))
    if client_cert:
        sslctx.load_cert_chain(str(pki.admin_crt), str(pki.admin_key))
    return sslctx


def _apiserver_ready(ctx: LabContext, pki: Pki) -> bool:
    req = urllib.request.Request(api_url(ctx) + "/readyz")
    with urllib.request.urlopen(req, timeout=2, context=_ssl_context(pki)) as resp:
        return bool(resp.status == 200)


def _require_ports(ctx: LabContext) -> None:
    """Every port must be free unless our own daemon (from this run dir) holds it; checked before
    anything starts, so a refused start leaves nothing behind."""
    cfg = ctx.cfg
    for daemon, port, what, var in (
        ("etcd", cfg.etcd_port, "etcd", "LAB_ETCD_PORT"),
        ("etcd", cfg.etcd_peer_port, "etcd (peer)", "LAB_ETCD_PEER_PORT"),
        ("kube-apiserver", cfg.apiserver_port, "kube-apiserver", "LAB_APISERVER_PORT"),
    ):
        if read_pid(ctx.paths, daemon) is None:
            require_free_port(cfg.host, port, what, var)


def _start_etcd(ctx: LabContext) -> None:
    cfg, paths = ctx.cfg, ctx.paths
    etcd = binary(paths, "etcd")
    require_binary(etcd, "build it with `python -m lab build` (or `make lab-bin`)")
    client = _etcd_url(ctx)
    peer = f"http://{cfg.host}:{cfg.etcd_peer_port}"
    start_daemon(
        paths,
        "etcd",
        [
            str(etcd),
            "--name=lab",
            f"--data-dir={paths.root / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        ready=lambda: _etcd_ready(ctx),
        timeout=30,
    )


def _start_apiserver(ctx: LabContext, pki: Pki) -> None:
    cfg, paths = ctx.cfg, ctx.paths
    apiserver = binary(paths, "kube-apiserver")
    require_binary(apiserver, "build it with `python -m lab build` (or `make lab-bin`)")
    cert_dir = paths.run / "kube-apiserver"
    cert_dir.mkdir(parents=True, exist_ok=True)
    start_daemon(
        paths,
        "kube-apiserver",
        [
            str(apiserver),
            # What envtest (controller-runtime) passes, with the lab's own PKI.
            f"--etcd-servers={_etcd_url(ctx)}",
            f"--cert-dir={cert_dir}",
            f"--tls-cert-file={pki.apiserver_crt}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.client_ca_crt}",
            f"--secure-port={cfg.apiserver_port}",
            f"--bind-address={cfg.host}",
            f"--advertise-address={cfg.host}",
            f"--service-cluster-ip-range={SERVICE_NETWORK}",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--profiling=false",
            # The `kubernetes` Service's Endpoints would have to hold 127.0.0.1, which validation
            # refuses (loopback); nothing in the lab reaches the API server through the Service.
            "--endpoint-reconciler-type=none",
        ],
        ready=lambda: _apiserver_ready(ctx, pki),
        timeout=120,
    )


#: The controllers a drain and a MachineSet deletion need (the rest of a cluster's controllers
#: manage objects the lab does not run: ReplicaSets, Services, service-account tokens...).
KCM_CONTROLLERS = "garbagecollector,disruption,podgc"
#: A PodDisruptionBudget that selects nothing: its status is written only by a running
#: disruption controller, so it tells when kube-controller-manager is working.
KCM_PROBE = (MACHINE_API_NAMESPACE, "lab-controller-manager-probe")


def _kcm_probe(api: Any) -> None:
    from kubernetes.client import ApiException

    ns, name = KCM_PROBE
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"minAvailable": 0, "selector": {"matchLabels": {"lab.winnodes/probe": name}}},
    }
    try:
        request(api, "POST", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", body)
    except ApiException as exc:
        if exc.status != 409:
            raise


def _kcm_ready(ctx: LabContext) -> bool:
    api = client(kubeconfig_path(ctx.paths))
    try:
        ns, name = KCM_PROBE
        pdb = request(api, "GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}")
        observed = (pdb.get("status") or {}).get("observedGeneration") or 0
        return bool(observed >= pdb["metadata"].get("generation", 1))
    finally:
        api.close()


def _start_controller_manager(ctx: LabContext) -> None:
    kcm = binary(ctx.paths, "kube-controller-manager")
    require_binary(kcm, "build it with `python -m lab build` (or `make lab-bin`)")
    kubeconfig = kubeconfig_path(ctx.paths)
    start_daemon(
        ctx.paths,
        "kube-controller-manager",
        [
            str(kcm),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={KCM_CONTROLLERS}",
            "--leader-elect=false",
            "--secure-port=0",  # no metrics/health endpoint: nothing to allocate a port for
            "--use-service-account-credentials=false",
            "--concurrent-gc-syncs=5",
            "--v=1",
        ],
        ready=lambda: _kcm_ready(ctx),
        timeout=120,
    )


def _sans(ctx: LabContext) -> tuple[list[str], list[str]]:
    domain = f"{ctx.cfg.cluster_name}.{ctx.cfg.base_domain}"
    dns = [
        "localhost",
        f"api.{domain}",
        f"api-int.{domain}",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    return dns, [ctx.cfg.host, SERVICE_IP]


def start(ctx: LabContext) -> dict[str, str]:
    ctx.paths.ensure()
    crds = crd_files()  # fail before starting anything when they are missing
    _require_ports(ctx)
    pki = ensure_pki(ctx.paths, *_sans(ctx))
    _start_etcd(ctx)
    _start_apiserver(ctx, pki)
    kubeconfig = write_kubeconfig(ctx, pki)
    api = client(kubeconfig)
    try:
        install_crds(api, [*crds, OLM_CRDS])
        site = Site.from_env(
            ctx.env,
            infra_id=ctx.infra_id,
            cluster_name=ctx.cfg.cluster_name,
            base_domain=ctx.cfg.base_domain,
            api_address=ctx.cfg.host,
            vsphere_user=ctx.cfg.vsphere_user,
            ca_bundle_pem=pki.serving_ca_crt.read_text(),
        )
        seed(api, seed_objects(site))
        _kcm_probe(api)
    finally:
        api.close()
    _start_controller_manager(ctx)
    return {
        "KUBECONFIG": str(kubeconfig),
        "LAB_KUBECTL": str(binary(ctx.paths, "kubectl")),
        "LAB_APISERVER_URL": api_url(ctx),
        "LAB_APISERVER_ADDRESS": ctx.cfg.host,
        "LAB_ETCD_URL": _etcd_url(ctx),
    }


def stop(ctx: LabContext) -> None:
    stop_daemon(ctx.paths, "kube-controller-manager", timeout=20)
    stop_daemon(ctx.paths, "kube-apiserver", timeout=20)
    stop_daemon(ctx.paths, "etcd", timeout=20)


def status(ctx: LabContext) -> str:
    apiserver, etcd = read_pid(ctx.paths, "kube-apiserver"), read_pid(ctx.paths, "etcd")
    if apiserver is None and etcd is None:
        return "stopped"
    problems = []
    if etcd is None:
        problems.append("etcd is not running")
    if read_pid(ctx.paths, "kube-controller-manager") is None:
        problems.append("kube-controller-manager is not running")
    if apiserver is None:
        problems.append("kube-apiserver is not running")
    else:
        try:
            _apiserver_ready(ctx, Pki(ctx.paths.pki / "kube"))
        except Exception as exc:
            problems.append(
                f"kube-apiserver /readyz: {exc} (see {log_file(ctx.paths, 'kube-apiserver')})"
            )
    if problems:
        return "degraded: " + "; ".join(problems)
    return f"running (kube-apiserver pid {apiserver} at {api_url(ctx)}, etcd pid {etcd})"


# ------------------------------------------------------------------------------- API (client side)
def client(kubeconfig: Path) -> Any:
    """A `kubernetes` ApiClient for the lab's kubeconfig (context "lab")."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


def request(
    api: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> Any:
    """One REST call on any path (the typed APIs have no core-group generic); returns the decoded
    JSON body and raises `kubernetes.client.ApiException` on a non-2xx status."""
    import json

    from kubernetes.client import ApiException

    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    params = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(*params)
    resp.read()
    if not 200 <= resp.status < 300:
        raise ApiException(http_resp=resp)
    return json.loads(resp.data) if resp.data else None


def install_crds(api: Any, files: list[Path], timeout: float = 60) -> None:
    """Server-side apply every CRD in `files` (the lab owns them) and wait until each is Established."""
    from kubernetes import watch
    from kubernetes.client import ApiextensionsV1Api

    names = []
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc:
                continue
            name = doc["metadata"]["name"]
            request(
                api,
                "PATCH",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                doc,
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                content_type="application/apply-patch+yaml",
            )
            names.append(name)

    def established(crd: Any) -> bool:
        return any(
            c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])
        )

    ext = ApiextensionsV1Api(api)
    listed: Any = ext.list_custom_resource_definition()
    pending = set(names) - {c.metadata.name for c in listed.items if established(c)}
    deadline = time.monotonic() + timeout
    rv = listed.metadata.resource_version
    while pending and time.monotonic() < deadline:
        w = watch.Watch()
        for event in w.stream(
            ext.list_custom_resource_definition,
            resource_version=rv,
            timeout_seconds=max(1, int(deadline - time.monotonic())),
        ):
            crd = event["object"]
            rv = crd.metadata.resource_version
            if established(crd):
                pending.discard(crd.metadata.name)
            if not pending:
                w.stop()
    if pending:
        raise LabError(f"CRDs not Established after {timeout:.0f}s: {', '.join(sorted(pending))}")


def seed(api: Any, objects: list[SeedObject]) -> list[str]:
    """Create each object unless it exists (what a run changed is kept); write its status through
    the status subresource when it was just created or never got one. Returns what was created."""
    from kubernetes.client import ApiException

    created = []
    for obj in objects:
        try:
            request(
                api, "POST", obj.collection_path, obj.body, query=[("fieldManager", FIELD_MANAGER)]
            )
            created.append(obj.describe())
            fresh = True
        except ApiException as exc:
            if exc.status != 409:
                raise LabError(f"seeding {obj.describe()} failed: {exc.status} {exc.body}") from exc
            fresh = False
        if obj.status is None or not obj.status_subresource:
            continue
        # As an operator's UpdateStatus does: PUT the whole object to /status (a merge patch would
        # drop fields that must be present as null, e.g. ClusterVersion's availableUpdates).
        current = request(api, "GET", obj.path)
        if current.get("status") and not fresh:
            continue
        current["status"] = obj.status
        try:
            request(
                api, "PUT", obj.path + "/status", current, query=[("fieldManager", FIELD_MANAGER)]
            )
        except ApiException as exc:
            raise LabError(
                f"seeding {obj.describe()} status failed: {exc.status} {exc.body}"
            ) from exc
    return created


def kubectl(ctx: LabContext, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the lab-built kubectl against the lab (for checks and tests)."""
    path = binary(ctx.paths, "kubectl")
    require_binary(path, "build it with `python -m lab build` (or `make lab-bin`)")
    env = dict(os.environ, KUBECONFIG=str(kubeconfig_path(ctx.paths)))
    return subprocess.run(
        [str(path), *args], env=env, capture_output=True, text=True, check=check, timeout=60
    )
