"""The Kubernetes fault family (benchmarks/faults_kube.py): its cells without a lab. The family
runs on a private lab with `python benchmarks/faults_kube.py` (and in `make faults`)."""

from __future__ import annotations

from benchmarks import faults, faults_kube


def test_cells_cover_every_call_fault_and_repetition() -> None:
    cells = faults_kube.cells()
    names = {c.name for c in cells}
    assert len(names) == len(cells)  # no cell twice
    assert {c.kind for c in cells} == {"kube"}
    assert all(isinstance(c, faults.Cell) for c in cells)
    for call in faults_kube.REFERENCE_CALLS:
        for fault in faults_kube.TRANSIENT:
            for times in faults_kube.TIMES:
                assert f"kube:{call}:{fault}:call:{times}" in names
    # mutating calls: a reset after the apiserver did the change
    assert "kube:prep:create secrets:reset-after:call:once" in names
    assert "kube:machineset:patch machinesets:reset-after:call:once" in names
    assert not any(n.startswith("kube:machineset:list machines:reset-after") for n in names)
    # every watch: closed by the server (even always: resuming is the product's job), 410 on resume
    for res in ("machinesets", "machines", "nodes", "events"):
        for times in ("once", "three", "always"):
            assert f"kube:machineset:watch {res}:watch-close:stream:{times}" in names
        assert f"kube:machineset:watch {res}:gone:resume:three" in names
        assert f"kube:machineset:watch {res}:gone:resume:always" not in names


def test_expectations_name_the_step_of_the_call() -> None:
    by_name = {c.name: c for c in faults_kube.cells()}
    failed = [c for c in by_name.values() if c.expect == "Failed"]
    assert failed and all(c.times == "always" for c in failed)
    assert by_name["kube:machineset:patch machinesets:503:call:always"].step == "C3"
    assert by_name["kube:prep:create secrets:reset:call:always"].step == "PRE-3"
    assert by_name["kube:machineset:watch nodes:429:call:always"].step == "V1"
    assert all(c.expect == "Completed" for c in by_name.values() if c.times != "always")
    # V1's Events only explain the wait: their stream failing for good must not fail it
    assert by_name["kube:machineset:watch events:503:call:always"].expect == "Completed"
    assert by_name["kube:machineset:list events:reset:call:always"].expect == "Completed"


def test_matrix_follows_the_measured_calls_and_sampling_is_seeded() -> None:
    cells = faults_kube.matrix({"machineset:get secrets": "M7"})
    assert len(cells) == len(faults_kube.TRANSIENT) * len(faults_kube.TIMES)
    every = faults_kube.cells()
    assert faults_kube.sample(every, 4, 3) == faults_kube.sample(every, 4, 3)
    assert set(faults_kube.LAB) <= {"vcsim", "guest.supervisor", "kube", "dns", "controllers"}
