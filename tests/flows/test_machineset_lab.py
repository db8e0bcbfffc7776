"""The cluster_prep and machineset flows end to end against the whole lab.

Real kube-apiserver with the OpenShift CRDs, the lab's machine-api and WMCO simulators, vcsim with
Windows guest twins, BIND. Golden templates are built by hand (lab.scenario) with the provenance the
golden image flow records. Every wait is the flow's own watch-based V1 with a deadline.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import watch

from flows.machineset import machineset
from tests.flows.cluster_lab import (
    MAPI_NS,
    VC_BLOCK,
    WIN_BLOCK,
    Cluster,
    build_template,
    cluster_config,
    machineset_config,
    other_key_pem,
    remove_template,
    windows_fingerprint,
)
from winnodes import errors
from winnodes.cluster.wait import MachineSetFailed
from winnodes.model.config import Waits

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def template(env: dict[str, str], prepared: None) -> Iterator[str]:
    name = build_template(env, "good", fingerprint=windows_fingerprint())
    yield name
    remove_template(env, name)


@pytest.fixture
def set_name(cluster: Cluster) -> Iterator[str]:
    name = f"w{uuid.uuid4().hex[:5]}"
    yield name
    cluster.delete_machineset(name)


def run(env: dict[str, str], ms: Any, **kw: Any) -> Any:
    return machineset(
        cluster_config(env),
        ms,
        waits=kw.pop("waits", Waits(machineset_ready_seconds=300)),
        vsphere_credentials_block=VC_BLOCK,
        windows_access_block=WIN_BLOCK,
        **kw,
    )


class ReadyWatcher(threading.Thread):
    """An independent observer: the wall time at which the API first shows the set ready."""

    def __init__(self, cluster: Cluster, name: str, replicas: int) -> None:
        super().__init__(daemon=True)
        self.cluster, self.name, self.replicas = cluster, name, replicas
        self.ready_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        w = watch.Watch()
        for ev in w.stream(
            self.cluster.custom.list_namespaced_custom_object,
            "machine.openshift.io",
            "v1beta1",
            MAPI_NS,
            "machinesets",
            field_selector=f"metadata.name={self.name}",
            timeout_seconds=300,
        ):
            st = ev["object"].get("status") or {}
            vals = {
                st.get("replicas"),
                st.get("readyReplicas"),
                st.get("availableReplicas"),
            }
            if vals == {self.replicas} and self.ready_at is None:
                self.ready_at = time.monotonic()
            if self.stop.is_set():
                w.stop()


def test_happy_path_rerun_and_scaling(
    env: dict[str, str], template: str, set_name: str, cluster: Cluster
) -> None:
    ms = machineset_config(env, set_name, template, replicas=1)
    watcher = ReadyWatcher(cluster, set_name, 1)
    watcher.start()
    t0 = time.monotonic()
    first = run(env, ms)
    t1 = time.monotonic()
    watcher.stop.set()
    assert first.action == "created"
    assert "Windows nodes Ready 1/1" in first.ready
    print(f"\nMEASURE apply->Ready (flow incl. checks) {t1 - t0:.1f}s")
    if watcher.ready_at is not None:
        print(f"MEASURE wait detection latency {1000 * (t1 - watcher.ready_at):.0f} ms")

    obj = cluster.machineset(set_name)
    assert obj is not None
    labels = obj["spec"]["template"]["metadata"]["labels"]
    assert labels["machine.openshift.io/os-id"] == "Windows"
    assert labels["machine.openshift.io/cluster-api-cluster"] == env["LAB_INFRASTRUCTURE_ID"]
    nodes = cluster.core.list_node(label_selector="kubernetes.io/os=windows").items
    machines = cluster.custom.list_namespaced_custom_object(
        "machine.openshift.io",
        "v1beta1",
        MAPI_NS,
        "machines",
        label_selector=f"machine.openshift.io/cluster-api-machineset={set_name}",
    )["items"]
    node_names = {n.metadata.name for n in nodes}
    assert all(m["status"]["nodeRef"]["name"] in node_names for m in machines)

    # a re-run changes nothing
    generation = obj["metadata"]["generation"]
    again = run(env, ms)
    assert again.action == "unchanged"
    after = cluster.machineset(set_name)
    assert after is not None and after["metadata"]["generation"] == generation

    # scale up, then down to zero
    up = run(env, ms.model_copy(update={"replicas": 2}))
    assert up.action == "updated" and "Windows nodes Ready 2/2" in up.ready
    down = run(env, ms.model_copy(update={"replicas": 0}))
    assert down.action == "updated" and down.ready.startswith("DESIRED 0 CURRENT 0")


def test_bad_input_fails_before_any_write(
    env: dict[str, str], template: str, cluster: Cluster
) -> None:
    ms = machineset_config(env, "windowsworker", template, replicas=-1 + 1)
    with pytest.raises(errors.ValidationError) as exc:
        run(env, ms)
    assert any(p.step_id == "M2" for p in exc.value.problems)
    assert cluster.machineset("windowsworker") is None


@pytest.mark.parametrize(
    ("over", "step", "words"),
    [
        ({"template": "j-no-such-template"}, "M7", "not found"),
        ({"network_name": "No Such Network"}, "M6", "No Such Network"),
    ],
    ids=["missing-template", "unknown-network"],
)
def test_vcenter_objects_checked_before_any_write(
    env: dict[str, str],
    template: str,
    set_name: str,
    cluster: Cluster,
    over: dict[str, str],
    step: str,
    words: str,
) -> None:
    ms = machineset_config(env, set_name, template).model_copy(update=over)
    with pytest.raises(errors.ValidationError) as exc:
        run(env, ms)
    assert [p.step_id for p in exc.value.problems] == [step], exc.value
    assert words in str(exc.value)
    assert cluster.machineset(set_name) is None


@pytest.mark.parametrize(
    ("over", "fields", "words"),
    [
        (
            {"credentials_secret": "no-such-credentials"},
            {("M5", "machineset.credentials_secret", "exists")},
            "openshift-machine-api/no-such-credentials does not exist",
        ),
        (
            {"credentials_secret": "worker-user-data"},  # exists, keyed for no server
            {("M5", "machineset.credentials_secret", "has-server-keys")},
            "has no '127.0.0.1.username' and no '127.0.0.1.password'",
        ),
        (
            {"server": "vcenter.elsewhere.invalid"},
            {
                ("M9", "machineset.workspace.server", "same-vcenter"),
                ("M5", "machineset.credentials_secret", "has-server-keys"),
            },
            "'vcenter.elsewhere.invalid' is not the vCenter 127.0.0.1",
        ),
    ],
    ids=["no-secret", "secret-without-server-keys", "other-vcenter"],
)
def test_server_and_credentials_secret_checked_before_any_write(
    env: dict[str, str],
    template: str,
    set_name: str,
    cluster: Cluster,
    over: dict[str, str],
    fields: set[tuple[str, str, str]],
    words: str,
) -> None:
    """machine-api's vSphere provider logs in to workspace.server with `<server>.username` and
    `<server>.password` from the credentials secret; the lab's machine-api now does too (its
    Machines never get a VM otherwise), so the flow checks both before writing (M5, M9)."""
    ms = machineset_config(env, set_name, template)
    if "server" in over:
        assert ms.workspace is not None
        ms = ms.model_copy(update={"workspace": ms.workspace.model_copy(update=over)})
    else:
        ms = ms.model_copy(update=over)
    with pytest.raises(errors.ValidationError) as exc:
        run(env, ms)
    assert {(p.step_id, p.field, p.rule) for p in exc.value.problems} == fields, exc.value
    assert words in str(exc.value)
    assert cluster.machineset(set_name) is None


def test_c2_takes_the_values_of_a_running_linux_worker_machine(
    env: dict[str, str], template: str, set_name: str, cluster: Cluster
) -> None:
    """C2 reads what WMCO's hack/machineset.sh reads: a Running Linux worker Machine's
    providerSpec (the lab seeds them, as an installed cluster has them)."""
    ms = machineset_config(
        env, set_name, template, take_from_existing_linux_machineset=True, workspace=None
    )
    from tasks.openshift import c2_from_linux_machineset

    resolved = c2_from_linux_machineset.fn(cluster_config(env).openshift_block, None)
    workers = [w.split("=", 1)[0] for w in env["LAB_VSPHERE_WORKERS"].split(",")]
    assert resolved.source == f"machine {min(workers)}"  # a Machine, not the set's template
    result = run(env, ms, render_only=True)
    assert result.action == "rendered"
    assert "server: 127.0.0.1" in result.yaml
    assert f"networkName: {env['LAB_VSPHERE_NETWORK']}" in result.yaml
    assert cluster.machineset(set_name) is None


def test_template_with_another_key_is_refused(
    env: dict[str, str], set_name: str, cluster: Cluster, template: str
) -> None:
    from tests.flows.cluster_lab import vcenter
    from winnodes.vsphere import inventory, vms

    with vcenter(env) as session:
        tpl = inventory.vm(session, template).obj
        vms.set_custom_attributes(session, tpl, {"winnodes.ssh.fingerprint": "SHA256:other"})
    try:
        with pytest.raises(errors.Conflict, match="WMCO would fail to log in") as exc:
            run(env, machineset_config(env, set_name, template))
        assert exc.value.step_id == "PRE-3"
        assert cluster.machineset(set_name) is None
    finally:
        fp = windows_fingerprint()
        with vcenter(env) as session:
            tpl = inventory.vm(session, template).obj
            vms.set_custom_attributes(session, tpl, {"winnodes.ssh.fingerprint": fp})


def test_template_wmco_does_not_support_is_refused(
    env: dict[str, str], set_name: str, cluster: Cluster, template: str
) -> None:
    """PRE-1/PRE-2: the lab's WMCO is 10.18.1 (its CSV); a Windows Server 2025 template (build
    recorded at G10) needs 10.22+: refused before anything is written, naming PRE-2."""
    from tests.flows.cluster_lab import vcenter
    from winnodes.vsphere import inventory, vms

    with vcenter(env) as session:
        tpl = inventory.vm(session, template).obj
        vms.set_custom_attributes(session, tpl, {"winnodes.os.build": "26100.1742"})
    try:
        with pytest.raises(errors.Conflict, match=r"WMCO 10\.18") as exc:
            run(env, machineset_config(env, set_name, template))
        assert exc.value.step_id == "PRE-2" and "10.22" in str(exc.value)
        assert cluster.machineset(set_name) is None
    finally:
        with vcenter(env) as session:
            tpl = inventory.vm(session, template).obj
            vms.set_custom_attributes(session, tpl, {"winnodes.os.build": "20348.681"})


def test_secret_with_another_key_is_diagnosed(
    env: dict[str, str], set_name: str, cluster: Cluster, template: str
) -> None:
    """The secret was changed behind the flow's back: WMCO cannot log in and deletes the Machine;
    V1 stops early and names the key."""
    good = cluster.key_secret()
    body = {"data": {"private-key.pem": base64.b64encode(other_key_pem().encode()).decode()}}
    cluster.core.patch_namespaced_secret("cloud-private-key", good.metadata.namespace, body)
    try:
        with pytest.raises(MachineSetFailed) as exc:
            run(env, machineset_config(env, set_name, template))
        assert "key" in exc.value.diagnosis.causes
        assert any(e.reason == "AuthenticationFailed" for e in exc.value.diagnosis.events)
    finally:
        cluster.core.patch_namespaced_secret(
            "cloud-private-key", good.metadata.namespace, {"data": good.data}
        )


def test_missing_firewall_rule_is_diagnosed(
    env: dict[str, str], set_name: str, prepared: None, cluster: Cluster
) -> None:
    tpl = build_template(env, "nofw", fingerprint=windows_fingerprint(), firewall_ports=(9182,))
    try:
        with pytest.raises(MachineSetFailed) as exc:
            run(env, machineset_config(env, set_name, tpl))
    finally:
        cluster.delete_machineset(set_name)
        remove_template(env, tpl)
    d = exc.value.diagnosis
    assert d.causes[0] == "firewall", d.text()
    assert any("10250" in e.message for e in d.events)
    print("\n" + d.text())
