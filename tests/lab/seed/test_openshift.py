"""The seeded objects follow the lab's vCenter when it runs (the variables `lab.vcsim` publishes) and
vcsim's default inventory otherwise; the credentials secret is keyed by the vCenter host as machine-api
expects. Pure: no server."""

from __future__ import annotations

from lab.seed.openshift import Site, seed_objects, vsphere_credentials, worker_machineset

COMMON = {
    "infra_id": "lab-abcde",
    "cluster_name": "lab",
    "base_domain": "winnodes.test",
    "api_address": "127.0.0.1",
    "vsphere_user": "administrator@vsphere.local",
}

VCSIM_ENV = {
    "GOVC_URL": "https://127.0.0.1:18989/sdk",
    "GOVC_USERNAME": "administrator@vsphere.local",
    "GOVC_PASSWORD": "s3cret",
    "LAB_VSPHERE_SERVER": "127.0.0.1:18989",
    "LAB_VSPHERE_DATACENTER": "DC0",
    "LAB_VSPHERE_CLUSTER": "DC0_C0",
    "LAB_VSPHERE_DATASTORE": "LocalDS_0",
    "LAB_VSPHERE_NETWORK": "VM Network",
    "LAB_VSPHERE_FOLDER": "/DC0/vm/lab-abcde",
    "LAB_VSPHERE_RESOURCE_POOL": "/DC0/host/DC0_C0/Resources",
    "LAB_VSPHERE_TEMPLATE": "lab-abcde-rhcos",
}


def _workspace(site: Site) -> dict[str, str]:
    body = worker_machineset(site).body
    value = body["spec"]["template"]["spec"]["providerSpec"]["value"]
    assert value["template"] == "lab-abcde-rhcos"
    return dict(value["workspace"])


def test_workspace_from_vcsim_variables() -> None:
    site = Site.from_env(VCSIM_ENV, **COMMON)
    assert _workspace(site) == {
        "datacenter": "DC0",
        "datastore": "/DC0/datastore/LocalDS_0",
        "folder": "/DC0/vm/lab-abcde",
        "resourcePool": "/DC0/host/DC0_C0/Resources",
        "server": "127.0.0.1",
    }


def test_defaults_without_vcsim_match_its_inventory() -> None:
    site = Site.from_env({}, **COMMON)
    assert _workspace(site) == _workspace(Site.from_env(VCSIM_ENV, **COMMON))


def test_credentials_keyed_by_vcenter_host_without_port() -> None:
    secret = vsphere_credentials(Site.from_env(VCSIM_ENV, **COMMON)).body
    assert secret["stringData"] == {
        "127.0.0.1.username": "administrator@vsphere.local",
        "127.0.0.1.password": "s3cret",
    }


def test_namespaces_come_before_what_lives_in_them() -> None:
    kinds = [o.kind for o in seed_objects(Site.from_env({}, **COMMON))]
    assert kinds[:3] == ["Namespace"] * 3
    assert "Namespace" not in kinds[3:]


WORKERS = "lab-abcde-worker-a1b2c=192.168.77.21,lab-abcde-worker-d3e4f=192.168.77.22"


def test_linux_workers_have_running_machines_and_nodes() -> None:
    """A real IPI cluster has Linux worker Machines (WMCO's hack/machineset.sh reads `oc get machines
    -l machine.openshift.io/cluster-api-machine-role=worker -o jsonpath={.items[0].spec}`); the
    lab seeds one per Linux worker VM of its vCenter (the old lab: 0 replicas, no Machines)."""
    site = Site.from_env(VCSIM_ENV | {"LAB_VSPHERE_WORKERS": WORKERS}, **COMMON)
    objects = seed_objects(site)
    ms = worker_machineset(site)
    assert ms.body["spec"]["replicas"] == 2 and ms.status and ms.status["readyReplicas"] == 2
    machines = [o for o in objects if o.kind == "Machine"]
    nodes = {o.name: o for o in objects if o.kind == "Node"}
    assert [m.name for m in machines] == ["lab-abcde-worker-a1b2c", "lab-abcde-worker-d3e4f"]
    selector = ms.body["spec"]["selector"]["matchLabels"]
    for m in machines:
        labels = m.body["metadata"]["labels"]
        assert labels["machine.openshift.io/cluster-api-machine-role"] == "worker"
        assert "machine.openshift.io/os-id" not in labels
        assert selector.items() <= labels.items()
        value = m.body["spec"]["providerSpec"]["value"]
        assert value["workspace"]["server"] == "127.0.0.1"
        assert value["network"]["devices"][0]["networkName"] == "VM Network"
        assert m.status and m.status["phase"] == "Running"
        node = nodes[m.status["nodeRef"]["name"]]
        assert node.body["metadata"]["labels"]["kubernetes.io/os"] == "linux"
        assert node.status and node.status["conditions"][0]["status"] == "True"
    # Nodes and Machines come after the namespace and the MachineSet they belong to
    kinds = [o.kind for o in objects]
    assert kinds.index("MachineSet") < kinds.index("Machine")


def test_without_worker_vms_the_set_has_no_replicas() -> None:
    site = Site.from_env({}, **COMMON)
    assert worker_machineset(site).body["spec"]["replicas"] == 0
    assert not [o for o in seed_objects(site) if o.kind in ("Machine", "Node")]
