"""The machine-api simulator behaves like machine-api on vSphere.

Pure decisions (delete policy, phases, guest IPs, selectors, the work queue) are table-tested. The
rest runs against the lab (`@pytest.mark.lab`: vcsim, kube-apiserver and the controllers; start them
with LAB_COMPONENTS=vcsim,kube,dns,controllers): MachineSets make Machines and VMs, scale both ways,
report status; Machines fail on every missing vCenter object with a message naming it; a guest IP moves
a Machine to Provisioned; a restarted controller adopts what exists. Every wait is a Kubernetes watch
with a deadline, never a sleep loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException
from pyVmomi import vim

from lab import controllers as lab_controllers
from lab.controllers.common import VSphere, WorkQueue, kube_client, label_selector_matches
from lab.controllers.machine_api import (
    FINALIZER,
    GROUP,
    MACHINESET_LABEL,
    VERSION,
    delete_priority,
    guest_ips,
    machines_to_delete,
    next_phase,
    scope_error,
)
from lab.paths import LabPaths
from lab.scenario import windows_machineset
from lab.vcsim import VcsimControl

NS = "openshift-machine-api"
Obj = dict[str, Any]

# --------------------------------------------------------------------------- pure decisions


def _machine(name: str, age_days: float = 1, **extra: Any) -> Obj:
    created = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    m: Obj = {
        "metadata": {"name": name, "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "status": {},
    }
    for k, v in extra.items():
        if k in ("annotations", "deletionTimestamp"):
            m["metadata"][k] = v
        else:
            m["status"][k] = v
    return m


@pytest.mark.parametrize(
    ("policy", "machines", "expected"),
    [
        # Random: no node first, then failed/annotated above them, deleting above all
        ("Random", [_machine("a", nodeRef={"name": "a"}), _machine("b")], ["b"]),
        ("Random", [_machine("a"), _machine("b", errorMessage="x")], ["b"]),
        (
            "",
            [
                _machine("a"),
                _machine("b", annotations={"machine.openshift.io/delete-machine": "y"}),
            ],
            ["b"],
        ),
        ("Newest", [_machine("old", age_days=5), _machine("new", age_days=1)], ["new"]),
        ("Oldest", [_machine("old", age_days=5), _machine("new", age_days=1)], ["old"]),
        ("Oldest", [_machine("old", age_days=5), _machine("x", deletionTimestamp="t")], ["x"]),
    ],
)
def test_delete_policy(policy: str, machines: list[Obj], expected: list[str]) -> None:
    chosen = machines_to_delete(machines, 1, policy)
    assert [m["metadata"]["name"] for m in chosen] == expected


def test_unknown_delete_policy_is_rejected() -> None:
    with pytest.raises(Exception, match="Unsupported delete policy"):
        delete_priority(_machine("a"), "Largest")


@pytest.mark.parametrize(
    ("current", "has_ip", "node", "expected"),
    [
        (None, False, False, "Provisioning"),
        ("Provisioning", True, False, "Provisioned"),
        ("Provisioned", False, False, "Provisioned"),  # an IP that goes away does not go back
        ("Provisioned", True, True, "Running"),
    ],
)
def test_next_phase(current: str | None, has_ip: bool, node: bool, expected: str) -> None:
    assert next_phase(current, has_ip, node) == expected


def test_guest_ips_follow_the_vms_own_nics() -> None:
    nic = vim.vm.device.VirtualVmxnet3(macAddress="00:50:56:aa:bb:cc")
    ours = vim.vm.GuestInfo.NicInfo(
        macAddress="00:50:56:AA:BB:CC", ipAddress=["10.0.0.5", "fe80::1"]
    )
    other = vim.vm.GuestInfo.NicInfo(macAddress="00:50:56:00:00:01", ipAddress=["10.9.9.9"])
    props = {"config.hardware.device": [nic], "guest.net": [ours, other]}
    assert guest_ips(props) == ["10.0.0.5", "fe80::1"]
    assert guest_ips({"guest.ipAddress": "10.1.1.1"}) == ["10.1.1.1"]
    assert guest_ips({}) == []


def _scoped(
    server: str = "vc.example.com", secret: str | None = "vsphere-cloud-credentials"
) -> Obj:
    spec: Obj = {"workspace": {"server": server, "datacenter": "DC0"}}
    if secret:
        spec["credentialsSecret"] = {"name": secret}
    return {
        "metadata": {"name": "m1", "namespace": NS},
        "spec": {"providerSpec": {"value": spec}},
    }


_VC = {"vcenter_host": "vc.example.com", "vcenter_port": 443, "username": "u", "password": "p"}
_GOOD = {"vc.example.com.username": "u", "vc.example.com.password": "p"}


@pytest.mark.parametrize(
    ("machine_", "data", "expected"),
    [
        (_scoped(), _GOOD, None),
        (
            _scoped("VC.example.com:443"),
            {**_GOOD, "VC.example.com:443.username": "u", "VC.example.com:443.password": "p"},
            None,
        ),
        (
            _scoped(),
            None,
            "m1: error getting credentials: credentials secret openshift-machine-api/"
            'vsphere-cloud-credentials not found: secrets "vsphere-cloud-credentials" not found',
        ),
        (
            _scoped(),
            {"vc.example.com.password": "p"},
            "m1: error getting credentials: secret openshift-machine-api/vsphere-cloud-credentials "
            'does not have "vc.example.com.username" field set',
        ),
        (
            _scoped(),
            {"vc.example.com.username": "u"},
            'does not have "vc.example.com.password" field set',
        ),
        (
            _scoped("other-vc.example.com"),
            {"other-vc.example.com.username": "u", "other-vc.example.com.password": "p"},
            "failed to create vSphere session: error setting up new vSphere SOAP client: "
            'Post "https://other-vc.example.com/sdk"',
        ),
        (
            _scoped(),
            {**_GOOD, "vc.example.com.password": "wrong"},
            "Cannot complete login due to an incorrect user name or password.",
        ),
        (_scoped(secret=None), None, "incorrect user name or password"),
    ],
    ids=[
        "ok",
        "ok-port",
        "no-secret",
        "no-user-key",
        "no-password-key",
        "other-server",
        "wrong-password",
        "no-secret-ref",
    ],
)
def test_scope_error_follows_the_real_provider(
    machine_: Obj, data: dict[str, str] | None, expected: str | None
) -> None:
    got = scope_error(machine_, data, **_VC)  # type: ignore[arg-type]
    if expected is None:
        assert got is None
    else:
        assert got is not None and expected in got


def test_label_selector() -> None:
    labels = {"a": "1", "b": "2"}
    assert label_selector_matches({"matchLabels": {"a": "1"}}, labels)
    assert not label_selector_matches({"matchLabels": {"a": "2"}}, labels)
    assert label_selector_matches(
        {"matchExpressions": [{"key": "b", "operator": "In", "values": ["2", "3"]}]}, labels
    )
    assert not label_selector_matches(
        {"matchExpressions": [{"key": "c", "operator": "Exists"}]}, labels
    )
    assert not label_selector_matches(None, labels)


def test_work_queue_deduplicates_and_serializes_keys() -> None:
    q = WorkQueue()
    q.add("k")
    q.add("k")
    assert q.get() == "k"
    q.add("k")  # while processing: queued again only after done()
    q.add("j")
    assert q.get() == "j"
    q.done("j")
    q.done("k")
    assert q.get() == "k"
    q.done("k")
    q.shutdown()
    assert q.get() is None


# --------------------------------------------------------------------------- against the lab


@pytest.fixture(scope="module")
def env(lab_env: dict[str, str]) -> dict[str, str]:
    if not lab_env.get("KUBECONFIG") or not lab_env.get("GOVC_URL"):
        pytest.skip("needs the lab's vcsim and kube components")
    if "machine-api" not in lab_env.get("LAB_CONTROLLERS", ""):
        pytest.skip("needs the lab's controllers component")
    return lab_env


@pytest.fixture(scope="module")
def api(env: dict[str, str]) -> k8s.ApiClient:
    return kube_client(env)


@pytest.fixture(scope="module")
def custom(api: k8s.ApiClient) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(api)


@pytest.fixture(scope="module")
def vs(env: dict[str, str]) -> Iterator[VSphere]:
    session = VSphere(env)
    yield session
    session.close()


class Site:
    """The vCenter objects the tests place their VMs in: the lab's datacenter, datastore, network
    and resource pool, a folder of the test module's own, and a small template."""

    def __init__(self, env: dict[str, str], vs: VSphere) -> None:
        self.vs = vs
        dcs = vs.retrieve(vim.Datacenter, ["name"])
        want = env.get("LAB_VSPHERE_DATACENTER", "").strip("/").split("/")[-1]
        self.dc_obj, props = next(((o, p) for o, p in dcs if p["name"] == want), dcs[0])
        self.dc = props["name"]
        ds = env.get("LAB_VSPHERE_DATASTORE") or vs.retrieve(vim.Datastore, ["name"])[0][1]["name"]
        self.datastore = ds.strip("/").split("/")[-1]
        self.network = (env.get("LAB_VSPHERE_NETWORK") or "VM Network").strip("/").split("/")[-1]
        self.resource_pool = env.get("LAB_VSPHERE_RESOURCE_POOL") or ""
        self.folder_name = f"mapi-test-{uuid.uuid4().hex[:6]}"
        self.folder_obj = self.dc_obj.vmFolder.CreateFolder(self.folder_name)
        self.folder = f"/{self.dc}/vm/{self.folder_name}"
        # the template: a clone of any VM of the inventory, marked as template
        source = next(
            o
            for o, p in vs.retrieve(vim.VirtualMachine, ["config.template"], self.dc_obj.vmFolder)
            if not p.get("config.template")
        )
        pool = (
            vs.find_by_path(self.resource_pool)
            if self.resource_pool
            else next(iter(vs.retrieve(vim.ResourcePool, ["name"], self.dc_obj.hostFolder)))[0]
        )
        self.template = f"mapi-tmpl-{uuid.uuid4().hex[:6]}"
        spec = vim.vm.CloneSpec(
            location=vim.vm.RelocateSpec(pool=pool), powerOn=False, template=True
        )
        vs.wait_task(source.CloneVM_Task(folder=self.folder_obj, name=self.template, spec=spec))

    def vms(self) -> dict[str, dict[str, Any]]:
        props = [
            "name",
            "config.template",
            "config.hardware.numCPU",
            "config.hardware.numCoresPerSocket",
            "config.hardware.memoryMB",
            "config.hardware.device",
            "runtime.powerState",
        ]
        return {
            p["name"]: p
            for _, p in self.vs.retrieve(vim.VirtualMachine, props, self.folder_obj)
            if not p.get("config.template")
        }

    def vm(self, name: str) -> Any:
        return next(
            o
            for o, p in self.vs.retrieve(vim.VirtualMachine, ["name"], self.folder_obj)
            if p["name"] == name
        )

    def provider_spec(self, **overrides: Any) -> Obj:
        spec: Obj = {
            "apiVersion": "machine.openshift.io/v1beta1",
            "kind": "VSphereMachineProviderSpec",
            "credentialsSecret": {"name": "vsphere-cloud-credentials"},
            "diskGiB": 20,
            "memoryMiB": 4096,
            "numCPUs": 4,
            "numCoresPerSocket": 2,
            "snapshot": "",
            "template": self.template,
            "network": {"devices": [{"networkName": self.network}]},
            "userDataSecret": {"name": "windows-user-data"},
            "workspace": {
                "datacenter": self.dc,
                "datastore": self.datastore,
                "folder": self.folder,
                "resourcePool": self.resource_pool,
                "server": "127.0.0.1",
            },
        }
        ws = overrides.pop("workspace", {})
        spec["workspace"].update(ws)
        spec.update(overrides)
        return spec


@pytest.fixture(scope="module")
def site(env: dict[str, str], vs: VSphere) -> Iterator[Site]:
    s = Site(env, vs)
    yield s
    with contextlib.suppress(Exception):  # machines delete their VMs; the rest goes with the folder
        vs.wait_task(s.folder_obj.Destroy_Task())


# -- watching helpers ------------------------------------------------------------------------


def wait_for(
    list_fn: Callable[..., Any],
    predicate: Callable[[dict[str, Obj]], bool],
    what: str,
    timeout: float = 90,
    **kwargs: Any,
) -> dict[str, Obj]:
    """List, then watch (bounded, resumed), until `predicate(objects by name)` holds."""
    deadline = time.monotonic() + timeout
    body = json.loads(list_fn(_preload_content=False, **kwargs).data)
    items = {o["metadata"]["name"]: o for o in body["items"]}
    rv = body["metadata"]["resourceVersion"]
    while not predicate(items):
        left = deadline - time.monotonic()
        if left <= 0:
            seen = {n: (o.get("status") or {}).get("phase", "") for n, o in items.items()}
            raise AssertionError(f"timed out waiting for {what}; last seen (name: phase): {seen}")
        for ev in k8s_watch.Watch().stream(
            list_fn,
            resource_version=rv,
            timeout_seconds=max(1, int(left)),
            deserialize=False,
            **kwargs,
        ):
            o = ev["object"]
            rv = o["metadata"]["resourceVersion"]
            if ev["type"] == "DELETED":
                items.pop(o["metadata"]["name"], None)
            else:
                items[o["metadata"]["name"]] = o
            if predicate(items):
                break
    return items


def machines_of(
    custom: k8s.CustomObjectsApi,
    set_name: str,
    predicate: Callable[[list[Obj]], bool],
    what: str,
    timeout: float = 90,
) -> list[Obj]:
    items = wait_for(
        custom.list_namespaced_custom_object,
        lambda d: predicate(list(d.values())),
        what,
        timeout,
        group=GROUP,
        version=VERSION,
        namespace=NS,
        plural="machines",
        label_selector=f"{MACHINESET_LABEL}={set_name}",
    )
    return sorted(items.values(), key=lambda m: m["metadata"]["name"])


def machine(
    custom: k8s.CustomObjectsApi,
    name: str,
    predicate: Callable[[Obj], bool],
    what: str,
    timeout: float = 90,
) -> Obj:
    items = wait_for(
        custom.list_namespaced_custom_object,
        lambda d: name in d and predicate(d[name]),
        what,
        timeout,
        group=GROUP,
        version=VERSION,
        namespace=NS,
        plural="machines",
        field_selector=f"metadata.name={name}",
    )
    return items[name]


def machineset_status(
    custom: k8s.CustomObjectsApi, name: str, predicate: Callable[[Obj], bool], what: str
) -> Obj:
    items = wait_for(
        custom.list_namespaced_custom_object,
        lambda d: name in d and predicate(d[name].get("status") or {}),
        what,
        group=GROUP,
        version=VERSION,
        namespace=NS,
        plural="machinesets",
        field_selector=f"metadata.name={name}",
    )
    return items[name]


def _d(x: Any) -> Obj:
    assert isinstance(x, dict)
    return x


def provisioned_ids(ms: list[Obj]) -> bool:
    """Every Machine has its VM: providerID and addresses set."""
    return all(
        (m.get("spec") or {}).get("providerID") and (m.get("status") or {}).get("addresses")
        for m in ms
    )


def make_machineset(
    custom: k8s.CustomObjectsApi, site: Site, infra: str, replicas: int, **spec_overrides: Any
) -> str:
    name = "t" + uuid.uuid4().hex[:5]
    body = windows_machineset(name, infra, site.provider_spec(**spec_overrides), replicas)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "machinesets", body)
    return name


def scale(custom: k8s.CustomObjectsApi, name: str, replicas: int) -> None:
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "machinesets", name, {"spec": {"replicas": replicas}}
    )


def set_guest_ip(env: dict[str, str], vm: Any, ip: str) -> None:
    """What VMware Tools do in a booted guest: report its IP to vCenter (the lab vcsim's control
    endpoint sets guest.ipAddress and guest.net as Tools would)."""
    VcsimControl.from_env(env).set_guest(vm._moId, ipAddress=ip)


@pytest.fixture(scope="module")
def infra(env: dict[str, str]) -> str:
    return env.get("LAB_INFRASTRUCTURE_ID", "lab-test")


@pytest.fixture
def cleanup(custom: k8s.CustomObjectsApi, site: Site) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for n in names:
        with contextlib.suppress(ApiException):
            custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "machinesets", n)
        scale_down = [
            m["metadata"]["name"]
            for m in _d(
                custom.list_namespaced_custom_object(
                    GROUP, VERSION, NS, "machines", label_selector=f"{MACHINESET_LABEL}={n}"
                )
            )["items"]
        ]
        for m in scale_down:
            with contextlib.suppress(ApiException):
                custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "machines", m)
        machines_of(custom, n, lambda ms: not ms, f"machines of {n} to go away")


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.lab
def test_machineset_creates_machines_and_vms(
    custom: k8s.CustomObjectsApi, site: Site, infra: str, cleanup: list[str]
) -> None:
    name = make_machineset(custom, site, infra, 2)
    cleanup.append(name)
    ms = machines_of(custom, name, lambda ms: len(ms) == 2 and provisioned_ids(ms), "2 machines")
    owner = _d(custom.get_namespaced_custom_object(GROUP, VERSION, NS, "machinesets", name))
    for m in ms:
        meta = m["metadata"]
        assert re.fullmatch(rf"{name}-[a-z0-9]{{5}}", meta["name"])
        assert meta["labels"]["machine.openshift.io/os-id"] == "Windows"
        assert meta["labels"][MACHINESET_LABEL] == name
        assert meta["ownerReferences"] == [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "MachineSet",
                "name": name,
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert FINALIZER in meta["finalizers"]
        assert m["spec"]["providerID"].startswith("vsphere://")
        assert m["spec"]["providerSpec"]["value"]["template"] == site.template
        assert meta["annotations"]["machine.openshift.io/instance-state"] == "poweredOn"
        # no guest IP reported yet: still Provisioning, like the real provider
        assert m["status"]["phase"] == "Provisioning"
        assert m["status"]["addresses"] == [{"type": "InternalDNS", "address": meta["name"]}]
    vms = site.vms()
    assert sorted(vms) == [m["metadata"]["name"] for m in ms]
    for props in vms.values():
        assert props["config.hardware.numCPU"] == 4
        assert props["config.hardware.numCoresPerSocket"] == 2
        assert props["config.hardware.memoryMB"] == 4096
        disks = [
            d for d in props["config.hardware.device"] if isinstance(d, vim.vm.device.VirtualDisk)
        ]
        assert [d.capacityInKB for d in disks] == [20 * 1024 * 1024]
        nics = [
            d
            for d in props["config.hardware.device"]
            if isinstance(d, vim.vm.device.VirtualEthernetCard)
        ]
        assert len(nics) == 1 and isinstance(nics[0], vim.vm.device.VirtualVmxnet3)
        assert getattr(nics[0].backing, "deviceName", "") == site.network
        assert str(props["runtime.powerState"]) == "poweredOn"
    status = machineset_status(
        custom,
        name,
        lambda s: s.get("replicas") == 2 and s.get("fullyLabeledReplicas") == 2,
        "status replicas=2",
    )["status"]
    assert status["readyReplicas"] == 0 and status["availableReplicas"] == 0
    assert status["observedGeneration"] == owner["metadata"]["generation"]


@pytest.mark.lab
def test_scaling_creates_and_destroys_vms(
    custom: k8s.CustomObjectsApi, site: Site, infra: str, cleanup: list[str]
) -> None:
    name = make_machineset(custom, site, infra, 2)
    cleanup.append(name)
    machines_of(custom, name, lambda ms: len(ms) == 2 and provisioned_ids(ms), "2 machines")
    scale(custom, name, 3)
    ms = machines_of(custom, name, lambda ms: len(ms) == 3 and provisioned_ids(ms), "3 machines")
    assert set(site.vms()) >= {m["metadata"]["name"] for m in ms}
    scale(custom, name, 1)
    ms = machines_of(custom, name, lambda ms: len(ms) == 1, "1 machine")
    mine = {n for n in site.vms() if n.startswith(name + "-")}
    assert mine == {ms[0]["metadata"]["name"]}
    machineset_status(custom, name, lambda s: s.get("replicas") == 1, "status replicas=1")


@pytest.mark.lab
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"template": "no-such-template"},
            "unable to get template \"no-such-template\": vm 'no-such-template' not found",
        ),
        (
            {"network": {"devices": [{"networkName": "no-such-net"}]}},
            "unable to get network for \"no-such-net\": network 'no-such-net' not found",
        ),
        (
            {"workspace": {"datastore": "no-such-ds"}},
            "unable to get datastore for \"no-such-ds\": datastore 'no-such-ds' not found",
        ),
        (
            {"workspace": {"folder": "/DCX/vm/no-such-folder"}},
            "unable to get folder for \"/DCX/vm/no-such-folder\": folder '/DCX/vm/no-such-folder' not found",
        ),
        (
            {"workspace": {"resourcePool": "/DCX/host/none/Resources"}},
            'unable to get resource pool for "/DCX/host/none/Resources"',
        ),
    ],
    ids=["template", "network", "datastore", "folder", "resource-pool"],
)
def test_missing_vsphere_object_fails_the_machine(
    api: k8s.ApiClient,
    custom: k8s.CustomObjectsApi,
    site: Site,
    infra: str,
    override: Obj,
    expected: str,
) -> None:
    name = "bad-" + uuid.uuid4().hex[:6]
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Machine",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"machine.openshift.io/cluster-api-cluster": infra},
        },
        "spec": {"providerSpec": {"value": site.provider_spec(**override)}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "machines", body)
    try:
        m = machine(
            custom, name, lambda m: (m.get("status") or {}).get("phase") == "Failed", "Failed"
        )
        assert m["status"]["errorReason"] == "InvalidConfiguration"
        assert expected in m["status"]["errorMessage"]
        assert m["metadata"]["annotations"]["machine.openshift.io/instance-state"] == "Unknown"
        events = wait_for(
            k8s.CoreV1Api(api).list_namespaced_event,
            lambda d: any(e["reason"] == "FailedCreate" for e in d.values()),
            "a FailedCreate event",
            timeout=30,
            namespace=NS,
            field_selector=f"involvedObject.name={name}",
        )
        (ev,) = [e for e in events.values() if e["reason"] == "FailedCreate"]
        assert ev["type"] == "Warning" and expected in ev["message"]
        assert name not in site.vms()
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "machines", name)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            # with a secret that has that server's keys: the session is what fails
            {
                "workspace": {"server": "vcenter.elsewhere.example"},
                "credentialsSecret": {"name": "scope-test-credentials"},
            },
            'Post "https://vcenter.elsewhere.example/sdk"',
        ),
        (
            {"credentialsSecret": {"name": "no-such-credentials"}},
            "credentials secret openshift-machine-api/no-such-credentials not found",
        ),
        (
            {"credentialsSecret": {"name": "worker-user-data"}},  # exists, without the keys
            'does not have "127.0.0.1.username" field set',
        ),
    ],
    ids=["server", "secret", "secret-keys"],
)
@pytest.mark.lab
def test_wrong_server_or_credentials_never_create_a_vm(
    api: k8s.ApiClient,
    custom: k8s.CustomObjectsApi,
    site: Site,
    infra: str,
    override: Obj,
    expected: str,
) -> None:
    """As machine-api's vSphere actuator: the machine scope (credentials secret with
    `<workspace.server>.username/.password`, a session to workspace.server) comes before any
    vCenter call, and its failure leaves the Machine unprovisioned with condition
    InstanceExists=Unknown (ErrorCheckingProvider), retried, not Failed. The old lab ignored
    both fields and cloned the VM."""
    name = "scope-" + uuid.uuid4().hex[:6]
    core = k8s.CoreV1Api(api)
    with contextlib.suppress(ApiException):
        core.create_namespaced_secret(
            NS,
            k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(name="scope-test-credentials"),
                string_data={
                    "vcenter.elsewhere.example.username": "administrator@vsphere.local",
                    "vcenter.elsewhere.example.password": "not-a-secret",
                },
            ),
        )
    spec = site.provider_spec()
    for k, v in override.items():
        spec[k] = {**spec.get(k, {}), **v} if isinstance(v, dict) else v
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Machine",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"machine.openshift.io/cluster-api-cluster": infra},
        },
        "spec": {"providerSpec": {"value": spec}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "machines", body)

    def stuck(m: Obj) -> bool:
        conds = (m.get("status") or {}).get("conditions") or []
        return any(
            c.get("type") == "InstanceExists"
            and c.get("status") == "Unknown"
            and c.get("reason") == "ErrorCheckingProvider"
            for c in conds
        )

    try:
        m = machine(custom, name, stuck, "condition InstanceExists=Unknown")
        (cond,) = [c for c in m["status"]["conditions"] if c["type"] == "InstanceExists"]
        assert cond["message"].startswith(
            f"Failed to check if machine exists: {name}: failed to create scope for machine: "
        )
        assert expected in cond["message"]
        assert m["status"].get("phase") in (None, "", "Provisioning")
        assert not m["status"].get("errorMessage")
        assert name not in site.vms()
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "machines", name)


@pytest.mark.lab
def test_guest_ip_provisions_the_machine_and_status_follows(
    env: dict[str, str],
    api: k8s.ApiClient,
    custom: k8s.CustomObjectsApi,
    vs: VSphere,
    site: Site,
    infra: str,
    cleanup: list[str],
) -> None:
    name = make_machineset(custom, site, infra, 1)
    cleanup.append(name)
    (m,) = machines_of(custom, name, lambda ms: len(ms) == 1 and provisioned_ids(ms), "1 machine")
    mname = m["metadata"]["name"]
    set_guest_ip(env, site.vm(mname), "10.11.12.13")
    m = machine(custom, mname, lambda m: m["status"].get("phase") == "Provisioned", "Provisioned")
    assert m["status"]["addresses"] == [
        {"type": "InternalIP", "address": "10.11.12.13"},
        {"type": "InternalDNS", "address": mname},
    ]
    # what WMCO does when the node joins: a Ready Node and the Machine's nodeRef
    core = k8s.CoreV1Api(api)
    node: Any = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": mname, "labels": {"kubernetes.io/os": "windows"}},
        "spec": {"providerID": m["spec"]["providerID"]},
    }
    core.create_node(node)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    core.patch_node_status(
        mname,
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "lab",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ]
            }
        },
    )
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        "machines",
        mname,
        {"status": {"nodeRef": {"kind": "Node", "name": mname}}},
    )
    machine(custom, mname, lambda m: m["status"].get("phase") == "Running", "Running")
    status = machineset_status(
        custom,
        name,
        lambda s: s.get("readyReplicas") == 1 and s.get("availableReplicas") == 1,
        "ready=available=1",
    )["status"]
    assert status["replicas"] == 1
    # the IP vanishes in vCenter: it vanishes from the Machine
    set_guest_ip(env, site.vm(mname), "")
    m = machine(
        custom,
        mname,
        lambda m: all(a["type"] != "InternalIP" for a in m["status"]["addresses"]),
        "InternalIP gone",
    )
    assert m["status"]["addresses"] == [{"type": "InternalDNS", "address": mname}]
    # deleting the Machine destroys its VM and deletes its Node
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "machines", mname)
    ms = machines_of(
        custom,
        name,
        lambda ms: mname not in {x["metadata"]["name"] for x in ms} and len(ms) == 1,
        "a replacement machine",
    )
    assert mname not in site.vms()
    with pytest.raises(ApiException) as exc:
        core.read_node(mname)
    assert exc.value.status == 404
    assert ms[0]["metadata"]["name"] != mname


@pytest.mark.lab
def test_restarted_controller_adopts_existing_vms(
    env: dict[str, str], custom: k8s.CustomObjectsApi, site: Site, infra: str, cleanup: list[str]
) -> None:
    # the session lab's own run directory (never the user's `.lab/`)
    paths = LabPaths(root=Path(env["LAB_DIR"]), cache=LabPaths.default().cache)
    name = make_machineset(custom, site, infra, 2)
    cleanup.append(name)
    machines_of(custom, name, lambda ms: len(ms) == 2, "2 machines created")
    pid = lab_controllers.controller_pid(paths, "machine-api")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # mid-way: clones may or may not have started
    ms = machines_of(
        custom, name, lambda ms: len(ms) == 2 and provisioned_ids(ms), "2 provisioned", timeout=120
    )
    scale(custom, name, 3)  # a change only the restarted controller can act on
    ms = machines_of(
        custom, name, lambda ms: len(ms) == 3 and provisioned_ids(ms), "3 provisioned", timeout=120
    )
    mine = sorted(n for n in site.vms() if n.startswith(name + "-"))
    assert mine == sorted(m["metadata"]["name"] for m in ms)  # one VM per Machine, no duplicates
    new_pid = lab_controllers.controller_pid(paths, "machine-api")
    assert new_pid is not None and new_pid != pid


@pytest.mark.lab
def test_seeded_linux_workers_are_adopted_not_recreated(
    env: dict[str, str], custom: k8s.CustomObjectsApi, vs: VSphere
) -> None:
    """An installed IPI cluster has Linux worker Machines, Running, on the worker VMs of the
    vCenter; WMCO's hack/machineset.sh reads them with `oc get machines -l
    machine.openshift.io/cluster-api-machine-role=worker -o jsonpath={.items[0].spec...}`. The lab
    seeds them; the machine-api adopts them into the worker MachineSet and finds their VMs by name
    (providerID = the VM's BIOS UUID), creating and destroying no VM."""
    workers = dict(
        item.split("=", 1) for item in env.get("LAB_VSPHERE_WORKERS", "").split(",") if item
    )
    assert len(workers) == 3, env.get("LAB_VSPHERE_WORKERS")
    infra = env["LAB_INFRASTRUCTURE_ID"]
    set_name = f"{infra}-worker"
    sel = "machine.openshift.io/cluster-api-machine-role=worker"

    def adopted(items: dict[str, Obj]) -> bool:
        linux = [m for n, m in items.items() if n in workers]
        return len(linux) == 3 and all(
            (m.get("spec") or {}).get("providerID", "").startswith("vsphere://")
            and any(
                r.get("kind") == "MachineSet" for r in m["metadata"].get("ownerReferences") or []
            )
            for m in linux
        )

    items = wait_for(
        custom.list_namespaced_custom_object,
        adopted,
        "the seeded worker Machines adopted",
        group=GROUP,
        version=VERSION,
        namespace=NS,
        plural="machines",
        label_selector=sel,
    )
    uuids = {
        p["name"]: p["config.uuid"]
        for _, p in vs.retrieve(vim.VirtualMachine, ["name", "config.uuid"])
        if p["name"] in workers
    }
    for name, ip in workers.items():
        m = items[name]
        assert m["status"]["phase"] == "Running" and m["status"]["nodeRef"]["name"] == name
        assert m["spec"]["providerID"] == f"vsphere://{uuids[name]}"
        assert {"type": "InternalIP", "address": ip} in m["status"]["addresses"]
        (ref,) = [r for r in m["metadata"]["ownerReferences"] if r.get("controller")]
        assert ref["name"] == set_name
    status = machineset_status(
        custom, set_name, lambda st: st.get("readyReplicas") == 3, "worker set ready 3"
    )["status"]
    assert status["replicas"] == 3 and status["availableReplicas"] == 3
    assert sorted(
        n
        for n in (p["name"] for _, p in vs.retrieve(vim.VirtualMachine, ["name"]))
        if n.startswith(f"{infra}-worker-")
    ) == sorted(workers)  # no VM made or lost

    # What hack/machineset.sh reads, through kubectl (oc get machines ... -o jsonpath=...).
    kubectl = env["LAB_KUBECTL"]
    out = subprocess.run(
        [
            kubectl,
            "get",
            "machines",
            "-n",
            NS,
            "-l",
            sel,
            "-o",
            "jsonpath={.items[0].spec.providerSpec.value}",
        ],
        env=dict(os.environ, KUBECONFIG=env["KUBECONFIG"]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    value = json.loads(out)
    assert value["credentialsSecret"]["name"] == "vsphere-cloud-credentials"
    assert value["network"]["devices"][0]["networkName"] == env["LAB_VSPHERE_NETWORK"]
    assert {"datacenter", "datastore", "folder", "resourcePool", "server"} <= set(
        value["workspace"]
    )
