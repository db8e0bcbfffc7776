"""The DNS family of the fault matrix (benchmarks/faults_dns.py): its cells without servers, and a
seeded sample of one cell against a private lab (kube + dns) with the real BIND behind the proxy
(replay a failure with WINNODES_FAULT_SEED=<printed seed>, or
`benchmarks/faults_dns.py --sample 1 --seed <seed>`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from benchmarks import faults, faults_dns
from lab import cli


def test_cells_cover_every_operation_fault_and_repetition() -> None:
    cells = faults_dns.cells()
    names = {c.name for c in cells}
    assert len(names) == len(cells)
    for op in faults_dns.DEFAULT_OPS:
        for fault in ("slow", "silent"):
            for times in faults.TIMES:
                assert f"dns:{op}:{fault}:{times}" in names
    assert {c.kind for c in cells} == {"dns"}
    failed = [c for c in cells if c.expect == "Failed"]
    assert all(c.step == "DNS1" and c.times == "always" for c in failed)
    for tsig in ("BADTIME", "BADSIG", "BADKEY"):
        assert f"dns:update:{tsig}:always" in {c.name for c in failed}
    assert "dns:update:lost-answer:once" in names and "dns:*:slow-within:always" in names
    assert len(cells) == len(faults_dns.DEFAULT_OPS) * 6 + 5


def test_matrix_follows_the_baseline_operations() -> None:
    ops = ["check:A:api", "update"]
    assert {c.target for c in faults_dns.matrix(ops)} == {"check:A:api", "update", "*"}


def test_lab_components_exist() -> None:
    assert {"lab." + n for n in faults_dns.LAB} <= set(cli.ALL_COMPONENTS)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with cli.private_lab(tmp_path_factory.mktemp("lab-faults-dns") / "lab", faults_dns.LAB) as ctx:
        yield dict(ctx.env)


@pytest.mark.lab
@pytest.mark.slow
def test_seeded_sample_of_the_dns_family(env: dict[str, str], prefect_api: None) -> None:
    seed = int(os.environ.get("WINNODES_FAULT_SEED", faults.DEFAULT_SEED))
    print(f"\nDNS fault sample: seed {seed} (replay: WINNODES_FAULT_SEED={seed})")
    outcomes, base, ops = faults_dns.run_family(env, n=1, seed=seed)
    print(faults.report(outcomes, seed, base))
    assert set(faults_dns.DEFAULT_OPS) <= set(ops)
    assert len(outcomes) == 1
    assert [o.cell.name for o in outcomes if not o.passed] == []
