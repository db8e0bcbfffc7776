"""Pure parts of the vSphere adapter: TLS pinning logic, Tools version, IPv4 choice, identity,
retention, the CreateVM spec, server parsing."""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyVmomi import vim

from winnodes import errors
from winnodes.vsphere import inventory, vms
from winnodes.vsphere.session import VSphereSession, parse_server
from winnodes.vsphere.tls import (
    TlsTrust,
    check_thumbprint,
    normalize_thumbprint,
    ssl_context,
)
from winnodes.vsphere.tools import MINIMUM_TOOLS, ToolsVersion, decode_tools_version
from winnodes.vsphere.waits import is_valid_ipv4, pick_ipv4


@pytest.fixture(scope="module")
def cert() -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vc.test")])
    now = dt.datetime.now(dt.UTC)
    c = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return c.public_bytes(serialization.Encoding.DER), c.public_bytes(
        serialization.Encoding.PEM
    ).decode()


# -- TLS -------------------------------------------------------------------------------------------
def _colons(h: str) -> str:
    return ":".join(h[i : i + 2] for i in range(0, len(h), 2)).upper()


def test_thumbprint_forms_are_normalized() -> None:
    h = "ab" * 20
    assert normalize_thumbprint(_colons(h)) == h
    assert normalize_thumbprint(" " + h.upper() + " ") == h
    for bad in ("ab" * 19, "zz" * 20, "ab" * 32 + "a", ""):
        with pytest.raises(errors.ConfigError):
            normalize_thumbprint(bad)


@pytest.mark.parametrize("algo", [hashlib.sha1, hashlib.sha256])
def test_pinned_thumbprint_matches(cert: tuple[bytes, str], algo: object) -> None:
    der, _ = cert
    digest = algo(der).hexdigest()  # type: ignore[operator]
    check_thumbprint(der, digest)
    check_thumbprint(der, _colons(digest))


def test_wrong_thumbprint_is_a_permanent_conflict(cert: tuple[bytes, str]) -> None:
    der, _ = cert
    wrong = hashlib.sha256(der + b"x").hexdigest()
    with pytest.raises(errors.Conflict) as info:
        check_thumbprint(der, wrong)
    assert not info.value.transient
    assert _colons(wrong) in str(info.value)


def test_one_trust_option_at_most() -> None:
    with pytest.raises(errors.ConfigError):
        TlsTrust(ca_bundle="x", insecure=True)
    with pytest.raises(errors.ConfigError):
        TlsTrust(thumbprint="ab" * 20, ca_bundle="x")
    with pytest.raises(errors.ConfigError):
        TlsTrust(thumbprint="not-hex")
    assert TlsTrust().insecure is False


def test_ca_bundle_as_text_or_path(cert: tuple[bytes, str], tmp_path: Path) -> None:
    _, pem = cert
    ctx = ssl_context(TlsTrust(ca_bundle=pem), "vc.test", 443)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    f = tmp_path / "ca.pem"
    f.write_text(pem)
    assert ssl_context(TlsTrust(ca_bundle=str(f)), "vc.test", 443).verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(errors.ConfigError):
        ssl_context(TlsTrust(ca_bundle=str(tmp_path / "missing.pem")), "vc.test", 443)


def test_default_trust_verifies_and_insecure_does_not() -> None:
    assert ssl_context(TlsTrust(), "vc.test", 443).verify_mode == ssl.CERT_REQUIRED
    ctx = ssl_context(TlsTrust(insecure=True), "vc.test", 443)
    assert ctx.verify_mode == ssl.CERT_NONE


# -- Tools version ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (11270, ToolsVersion(11, 0, 6)),
        ("11270", ToolsVersion(11, 0, 6)),
        ("12325", ToolsVersion(12, 1, 5)),
        ("10346", ToolsVersion(10, 3, 10)),
        (0, None),
        ("", None),
        (None, None),
        (2147483647, None),
    ],
)
def test_tools_version_decoding(raw: int | str | None, expected: ToolsVersion | None) -> None:
    assert decode_tools_version(raw) == expected


def test_tools_minimum_comparison() -> None:
    assert decode_tools_version(11270) == MINIMUM_TOOLS
    assert decode_tools_version(11269) < MINIMUM_TOOLS  # type: ignore[operator]
    assert decode_tools_version(12325) > MINIMUM_TOOLS  # type: ignore[operator]
    assert str(MINIMUM_TOOLS) == "11.0.6"
    with pytest.raises(ValueError):
        decode_tools_version("eleven")


# -- IPv4 choice -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ip", "ok"),
    [
        ("10.0.0.5", True),
        ("127.81.0.3", True),  # the lab's guests
        ("169.254.10.20", False),  # APIPA
        ("0.0.0.0", False),
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("fe80::1", False),
        ("2001:db8::1", False),
        ("", False),
        (None, False),
    ],
)
def test_valid_ipv4(ip: object, ok: bool) -> None:
    assert is_valid_ipv4(ip) is ok


def test_pick_ipv4_skips_apipa_and_ipv6() -> None:
    nics = [
        SimpleNamespace(ipAddress=["fe80::1", "169.254.3.4"]),
        SimpleNamespace(ipAddress=["2001:db8::5", "192.168.1.20"]),
    ]
    assert pick_ipv4("169.254.3.4", nics) == "192.168.1.20"
    assert pick_ipv4("10.1.1.1", nics) == "10.1.1.1"
    assert pick_ipv4(None, []) is None


# -- identity and retention ------------------------------------------------------------------------
def test_build_identity_from_extra_config() -> None:
    opts = [SimpleNamespace(key="a", value="1"), vms.build_option("20260101")]
    assert vms.build_of(opts) == "20260101"
    assert vms.build_of([SimpleNamespace(key="a", value="1")]) is None
    assert vms.build_of(None) is None


def test_retention_keeps_the_newest() -> None:
    ts = [
        vms.TemplateInfo(None, f"win-{i}", str(i), dt.datetime(2026, 1, i, tzinfo=dt.UTC))
        for i in range(1, 6)
    ]
    assert [t.name for t in vms.templates_to_delete(ts, 3)] == ["win-1", "win-2"]
    assert vms.templates_to_delete(ts, 10) == []


# -- CreateVM spec ---------------------------------------------------------------------------------
def _placement(network: inventory.Network | None) -> vms.Placement:
    return vms.Placement(None, "dc1", None, None, "ds1", network)


def test_config_spec_devices() -> None:
    spec = vms.VmSpec(
        name="win-base",
        guest_id="windows2019srvNext_64Guest",
        hardware_version="vmx-19",
        firmware="efi",
        num_cpus=4,
        memory_mib=8192,
        disk_gib=100,
        isos=("[ds1] iso/win.iso", "[ds1] iso/tools.iso", "[ds1] iso/answers.iso"),
    )
    cs = vms.config_spec(spec, _placement(inventory.Network(None, "VM Network")), "b1")
    assert (cs.version, cs.firmware, cs.numCPUs, cs.memoryMB) == ("vmx-19", "efi", 4, 8192)
    assert vms.build_of(cs.extraConfig) == "b1"
    devices: list[Any] = [c.device for c in cs.deviceChange]
    cds: list[Any] = [d for d in devices if isinstance(d, vim.vm.device.VirtualCdrom)]
    assert [d.backing.fileName for d in cds] == list(spec.isos)
    assert [d.unitNumber for d in cds] == [0, 1, 2]
    disk = next(d for d in devices if isinstance(d, vim.vm.device.VirtualDisk))
    assert disk.capacityInKB == 100 * 1024 * 1024
    assert all(d.key < 0 for d in devices)
    nic: Any = next(d for d in devices if isinstance(d, vim.vm.device.VirtualVmxnet3))
    assert nic.backing.deviceName == "VM Network"


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("pvscsi", vim.vm.device.ParaVirtualSCSIController),
        ("lsilogic-sas", vim.vm.device.VirtualLsiLogicSASController),
    ],
)
def test_config_spec_disk_controller(kind: Any, cls: type) -> None:
    spec = vms.VmSpec(name="w", guest_id="g", disk_controller=kind)
    cs = vms.config_spec(spec, _placement(inventory.Network(None, "VM Network")), "b1")
    devices: list[Any] = [c.device for c in cs.deviceChange]
    disk = next(d for d in devices if isinstance(d, vim.vm.device.VirtualDisk))
    ctrl = next(d for d in devices if d.key == disk.controllerKey)
    assert isinstance(ctrl, cls)


def test_boot_key_is_the_spacebar_as_govc_encodes_it() -> None:
    assert vms.usb_scan_code(vms.HID_SPACEBAR) == 0x2C0007
    spec = vms.key_spec()
    assert [e.usbHidCode for e in spec.keyEvents] == [0x2C0007]


def test_distributed_port_group_backing() -> None:
    net = inventory.Network(None, "pg", portgroup_key="dvportgroup-9", switch_uuid="50 2a")
    backing = vms.nic_backing(net)
    assert isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo)
    assert backing.port.portgroupKey == "dvportgroup-9"
    assert backing.port.switchUuid == "50 2a"


def test_create_needs_a_network() -> None:
    with pytest.raises(errors.ConfigError):
        vms.config_spec(vms.VmSpec(name="x", guest_id="g"), _placement(None), "b1")


# -- small parsers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("vc.example.com", ("vc.example.com", 443)),
        ("vc:8443", ("vc", 8443)),
        ("https://vc.example.com/sdk", ("vc.example.com", 443)),
        ("127.0.0.1:19989", ("127.0.0.1", 19989)),
        ("[::1]:443", ("::1", 443)),
    ],
)
def test_parse_server(server: str, expected: tuple[str, int]) -> None:
    assert parse_server(server) == expected


def test_parse_server_rejects_bad_ports() -> None:
    with pytest.raises(errors.ConfigError):
        parse_server("vc:99999")


def test_datastore_paths() -> None:
    assert inventory.split_ds_path("[LocalDS_0] iso/win.iso") == ("LocalDS_0", "iso/win.iso")
    assert inventory.split_ds_path("[ds 1]  /a/b") == ("ds 1", "a/b")
    with pytest.raises(errors.ConfigError):
        inventory.split_ds_path("iso/win.iso")


def test_session_repr_has_no_password() -> None:
    s = VSphereSession("vc", "admin", "S3cret-Passw0rd!")
    assert "S3cret" not in repr(s) and "S3cret" not in str(s)
    assert "S3cret" not in repr(vars(s))  # name-mangled attribute, but still: check the dict


# -- M9 workspace.server names the vCenter -----------------------------------------------------------
@pytest.mark.parametrize(
    ("server", "ok"),
    [
        ("vc.example.com", True),
        ("VC.Example.com", True),
        ("vc.example.com:443", True),
        ("vc-alias.example.com", True),  # another name of the same vCenter
        ("vc.example.com:8443", False),
        ("other-vc.example.com", False),
        ("", False),
    ],
)
def test_workspace_server_must_be_the_checked_vcenter(server: str, ok: bool) -> None:
    from winnodes.vsphere.machineset_checks import server_problems

    addresses = {
        "vc.example.com": {"10.0.0.5"},
        "vc-alias.example.com": {"10.0.0.5"},
        "other-vc.example.com": {"10.0.0.9"},
    }
    problems = server_problems(server, "vc.example.com", 443, lambda h: addresses.get(h, set()))
    assert (problems == []) is ok
    for p in problems:
        assert p.step_id == "M9" and p.field == "machineset.workspace.server"
        assert "(M9)" in p.message


def test_boot_key_missing_only_for_a_known_boot_without_a_recorded_key() -> None:
    """G1 resets a running base VM whose Windows never ran only when vCenter gives its boot time
    and no EFI boot key was recorded for that boot (tasks.vsphere._start_setup)."""
    boot = "2026-12-08T01:00:00+00:00"
    assert vms.boot_key_missing(boot, None)  # nobody pressed the key since this power-on
    assert vms.boot_key_missing(boot, "2026-12-08T00:50:00+00:00")  # a key of an earlier boot
    assert not vms.boot_key_missing(boot, boot)  # this boot got the key: setup may be running
    assert not vms.boot_key_missing("", None)  # boot time unknown: left alone
