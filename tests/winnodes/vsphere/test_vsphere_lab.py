"""The vSphere adapter against the lab's vCenter (vcsim-lab over HTTPS with a lab CA).

What is checked here is what a unit test cannot see: TLS trust as the server presents it, real
faults and their mapping, idempotency against real inventory state, event-driven waits fed by the
guest twin and the control endpoint, re-login after the server dropped the session.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from lab.pipeline import placement as lab_placement
from lab.vcsim import VcsimControl
from tests.winnodes.vsphere.lab_support import small_lab
from winnodes import errors
from winnodes.vsphere import TlsTrust, VSphereSession, connect, inventory, vms, waits
from winnodes.vsphere.tls import certificate_thumbprint, fetch_certificate
from winnodes.vsphere.tools import ToolsVersion

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from small_lab(tmp_path_factory.mktemp("lab-vsphere"))


@pytest.fixture(scope="module")
def control(env: dict[str, str]) -> VcsimControl:
    return VcsimControl.from_env(env)


def _connect(
    env: dict[str, str], trust: TlsTrust | None = None, password: str | None = None
) -> Any:
    return connect(
        env["LAB_VSPHERE_SERVER"],
        env["LAB_VSPHERE_USERNAME"],
        env["LAB_VSPHERE_PASSWORD"] if password is None else password,
        trust=trust or TlsTrust(ca_bundle=env["LAB_VSPHERE_CA_FILE"]),
    )


@pytest.fixture
def session(env: dict[str, str]) -> Iterator[VSphereSession]:
    with _connect(env) as s:
        yield s


@pytest.fixture
def placement(session: VSphereSession, env: dict[str, str]) -> vms.Placement:
    return vms.resolve_placement(
        session,
        **lab_placement(env),
    )


def _name(prefix: str) -> str:
    return f"h-{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def made(session: VSphereSession) -> Iterator[list[Any]]:
    """VMs a test made; destroyed afterwards."""
    objs: list[Any] = []
    yield objs
    for obj in objs:
        vms.destroy(session, obj)


def _plain_vm(session: VSphereSession, placement: vms.Placement, made: list[Any]) -> vms.VmRef:
    """A VM with no installation media: the guest twin leaves it alone (no Windows to boot)."""
    ref = vms.create_vm(
        session, placement, vms.VmSpec(name=_name("plain"), guest_id="otherGuest64"), build_id="t"
    )
    made.append(ref.obj)
    return ref


# -- connection and TLS ------------------------------------------------------------------------------
def _session_keys(session: VSphereSession) -> set[str]:
    mgr = session.content.sessionManager
    return {s.key for s in inventory.properties(session, mgr, ["sessionList"])["sessionList"] or []}


def test_ca_bundle_as_file_or_text_and_logout(env: dict[str, str], session: VSphereSession) -> None:
    pem = Path(env["LAB_VSPHERE_CA_FILE"]).read_text()
    with _connect(env, TlsTrust(ca_bundle=pem)) as s:
        key = s.session_key
        assert key in _session_keys(session)
    assert key not in _session_keys(session)  # logged out when the block ended


def test_pinned_thumbprints(env: dict[str, str]) -> None:
    host, port = env["LAB_VSPHERE_SERVER"].rsplit(":", 1)
    sha256 = certificate_thumbprint(fetch_certificate(host, int(port)))
    for pin in (env["LAB_VSPHERE_THUMBPRINT"], sha256):
        with _connect(env, TlsTrust(thumbprint=pin)) as s:
            assert s.session_key


def test_wrong_thumbprint_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(errors.Conflict) as info, _connect(env, TlsTrust(thumbprint="ab" * 32)):
        pass
    assert not info.value.transient and "thumbprint" in str(info.value)


def test_untrusted_certificate_is_refused(env: dict[str, str]) -> None:
    # The system CA store does not know the lab CA: verification must fail, not fall back.
    with pytest.raises(errors.Conflict, match="not trusted"), _connect(env, TlsTrust()):
        pass


def test_wrong_password_is_permanent(env: dict[str, str]) -> None:
    with pytest.raises(errors.AuthenticationError) as info, _connect(env, password="wrong-pass"):
        pass
    assert not info.value.transient
    assert "wrong-pass" not in str(info.value)


def test_session_invalidated_on_the_server_logs_in_again(
    session: VSphereSession, control: VcsimControl, env: dict[str, str]
) -> None:
    before = session.session_key
    assert control.invalidate_sessions() >= 1
    assert inventory.datacenter(session, env["LAB_VSPHERE_DATACENTER"])  # works again
    assert session.relogins == 1
    assert session.session_key != before


# -- lookups -----------------------------------------------------------------------------------------
def test_lookups(session: VSphereSession, env: dict[str, str], placement: vms.Placement) -> None:
    dc = inventory.datacenter(session, env["LAB_VSPHERE_DATACENTER"])
    assert isinstance(dc, vim.Datacenter)
    pool = inventory.resource_pool(session, env["LAB_VSPHERE_RESOURCE_POOL"])
    assert pool == placement.pool == inventory.cluster_pool(session, dc, env["LAB_VSPHERE_CLUSTER"])
    assert isinstance(inventory.datastore(session, dc, env["LAB_VSPHERE_DATASTORE"]), vim.Datastore)
    assert placement.network is not None and not placement.network.distributed
    template = env["LAB_VSPHERE_TEMPLATE"]
    by_name = inventory.vm(session, template, ["config.template"])
    by_path = inventory.vm(session, f"{env['LAB_VSPHERE_FOLDER']}/{template}")
    assert by_name.obj == by_path.obj and by_name.props["config.template"] is True
    with pytest.raises(errors.NotFound):
        inventory.vm(session, "no-such-vm")
    with pytest.raises(errors.NotFound):
        inventory.folder(session, "/DC0/vm/no-such-folder")
    with pytest.raises(errors.NotFound):
        inventory.network(session, dc, "no-such-network")
    with pytest.raises(errors.Conflict):  # a datacenter is not a folder
        inventory.folder(session, "/DC0")


def test_two_vms_with_one_name_are_ambiguous(
    session: VSphereSession, placement: vms.Placement, env: dict[str, str], made: list[Any]
) -> None:
    name = _name("twin")
    source = inventory.vm(session, env["LAB_VSPHERE_TEMPLATE"]).obj
    folders = [placement.folder.CreateFolder(_name("f")) for _ in range(2)]
    try:
        for f in folders:
            ref = vms.clone_vm(session, source, name, folder=f, pool=placement.pool, build_id="t")
            made.append(ref.obj)
        with pytest.raises(errors.Conflict, match="ambiguous"):
            inventory.vm(session, name)
        assert vms.find_vm(session, folders[0], name) is not None  # unique within its folder
    finally:
        for obj in list(made):
            vms.destroy(session, obj)
        made.clear()
        for f in folders:
            waits.wait_for_task(session, f.Destroy_Task())


def test_upload_makes_its_directory_once(session: VSphereSession, env: dict[str, str]) -> None:
    """The lab's datastore, like a real one, answers 404 to a PUT into a missing directory:
    upload_file makes the directory first (MakeDirectory), and a second run finds it there."""
    d = f"h-tests/{_name('dir')}/answers"
    path = f"[{env['LAB_VSPHERE_DATASTORE']}] {d}/a.iso"
    assert vms.upload_file(session, env["LAB_VSPHERE_DATACENTER"], path, b"x") == path
    assert inventory.datastore_file_exists(session, path)
    ds_dir = f"[{env['LAB_VSPHERE_DATASTORE']}] {d}"
    assert vms.make_directory(session, env["LAB_VSPHERE_DATACENTER"], ds_dir) is False  # exists
    assert vms.upload_file(session, env["LAB_VSPHERE_DATACENTER"], path, b"y") == path  # again


def test_upload_and_datastore_file_exists(session: VSphereSession, env: dict[str, str]) -> None:
    path = f"[{env['LAB_VSPHERE_DATASTORE']}] h-tests/{_name('up')}.txt"
    assert not inventory.datastore_file_exists(session, path)
    assert vms.upload_file(session, env["LAB_VSPHERE_DATACENTER"], path, b"x" * 1000) == path
    assert vms.upload_file(session, env["LAB_VSPHERE_DATACENTER"], path, b"y") == path  # again
    assert inventory.datastore_file_exists(session, path)
    assert inventory.datastore_file_exists(session, env["LAB_WINDOWS_ISO_CURRENT"])
    assert not inventory.datastore_file_exists(session, "[LocalDS_0] no-dir/none.iso")


# -- create, clone, template ------------------------------------------------------------------------
def test_create_vm_with_cdroms_is_idempotent(
    session: VSphereSession, placement: vms.Placement, env: dict[str, str], made: list[Any]
) -> None:
    spec = vms.VmSpec(
        name=_name("base"),
        guest_id="windows2019srvNext_64Guest",
        hardware_version="vmx-19",
        num_cpus=2,
        memory_mib=4096,
        disk_gib=40,
        isos=(env["LAB_WINDOWS_ISO_CURRENT"], env["LAB_TOOLS_ISO"]),
    )
    tasks: list[str] = []
    first = vms.create_vm(session, placement, spec, build_id="b1", on_task=tasks.append)
    made.append(first.obj)
    assert first.created and first.build_id == "b1" and first.hardware_version == "vmx-19"
    assert len(tasks) == 1 and tasks[0].startswith("task-")
    again = vms.create_vm(session, placement, spec, build_id="b1", on_task=tasks.append)
    assert not again.created and again.moid == first.moid and len(tasks) == 1
    with pytest.raises(errors.Conflict, match="belongs to build b1"):
        vms.create_vm(session, placement, spec, build_id="b2")
    props = inventory.properties(
        session, first.obj, ["config.hardware.device", "config.firmware", "config.guestId"]
    )
    devices: list[Any] = props["config.hardware.device"]
    cds: list[Any] = [d for d in devices if isinstance(d, vim.vm.device.VirtualCdrom)]
    assert [d.backing.fileName for d in cds] == list(spec.isos)
    assert props["config.firmware"] == "efi"
    nics: list[Any] = [d for d in devices if isinstance(d, vim.vm.device.VirtualVmxnet3)]
    assert len(nics) == 1 and nics[0].backing.deviceName == env["LAB_VSPHERE_NETWORK"]


def test_press_boot_key_waits_for_power_on_and_reaches_the_vm(
    session: VSphereSession, placement: vms.Placement, env: dict[str, str], made: list[Any]
) -> None:
    from lab.vcsim import VcsimControl

    vm = _plain_vm(session, placement, made)
    with pytest.raises(errors.WaitTimeout):  # powered off: no keyboard until it runs
        vms.press_boot_key(session, vm.obj, presses=1, interval=0, timeout=1)
    vms.power_on(session, vm.obj)
    assert vms.press_boot_key(session, vm.obj, presses=3, interval=0.05) == 3
    keys = VcsimControl(env["LAB_VCSIM_CONTROL_URL"]).keys(vm.moid)
    assert [k["usb_hid_code"] for k in keys] == [vms.usb_scan_code(vms.HID_SPACEBAR)] * 3


def test_clone_is_idempotent_per_build_and_template_life_cycle(
    session: VSphereSession, placement: vms.Placement, made: list[Any]
) -> None:
    base = _plain_vm(session, placement, made)
    series = _name("series")
    name = f"{series}-001"
    first = vms.clone_vm(
        session, base.obj, name, folder=placement.folder, pool=placement.pool, build_id="b1"
    )
    made.append(first.obj)
    again = vms.clone_vm(
        session, base.obj, name, folder=placement.folder, pool=placement.pool, build_id="b1"
    )
    assert first.created and not again.created and again.moid == first.moid
    with pytest.raises(errors.Conflict):
        vms.clone_vm(
            session, base.obj, name, folder=placement.folder, pool=placement.pool, build_id="b2"
        )
    assert vms.set_annotation(session, first.obj, "profile: current")
    assert not vms.set_annotation(session, first.obj, "profile: current")
    assert vms.get_vm(session, first.obj).build_id == "b1"  # the identity is not the annotation
    tpl = vms.mark_as_template(session, first.obj)
    assert tpl.template and vms.mark_as_template(session, first.obj).template
    older = vms.clone_vm(
        session,
        base.obj,
        f"{series}-000",
        folder=placement.folder,
        pool=placement.pool,
        build_id="b0",
        template=True,
    )
    made.append(older.obj)
    listed = vms.list_templates(session, placement.folder, series)
    assert {t.name for t in listed} == {f"{series}-000", name}
    assert {t.build_id for t in listed} == {"b0", "b1"}


def test_powered_on_vm_is_not_made_a_template(
    session: VSphereSession, placement: vms.Placement, made: list[Any]
) -> None:
    vm = _plain_vm(session, placement, made)
    assert vms.power_on(session, vm.obj) and not vms.power_on(session, vm.obj)
    with pytest.raises(errors.PermanentError, match="powered-off"):
        vms.mark_as_template(session, vm.obj)


def test_custom_attributes_are_created_and_converge(
    session: VSphereSession, placement: vms.Placement, made: list[Any]
) -> None:
    vm = _plain_vm(session, placement, made)
    field = f"winnodes.test-{uuid.uuid4().hex[:4]}"
    values = {field: "b1", "winnodes.profile": "current"}
    assert vms.set_custom_attributes(session, vm.obj, values) == values
    assert vms.set_custom_attributes(session, vm.obj, values) == {}
    assert vms.custom_attributes(session, vm.obj).items() >= values.items()
    assert vms.set_custom_attributes(session, vm.obj, {field: "b2"}) == {field: "b2"}


def test_destroy_is_idempotent(session: VSphereSession, placement: vms.Placement) -> None:
    vm = _plain_vm(session, placement, [])
    vms.power_on(session, vm.obj)
    assert vms.destroy(session, vm.obj)
    assert not vms.destroy(session, vm.obj)


# -- waits ---------------------------------------------------------------------------------------------
def test_wait_for_ip_skips_apipa(
    session: VSphereSession, placement: vms.Placement, control: VcsimControl, made: list[Any]
) -> None:
    vm = _plain_vm(session, placement, made)
    vms.power_on(session, vm.obj)
    control.set_guest(vm.moid, toolsRunningStatus="guestToolsRunning", ipAddress="169.254.7.7")
    with pytest.raises(errors.WaitTimeout) as info:
        waits.wait_for_guest_ip(session, vm.obj, timeout=2)
    assert info.value.step_id == "G3b" and "169.254.7.7" in str(info.value)
    control.set_guest(vm.moid, ipAddress="10.20.30.40", toolsVersion="12325")
    got = waits.wait_for_guest_ip(session, vm.obj, timeout=30)
    assert got.ip == "10.20.30.40" and got.tools_version == ToolsVersion(12, 1, 5)


def test_a_restart_over_before_the_wait_is_still_seen(
    session: VSphereSession, placement: vms.Placement, control: VcsimControl, made: list[Any]
) -> None:
    """A guest whose Tools stop and start again before anyone waits: a wait for "not running"
    begun afterwards never ends (the hang seen with fast restarts); a watch started before the
    restart sees it."""
    vm = _plain_vm(session, placement, made)
    vms.power_on(session, vm.obj)
    control.set_guest(vm.moid, toolsRunningStatus="guestToolsRunning", ipAddress="10.20.30.41")

    def quick_restart() -> None:
        control.set_guest(vm.moid, toolsRunningStatus="guestToolsNotRunning")
        control.set_guest(vm.moid, toolsRunningStatus="guestToolsRunning")

    quick_restart()
    with pytest.raises(errors.WaitTimeout):  # the old way: wait after the fact
        waits.wait_for(
            session,
            vm.obj,
            ["guest.toolsRunningStatus"],
            lambda v: v["guest.toolsRunningStatus"] != "guestToolsRunning",
            timeout=2,
            what="the guest going down",
        )
    seen = waits.watch_for_change(
        session, vm.obj, "guest.toolsRunningStatus", trigger=quick_restart, timeout=10
    )
    assert "guest.toolsRunningStatus" in seen
    with pytest.raises(errors.WaitTimeout):  # nothing happens: no change reported
        waits.watch_for_change(
            session, vm.obj, "guest.toolsRunningStatus", trigger=lambda: None, timeout=2
        )


def test_wait_for_power_off_sees_the_guest_shut_down(
    session: VSphereSession, placement: vms.Placement, control: VcsimControl, made: list[Any]
) -> None:
    vm = _plain_vm(session, placement, made)
    vms.power_on(session, vm.obj)
    with pytest.raises(errors.WaitTimeout):
        waits.wait_for_power_off(session, vm.obj, timeout=1)
    shutdown = threading.Thread(target=control.guest_shutdown, args=(vm.moid,))
    shutdown.start()
    waits.wait_for_power_off(session, vm.obj, timeout=30)
    shutdown.join()
    assert vms.get_vm(session, vm.obj).power_state == "poweredOff"


# -- faults and resumed tasks ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "fault", "expected"),
    [
        ("CloneVM_Task", "TaskInProgress", errors.VCenterBusy),
        ("CloneVM_Task", "HostCommunication", errors.VCenterBusy),
        ("CloneVM_Task", "InsufficientResourcesFault", errors.PermanentError),
    ],
)
def test_injected_clone_faults_map_by_type(
    session: VSphereSession,
    placement: vms.Placement,
    control: VcsimControl,
    made: list[Any],
    method: str,
    fault: str,
    expected: type,
) -> None:
    base = _plain_vm(session, placement, made)
    name = _name("faulty")
    control.add_fault(method=method, fault=fault, moref=base.moid, max_count=1)
    try:
        with pytest.raises(expected) as info:
            vms.clone_vm(
                session, base.obj, name, folder=placement.folder, pool=placement.pool, build_id="b"
            )
        err: Any = info.value
        assert err.step_id == "G8"
        assert type(err) is expected
    finally:
        control.clear_faults()
    # The retry (what Prefect does for a transient error) creates exactly one clone.
    ref = vms.clone_vm(
        session, base.obj, name, folder=placement.folder, pool=placement.pool, build_id="b"
    )
    made.append(ref.obj)
    assert ref.created


def test_call_fault_on_a_read_is_mapped(
    session: VSphereSession, control: VcsimControl, env: dict[str, str]
) -> None:
    control.add_fault(method="RetrievePropertiesEx", fault="SystemError", max_count=1, mode="call")
    try:
        with pytest.raises(errors.ApiUnavailable):
            inventory.properties(session, session.content.rootFolder, ["childEntity"])
    finally:
        control.clear_faults()


def test_resumed_run_waits_for_the_in_flight_clone(
    session: VSphereSession,
    placement: vms.Placement,
    control: VcsimControl,
    env: dict[str, str],
    made: list[Any],
) -> None:
    base = _plain_vm(session, placement, made)
    name = _name("inflight")
    started: queue.Queue[str] = queue.Queue()
    results: list[vms.VmRef] = []
    control.set_delays(CloneVm=1500)

    def first_run() -> None:
        with _connect(env) as other:
            vm = other.moref("VirtualMachine", base.moid)
            pf = other.moref("Folder", placement.folder._moId)
            pool = other.moref("ResourcePool", placement.pool._moId)
            results.append(
                vms.clone_vm(
                    other, vm, name, folder=pf, pool=pool, build_id="b", on_task=started.put
                )
            )

    runner = threading.Thread(target=first_run)
    runner.start()
    try:
        task_id = started.get(timeout=30)
        assert waits.task_state(session, task_id) in ("queued", "running")
        resumed = vms.clone_vm(
            session,
            base.obj,
            name,
            folder=placement.folder,
            pool=placement.pool,
            build_id="b",
            resume_task=task_id,
            on_task=lambda t: pytest.fail(f"a second clone task {t} was started"),
        )
    finally:
        runner.join()
        control.clear_delays()
    made.append(resumed.obj)
    assert not resumed.created and results[0].created and results[0].moid == resumed.moid
    same_name = [
        f
        for f in inventory.contents(session, placement.folder, vim.VirtualMachine, ["name"])
        if f.props["name"] == name
    ]
    assert len(same_name) == 1


# -- round trips (counted by the lab's vCenter, GET /stats) ----------------------------------------
def _my_calls(control: VcsimControl, session: VSphereSession) -> Callable[[], dict[str, int]]:
    """Start a count; the result reads this session's calls per method since then."""
    key = session.session_key  # read before the count starts
    control.reset_stats()

    def calls() -> dict[str, int]:
        mine = [s for s in control.stats()["sessions"] if s["key"] == key]
        return dict(mine[0]["methods"]) if mine else {}

    return calls


def test_placement_and_lookups_take_one_call_each(
    session: VSphereSession, control: VcsimControl, env: dict[str, str]
) -> None:
    calls = _my_calls(control, session)
    vms.resolve_placement(
        session,
        **lab_placement(env),
    )
    # datacenter, cluster pool, datastore, network, folder: one SearchIndex call each, no views.
    assert calls() == {"FindByInventoryPath": 5}
    folder = inventory.folder(session, env["LAB_VSPHERE_FOLDER"])
    control.reset_stats()
    assert vms.find_vm(session, folder, env["LAB_VSPHERE_TEMPLATE"]) is not None
    assert vms.find_vm(session, folder, "no-such-vm") is None
    assert calls() == {"FindChild": 2, "RetrievePropertiesEx": 1}


def test_waits_reuse_one_collector_and_attributes_read_in_one_call(
    session: VSphereSession,
    control: VcsimControl,
    placement: vms.Placement,
    made: list[Any],
) -> None:
    ref = _plain_vm(session, placement, made)
    calls = _my_calls(control, session)
    vms.power_on(session, ref.obj)
    vms.power_off(session, ref.obj)
    counted = calls()
    assert counted.get("CreatePropertyCollector", 0) <= 1  # the first wait of the session at most
    assert counted["CreateFilter"] == counted["DestroyPropertyFilter"] == 2
    assert "DestroyPropertyCollector" not in counted
    control.reset_stats()
    vms.custom_attributes(session, ref.obj)
    assert calls() == {"RetrievePropertiesEx": 1}


def test_threads_sharing_an_expired_session_log_in_once(
    env: dict[str, str], control: VcsimControl
) -> None:
    """Tasks of a flow run share one session from threads: after an expiry they make one Login."""
    with _connect(env) as shared:
        root = shared.content.rootFolder
        control.reset_stats()
        assert control.invalidate_sessions() >= 1
        errors_seen: list[BaseException] = []

        def read() -> None:
            try:
                for _ in range(3):
                    inventory.properties(shared, root, ["name"])
            except BaseException as exc:  # reported below
                errors_seen.append(exc)

        threads = [threading.Thread(target=read) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors_seen
        assert shared.relogins == 1
        # On the server: the session the threads ended up with was made by one Login and served
        # all 18 reads (the guest twin, whose session was terminated too, logs in on its own).
        stats = control.stats()
        (mine,) = [s for s in stats["sessions"] if s["key"] == shared.session_key]
        assert mine["logins"] == 1
        assert mine["methods"]["RetrievePropertiesEx"] == 18


def test_through_an_http_connect_proxy(env: dict[str, str]) -> None:
    """A site whose workers reach vCenter only through a proxy (VSphereCredentials.https_proxy):
    SOAP, the thumbprint probe and datastore transfers all tunnel through it, TLS still verified."""
    from tests.winnodes.proxy_support import connect_proxy

    server = env["LAB_VSPHERE_SERVER"]
    path = f"[{env['LAB_VSPHERE_DATASTORE']}] {uuid.uuid4().hex[:8]}-proxy.bin"
    for trust in (
        TlsTrust(ca_bundle=env["LAB_VSPHERE_CA_FILE"]),
        TlsTrust(thumbprint=env["LAB_VSPHERE_THUMBPRINT"]),
    ):
        with connect_proxy() as (proxy, seen):
            with connect(
                server,
                env["LAB_VSPHERE_USERNAME"],
                env["LAB_VSPHERE_PASSWORD"],
                trust=trust,
                proxy=proxy,
            ) as s:
                assert s.session_key
                vms.upload_file(s, env["LAB_VSPHERE_DATACENTER"], path, b"through the proxy")
                got = vms.download_file(s, env["LAB_VSPHERE_DATACENTER"], path)
                assert got == b"through the proxy"
            assert seen and set(seen) == {server}
    with (
        connect_proxy(refuse=True) as (proxy, _),
        pytest.raises(errors.WinNodesError),
        connect(
            server,
            env["LAB_VSPHERE_USERNAME"],
            env["LAB_VSPHERE_PASSWORD"],
            trust=TlsTrust(ca_bundle=env["LAB_VSPHERE_CA_FILE"]),
            proxy=proxy,
        ),
    ):
        pass
