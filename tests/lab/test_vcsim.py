"""The lab's vCenter (lab.vcsim) seen as the product sees it: pyvmomi over verified HTTPS.

Starts only the vcsim component (own run dir, own free ports) once for the module and checks what
the flows and the guest twin rely on: TLS and login as in production, the OpenShift-site inventory,
and the control endpoint's faults, delays, session expiry, guest reports and guest shutdowns, each
observed through the vSphere API (WaitForUpdatesEx, tasks, events) rather than through the endpoint.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from lab import cli, vcsim
from lab.paths import REPO_ROOT
from lab.process import read_pid

pytestmark = pytest.mark.lab


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cli.LabContext]:
    run_dir = tmp_path_factory.mktemp("vcsim-lab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINNODES_LAB_DIR", str(run_dir))
        mp.setenv("LAB_VCSIM_PORT", str(_free_port()))
        mp.setenv("LAB_VCSIM_CONTROL_PORT", str(_free_port()))
        mp.setenv("LAB_COMPONENTS", "vcsim")
        ctx = cli.context()
        cli.up(ctx)
        try:
            yield ctx
        finally:
            cli.down(ctx)


@pytest.fixture(scope="module")
def env(lab: cli.LabContext) -> dict[str, str]:
    return dict(lab.env)


@pytest.fixture(scope="module")
def control(env: dict[str, str]) -> vcsim.VcsimControl:
    return vcsim.VcsimControl.from_env(env)


def _connect(env: dict[str, str], pwd: str | None = None) -> Any:
    host, port = env["LAB_VSPHERE_SERVER"].rsplit(":", 1)
    return SmartConnect(
        host=host,
        port=int(port),
        user=env["GOVC_USERNAME"],
        pwd=env["GOVC_PASSWORD"] if pwd is None else pwd,
        sslContext=ssl.create_default_context(cafile=env["LAB_VSPHERE_CA_FILE"]),
    )


@pytest.fixture
def si(env: dict[str, str]) -> Iterator[Any]:
    conn = _connect(env)
    yield conn
    Disconnect(conn)


@pytest.fixture(autouse=True)
def _clean_control(control: vcsim.VcsimControl) -> Iterator[None]:
    yield
    control.clear_faults()
    control.clear_delays()
    control.set_session_timeout(None)


def _find(si: Any, path: str) -> Any:
    obj = si.content.searchIndex.FindByInventoryPath(path)
    assert obj is not None, f"{path} not found"
    return obj


def _template(si: Any, env: dict[str, str]) -> Any:
    return _find(si, f"{env['LAB_VSPHERE_FOLDER']}/{env['LAB_VSPHERE_TEMPLATE']}")


def _task_states(si: Any, task: Any) -> list[str]:
    """Every info.state the property collector reports for the task until it ends."""
    pc = si.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=task)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.Task, pathSet=["info.state"])],
    )
    flt = pc.CreateFilter(spec, True)
    states: list[str] = []
    version = ""
    try:
        while not states or states[-1] not in ("success", "error"):
            update = pc.WaitForUpdatesEx(
                version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=30)
            )
            assert update is not None, f"no task update within 30s after {states}"
            version = update.version
            for fs in update.filterSet:
                for obj in fs.objectSet:
                    states += [str(c.val) for c in obj.changeSet if c.name == "info.state"]
    finally:
        flt.Destroy()
    return states


def _clone(si: Any, env: dict[str, str], name: str, *, power_on: bool = False) -> Any:
    template = _template(si, env)
    spec = vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(pool=_find(si, env["LAB_VSPHERE_RESOURCE_POOL"])),
        powerOn=power_on,
    )
    return template.CloneVM_Task(folder=_find(si, env["LAB_VSPHERE_FOLDER"]), name=name, spec=spec)


def _new_vm(si: Any, env: dict[str, str], power_on: bool = True) -> Any:
    task = _clone(si, env, f"test-{uuid.uuid4().hex[:8]}", power_on=power_on)
    assert _task_states(si, task)[-1] == "success"
    return task.info.result


# ----------------------------------------------------------------------------------- TLS and login
def test_tls_verified_with_lab_ca(si: Any, env: dict[str, str]) -> None:
    about = si.content.about
    assert about.apiType == "VirtualCenter"
    assert about.version.startswith("8.")
    host, port = env["LAB_VSPHERE_SERVER"].rsplit(":", 1)
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port))))
    sha1 = hashlib.sha1(der).hexdigest().upper()
    assert env["LAB_VSPHERE_THUMBPRINT"] == ":".join(sha1[i : i + 2] for i in range(0, 40, 2))


def test_tls_without_lab_ca_fails(env: dict[str, str]) -> None:
    host, port = env["LAB_VSPHERE_SERVER"].rsplit(":", 1)
    with pytest.raises(ssl.SSLCertVerificationError):
        SmartConnect(
            host=host,
            port=int(port),
            user=env["GOVC_USERNAME"],
            pwd=env["GOVC_PASSWORD"],
            sslContext=ssl.create_default_context(),
        )


def test_wrong_password_is_invalid_login(env: dict[str, str]) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        _connect(env, pwd="not-the-password")


# --------------------------------------------------------------------------------------- inventory
def test_inventory_paths_exist(si: Any, env: dict[str, str]) -> None:
    dc = env["LAB_VSPHERE_DATACENTER"]
    assert isinstance(_find(si, f"/{dc}"), vim.Datacenter)
    assert isinstance(
        _find(si, f"/{dc}/host/{env['LAB_VSPHERE_CLUSTER']}"), vim.ClusterComputeResource
    )
    folder = _find(si, env["LAB_VSPHERE_FOLDER"])
    assert isinstance(folder, vim.Folder)
    assert env["LAB_VSPHERE_FOLDER"] == f"/{dc}/vm/{env['LAB_INFRASTRUCTURE_ID']}"
    assert isinstance(_find(si, env["LAB_VSPHERE_RESOURCE_POOL"]), vim.ResourcePool)
    assert isinstance(_find(si, env["LAB_VSPHERE_CHILD_RESOURCE_POOL"]), vim.ResourcePool)
    assert isinstance(_find(si, f"/{dc}/datastore/{env['LAB_VSPHERE_DATASTORE']}"), vim.Datastore)
    assert isinstance(_find(si, f"/{dc}/network/{env['LAB_VSPHERE_NETWORK']}"), vim.Network)
    cluster = _find(si, f"/{dc}/host/{env['LAB_VSPHERE_CLUSTER']}")
    assert len(cluster.host) == 3

    # The folder holds the RHCOS template and three powered-on Linux workers, nothing else.
    infra = env["LAB_INFRASTRUCTURE_ID"]
    children = {vm.name: vm for vm in folder.childEntity}
    template = children.pop(f"{infra}-rhcos")
    assert template.config.template
    assert len(children) == 3
    for name, vm in children.items():
        assert name.startswith(f"{infra}-worker-") and len(name) == len(infra) + 13
        assert vm.runtime.powerState == "poweredOn"
        assert vm.guest.toolsRunningStatus == "guestToolsRunning"
        assert vm.guest.ipAddress


def test_isos_are_in_the_datastore(si: Any, env: dict[str, str]) -> None:
    ds = _find(si, f"/{env['LAB_VSPHERE_DATACENTER']}/datastore/{env['LAB_VSPHERE_DATASTORE']}")
    task = ds.browser.SearchDatastore_Task(
        datastorePath=f"[{ds.name}] iso",
        searchSpec=vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*.iso"]),
    )
    assert _task_states(si, task)[-1] == "success"
    found = {f"{task.info.result.folderPath.rstrip('/')}/{f.path}" for f in task.info.result.file}
    wanted = {
        env[k]
        for k in (
            "LAB_WINDOWS_ISO_OCP49",
            "LAB_WINDOWS_ISO_CURRENT",
            "LAB_TOOLS_ISO",
            "LAB_TOOLS_ISO_OLD",
        )
    }
    assert wanted <= found
    assert (Path(env["LAB_VSPHERE_DATASTORE_DIR"]) / "iso" / "vmware-tools-12.1.5.iso").is_file()


# ---------------------------------------------------------------------------------- faults, delays
def test_task_fault_fails_the_task_then_stops_after_its_count(
    si: Any, env: dict[str, str], control: vcsim.VcsimControl
) -> None:
    template = _template(si, env)
    rule = control.add_fault("CloneVM_Task", "TaskInProgress", moref=template._moId, max_count=1)
    assert rule["mode"] == "task"
    failing = _clone(si, env, f"fault-{uuid.uuid4().hex[:8]}")
    assert _task_states(si, failing)[-1] == "error"
    assert isinstance(failing.info.error, vim.fault.TaskInProgress)
    ok = _clone(si, env, f"fault-{uuid.uuid4().hex[:8]}")
    assert _task_states(si, ok)[-1] == "success"
    assert [r["count"] for r in control.list_faults()] == [1]


def test_call_fault_fails_the_call(
    si: Any, env: dict[str, str], control: vcsim.VcsimControl
) -> None:
    vm = _new_vm(si, env)
    control.add_fault(
        "PowerOffVM_Task", "HostCommunication", moref=vm._moId, mode="call", max_count=2
    )
    for _ in range(2):
        with pytest.raises(vmodl.fault.HostCommunication):
            vm.PowerOffVM_Task()
    assert _task_states(si, vm.PowerOffVM_Task())[-1] == "success"
    assert control.list_faults()[0]["count"] == 2


def test_unknown_fault_and_vm_are_refused(control: vcsim.VcsimControl) -> None:
    with pytest.raises(vcsim.VcsimControlError, match="unknown fault") as bad:
        control.add_fault("CloneVM_Task", "NoSuchFault")
    assert bad.value.status == 400
    with pytest.raises(vcsim.VcsimControlError) as missing:
        control.set_guest("vm-999999", ipAddress="10.0.0.1")
    assert missing.value.status == 404


def test_task_delay_keeps_clone_running(
    si: Any, env: dict[str, str], control: vcsim.VcsimControl
) -> None:
    control.set_delays(CloneVm=1500)
    states = _task_states(si, _clone(si, env, f"slow-{uuid.uuid4().hex[:8]}"))
    assert states[0] == "running"
    assert states[-1] == "success"


# ---------------------------------------------------------------------------------------- sessions
def test_invalidated_session_gets_not_authenticated(
    env: dict[str, str], control: vcsim.VcsimControl
) -> None:
    conn = _connect(env)
    assert conn.content.rootFolder.childEntity  # a property read works while logged in
    assert control.invalidate_sessions() >= 1
    with pytest.raises(vim.fault.NotAuthenticated):
        conn.content.rootFolder.childEntity  # noqa: B018 (the read is the test)
    with pytest.raises(vim.fault.NotAuthenticated):
        conn.content.sessionManager.currentSession  # noqa: B018
    again = _connect(env)  # a new login works
    assert again.content.sessionManager.currentSession.userName == env["GOVC_USERNAME"]
    Disconnect(again)


def test_session_timeout_expires_idle_sessions(
    env: dict[str, str], control: vcsim.VcsimControl
) -> None:
    control.set_session_timeout(0.5)
    assert control.session_timeout() == "500ms"
    conn = _connect(env)
    time.sleep(1.2)  # the idle time is what is under test
    with pytest.raises(vim.fault.NotAuthenticated):
        conn.content.rootFolder.childEntity  # noqa: B018


# ------------------------------------------------------------------------------------------- guest
def test_set_guest_is_seen_by_a_listener(
    si: Any, env: dict[str, str], control: vcsim.VcsimControl
) -> None:
    vm = _new_vm(si, env)
    listener = _connect(env)
    pc = listener.content.propertyCollector
    lvm = vim.VirtualMachine(vm._moId, listener._stub)
    paths = [
        "guest.toolsRunningStatus",
        "guest.toolsVersion",
        "guest.ipAddress",
        "guest.net",
        "summary.guest.ipAddress",
    ]
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=lvm)],
        propSet=[
            vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=paths)
        ],
    )
    pc.CreateFilter(spec, True)
    first = pc.WaitForUpdatesEx("", vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=10))
    seen: dict[str, Any] = {}

    def listen() -> None:
        update = pc.WaitForUpdatesEx(
            first.version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=20)
        )
        for fs in update.filterSet if update else []:
            for obj in fs.objectSet:
                seen.update({c.name: c.val for c in obj.changeSet})

    thread = threading.Thread(target=listen)
    thread.start()
    control.set_guest(
        vm._moId,
        toolsRunningStatus="guestToolsRunning",
        toolsVersion=vcsim.encode_tools_version("12.1.5"),
        ipAddress="127.77.0.9",
    )
    thread.join(timeout=30)
    Disconnect(listener)
    assert seen["guest.toolsRunningStatus"] == "guestToolsRunning"
    assert seen["guest.toolsVersion"] == "12325"
    assert seen["guest.ipAddress"] == "127.77.0.9"
    assert seen["summary.guest.ipAddress"] == "127.77.0.9"
    assert list(seen["guest.net"][0].ipAddress) == ["127.77.0.9"]
    assert vm.guest.toolsStatus == "toolsOk"  # derived, as vCenter does

    control.set_guest(vm._moId, ipAddress="")
    assert not vm.guest.ipAddress
    assert not vm.guest.net[0].ipAddress


def test_guest_shutdown_powers_off_without_a_task(
    si: Any, env: dict[str, str], control: vcsim.VcsimControl
) -> None:
    vm = _new_vm(si, env)
    control.set_guest(vm._moId, toolsRunningStatus="guestToolsRunning", ipAddress="127.77.0.10")
    tasks_before = {t._moId for t in vm.recentTask}
    collector = si.content.eventManager.CreateCollectorForEvents(
        vim.event.EventFilterSpec(
            entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self")
        )
    )
    control.guest_shutdown(vm._moId)
    assert vm.runtime.powerState == "poweredOff"
    assert vm.guest.toolsRunningStatus == "guestToolsNotRunning"
    assert not vm.guest.ipAddress
    assert {t._moId for t in vm.recentTask} == tasks_before
    events = collector.ReadNextEvents(100)
    collector.DestroyCollector()
    powered_off: list[Any] = [e for e in events if isinstance(e, vim.event.VmPoweredOffEvent)]
    assert len(powered_off) == 1
    assert powered_off[0].vm.vm._moId == vm._moId
    assert vm.name in powered_off[0].fullFormattedMessage

    with pytest.raises(vcsim.VcsimControlError) as again:
        control.guest_shutdown(vm._moId)
    assert again.value.status == 409


# ------------------------------------------------------------------------------------- component
def test_second_start_is_idempotent(lab: cli.LabContext, env: dict[str, str]) -> None:
    pid = read_pid(lab.paths, vcsim.NAME)
    assert vcsim.start(lab) == {k: env[k] for k in vcsim.start(lab)}
    assert read_pid(lab.paths, vcsim.NAME) == pid
    assert vcsim.status(lab).startswith("running")


def test_lab_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "lab", "up"],
            cwd=REPO_ROOT,
            env=os.environ
            | {
                "WINNODES_LAB_DIR": str(tmp_path / "lab"),
                "LAB_COMPONENTS": "vcsim",
                "LAB_VCSIM_PORT": str(port),
                "LAB_VCSIM_CONTROL_PORT": str(_free_port()),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 2
    assert f"port 127.0.0.1:{port} is already in use" in run.stderr
    assert "LAB_VCSIM_PORT" in run.stderr
