"""Table tests: each rule, good and bad values; every message names the field, the rule's point and
the step ID."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from winnodes.errors import Problem
from winnodes.validate import rules as r

Case = tuple[str, Callable[[], list[Problem]], str | None, str | None, tuple[str, ...]]

# (id, call, expected rule or None when fine, step, words the message must contain)
CASES: list[Case] = [
    ("ms-name-ok", lambda: r.check_machineset_name("winworker"), None, None, ()),
    (
        "ms-name-long",
        lambda: r.check_machineset_name("winworker01"),
        "max-length",
        "M2",
        ("'winworker01' is 11 characters", "at most 9", "machineset.name", "(M2)"),
    ),
    (
        "ms-name-upper",
        lambda: r.check_machineset_name("WinW"),
        "dns-1123-label",
        "M2",
        ("DNS-1123",),
    ),
    ("ms-name-dash-end", lambda: r.check_machineset_name("win-"), "dns-1123-label", "M2", ()),
    ("cn-ok", lambda: r.check_computer_name("winhost"), None, None, ()),
    ("cn-15", lambda: r.check_computer_name("a" * 15), None, None, ()),
    (
        "cn-16",
        lambda: r.check_computer_name("a" * 16),
        "max-length",
        "G9",
        ("16 characters", "15", "computer_name"),
    ),
    ("cn-upper", lambda: r.check_computer_name("WINHOST"), "dns-1123-label", "G9", ("Kubernetes",)),
    ("cn-star", lambda: r.check_computer_name("*"), "dns-1123-label", "G9", ()),
    ("cn-underscore", lambda: r.check_computer_name("win_host"), "dns-1123-label", "G9", ()),
    ("cn-digits", lambda: r.check_computer_name("12345"), "not-numeric", "G9", ("digits",)),
    ("hw-15", lambda: r.check_hardware_version("vmx-15"), None, None, ()),
    ("hw-19", lambda: r.check_hardware_version("vmx-19"), None, None, ()),
    (
        "hw-14",
        lambda: r.check_hardware_version("vmx-14"),
        "min-hardware-version",
        "G1",
        ("vmx-15",),
    ),
    ("hw-format", lambda: r.check_hardware_version("15"), "format", "G1", ("vmx-15",)),
    (
        "sizes-ok",
        lambda: r.check_sizes(
            num_cpus=4,
            num_cores_per_socket=2,
            memory_mib=16384,
            disk_gib=128,
            step="M5",
            prefix="ms",
        ),
        None,
        None,
        (),
    ),
    (
        "sizes-sockets",
        lambda: r.check_sizes(
            num_cpus=3,
            num_cores_per_socket=2,
            memory_mib=16384,
            disk_gib=128,
            step="M5",
            prefix="ms",
        ),
        "divides-cpus",
        "M5",
        ("ms.num_cores_per_socket",),
    ),
    (
        "sizes-memory-min",
        lambda: r.check_sizes(
            num_cpus=4,
            num_cores_per_socket=1,
            memory_mib=1024,
            disk_gib=128,
            step="G1",
            prefix="hw",
        ),
        "min-memory",
        "G1",
        ("hw.memory_mib", "1024"),
    ),
    (
        "sizes-memory-4",
        lambda: r.check_sizes(
            num_cpus=4,
            num_cores_per_socket=1,
            memory_mib=4098,
            disk_gib=128,
            step="G1",
            prefix="hw",
        ),
        "multiple-of-4",
        "G1",
        (),
    ),
    (
        "sizes-disk",
        lambda: r.check_sizes(
            num_cpus=4, num_cores_per_socket=1, memory_mib=4096, disk_gib=20, step="M5", prefix="ms"
        ),
        "min-disk",
        "M5",
        ("20 GiB",),
    ),
    (
        "disk-vs-template-ok",
        lambda: r.check_disk_not_smaller_than_template(128, 128),
        None,
        None,
        (),
    ),
    (
        "disk-vs-template",
        lambda: r.check_disk_not_smaller_than_template(64, 128),
        "disk-not-below-template",
        "M5",
        ("never shrink",),
    ),
    ("replicas-0", lambda: r.check_replicas(0), None, None, ()),
    ("replicas-neg", lambda: r.check_replicas(-1), "min", "M5", ("machineset.replicas",)),
    (
        "template-is-base",
        lambda: r.check_template_not_base_vm(
            "golden-images/windows-golden-base", "windows-golden-base"
        ),
        "not-base-vm",
        "M7",
        ("un-sysprepped",),
    ),
    (
        "template-ok",
        lambda: r.check_template_not_base_vm(
            "golden-images/windows-golden-1", "windows-golden-base"
        ),
        None,
        None,
        (),
    ),
    ("folder-ok", lambda: r.check_folder_path("/dc1/vm/infra-x", "dc1", "f", "M9"), None, None, ()),
    ("folder-root", lambda: r.check_folder_path("/dc1/vm", "dc1", "f", "M9"), None, None, ()),
    (
        "folder-other-dc",
        lambda: r.check_folder_path("/dc2/vm/x", "dc1", "machineset.workspace.folder", "M9"),
        "folder-under-datacenter-vm",
        "M9",
        ("/dc1/vm/", "machineset.workspace.folder"),
    ),
    (
        "folder-relative",
        lambda: r.check_folder_path("x", "dc1", "f", "M9"),
        "folder-under-datacenter-vm",
        "M9",
        (),
    ),
    (
        "folder-trailing",
        lambda: r.check_folder_path("/dc1/vm/x/", "dc1", "f", "M9"),
        "folder-under-datacenter-vm",
        "M9",
        (),
    ),
    (
        "folder-vmx",
        lambda: r.check_folder_path("/dc1/vmx", "dc1", "f", "M9"),
        "folder-under-datacenter-vm",
        "M9",
        (),
    ),
    (
        "pool-ok",
        lambda: r.check_resource_pool_path("/dc1/host/c1/Resources", "dc1", "p", "M9"),
        None,
        None,
        (),
    ),
    ("pool-name", lambda: r.check_resource_pool_path("pool1", "dc1", "p", "M9"), None, None, ()),
    (
        "pool-bad",
        lambda: r.check_resource_pool_path("/dc1/vm/x", "dc1", "p", "M9"),
        "resource-pool-under-datacenter-host",
        "M9",
        ("/dc1/host/",),
    ),
    ("iso-ok", lambda: r.check_datastore_path("[ds 1] iso/w.iso", "f"), None, None, ()),
    ("iso-missing", lambda: r.check_datastore_path(None, "f"), "required", "G1", ()),
    (
        "iso-no-brackets",
        lambda: r.check_datastore_path("ds/w.iso", "f"),
        "datastore-path",
        "G1",
        ("[datastore1]",),
    ),
    ("iso-not-iso", lambda: r.check_datastore_path("[ds] w.img", "f"), "datastore-path", "G1", ()),
    ("label-ok", lambda: r.check_dns_label("ocp", "cluster.name"), None, None, ()),
    (
        "label-dot",
        lambda: r.check_dns_label("o.cp", "cluster.name"),
        "dns-label",
        "DNS1",
        ("cluster.name",),
    ),
    ("name-ok", lambda: r.check_dns_name("example.com.", "d"), None, None, ()),
    ("name-bad", lambda: r.check_dns_name("exa_mple.com", "d"), "dns-name", "DNS1", ()),
    ("name-empty-label", lambda: r.check_dns_name("a..b", "d"), "dns-name", "DNS1", ()),
    (
        "zone-ok",
        lambda: r.check_zone_contains("api-int.ocp.example.com", "example.com"),
        None,
        None,
        (),
    ),
    (
        "zone-self",
        lambda: r.check_zone_contains("ocp.example.com", "ocp.example.com."),
        None,
        None,
        (),
    ),
    (
        "zone-other",
        lambda: r.check_zone_contains("api-int.ocp.example.com", "ample.com"),
        "zone-contains-record",
        "DNS1",
        (),
    ),
    ("server-ip", lambda: r.check_server("10.0.0.5"), None, None, ()),
    ("server-fqdn", lambda: r.check_server("vcenter.example.com"), None, None, ()),
    ("server-url", lambda: r.check_server("https://vcenter"), "ip-or-fqdn", "M9", ("https://",)),
    ("pw-ok", lambda: r.check_admin_password("Str0ng!Passw0rd"), None, None, ()),
    ("pw-empty", lambda: r.check_admin_password(""), "not-empty", "G9", ("must not be empty",)),
    ("pw-none", lambda: r.check_admin_password(None), "not-empty", "G9", ()),
    (
        "pw-placeholder",
        lambda: r.check_admin_password("MyPassword"),
        "not-placeholder",
        "G9",
        ("MyPassword",),
    ),
    (
        "pw-placeholder-case",
        lambda: r.check_admin_password(" mypassword "),
        "not-placeholder",
        "G9",
        (),
    ),
    ("pw-weak", lambda: r.check_admin_password("password"), "complexity", "G9", ("complexity",)),
    ("pw-account", lambda: r.check_admin_password("Administrator1!"), "complexity", "G9", ()),
    ("pattern-ok", lambda: r.check_template_pattern("{series}-{build_id}"), None, None, ()),
    (
        "pattern-no-id",
        lambda: r.check_template_pattern("{series}"),
        "placeholders",
        "G10",
        ("{build_id}",),
    ),
    (
        "pattern-unknown",
        lambda: r.check_template_pattern("{series}-{date}-{build_id}"),
        "placeholders",
        "G10",
        (),
    ),
    (
        "vsphere-name-slash",
        lambda: r.check_vsphere_name("a/b", "n", "G1"),
        "no-path-characters",
        "G1",
        (),
    ),
    (
        "vsphere-name-long",
        lambda: r.check_vsphere_name("a" * 81, "n", "G1"),
        "max-length",
        "G1",
        (),
    ),
    (
        "image-2022-ok",
        lambda: r.check_image_name("Windows Server 2022 SERVERSTANDARDCORE", "current"),
        None,
        None,
        (),
    ),
    (
        "image-2025-ok",
        lambda: r.check_image_name("Windows Server 2025 SERVERDATACENTER", "current"),
        None,
        None,
        (),
    ),
    (
        "image-unknown",
        lambda: r.check_image_name("Windows Server 2022 Datacenter", "current"),
        "image-of-profile",
        "G1",
        ("golden_image.source.image_name", "Microsoft Software License Terms"),
    ),
    (
        "image-case",
        lambda: r.check_image_name("windows server 2022 serverdatacentercore", "current"),
        "image-of-profile",
        "G1",
        ("did you mean 'Windows Server 2022 SERVERDATACENTERCORE'",),
    ),
    (
        "image-other-profile",
        lambda: r.check_image_name("Windows Server 2022 SERVERDATACENTERCORE", "ocp-4.9"),
        "image-of-profile",
        "G1",
        ("SERVERDATACENTERACORE",),
    ),
]


@pytest.mark.parametrize(
    ("case_id", "call", "rule", "step", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_rule(
    case_id: str,
    call: Callable[[], list[Problem]],
    rule: str | None,
    step: str | None,
    words: tuple[str, ...],
) -> None:
    problems = call()
    if rule is None:
        assert problems == []
        return
    assert [p.rule for p in problems] == [rule]
    p = problems[0]
    assert p.step_id == step
    assert p.message.startswith(f"{p.field}: ")
    assert p.message.endswith(f"({step})")
    for w in words:
        assert w in p.message


def test_two_problems_of_one_name_are_both_reported() -> None:
    rules = [p.rule for p in r.check_machineset_name("Windows-Worker")]
    assert rules == ["max-length", "dns-1123-label"]


def test_password_messages_never_contain_the_password() -> None:
    for pw in ("", "MyPassword", "weakpass"):
        for p in r.check_admin_password(pw):
            assert not pw or pw not in p.message.replace("'MyPassword' placeholder", "")
