"""The WMCO simulator treats a golden image and a cluster set-up the way WMCO does.

Pure rules (key validation, profiles, tools.conf, host-key pinning, the checks' parsing of PowerShell
output) are tested without servers; the checks also run in-process against the guest twin's own
PowerShell emulator on a freshly installed disk, so the commands WMCO sends are ones the twin
understands. The rest runs against the whole lab (`@pytest.mark.lab`, LAB_COMPONENTS=vcsim,
guest.supervisor,kube,dns,controllers): golden images built by hand with lab.scenario (install from
ISO with answer media, sysprep, template), a Windows MachineSet, and what WMCO does with it: an
Event for a missing api-int record and Ready after it is added; an Event for a missing firewall rule;
deletion of the Machine when the template's key does not match the secret. Every wait is a watch with
a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from lab.controllers import wmco

Obj = dict[str, Any]


# --------------------------------------------------------------------------- the private key


def _pem(
    key: Any, fmt: Any = serialization.PrivateFormat.TraditionalOpenSSL, pw: bytes = b""
) -> bytes:
    enc: Any = serialization.BestAvailableEncryption(pw) if pw else serialization.NoEncryption()
    data: bytes = key.private_bytes(serialization.Encoding.PEM, fmt, enc)
    return data


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_rsa_pem_without_passphrase_is_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    key = wmco.parse_private_key(_pem(rsa_key))
    assert key.authorized_key.startswith("ssh-rsa ")
    assert isinstance(key.pkey, paramiko.RSAKey)
    # WMCO's pub-key-hash: sha256 of the authorized_keys line without comment or newline
    assert key.pub_key_hash == hashlib.sha256(key.authorized_key.encode()).hexdigest()
    # the same key in PKCS#8 and in OpenSSH format gives the same public key
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.OpenSSH):
        assert wmco.parse_private_key(_pem(rsa_key, fmt)).authorized_key == key.authorized_key


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda k: b"ssh-rsa AAAAB3NzaC1yc2E", "not a PEM"),
        (lambda k: _pem(k, pw=b"secret"), "passphrase"),
        (lambda k: _pem(k, serialization.PrivateFormat.PKCS8, b"secret"), "passphrase"),
        (lambda k: _pem(k, serialization.PrivateFormat.OpenSSH, b"secret"), "passphrase"),
        (lambda k: _pem(rsa.generate_private_key(65537, 1024)), "at least 2048"),
        (lambda k: _pem(dsa.generate_private_key(2048), serialization.PrivateFormat.PKCS8), "DSA"),
        (
            lambda k: (
                b"-----BEGIN RSA PRIVATE KEY-----\nnot base64\n-----END RSA PRIVATE KEY-----\n"
            ),
            "cannot be parsed",
        ),
    ],
    ids=[
        "not-pem",
        "pkcs1-encrypted",
        "pkcs8-encrypted",
        "openssh-encrypted",
        "rsa-1024",
        "dsa",
        "garbage",
    ],
)
def test_keys_wmco_refuses(
    rsa_key: rsa.RSAPrivateKey, make: Callable[[Any], bytes], why: str
) -> None:
    with pytest.raises(wmco.InvalidKey, match=why):
        wmco.parse_private_key(make(rsa_key))


def test_ecdsa_and_ed25519_are_accepted() -> None:
    ec_key = wmco.parse_private_key(_pem(ec.generate_private_key(ec.SECP256R1())))
    assert ec_key.authorized_key.startswith("ecdsa-sha2-nistp256 ")
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_key = wmco.parse_private_key(_pem(ed, serialization.PrivateFormat.OpenSSH))
    assert ed_key.authorized_key.startswith("ssh-ed25519 ")
    with pytest.raises(wmco.InvalidKey, match="not supported"):
        wmco.parse_private_key(
            _pem(ec.generate_private_key(ec.SECP256K1()), serialization.PrivateFormat.PKCS8)
        )


def test_user_data_authorises_the_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    key = wmco.parse_private_key(_pem(rsa_key))
    script = wmco.user_data_script(key)
    assert script.startswith("<powershell>")
    assert f'$pubKeyConf = "{key.authorized_key}"' in script
    assert "administrators_authorized_keys" in script and "/grant SYSTEM:F" in script


# --------------------------------------------------------------------------- profiles and parsing


@pytest.mark.parametrize(
    ("version", "profile", "kubelet"),
    [
        ("4.9.59", "ocp-4.9", "v1.22.0"),
        ("4.10.3", "current", "v1.23.0"),
        ("4.18.21", "current", "v1.31.0"),
        ("", "current", "v1.31.0"),
    ],
)
def test_profile_from_cluster_version(version: str, profile: str, kubelet: str) -> None:
    assert wmco.profile_for_version(version).name == profile
    assert wmco.kubelet_version(version) == kubelet


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("[guestinfo]\r\nexclude-nics=\r\n", True),
        ("# comment\n[logging]\nlog=true\n\n[guestinfo]\nexclude-nics = \n", True),
        ("[guestinfo]\nexclude-nics=vEthernet*\n", False),
        ("[logging]\nexclude-nics=\n", False),
        ("[guestinfo]\n#exclude-nics=\n", False),
        ("", False),
    ],
)
def test_tools_conf_needs_an_empty_exclude_nics(text: str, ok: bool) -> None:
    assert wmco.tools_conf_ok(text) is ok


def test_host_keys_are_pinned_per_machine(tmp_path: Path) -> None:
    pins = wmco.HostKeyPins(tmp_path / "pins.json")
    k1 = paramiko.RSAKey.generate(2048)
    k2 = paramiko.ECDSAKey.generate()
    assert pins.verify("uid-1", "m1", k1) is True  # first use
    assert pins.verify("uid-1", "m1", k1) is False  # same key again
    assert (
        pins.verify("uid-2", "m2", k1) is True
    )  # another Machine may share it (no sysprep removal)
    with pytest.raises(wmco.HostKeyMismatch, match="host key of m1 changed"):
        wmco.HostKeyPins(tmp_path / "pins.json").verify("uid-1", "m1", k2)  # survives a restart
    pins.forget("uid-1")
    assert pins.verify("uid-1", "m1", k2) is True


def _fake_guest(
    services: dict[str, int],
    rules: list[Obj],
    filters: list[Obj],
    build: tuple[int, int] = (20348, 681),
    hotfixes: tuple[str, ...] = ("KB5012637",),
    tools_conf: str | None = "[guestinfo]\r\nexclude-nics=\r\n",
) -> wmco.Runner:
    """Answers as Windows PowerShell 5.1 does (ConvertTo-Json: enums as numbers; one object is not
    wrapped in an array)."""

    def j(items: list[Obj]) -> str:
        if not items:
            return ""
        return json.dumps(items[0] if len(items) == 1 else items, indent=4)

    def run(cmd: str) -> tuple[int, str, str]:
        if cmd == wmco.CMD_SERVICES:
            return 0, j([{"Name": n, "Status": s} for n, s in services.items()]), ""
        if cmd == wmco.CMD_TOOLS_CONF:
            if tools_conf is None:
                return 1, "", "Get-Content : Cannot find path ... because it does not exist."
            return 0, tools_conf, ""
        if cmd == wmco.CMD_FW_PORTS:  # Windows filters the rules (-Enabled True ...) itself
            allowing = {r["Name"] for r in rules if (r["Enabled"], r["Direction"]) == (1, 1)}
            return 0, j([f for f in filters if f.pop("Rule") in allowing]), ""
        if cmd == wmco.CMD_VERSION:
            return (
                0,
                j(
                    [
                        {
                            "ProductName": "Windows Server 2022 Datacenter",
                            "CurrentBuild": str(build[0]),
                            "UBR": build[1],
                            "DisplayVersion": "21H2",
                        }
                    ]
                ),
                "",
            )
        if cmd == wmco.CMD_HOTFIX:
            return 0, j([{"HotFixID": h} for h in hotfixes]), ""
        return 1, "", f"unexpected command {cmd}"

    return run


def _rule(name: str, port: str, enabled: int = 1, direction: int = 1) -> tuple[Obj, Obj]:
    return (
        {
            "Name": name,
            "DisplayName": name,
            "Enabled": enabled,
            "Direction": direction,
            "Action": 2,
        },
        {"Rule": name, "Protocol": "TCP", "LocalPort": port},
    )


GOOD_RULES = [_rule("ssh", "22"), _rule("logs", "10250"), _rule("metrics", "9182")]


def test_a_good_current_image_passes() -> None:
    run = _fake_guest(
        {"VMTools": 4, "sshd": 4}, [r for r, _ in GOOD_RULES], [f for _, f in GOOD_RULES]
    )
    assert wmco.check_guest(run, wmco.PROFILES["current"]) == []


def test_every_failure_is_reported_with_its_step() -> None:
    rules = [_rule("ssh", "22"), _rule("logs", "10250", enabled=2), _rule("m", "9182", direction=2)]
    run = _fake_guest(
        {"VMTools": 1, "sshd": 4, "docker": 4},
        [r for r, _ in rules],
        [f for _, f in rules],
        build=(20348, 500),
        tools_conf=None,
    )
    failures = wmco.check_guest(run, wmco.PROFILES["current"])
    text = "\n".join(failures)
    assert "VMTools is Stopped, not Running (G3c)" in text
    assert "tools.conf" in text and "(G3a)" in text
    assert "no enabled inbound rule allowing TCP 10250" in text
    assert "no enabled inbound rule allowing TCP 9182" in text
    assert "docker is preinstalled" in text
    assert "lacks KB5012637" in text
    assert len(failures) == 6


def test_ocp49_profile_needs_docker_and_kb4565351() -> None:
    rules = [_rule("logs", "10000-11000")]  # a range covers 10250
    run = _fake_guest(
        {"VMTools": 4},
        [r for r, _ in rules],
        [f for _, f in rules],
        build=(19042, 1083),
        hotfixes=(),
    )
    failures = wmco.check_guest(run, wmco.PROFILES["ocp-4.9"])
    assert failures == [
        "runtime: the docker service is not installed (G6, profile ocp-4.9)",
        "windows: KB4565351 is not installed on Windows Server 2022 Datacenter build 19042.1083 "
        "(G1, PRE-2, profile ocp-4.9)",
    ]


@pytest.mark.parametrize(
    ("profile", "build", "hotfixes", "wmco_version", "refusal"),
    [
        ("current", (20348, 681), ("KB5012637",), "10.18.1", None),
        ("current", (20348, 169), (), "10.18.1", "lacks KB5012637"),
        (
            "current",
            (17763, 737),
            (),
            "10.22.2",
            "Windows Server 2019) is not supported on vSphere",
        ),
        ("current", (26100, 1742), (), "10.18.1", "not supported by WMCO 10.18.1"),
        ("current", (26100, 1742), (), "10.21.2", "supported from WMCO 10.22"),
        ("current", (26100, 1742), (), "10.22.0", None),
        ("current", (19042, 1083), ("KB4565351",), "10.22.0", "is not supported"),
        ("ocp-4.9", (19042, 1083), ("KB4565351",), "4.0.2", None),
        ("ocp-4.9", (20348, 681), ("KB4565351", "KB5012637"), "4.0.2", "is not Windows Server SAC"),
    ],
)
def test_the_windows_build_is_checked_as_the_wmco_docs_state(
    profile: str,
    build: tuple[int, int],
    hotfixes: tuple[str, ...],
    wmco_version: str,
    refusal: str | None,
) -> None:
    """WS2022 needs KB5012637; WS2019 is refused on vSphere (custom VXLAN port); WS2025 needs WMCO
    10.22+ (docs/wmco-prerequisites.md, release-4.22 vs release-4.21); ocp-4.9 needs SAC 20H2."""
    services = {"VMTools": 4, "sshd": 4} | ({"docker": 4} if profile == "ocp-4.9" else {})
    rules = [_rule("ssh", "22"), _rule("logs", "10250"), _rule("metrics", "9182")]  # fresh:
    run = _fake_guest(  # the fake consumes its filters
        services,
        [r for r, _ in rules],
        [f for _, f in rules],
        build=build,
        hotfixes=hotfixes,
    )
    failures = wmco.check_guest(run, wmco.PROFILES[profile], wmco_version=wmco_version)
    if refusal is None:
        assert failures == []
    else:
        assert len(failures) == 1 and refusal in failures[0] and "PRE-2" in failures[0], failures


# --------------------------------------------------------------------------- against the twin's emulator


class _Host:
    def __init__(self) -> None:
        self.events: list[str] = []

    def notify(self, event: str, **data: Any) -> None:
        self.events.append(event)


@pytest.fixture
def twin_disk(tmp_path: Path) -> Any:
    emulator = pytest.importorskip("lab.guest.emulator")
    if not hasattr(emulator, "run_command"):
        pytest.skip("the guest emulator has no run_command yet")
    from lab import media
    from lab.guest import windows
    from lab.guest.state import GuestDisk

    disk = GuestDisk(tmp_path / "guest")
    windows.fresh_install(disk, media.WINDOWS_MEDIA["current"].info(), "winworker")
    host = _Host()

    def run(cmd: str) -> tuple[int, str, str]:
        r = emulator.run_command(disk, cmd, host)
        return r.exit_code, r.stdout, r.stderr

    return run


def test_checks_against_the_guest_emulator(twin_disk: wmco.Runner) -> None:
    """A fresh WS2022 install: Tools, tools.conf and the firewall rules are missing, the build is
    fine, no runtime. The commands WMCO sends must all be understood by the twin."""
    run = twin_disk
    failures = wmco.check_guest(run, wmco.PROFILES["current"])
    assert any("VMTools is not installed (G2)" in f for f in failures)
    assert any("tools.conf" in f for f in failures)
    assert any("TCP 10250" in f for f in failures) and any("TCP 9182" in f for f in failures)
    assert not any(f.startswith(("windows:", "runtime:", "firewall: cannot")) for f in failures)
    for port in (10250, 9182):
        rc, _, err = run(
            f"New-NetFirewallRule -DisplayName 'p{port}' -LocalPort {port} -Enabled True "
            "-Direction Inbound -Protocol TCP -Action Allow -EdgeTraversalPolicy Allow"
        )
        assert rc == 0, err
    run("New-Item -ItemType Directory -Force -Path 'C:\\ProgramData\\VMware\\VMware Tools'")
    rc, _, err = run(
        f"Set-Content -Path '{wmco.TOOLS_CONF}' -Value \"[guestinfo]`r`nexclude-nics=\""
    )
    assert rc == 0, err
    failures = wmco.check_guest(run, wmco.PROFILES["current"])
    assert failures == ["VMware Tools: service VMTools is not installed (G2)"]


# =========================================================================== against the lab


def _kube(env: dict[str, str]) -> Any:
    from lab.controllers.common import kube_client

    return kube_client(env)


@pytest.fixture(scope="module")
def env(lab_env: dict[str, str]) -> dict[str, str]:
    needed = ("KUBECONFIG", "GOVC_URL", "LAB_DNS_SERVER", "LAB_GUESTS_DIR")
    if not all(lab_env.get(v) for v in needed):
        pytest.skip(f"needs the whole lab ({', '.join(needed)})")
    if "wmco" not in lab_env.get("LAB_CONTROLLERS", ""):
        pytest.skip("needs the lab's controllers component with wmco")
    return lab_env


class Lab:
    """The cluster and vCenter as an administrator sees them, plus the golden images."""

    def __init__(self, env: dict[str, str]) -> None:
        from kubernetes import client as k8s

        from lab import scenario

        self.env = env
        self.api = _kube(env)
        self.core: Any = k8s.CoreV1Api(self.api)
        self.custom: Any = k8s.CustomObjectsApi(self.api)
        self.site = scenario.Site.from_env(env)
        self.key_file = env["LAB_SSH_PRIVATE_KEY"]
        self.public_key = Path(env["LAB_SSH_PUBLIC_KEY"]).read_text().strip()
        self.infra_id = env["LAB_INFRASTRUCTURE_ID"]
        self.tag = uuid.uuid4().hex[:4]
        self.templates: dict[str, str] = {}
        self.machinesets: list[str] = []

    # -- golden images by hand (G1-G10) -------------------------------------------------------

    def golden(
        self, kind: str, public_key: str, firewall_ports: tuple[int, ...], key_file: str = ""
    ) -> str:
        from lab import scenario

        with scenario.connect(self.site) as si:
            base, _ = scenario.install_windows(
                si,
                self.site,
                f"wmco-{kind}-{self.tag}",
                public_key,
                firewall_ports=firewall_ports,
            )
            name = f"wmco-{kind}-tmpl-{self.tag}"
            scenario.make_template(si, self.site, base, key_file or self.key_file, name)
            scenario.destroy(si, base)
        self.templates[kind] = name
        return name

    # -- cluster objects ----------------------------------------------------------------------

    def set_key_secret(self, pem: bytes) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": wmco.KEY_SECRET, "namespace": wmco.WMCO_NAMESPACE},
            "type": "Opaque",
            "data": {wmco.KEY_SECRET_DATA: base64.b64encode(pem).decode()},
        }
        try:
            self.core.create_namespaced_secret(wmco.WMCO_NAMESPACE, body)
        except Exception:
            self.core.replace_namespaced_secret(wmco.KEY_SECRET, wmco.WMCO_NAMESPACE, body)

    def create_machineset(self, name: str, template: str, replicas: int = 1) -> None:
        from lab import scenario

        provider = scenario.provider_spec(self.site, template, server="127.0.0.1")
        body = scenario.windows_machineset(name, self.infra_id, provider, replicas)
        self.custom.create_namespaced_custom_object(
            "machine.openshift.io", "v1beta1", wmco.MACHINE_API_NAMESPACE, "machinesets", body
        )
        self.machinesets.append(name)

    def scale(self, name: str, replicas: int) -> None:
        self.custom.patch_namespaced_custom_object(
            "machine.openshift.io",
            "v1beta1",
            wmco.MACHINE_API_NAMESPACE,
            "machinesets",
            name,
            {"spec": {"replicas": replicas}},
        )

    def list_machines(self, **kw: Any) -> Any:
        return self.custom.list_namespaced_custom_object(
            "machine.openshift.io", "v1beta1", wmco.MACHINE_API_NAMESPACE, "machines", **kw
        )

    def machines_of(self, ms: str) -> Callable[[dict[str, Obj]], dict[str, Obj]]:
        def pick(items: dict[str, Obj]) -> dict[str, Obj]:
            return {
                n: m
                for n, m in items.items()
                if (m["metadata"].get("labels") or {}).get(
                    "machine.openshift.io/cluster-api-machineset"
                )
                == ms
            }

        return pick

    def api_int(self, present: bool) -> None:
        """DNS1 by hand: an RFC 2136 update signed with the lab's TSIG key."""
        import dns.name
        import dns.query
        import dns.tsigkeyring
        import dns.update

        from lab.dns import read_tsig_key

        key = read_tsig_key(Path(self.env["LAB_TSIG_KEYFILE"]))
        ring = dns.tsigkeyring.from_text({key.name: (key.algorithm, key.secret)})
        zone = self.env["LAB_DNS_ZONE"]
        cluster = self.env["LAB_CLUSTER_NAME"]
        upd = dns.update.UpdateMessage(zone, keyring=ring, keyname=dns.name.from_text(key.name))
        upd.delete(f"api-int.{cluster}")
        if present:
            upd.add(f"api-int.{cluster}", 60, "CNAME", f"api.{cluster}.{zone}.")
        r = dns.query.tcp(
            upd, self.env["LAB_DNS_SERVER"], port=int(self.env["LAB_DNS_PORT"]), timeout=5
        )
        assert r.rcode() == 0, r

    def cleanup(self) -> None:
        """Remove what the tests made (the session lab is shared): MachineSets, Windows Machines,
        the golden images and their answer ISOs."""
        from lab import scenario

        for ms in self.machinesets:
            with contextlib.suppress(Exception):
                self.custom.delete_namespaced_custom_object(
                    "machine.openshift.io",
                    "v1beta1",
                    wmco.MACHINE_API_NAMESPACE,
                    "machinesets",
                    ms,
                )
        with contextlib.suppress(Exception):
            self.custom.delete_collection_namespaced_custom_object(
                "machine.openshift.io",
                "v1beta1",
                wmco.MACHINE_API_NAMESPACE,
                "machines",
                label_selector="machine.openshift.io/os-id=Windows",
            )
        with contextlib.suppress(Exception), scenario.connect(self.site) as si:
            for kind, template in self.templates.items():
                scenario.remove_golden(si, self.site, template, f"wmco-{kind}-{self.tag}")


def wait_for(
    list_fn: Callable[..., Any],
    predicate: Callable[[dict[str, Obj]], Any],
    what: str,
    timeout: float = 120,
    **kwargs: Any,
) -> Any:
    """List, then watch (bounded, resumed), until `predicate(objects by name)` is truthy; returns
    its value."""
    from kubernetes import watch as k8s_watch

    deadline = time.monotonic() + timeout
    body = list_fn(**kwargs)
    if not isinstance(body, dict):
        body = list_fn.__self__.api_client.sanitize_for_serialization(body)  # type: ignore[attr-defined]
    items = {o["metadata"]["name"]: o for o in body["items"]}
    rv = body["metadata"]["resourceVersion"]
    while not (value := predicate(items)):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}; last seen: {list(items)}")
        for ev in k8s_watch.Watch().stream(
            list_fn, resource_version=rv, timeout_seconds=max(1, int(left)), **kwargs
        ):
            o = ev["raw_object"]
            rv = o["metadata"]["resourceVersion"]
            if ev["type"] == "DELETED":
                items.pop(o["metadata"]["name"], None)
            else:
                items[o["metadata"]["name"]] = o
            if predicate(items):
                break
    return value


def _ready(node: Obj | None) -> str | None:
    for c in ((node or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return str(c["status"])
    return None


@pytest.fixture(scope="module")
def lab(env: dict[str, str]) -> Iterator[Lab]:
    lab = Lab(env)
    lab.set_key_secret(Path(lab.key_file).read_bytes())
    lab.api_int(False)
    lab.golden("good", lab.public_key, (10250, 9182))
    yield lab
    lab.cleanup()
    with contextlib.suppress(Exception):
        lab.api_int(False)


def _events_for(lab: Lab, machine: str, needle: str, timeout: float = 120) -> list[str]:
    def pick(items: dict[str, Obj]) -> list[str]:
        return [
            e["message"]
            for e in items.values()
            if e["involvedObject"].get("name") == machine and needle in e.get("message", "")
        ]

    found: list[str] = wait_for(
        lab.core.list_namespaced_event,
        pick,
        f"an event on {machine} about {needle!r}",
        timeout,
        namespace=wmco.MACHINE_API_NAMESPACE,
    )
    return found


@pytest.mark.lab
def test_missing_api_int_then_ready_after_dns1(lab: Lab) -> None:
    ms = f"wg{lab.tag}"
    lab.create_machineset(ms, lab.templates["good"])
    pick = lab.machines_of(ms)
    machine = wait_for(lab.list_machines, lambda i: next(iter(pick(i)), None), "a machine")
    msgs = _events_for(lab, machine, "api-int")
    assert any("(DNS1)" in m for m in msgs), msgs
    node = lab.core.list_node(field_selector=f"metadata.name={machine}").items
    assert not node, "no Node while api-int is missing"

    lab.api_int(True)
    m = wait_for(
        lab.list_machines,
        lambda i: next(
            (x for x in pick(i).values() if (x.get("status") or {}).get("nodeRef")), None
        ),
        "the Machine's nodeRef after DNS1",
        timeout=180,
    )
    assert m["status"]["nodeRef"]["name"] == machine
    wait_for(
        lab.list_machines,
        lambda i: (pick(i).get(machine, {}).get("status") or {}).get("phase") == "Running",
        "phase Running",
    )
    node_obj = lab.api.sanitize_for_serialization(lab.core.read_node(machine))
    assert _ready(node_obj) == "True"
    labels = node_obj["metadata"]["labels"]
    assert labels["kubernetes.io/os"] == "windows"
    assert labels["node-role.kubernetes.io/worker"] == ""
    assert node_obj["status"]["nodeInfo"]["operatingSystem"] == "windows"
    key = wmco.parse_private_key(Path(lab.key_file).read_bytes())
    assert node_obj["metadata"]["annotations"][wmco.PUB_KEY_HASH_ANNOTATION] == key.pub_key_hash
    ud = lab.core.read_namespaced_secret(wmco.USER_DATA_SECRET, wmco.MACHINE_API_NAMESPACE)
    assert key.authorized_key in base64.b64decode(ud.data["userData"]).decode()

    # the host was renamed to the Machine name (Windows-side view, over SSH)
    from lab import scenario

    ip = next(a["address"] for a in m["status"]["addresses"] if a["type"] == "InternalIP")
    with scenario.connect(lab.site) as si:
        vm = scenario.vm_by_name(si, lab.site, machine)
        with scenario.ssh(ip, lab.key_file, scenario.host_keys(lab.site, vm)) as c:
            rc, out, _ = scenario.run(c, "hostname")
    assert rc == 0 and out.strip().lower() == machine.lower()


@pytest.mark.lab
def test_provisioned_to_ready_and_ip_loss(lab: Lab) -> None:
    """A second Machine with api-int present: measures Provisioned -> Node Ready; then VMware Tools
    stop reporting the IP and the Node goes NotReady (Unknown), and back."""
    lab.api_int(True)
    ms = f"wt{lab.tag}"
    lab.create_machineset(ms, lab.templates["good"])
    pick = lab.machines_of(ms)
    machine = wait_for(
        lab.list_machines,
        lambda i: next(
            (
                n
                for n, x in pick(i).items()
                if (x.get("status") or {}).get("phase") == "Provisioned"
            ),
            None,
        ),
        "a Provisioned machine",
    )
    t0 = time.monotonic()
    wait_for(
        lab.core.list_node,
        lambda i: (
            _ready(lab.api.sanitize_for_serialization(i.get(machine))) == "True"
            if machine in i
            else None
        ),
        "the Node Ready",
        timeout=180,
    )
    took = time.monotonic() - t0
    print(f"\nWMCO simulator: Provisioned -> Node Ready in {took:.1f}s")
    Path(lab.env["LAB_DIR"], "wmco-provisioned-to-ready.txt").write_text(f"{took:.2f}\n")

    m = lab.custom.get_namespaced_custom_object(
        "machine.openshift.io", "v1beta1", wmco.MACHINE_API_NAMESPACE, "machines", machine
    )
    ip = next(a["address"] for a in m["status"]["addresses"] if a["type"] == "InternalIP")
    from lab import scenario

    with scenario.connect(lab.site) as si:
        vm = scenario.vm_by_name(si, lab.site, machine)
        with scenario.ssh(ip, lab.key_file, scenario.host_keys(lab.site, vm)) as c:
            rc, _, err = scenario.run(c, "Stop-Service -Name VMTools")
            assert rc == 0, err
            wait_for(
                lab.core.list_node,
                lambda i: _ready(i.get(machine)) == "Unknown",
                "the Node NotReady after the IP vanished",
            )
            rc, _, err = scenario.run(c, "Start-Service -Name VMTools")
            assert rc == 0, err
    wait_for(lab.core.list_node, lambda i: _ready(i.get(machine)) == "True", "Ready again")


@pytest.mark.lab
def test_missing_firewall_rule_is_an_event_and_no_node(lab: Lab) -> None:
    lab.api_int(True)
    template = lab.golden("nofw", lab.public_key, (9182,))
    ms = f"wf{lab.tag}"
    lab.create_machineset(ms, template)
    pick = lab.machines_of(ms)
    machine = wait_for(lab.list_machines, lambda i: next(iter(pick(i)), None), "a machine")
    msgs = _events_for(lab, machine, "TCP 10250")
    assert any("(G7" in m for m in msgs), msgs
    assert not lab.core.list_node(field_selector=f"metadata.name={machine}").items
    m = lab.custom.get_namespaced_custom_object(
        "machine.openshift.io", "v1beta1", wmco.MACHINE_API_NAMESPACE, "machines", machine
    )
    assert not (m.get("status") or {}).get("nodeRef")


@pytest.mark.lab
def test_wrong_template_key_deletes_the_machine(lab: Lab, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", str(other)],
        check=True,
    )
    template = lab.golden(
        "wrongkey", (tmp_path / "other.pub").read_text().strip(), (10250, 9182), str(other)
    )
    ms = f"wk{lab.tag}"
    lab.create_machineset(ms, template)
    pick = lab.machines_of(ms)
    first = wait_for(lab.list_machines, lambda i: next(iter(pick(i)), None), "a machine")
    msgs = _events_for(lab, first, "authentication")
    assert any("deleting the Machine" in m for m in msgs), msgs
    # deleted, and the MachineSet makes a new one (the loop a wrong template key causes)
    second = wait_for(
        lab.list_machines,
        lambda i: next((n for n in pick(i) if n != first), None),
        "a replacement machine",
        timeout=180,
    )
    assert second != first
    lab.scale(ms, 0)
