"""DNS1 decisions: the state of api-int and the exact record an administrator must add."""

from __future__ import annotations

import pytest

from winnodes.dns.client import Nameserver
from winnodes.dns.records import ApiIntState, record_lines, relative_to

API = "api.ocp.example.com"
INT = "api-int.ocp.example.com"


@pytest.mark.parametrize(
    ("cname", "addresses", "state"),
    [
        (None, [], "missing"),
        ("api.ocp.example.com.", ["10.0.0.5"], "ok"),
        ("API.ocp.example.com", [], "ok"),
        (None, ["10.0.0.5"], "ok"),
        (None, ["10.0.0.6"], "conflict"),
        ("lb.example.com.", ["10.0.0.5"], "ok"),  # another name, same addresses: works
        ("lb.example.com.", ["10.0.0.9"], "conflict"),
    ],
)
def test_state(cname: str | None, addresses: list[str], state: str) -> None:
    s = ApiIntState(API, INT, ["10.0.0.5"], cname, addresses)
    assert s.state == state
    assert INT in s.describe()


def test_records_to_add() -> None:
    assert record_lines(INT, API, ["10.0.0.5"], "CNAME", 300) == [
        "api-int.ocp.example.com. 300 IN CNAME api.ocp.example.com."
    ]
    assert record_lines(INT, API, ["10.0.0.6", "10.0.0.5"], "A", 60) == [
        "api-int.ocp.example.com. 60 IN A 10.0.0.5",
        "api-int.ocp.example.com. 60 IN A 10.0.0.6",
    ]


def test_relative_names() -> None:
    assert relative_to(INT, "example.com") == "api-int.ocp"
    assert relative_to(INT + ".", "ocp.example.com.") == "api-int"
    with pytest.raises(ValueError, match="not inside"):
        relative_to(INT, "example.org")


@pytest.mark.parametrize(
    ("value", "address", "port"),
    [
        (None, None, 53),
        ("10.0.0.2", "10.0.0.2", 53),
        ("10.0.0.2:5353", "10.0.0.2", 5353),
        ("[::1]:53", "::1", 53),
        ("[fd00::2]", "fd00::2", 53),
    ],
)
def test_nameserver_parse(value: str | None, address: str | None, port: int) -> None:
    ns = Nameserver.parse(value)
    assert (ns.address, ns.port) == (address, port)
