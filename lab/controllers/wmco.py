"""The lab's Windows Machine Config Operator (WMCO) simulator.

In a real cluster WMCO turns a provisioned Windows Machine into a Node: it SSHes into the VM as
`Administrator` with the `cloud-private-key` secret, configures the host (rename, kubelet, hybrid
overlay, containerd) and the Node appears. Nothing of that can run here, but what the product under
test must get right can be checked exactly where WMCO would trip over it, so this controller does the
parts that *depend on the golden image and the cluster's set-up* for real, over real SSH and DNS:

- it acts only on Machines labelled `machine.openshift.io/os-id: Windows` in phase `Provisioned`
  with an InternalIP, as WMCO's Machine controller does;
- it validates the key secret as WMCO does (PEM, no passphrase, RSA >= 2048 bits, DSA rejected;
  ECDSA P-256/384/521 and Ed25519 accepted, as Go's `ssh.ParsePrivateKey` that WMCO uses accepts
  them); an invalid or missing key is an Event and no action;
- it pins each Machine's SSH host key on first use (`<lab>/wmco/host-keys.json`, keyed by the
  Machine's UID); a different key later for the same Machine is an error Event, never accepted;
- on SSH authentication failure it deletes the Machine (machine-api re-creates it: the loop a wrong
  template key causes in the field);
- it checks, over SSH, everything the requirement profile needs (VMware Tools running, tools.conf
  with an empty `exclude-nics=`, firewall ports, container runtime, Windows build/patch) and that
  `api-int.<cluster>.<domain>` resolves through the lab DNS to the addresses of `api` (DNS1). Every
  failure is an Event on the Machine naming what is wrong and the procedure step; the Machine is
  checked again with exponential backoff (the administrator may fix the DNS meanwhile);
- when all checks pass: `Rename-Computer` + `Restart-Computer`, waits (event-driven, on vCenter's
  guest properties) for the guest to come back under its new name, runs `New-HnsNetwork` as the
  hybrid overlay does, creates the Node (Ready through the status subresource), sets the Machine's
  nodeRef, and creates `windows-user-data` in `openshift-machine-api`.

When the VM's IP later disappears from vCenter (the tools.conf trap), the Node's Ready condition goes
to `Unknown` with reason `NodeStatusUnknown`, which is what the node lifecycle controller writes when
a kubelet stops posting status: a real kubelet would keep running, but the cluster loses track of it
(node IP gone from the provider, kubelet certificates/SANs and the Machine's addresses no longer match).
When the IP comes back, Ready returns to True.

Run as `python -m lab.controllers.wmco` (under `python -m lab.controllers wmco`); configuration from
the environment: KUBECONFIG, GOVC_* (optional: without vCenter, the restart wait falls back to SSH
reconnects and the IP watch is off), LAB_DNS_SERVER / LAB_DNS_PORT, LAB_CLUSTER_NAME /
LAB_BASE_DOMAIN (only if the Infrastructure object has no apiServerInternalURI), LAB_DIR or
LAB_LOG_DIR, LAB_WMCO_RETRY_BASE / LAB_WMCO_RETRY_MAX (backoff seconds), LAB_WMCO_RESTART_TIMEOUT.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dns.exception
import dns.rdatatype
import dns.resolver
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from lab.controllers.common import (
    Obj,
    VSphere,
    WorkQueue,
    is_status,
    kube_client,
    now_rfc3339,
    record_event,
    run_controller,
    watch_objects,
)

log = logging.getLogger("wmco")

COMPONENT = "windows-machine-config-operator"
WMCO_NAMESPACE = "openshift-windows-machine-config-operator"
MACHINE_API_NAMESPACE = "openshift-machine-api"
KEY_SECRET = "cloud-private-key"
KEY_SECRET_DATA = "private-key.pem"
USER_DATA_SECRET = "windows-user-data"
OS_ID_LABEL = "machine.openshift.io/os-id"
VERSION_ANNOTATION = "windowsmachineconfig.openshift.io/version"
PUB_KEY_HASH_ANNOTATION = "windowsmachineconfig.openshift.io/pub-key-hash"
MACHINE_GVP = ("machine.openshift.io", "v1beta1", "machines")
ADMIN_USER = "Administrator"
HNS_NETWORK = "BaseOVNKubernetesHybridOverlayNetwork"
TOOLS_CONF = "C:\\ProgramData\\VMware\\VMware Tools\\tools.conf"

try:  # the WMCO version the lab's OLM objects advertise
    from lab.seed.openshift import WMCO_VERSION
except Exception:  # pragma: no cover - seed module missing
    WMCO_VERSION = "10.18.1"


# --------------------------------------------------------------------------- the private key


class InvalidKey(Exception):
    """The `cloud-private-key` secret is missing or holds a key WMCO refuses."""


@dataclasses.dataclass(frozen=True)
class AdminKey:
    pkey: paramiko.PKey
    authorized_key: str  # "ssh-rsa AAAA..." (no comment), as ssh.MarshalAuthorizedKey without "\n"

    @property
    def pub_key_hash(self) -> str:
        """WMCO's pub-key-hash annotation: sha256 (hex) of the authorized_keys line."""
        return hashlib.sha256(self.authorized_key.encode()).hexdigest()


EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def parse_private_key(data: bytes) -> AdminKey:
    """Validate `private-key.pem` as WMCO does and return the key for SSH.

    Accepted: PEM-armoured (PKCS#1, PKCS#8, SEC1 or OpenSSH format), unencrypted; RSA of at least
    2048 bits; ECDSA on P-256/P-384/P-521 and Ed25519 (what Go's ssh.ParsePrivateKey, used by WMCO,
    accepts; the procedure itself only documents RSA). Rejected: anything not PEM, passphrase-protected
    keys, DSA, RSA below 2048 bits."""
    text = data.strip()
    if not text.startswith(b"-----BEGIN ") or b"PRIVATE KEY-----" not in text.split(b"\n", 1)[0]:
        raise InvalidKey("not a PEM-encoded private key")
    # PKCS#8 "BEGIN ENCRYPTED PRIVATE KEY" or PKCS#1 "Proc-Type: 4,ENCRYPTED"
    if b"ENCRYPTED" in text[:200]:
        raise InvalidKey("the key is protected by a passphrase; WMCO needs a key without one")
    try:
        if b"OPENSSH PRIVATE KEY" in text.split(b"\n", 1)[0]:
            key: Any = serialization.load_ssh_private_key(text, password=None)
        else:
            key = serialization.load_pem_private_key(text, password=None)
    except TypeError as exc:  # "Password was not given but private key is encrypted"
        raise InvalidKey(
            "the key is protected by a passphrase; WMCO needs a key without one"
        ) from exc
    except ValueError as exc:
        msg = str(exc)
        if "password" in msg.lower() or "encrypt" in msg.lower():
            raise InvalidKey(
                "the key is protected by a passphrase; WMCO needs a key without one"
            ) from exc
        raise InvalidKey(f"the key cannot be parsed: {msg}") from exc
    except Exception as exc:  # unsupported algorithm and similar
        raise InvalidKey(f"the key cannot be parsed: {exc}") from exc
    if isinstance(key, dsa.DSAPrivateKey):
        raise InvalidKey("DSA keys are not supported by WMCO; use RSA (at least 2048 bits)")
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise InvalidKey(f"RSA key of {key.key_size} bits; WMCO needs at least 2048 bits")
        cls: type[paramiko.PKey] = paramiko.RSAKey
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in EC_CURVES:
            raise InvalidKey(f"ECDSA curve {key.curve.name} is not supported by SSH")
        cls = paramiko.ECDSAKey
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        cls = paramiko.Ed25519Key
    else:
        raise InvalidKey(f"unsupported key type {type(key).__name__}")
    openssh = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    pkey = cls.from_private_key(io.StringIO(openssh))
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return AdminKey(pkey=pkey, authorized_key=pub.decode().strip())


def user_data_script(key: AdminKey) -> str:
    """The `userData` of `windows-user-data`, as WMCO generates it: enables sshd and authorises the
    cloud-private-key's public key for the administrators (with the ACL Windows sshd insists on)."""
    return f"""<powershell>
Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0
$firewallRuleName = "ContainerLogsPort"
$containerLogsPort = "10250"
New-NetFirewallRule -DisplayName $firewallRuleName -Direction Inbound -Action Allow -Protocol TCP -LocalPort $containerLogsPort -EdgeTraversalPolicy Allow
Set-Service -Name sshd -StartupType 'Automatic'
Start-Service sshd
$pubKeyConf = "{key.authorized_key}"
$pubKeyConf | Out-File -Encoding ascii -FilePath $env:ProgramData\\ssh\\administrators_authorized_keys
icacls.exe $env:ProgramData\\ssh\\administrators_authorized_keys /inheritance:r /grant Administrators:F /grant SYSTEM:F
</powershell>
<persist>true</persist>
"""


# --------------------------------------------------------------------------- host key pinning


class HostKeyMismatch(Exception):
    pass


class HostKeyPins:
    """Host keys pinned on first use, one per Machine (by UID), kept in a JSON file so that a
    controller restart does not forget them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
            return data
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def verify(self, uid: str, machine: str, key: paramiko.PKey) -> bool:
        """True if pinned now (first use); raises HostKeyMismatch if a different key is pinned."""
        with self._lock:
            data = self._load()
            pinned = data.get(uid)
            if pinned is None:
                data[uid] = {"machine": machine, "type": key.get_name(), "key": key.get_base64()}
                self._save(data)
                return True
            if pinned["type"] != key.get_name() or pinned["key"] != key.get_base64():
                raise HostKeyMismatch(
                    f"host key of {machine} changed: pinned {pinned['type']} "
                    f"{_fingerprint(pinned['key'])}, offered {key.get_name()} "
                    f"{_fingerprint(key.get_base64())}"
                )
            return False

    def forget(self, uid: str) -> None:
        with self._lock:
            data = self._load()
            if data.pop(uid, None) is not None:
                self._save(data)


def _fingerprint(b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# --------------------------------------------------------------------------- SSH to the guest


class AuthFailed(Exception):
    pass


class Unreachable(Exception):
    pass


class CommandFailed(Exception):
    pass


class GuestSession:
    """One verified SSH connection to a Windows guest as Administrator (TCP_NODELAY socket)."""

    def __init__(
        self, ip: str, key: AdminKey, pins: HostKeyPins, uid: str, machine: str, timeout: float
    ) -> None:
        self.ip = ip
        try:
            sock = socket.create_connection((ip, 22), timeout=timeout)
        except OSError as exc:
            raise Unreachable(f"cannot connect to {ip}:22: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = paramiko.Transport(sock)
        try:
            try:
                self.transport.start_client(timeout=timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise Unreachable(f"SSH handshake with {ip}:22 failed: {exc}") from exc
            pins.verify(uid, machine, self.transport.get_remote_server_key())
            try:
                self.transport.auth_publickey(ADMIN_USER, key.pkey)
            except paramiko.AuthenticationException as exc:
                raise AuthFailed(f"{ADMIN_USER}@{ip}: {exc}") from exc
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise Unreachable(f"SSH to {ip}:22 failed during authentication: {exc}") from exc
        except BaseException:
            self.transport.close()
            raise

    def run(self, command: str, timeout: float = 60.0) -> tuple[int, str, str]:
        chan = self.transport.open_session(timeout=timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(command)
            out = bytearray()
            err = bytearray()
            while True:
                data = chan.recv(65536)
                if not data:
                    break
                out += data
            while True:
                data = chan.recv_stderr(65536)
                if not data:
                    break
                err += data
            rc = chan.recv_exit_status()
        finally:
            chan.close()
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    def close(self) -> None:
        self.transport.close()


Runner = Callable[[str], tuple[int, str, str]]


# --------------------------------------------------------------------------- requirement checks


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    firewall_ports: tuple[int, ...]
    runtime: str  # "docker" (must be present) | "none" (no docker/containerd preinstalled)


PROFILES = {
    "ocp-4.9": Profile("ocp-4.9", (10250,), "docker"),
    "current": Profile("current", (10250, 9182), "none"),
}


def profile_for_version(version: str) -> Profile:
    """`ocp-4.9` for a cluster at 4.9.z (or older 4.x), `current` for anything newer."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    if m and (int(m.group(1)), int(m.group(2))) <= (4, 9):
        return PROFILES["ocp-4.9"]
    return PROFILES["current"]


def kubelet_version(version: str) -> str:
    """The kubelet WMCO ships for an OpenShift 4.y release: Kubernetes 1.(y+13)."""
    m = re.match(r"4\.(\d+)", version or "")
    return f"v1.{int(m.group(1)) + 13}.0" if m else "v1.31.0"


def _json_list(text: str) -> list[dict[str, Any]]:
    """ConvertTo-Json output: one object, an array of them, or nothing."""
    text = text.strip()
    if not text:
        return []
    data = json.loads(text)
    if isinstance(data, dict):
        return [data]
    return [d for d in data if isinstance(d, dict)]


def _ports(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [p.strip() for p in str(value or "").split(",") if p.strip()]


def _port_allowed(specs: list[str], port: int) -> bool:
    for spec in specs:
        if spec.lower() == "any":
            return True
        lo, _, hi = spec.partition("-")
        valid = lo.isdigit() and (hi.isdigit() if hi else True)
        if valid and int(lo) <= port <= int(hi or lo):
            return True
    return False


def tools_conf_ok(text: str) -> bool:
    """True when tools.conf has `exclude-nics=` with an empty value in [guestinfo]."""
    section = ""
    for raw in text.splitlines():
        line = raw.strip().lstrip("\ufeff")
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        key, sep, value = line.partition("=")
        if (
            sep
            and section == "guestinfo"
            and key.strip().lower() == "exclude-nics"
            and not value.strip()
        ):
            return True
    return False


@dataclasses.dataclass
class GuestFacts:
    services: dict[str, str]  # lower-case name -> status name
    product_name: str = ""
    build: int = 0
    ubr: int = 0
    hotfixes: frozenset[str] = frozenset()


CMD_SERVICES = "Get-Service | Select-Object Name, Status | ConvertTo-Json"
CMD_TOOLS_CONF = f"Get-Content -Path '{TOOLS_CONF}'"
# The rules that can let traffic in (enabled, inbound, allow), with their port filters.
CMD_FW_PORTS = (
    "Get-NetFirewallRule -Direction Inbound -Enabled True -Action Allow"
    " | Get-NetFirewallPortFilter | Select-Object Protocol, LocalPort | ConvertTo-Json"
)
CMD_VERSION = (
    "Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion'"
    " | Select-Object ProductName, CurrentBuild, UBR, DisplayVersion | ConvertTo-Json"
)
CMD_HOTFIX = "Get-HotFix | Select-Object HotFixID | ConvertTo-Json"

STATUS_NAMES = {1: "Stopped", 2: "StartPending", 3: "StopPending", 4: "Running", 7: "Paused"}


def gather_facts(run: Runner) -> GuestFacts:
    rc, out, err = run(CMD_SERVICES)
    if rc != 0:
        raise CommandFailed(f"Get-Service failed: {err.strip()[:300]}")
    services: dict[str, str] = {}
    for s in _json_list(out):
        st = s.get("Status")
        services[str(s.get("Name", "")).lower()] = (
            STATUS_NAMES.get(st, str(st)) if isinstance(st, int) else str(st)
        )
    facts = GuestFacts(services=services)
    rc, out, err = run(CMD_VERSION)
    if rc == 0:
        for v in _json_list(out)[:1]:
            facts.product_name = str(v.get("ProductName") or "")
            with contextlib.suppress(TypeError, ValueError):
                facts.build = int(v.get("CurrentBuild") or 0)
            with contextlib.suppress(TypeError, ValueError):
                facts.ubr = int(v.get("UBR") or 0)
    rc, out, err = run(CMD_HOTFIX)
    if rc == 0:
        facts.hotfixes = frozenset(str(h.get("HotFixID", "")).upper() for h in _json_list(out))
    return facts


def check_guest(
    run: Runner,
    profile: Profile,
    facts: GuestFacts | None = None,
    wmco_version: str = WMCO_VERSION,
) -> list[str]:
    """Every check the profile needs that can be made inside the guest; one message per failure,
    each naming what is wrong and the procedure step that fixes it. `wmco_version` is the version
    this simulated operator claims (its CSV), which decides whether Windows Server 2025 is known."""
    failures: list[str] = []
    facts = facts or gather_facts(run)
    tools = facts.services.get("vmtools")
    if tools is None:
        failures.append("VMware Tools: service VMTools is not installed (G2)")
    elif tools != "Running":
        failures.append(f"VMware Tools: service VMTools is {tools}, not Running (G3c)")
    rc, out, _ = run(CMD_TOOLS_CONF)
    if rc != 0:
        failures.append(
            f"tools.conf: {TOOLS_CONF} does not exist; create it with an empty exclude-nics= in "
            "[guestinfo] (G3a)"
        )
    elif not tools_conf_ok(out):
        failures.append(
            f"tools.conf: {TOOLS_CONF} has no empty exclude-nics= in [guestinfo]; the node's IP "
            "would vanish from vCenter when the hybrid overlay network is created (G3a)"
        )
    failures += _firewall_failures(run, profile)
    if profile.runtime == "docker":
        if "docker" not in facts.services:
            failures.append("runtime: the docker service is not installed (G6, profile ocp-4.9)")
    else:
        for rt in ("docker", "containerd"):
            if rt in facts.services:
                failures.append(
                    f"runtime: {rt} is preinstalled; WMCO installs and manages containerd itself "
                    f"and the image must not carry a runtime (G6, profile {profile.name})"
                )
    failures += _windows_failures(facts, profile, wmco_version)
    return failures


def _firewall_failures(run: Runner, profile: Profile) -> list[str]:
    rc, out, err = run(CMD_FW_PORTS)
    if rc != 0:
        return [f"firewall: cannot read the firewall rules: {err.strip()[:200]} (G7)"]
    filters = _json_list(out)
    failures = []
    for port in profile.firewall_ports:
        ok = any(
            str(f.get("Protocol", "")).upper() in ("TCP", "ANY")
            and _port_allowed(_ports(f.get("LocalPort")), port)
            for f in filters
        )
        if not ok:
            what = "container logs" if port == 10250 else "windows_exporter metrics"
            failures.append(
                f"firewall: no enabled inbound rule allowing TCP {port} ({what}) (G7, profile "
                f"{profile.name})"
            )
    return failures


#: Windows Server 2025 is listed as supported from WMCO 10.22 (docs/wmco-prerequisites.md on the
#: release-4.22 branch; not on release-4.21, WMCO 10.21).
WS2025_MIN_WMCO = (10, 22)


def _wmco_minor(version: str) -> tuple[int, int]:
    m = re.match(r"v?(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _windows_failures(facts: GuestFacts, profile: Profile, wmco_version: str) -> list[str]:
    """PRE-2 as the WMCO docs state it. WMCO's own code does not compare build numbers; an image it
    does not support fails later (the hybrid overlay's HNS network, the kubelet), so the lab refuses
    here, naming the build, which is the stricter and clearer behaviour."""
    found = f"{facts.product_name or 'Windows'} build {facts.build}.{facts.ubr}"
    if profile.name == "ocp-4.9":
        if facts.build != 19042:
            return [
                f"windows: {found} is not Windows Server SAC 20H2 (build 19042), which the "
                "OpenShift 4.9 procedure requires on vSphere (G1, PRE-2, profile ocp-4.9)"
            ]
        if "KB4565351" not in facts.hotfixes:
            return [f"windows: KB4565351 is not installed on {found} (G1, PRE-2, profile ocp-4.9)"]
        return []
    if facts.build == 17763:
        return [
            f"windows: {found} (Windows Server 2019) is not supported on vSphere: it cannot use "
            "the custom hybrid overlay VXLAN port (G1, PRE-2, profile current)"
        ]
    if facts.build not in (20348, 26100):
        return [
            f"windows: {found} is not supported; WMCO needs Windows Server 2022 LTSC (20348.681 or "
            "later) or 2025 (G1, PRE-2, profile current)"
        ]
    if facts.build == 20348 and facts.ubr < 681:
        return [
            f"windows: {found} lacks KB5012637 (needs 20348.681 or later) (G1, PRE-2, profile "
            "current)"
        ]
    if facts.build == 26100 and _wmco_minor(wmco_version) < WS2025_MIN_WMCO:
        return [
            f"windows: {found} (Windows Server 2025) is not supported by WMCO {wmco_version}; "
            "it is supported from WMCO 10.22 (G1, PRE-1, PRE-2, profile current)"
        ]
    return []


@dataclasses.dataclass(frozen=True)
class DnsConfig:
    server: str
    port: int
    api_name: str  # api.<cluster>.<domain>
    api_int_name: str  # api-int.<cluster>.<domain>


def _resolve(resolver: dns.resolver.Resolver, name: str) -> tuple[set[str], str]:
    """(addresses, problem) for an A lookup that follows CNAMEs."""
    try:
        answer = resolver.resolve(name, dns.rdatatype.A, search=False)
    except dns.resolver.NXDOMAIN:
        return set(), "does not exist (NXDOMAIN)"
    except dns.resolver.NoAnswer:
        return set(), "has no A record"
    except dns.exception.DNSException as exc:
        return set(), f"cannot be resolved ({type(exc).__name__}: {exc})"
    return {r.address for r in answer}, ""


def check_dns(cfg: DnsConfig) -> list[str]:
    """DNS1: api-int must resolve through the site's DNS to the address(es) of api (CNAME ok)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [cfg.server]
    resolver.port = cfg.port
    resolver.lifetime = 5.0
    resolver.cache = None
    where = f"through the DNS server {cfg.server}:{cfg.port}"
    api_int, problem = _resolve(resolver, cfg.api_int_name)
    if problem:
        return [
            f"dns: {cfg.api_int_name} {problem} {where}; add it as a CNAME or A record for "
            f"{cfg.api_name} (DNS1)"
        ]
    api, problem = _resolve(resolver, cfg.api_name)
    if problem:
        return [f"dns: {cfg.api_name} {problem} {where} (DNS1)"]
    if api_int != api:
        return [
            f"dns: {cfg.api_int_name} resolves to {', '.join(sorted(api_int))}, not to the "
            f"address(es) of {cfg.api_name} ({', '.join(sorted(api))}) (DNS1)"
        ]
    return []


# --------------------------------------------------------------------------- the controller


def _addresses(m: Obj) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in (m.get("status") or {}).get("addresses") or []:
        out.setdefault(str(a.get("type")), str(a.get("address")))
    return out


def is_windows_machine(m: Obj) -> bool:
    return ((m.get("metadata") or {}).get("labels") or {}).get(OS_ID_LABEL) == "Windows"


class Retry(Exception):
    """Check the Machine again after a backoff."""


class WMCO:
    """The Machine controller, a Secret watch (re-check when the key changes) and a vCenter watch of
    guest IPs (Node readiness)."""

    def __init__(self, env: Mapping[str, str], stop: threading.Event | None = None) -> None:
        self.env = dict(env)
        self.stop = stop or threading.Event()
        self.api = kube_client(env)
        # Typed as Any: the client's stubs want model objects where the API takes plain dicts.
        self.core: Any = k8s.CoreV1Api(self.api)
        self.custom: Any = k8s.CustomObjectsApi(self.api)
        lab_dir = Path(env.get("LAB_DIR") or env.get("WINNODES_LAB_DIR") or ".lab")
        self.pins = HostKeyPins(lab_dir / "wmco" / "host-keys.json")
        self.queue = WorkQueue()
        self.workers = int(env.get("LAB_WMCO_WORKERS", "2"))
        self.retry_base = float(env.get("LAB_WMCO_RETRY_BASE", "2"))
        self.retry_max = float(env.get("LAB_WMCO_RETRY_MAX", "30"))
        self.restart_timeout = float(env.get("LAB_WMCO_RESTART_TIMEOUT", "300"))
        self.ssh_timeout = float(env.get("LAB_WMCO_SSH_TIMEOUT", "10"))
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self._last_failures: dict[str, tuple[str, ...]] = {}
        self._first_seen: dict[str, float] = {}
        self._waiting: dict[str, str] = {}  # last "waiting" reason logged per Machine
        self._vm_ips: dict[str, str] = {}  # VM name -> guest.ipAddress
        self._vs: VSphere | None = None
        self._synced = {k: threading.Event() for k in ("machines", "secret")}

    # -- running -------------------------------------------------------------------------------

    def run(self, ready_file: Path | None = None) -> None:
        run_controller(
            [
                ("watch-machines", self._watch_machines),
                ("watch-key", self._watch_key),
                ("watch-ips", self._watch_guest_ips),
            ],
            worker=self._worker,
            workers=self.workers,
            synced=self._synced.values(),
            stop=self.stop,
            queue=self.queue,
            ready_file=ready_file,
            log=log,
        )

    def _vsphere(self) -> VSphere | None:
        if not self.env.get("GOVC_URL"):
            return None
        if self._vs is None:
            self._vs = VSphere(self.env)
        return self._vs

    def _watch_machines(self) -> None:
        def on_list(items: list[Obj]) -> None:
            for m in items:
                if is_windows_machine(m):
                    self.queue.add(m["metadata"]["name"])
            self._synced["machines"].set()

        def on_event(kind: str, m: Obj) -> None:
            if not is_windows_machine(m):
                return
            name = m["metadata"]["name"]
            if kind == "DELETED":
                uid = m["metadata"].get("uid", "")
                self.pins.forget(uid)
                with self._lock:
                    self._attempts.pop(uid, None)
                    self._last_failures.pop(uid, None)
                    self._first_seen.pop(uid, None)
                    self._waiting.pop(uid, None)
                log.info("Machine %s deleted: forgot its pinned host key", name)
                return
            self.queue.add(name)

        group, version, plural = MACHINE_GVP
        watch_objects(
            self.custom.list_namespaced_custom_object,
            on_list=on_list,
            on_event=on_event,
            stop=self.stop,
            what="machines",
            group=group,
            version=version,
            namespace=MACHINE_API_NAMESPACE,
            plural=plural,
        )

    def _watch_key(self) -> None:
        """A new or changed key secret: look at every Windows Machine again."""

        def requeue_all(_: Any = None) -> None:
            try:
                group, version, plural = MACHINE_GVP
                ms = self.custom.list_namespaced_custom_object(
                    group, version, MACHINE_API_NAMESPACE, plural
                )
            except ApiException as exc:
                log.warning("listing machines failed: %s", exc.reason)
                return
            for m in ms.get("items") or []:
                if is_windows_machine(m):
                    self.queue.add(m["metadata"]["name"])

        def on_list(items: list[Obj]) -> None:
            self._synced["secret"].set()
            if items and self._synced["machines"].is_set():
                requeue_all()

        def on_event(kind: str, _o: Obj) -> None:
            log.info(
                "secret %s/%s %s: checking every Windows Machine",
                WMCO_NAMESPACE,
                KEY_SECRET,
                kind.lower(),
            )
            requeue_all()

        watch_objects(
            self.core.list_namespaced_secret,
            on_list=on_list,
            on_event=on_event,
            stop=self.stop,
            what="secret cloud-private-key",
            namespace=WMCO_NAMESPACE,
            field_selector=f"metadata.name={KEY_SECRET}",
        )

    def _worker(self) -> None:
        while True:
            name = self.queue.get()
            if name is None:
                return
            try:
                self.reconcile(name)
            except Exception as exc:
                log.exception("Machine %s: reconcile failed: %r", name, exc)
                self._backoff(name, None)
            finally:
                self.queue.done(name)

    def _backoff(self, name: str, uid: str | None) -> None:
        key = uid or name
        with self._lock:
            n = self._attempts.get(key, 0)
            self._attempts[key] = n + 1
        delay = min(self.retry_base * (2**n), self.retry_max)
        log.info("Machine %s: checking again in %.0fs (attempt %d)", name, delay, n + 1)
        self.queue.add_after(name, delay)

    # -- reconcile -----------------------------------------------------------------------------

    def _get_machine(self, name: str) -> Obj | None:
        group, version, plural = MACHINE_GVP
        try:
            m: Obj = self.custom.get_namespaced_custom_object(
                group, version, MACHINE_API_NAMESPACE, plural, name
            )
            return m
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _event(self, m: Obj, reason: str, message: str, type_: str = "Warning") -> None:
        log.info("Machine %s: event %s %s: %s", m["metadata"]["name"], type_, reason, message)
        record_event(self.api, m, reason, message, type=type_, component=COMPONENT)

    def reconcile(self, name: str) -> None:
        m = self._get_machine(name)
        if m is None or not is_windows_machine(m):
            return
        meta = m["metadata"]
        uid = meta.get("uid", "")
        status = m.get("status") or {}
        if meta.get("deletionTimestamp"):
            return
        if status.get("nodeRef"):
            return  # configured already (machine-api moves it to Running)
        phase = status.get("phase")
        ip = _addresses(m).get("InternalIP")
        if phase != "Provisioned" or not ip:
            why = f"phase {phase}, InternalIP {ip or 'none'}: waiting"
            with self._lock:
                repeat = self._waiting.get(uid) == why
                self._waiting[uid] = why
            if not repeat:
                log.info("Machine %s: %s", name, why)
            return
        with self._lock:
            self._first_seen.setdefault(uid, time.monotonic())
        try:
            key = self._load_key()
        except InvalidKey as exc:
            self._report(
                m, "InvalidPrivateKey", [f"secret {WMCO_NAMESPACE}/{KEY_SECRET}: {exc} (PRE-3)"]
            )
            return  # no action until the secret changes (the secret watch re-queues)
        cv_version = self._cluster_version()
        profile = profile_for_version(cv_version)
        log.info(
            "Machine %s: provisioned at %s; profile %s (cluster %s)",
            name,
            ip,
            profile.name,
            cv_version,
        )
        try:
            sess = GuestSession(ip, key, self.pins, uid, name, self.ssh_timeout)
        except AuthFailed as exc:
            self._event(
                m,
                "AuthenticationFailed",
                f"SSH authentication as {ADMIN_USER} with {KEY_SECRET} failed ({exc}); the "
                "template's administrators_authorized_keys does not hold the secret's public key "
                "(G5); deleting the Machine so that it is re-provisioned",
            )
            self._delete_machine(m)
            return
        except HostKeyMismatch as exc:
            self._report(m, "HostKeyMismatch", [f"ssh: {exc}; refusing to connect"])
            self._backoff(name, uid)
            return
        except Unreachable as exc:
            self._report(
                m,
                "MachineSetupFailure",
                [f"ssh: {exc}; sshd must run with a firewall rule for TCP 22 (G4)"],
            )
            self._backoff(name, uid)
            return
        try:
            failures = check_guest(sess.run, profile)
            failures += check_dns(self._dns_config())
            if failures:
                self._report(m, "MachineSetupFailure", failures)
                self._backoff(name, uid)
                return
            log.info("Machine %s: every check passed (profile %s)", name, profile.name)
            sess = self._configure(m, sess, key, ip)
            osimage, kernel = self._os_identity(sess)
        finally:
            sess.close()
        node = self._ensure_node(m, ip, key, osimage, kernel, kubelet_version(cv_version))
        self._set_node_ref(m, node)
        self._ensure_user_data(key)
        with self._lock:
            started = self._first_seen.pop(uid, None)
            self._attempts.pop(uid, None)
            self._last_failures.pop(uid, None)
        took = f" in {time.monotonic() - started:.1f}s" if started else ""
        self._event(
            m, "NodeReady", f"Windows node {name} is configured and Ready{took}", type_="Normal"
        )

    def _report(self, m: Obj, reason: str, failures: list[str]) -> None:
        """One Warning Event per failure, unless the same failures were reported last time."""
        uid = m["metadata"].get("uid", "")
        key = tuple([reason, *failures])
        with self._lock:
            repeat = self._last_failures.get(uid) == key
            self._last_failures[uid] = key
        if repeat:
            log.info("Machine %s: still failing: %s", m["metadata"]["name"], "; ".join(failures))
            return
        for f in failures:
            self._event(m, reason, f)

    def _load_key(self) -> AdminKey:
        try:
            secret = self.core.read_namespaced_secret(KEY_SECRET, WMCO_NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                raise InvalidKey("the secret does not exist") from exc
            raise
        raw = (secret.data or {}).get(KEY_SECRET_DATA)
        if not raw:
            raise InvalidKey(f"the secret has no data key {KEY_SECRET_DATA}")
        return parse_private_key(base64.b64decode(raw))

    def _cluster_version(self) -> str:
        try:
            cv = self.custom.get_cluster_custom_object(
                "config.openshift.io", "v1", "clusterversions", "version"
            )
        except ApiException as exc:
            log.warning("ClusterVersion not readable (%s); assuming a current release", exc.reason)
            return ""
        return str(((cv.get("status") or {}).get("desired") or {}).get("version") or "")

    def _dns_config(self) -> DnsConfig:
        cluster = self.env.get("LAB_CLUSTER_NAME", "")
        domain = self.env.get("LAB_BASE_DOMAIN", "")
        api_int = f"api-int.{cluster}.{domain}"
        api = f"api.{cluster}.{domain}"
        with contextlib.suppress(ApiException):
            infra = self.custom.get_cluster_custom_object(
                "config.openshift.io", "v1", "infrastructures", "cluster"
            )
            st = infra.get("status") or {}
            if host := urlsplit(st.get("apiServerInternalURI") or "").hostname:
                api_int = host
                api = "api." + host.split(".", 1)[1] if host.startswith("api-int.") else api
            if host := urlsplit(st.get("apiServerURL") or "").hostname:
                api = host
        return DnsConfig(
            server=self.env.get("LAB_DNS_SERVER", "127.0.0.1"),
            port=int(self.env.get("LAB_DNS_PORT", "53")),
            api_name=api,
            api_int_name=api_int,
        )

    def _delete_machine(self, m: Obj) -> None:
        group, version, plural = MACHINE_GVP
        name = m["metadata"]["name"]
        try:
            self.custom.delete_namespaced_custom_object(
                group, version, MACHINE_API_NAMESPACE, plural, name
            )
            log.info("Machine %s: deleted (SSH authentication failed)", name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- configuration ---------------------------------------------------------------------------

    def _configure(self, m: Obj, sess: GuestSession, key: AdminKey, ip: str) -> GuestSession:
        """Rename + restart (unless already named), then the hybrid overlay network. Returns the
        session to use afterwards (a new one after a restart)."""
        name = m["metadata"]["name"]
        uid = m["metadata"].get("uid", "")
        rc, out, err = sess.run("hostname")
        if rc == 0 and out.strip().lower() != name.lower():
            log.info("Machine %s: renaming host %s to %s and restarting", name, out.strip(), name)
            rc, _, err = sess.run(f"Rename-Computer -NewName '{name}' -Force")
            if rc != 0:
                raise CommandFailed(f"Rename-Computer failed: {err.strip()[:300]}")
            vs_wait = self._prepare_restart_wait(name)
            rc, _, err = sess.run("Restart-Computer -Force")
            sess.close()
            if rc != 0:
                raise CommandFailed(f"Restart-Computer failed: {err.strip()[:300]}")
            if vs_wait is not None:
                vs_wait(ip)
            sess = self._reconnect(ip, key, uid, name)
            rc, out, err = sess.run("hostname")
            if rc != 0 or out.strip().lower() != name.lower():
                raise CommandFailed(
                    f"after the restart the host is named {out.strip()!r}, not {name}"
                )
            log.info("Machine %s: back after restart as %s", name, out.strip())
        rc, out, err = sess.run("Get-HnsNetwork | Select-Object Name | ConvertTo-Json")
        if rc == 0 and any("HybridOverlay" in str(n.get("Name")) for n in _json_list(out)):
            return sess
        rc, _, err = sess.run(
            f"New-HnsNetwork -Type Overlay -Name {HNS_NETWORK} -AddressPrefix 192.168.255.0/30 "
            "-Gateway 192.168.255.1 -AdapterName Ethernet0"
        )
        if rc != 0:
            raise CommandFailed(f"New-HnsNetwork failed: {err.strip()[:300]}")
        log.info("Machine %s: hybrid overlay network %s created", name, HNS_NETWORK)
        return sess

    def _prepare_restart_wait(self, name: str) -> Callable[[str], None] | None:
        """Before Restart-Computer: a vCenter property filter on the VM whose updates tell when the
        guest is back (Tools running, host name = the new name, the Machine's IP reported)."""
        try:
            vs = self._vsphere()
        except Exception as exc:
            log.warning("vCenter unavailable (%r): waiting for SSH instead", exc)
            return None
        if vs is None:
            return None
        from pyVmomi import vim, vmodl

        vms = [o for o, p in vs.retrieve(vim.VirtualMachine, ["name"]) if p.get("name") == name]
        if not vms:
            return None
        pc = vs.content.propertyCollector.CreatePropertyCollector()
        props = ["guest.hostName", "guest.toolsRunningStatus", "guest.ipAddress"]
        pc.CreateFilter(
            vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vms[0], skip=False)],
                propSet=[
                    vmodl.query.PropertyCollector.PropertySpec(
                        type=vim.VirtualMachine, pathSet=props
                    )
                ],
            ),
            partialUpdates=False,
        )
        version = ""
        state: dict[str, Any] = {}

        def drain(max_wait: int) -> None:
            nonlocal version
            res = pc.WaitForUpdatesEx(
                version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=max_wait)
            )
            if res is None:
                return
            version = res.version
            for fs in res.filterSet or []:
                for oc in fs.objectSet or []:
                    for ch in oc.changeSet or []:
                        state[ch.name] = ch.val

        drain(1)  # the initial values; later updates are what the restart changes

        def wait(ip: str) -> None:
            deadline = time.monotonic() + self.restart_timeout
            went_down = False
            try:
                while time.monotonic() < deadline and not self.stop.is_set():
                    drain(max(1, min(10, int(deadline - time.monotonic()))))
                    running = state.get("guest.toolsRunningStatus") == "guestToolsRunning"
                    went_down = went_down or not running
                    if (
                        running
                        and str(state.get("guest.hostName") or "").lower() == name.lower()
                        and state.get("guest.ipAddress") == ip
                    ):
                        return
                raise Retry(f"the guest did not come back within {self.restart_timeout:.0f}s")
            finally:
                with contextlib.suppress(Exception):
                    pc.DestroyPropertyCollector()

        return wait

    def _reconnect(self, ip: str, key: AdminKey, uid: str, name: str) -> GuestSession:
        """SSH again after a restart: sshd may start a moment after Tools report; bounded."""
        deadline = time.monotonic() + self.restart_timeout
        delay = 0.2
        while True:
            try:
                return GuestSession(ip, key, self.pins, uid, name, self.ssh_timeout)
            except Unreachable:
                if time.monotonic() + delay > deadline:
                    raise
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _os_identity(self, sess: GuestSession) -> tuple[str, str]:
        rc, out, _ = sess.run(CMD_VERSION)
        for v in _json_list(out) if rc == 0 else []:
            return (
                str(v.get("ProductName") or "Windows"),
                f"10.0.{v.get('CurrentBuild', 0)}.{v.get('UBR', 0)}",
            )
        return "Windows", ""

    # -- objects -------------------------------------------------------------------------------

    def _ensure_node(
        self, m: Obj, ip: str, key: AdminKey, osimage: str, kernel: str, kubelet: str
    ) -> Obj:
        name = m["metadata"]["name"]
        spec = m.get("spec") or {}
        labels = {
            **((spec.get("metadata") or {}).get("labels") or {}),
            "kubernetes.io/os": "windows",
            "beta.kubernetes.io/os": "windows",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name,
            "node-role.kubernetes.io/worker": "",
            "node.openshift.io/os_id": "Windows",
        }
        annotations = {
            VERSION_ANNOTATION: WMCO_VERSION,
            PUB_KEY_HASH_ANNOTATION: key.pub_key_hash,
            "machine.openshift.io/machine": f"{MACHINE_API_NAMESPACE}/{name}",
        }
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {k: v for k, v in {"providerID": spec.get("providerID")}.items() if v},
        }
        try:
            node = self.api.sanitize_for_serialization(self.core.create_node(body))
            log.info("Node %s created", name)
        except ApiException as exc:
            if exc.status != 409:
                raise
            node = self.api.sanitize_for_serialization(
                self.core.patch_node(
                    name, {"metadata": {"labels": labels, "annotations": annotations}}
                )
            )
        pspec = ((spec.get("providerSpec") or {}).get("value")) or {}
        cpus = str(pspec.get("numCPUs") or 4)
        memory = f"{int(pspec.get('memoryMiB') or 16384) * 1024}Ki"
        now = now_rfc3339()
        resources = {
            "cpu": cpus,
            "memory": memory,
            "pods": "250",
            "ephemeral-storage": "134217728Ki",
        }
        status = {
            "conditions": [
                _condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                    now,
                ),
                _condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                    now,
                ),
                _condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                    now,
                ),
                _condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now),
            ],
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            "capacity": resources,
            "allocatable": resources,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": name,
                "systemUUID": str(
                    (m.get("status") or {}).get("providerStatus", {}).get("instanceId") or ""
                ),
                "bootID": "",
                "kernelVersion": kernel,
                "osImage": osimage,
                "containerRuntimeVersion": "containerd://1.7.0",
                "kubeletVersion": kubelet,
                "kubeProxyVersion": kubelet,
                "operatingSystem": "windows",
                "architecture": "amd64",
            },
        }
        node = self.api.sanitize_for_serialization(
            self.core.patch_node_status(name, {"status": status})
        )
        log.info("Node %s: Ready (InternalIP %s, %s, kubelet %s)", name, ip, osimage, kubelet)
        with self._lock:
            vm_ip = self._vm_ips.get(name)
        if vm_ip is not None and vm_ip != ip:  # the IP vanished while we configured
            self._set_ready(name, False)
        return node

    def _set_node_ref(self, m: Obj, node: Obj) -> None:
        group, version, plural = MACHINE_GVP
        ref = {"kind": "Node", "name": node["metadata"]["name"], "uid": node["metadata"]["uid"]}
        self.custom.patch_namespaced_custom_object_status(
            group,
            version,
            MACHINE_API_NAMESPACE,
            plural,
            m["metadata"]["name"],
            {"status": {"nodeRef": ref, "phase": "Running", "lastUpdated": now_rfc3339()}},
        )
        log.info("Machine %s: nodeRef %s, phase Running", m["metadata"]["name"], ref["name"])

    def _ensure_user_data(self, key: AdminKey) -> None:
        data = {"userData": base64.b64encode(user_data_script(key).encode()).decode()}
        try:
            current = self.core.read_namespaced_secret(USER_DATA_SECRET, MACHINE_API_NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": USER_DATA_SECRET, "namespace": MACHINE_API_NAMESPACE},
                "type": "Opaque",
                "data": data,
            }
            try:
                self.core.create_namespaced_secret(MACHINE_API_NAMESPACE, body)
                log.info("secret %s/%s created", MACHINE_API_NAMESPACE, USER_DATA_SECRET)
            except ApiException as exc2:
                if exc2.status != 409:
                    raise
            return
        if (current.data or {}).get("userData") != data["userData"]:
            self.core.patch_namespaced_secret(
                USER_DATA_SECRET, MACHINE_API_NAMESPACE, {"data": data}
            )
            log.info(
                "secret %s/%s updated for the current key", MACHINE_API_NAMESPACE, USER_DATA_SECRET
            )

    # -- Node readiness follows the guest IP in vCenter ----------------------------------------

    def _set_ready(self, node: str, ready: bool) -> None:
        now = now_rfc3339()
        cond = (
            _condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now)
            if ready
            else _condition(
                "Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", now
            )
        )
        try:
            self.core.patch_node_status(node, {"status": {"conditions": [cond]}})
        except ApiException as exc:
            if exc.status != 404:
                log.warning("Node %s: could not set Ready=%s: %s", node, cond["status"], exc.reason)
            return
        log.info(
            "Node %s: Ready=%s (%s)",
            node,
            cond["status"],
            "guest IP reported again" if ready else "guest IP gone from vCenter",
        )

    def _node_ready(self, name: str) -> str | None:
        try:
            node = self.core.read_node_status(name)
        except ApiException as exc:
            if is_status(exc, 404):
                return None
            raise
        if (node.metadata.annotations or {}).get(VERSION_ANNOTATION) is None:
            return None  # not a node this controller configured
        for c in (node.status.conditions if node.status else None) or []:
            if c.type == "Ready":
                return str(c.status)
        return None

    def _ip_changed(self, vm_name: str, ip: str) -> None:
        ready = self._node_ready(vm_name)
        if ready is None:
            return
        machine_ip = ""
        for a in self.core.read_node_status(vm_name).status.addresses or []:
            if a.type == "InternalIP":
                machine_ip = a.address
        reported = ip == machine_ip
        if ready == "True" and not reported:
            self._set_ready(vm_name, False)
        elif ready != "True" and reported:
            self._set_ready(vm_name, True)

    def _watch_guest_ips(self) -> None:
        if not self.env.get("GOVC_URL"):
            log.info("no GOVC_URL: Node readiness does not follow vCenter")
            return
        from pyVmomi import vim, vmodl

        backoff = 1.0
        while not self.stop.is_set():
            pc = None
            try:
                vs = VSphere(self.env)
                content = vs.content
                view = content.viewManager.CreateContainerView(
                    content.rootFolder, [vim.VirtualMachine], True
                )
                pc = content.propertyCollector.CreatePropertyCollector()
                pc.CreateFilter(
                    vmodl.query.PropertyCollector.FilterSpec(
                        objectSet=[
                            vmodl.query.PropertyCollector.ObjectSpec(
                                obj=view,
                                skip=True,
                                selectSet=[
                                    vmodl.query.PropertyCollector.TraversalSpec(
                                        name="view",
                                        path="view",
                                        skip=False,
                                        type=vim.view.ContainerView,
                                    )
                                ],
                            )
                        ],
                        propSet=[
                            vmodl.query.PropertyCollector.PropertySpec(
                                type=vim.VirtualMachine, pathSet=["name", "guest.ipAddress"]
                            )
                        ],
                    ),
                    partialUpdates=True,
                )
                names: dict[str, str] = {}
                version = ""
                backoff = 1.0
                while not self.stop.is_set():
                    res = pc.WaitForUpdatesEx(
                        version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=10)
                    )
                    if res is None:
                        continue
                    version = res.version
                    changed: set[str] = set()
                    for fs in res.filterSet or []:
                        for oc in fs.objectSet or []:
                            moid = oc.obj._moId
                            if oc.kind == "leave":
                                names.pop(moid, None)
                                continue
                            for ch in oc.changeSet or []:
                                if ch.name == "name":
                                    names[moid] = str(ch.val)
                            for ch in oc.changeSet or []:
                                if ch.name == "guest.ipAddress" and moid in names:
                                    with self._lock:
                                        self._vm_ips[names[moid]] = str(ch.val or "")
                                    changed.add(names[moid])
                    for vm_name in changed:
                        try:
                            with self._lock:
                                ip = self._vm_ips.get(vm_name, "")
                            self._ip_changed(vm_name, ip)
                        except Exception as exc:
                            log.warning("Node %s: readiness update failed: %r", vm_name, exc)
            except Exception as exc:
                log.warning("vCenter watch of guest IPs failed: %r; again in %.0fs", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if pc is not None:
                    with contextlib.suppress(Exception):
                        pc.DestroyPropertyCollector()


def _condition(type_: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


def setup_logging(env: Mapping[str, str]) -> None:
    """One line per decision in `<lab>/logs/wmco.log` (stderr when no lab directory is known)."""
    fmt = logging.Formatter("%(asctime)s wmco %(levelname)s %(threadName)s: %(message)s")
    log_dir = env.get("LAB_LOG_DIR") or (
        str(Path(env["LAB_DIR"]) / "logs") if env.get("LAB_DIR") else ""
    )
    handler: logging.Handler
    if log_dir and not env.get("LAB_CONTROLLER_READY_FILE"):  # the supervisor logs our stderr there
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(Path(log_dir) / "wmco.log")
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(fmt)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(env.get("LAB_CONTROLLER_LOG_LEVEL", "INFO"))
    for noisy in ("kubernetes", "urllib3", "paramiko"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> int:
    setup_logging(os.environ)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready = os.environ.get("LAB_CONTROLLER_READY_FILE")
    controller = WMCO(os.environ, stop)
    controller.run(Path(ready) if ready else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
