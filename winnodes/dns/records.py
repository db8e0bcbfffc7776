"""DNS1 decisions without I/O: is `api-int` right, and which record would make it right.

`api-int.<cluster>.<base_domain>` is right when it is a CNAME to `api.<cluster>.<base_domain>`, or
when its A records (after following any CNAME) are exactly the addresses of `api`: what the
kubelet and WMCO need is the same endpoint. The "record to add" is written as a zone file
line, the exact thing an administrator without update credentials pastes into their DNS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

State = Literal["ok", "missing", "conflict"]


def fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def relative_to(name: str, zone: str) -> str:
    """`api-int.lab.example.com` in zone `example.com` -> `api-int.lab` (ValueError if outside)."""
    n, z = fqdn(name).lower(), fqdn(zone).lower()
    if n == z:
        return "@"
    if not n.endswith("." + z):
        raise ValueError(f"{name} is not inside the zone {zone}")
    return n[: -len(z) - 1]


@dataclass(frozen=True)
class ApiIntState:
    """What DNS says about api and api-int."""

    api_name: str
    api_int_name: str
    api_addresses: list[str]
    cname: str | None = None  # api-int's CNAME target, if it is a CNAME
    addresses: list[str] = field(default_factory=list)  # api-int's A records (after CNAMEs)

    @property
    def state(self) -> State:
        if self.cname is None and not self.addresses:
            return "missing"
        if self.cname is not None and fqdn(self.cname).lower() == fqdn(self.api_name).lower():
            return "ok"
        if self.addresses and sorted(self.addresses) == sorted(self.api_addresses):
            return "ok"
        return "conflict"

    def describe(self) -> str:
        api = f"{self.api_name} -> {', '.join(self.api_addresses) or 'nothing'}"
        if self.cname is not None:
            now = f"CNAME {self.cname}" + (
                f" ({', '.join(self.addresses)})" if self.addresses else ""
            )
        elif self.addresses:
            now = f"A {', '.join(sorted(self.addresses))}"
        else:
            now = "no record"
        return f"{self.api_int_name}: {now}; {api}"


def record_lines(
    api_int_name: str,
    api_name: str,
    api_addresses: list[str],
    record_type: Literal["CNAME", "A"],
    ttl: int,
) -> list[str]:
    """The zone file line(s) that make api-int right."""
    if record_type == "CNAME":
        return [f"{fqdn(api_int_name)} {ttl} IN CNAME {fqdn(api_name)}"]
    return [f"{fqdn(api_int_name)} {ttl} IN A {a}" for a in sorted(api_addresses)]
