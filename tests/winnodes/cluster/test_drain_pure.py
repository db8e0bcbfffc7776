"""The drain's pure parts: which pods are evicted, how a blocking budget is described, and that the
timeout error survives Prefect's pickling with its diagnosis."""

from __future__ import annotations

import pickle

from winnodes import errors
from winnodes.cluster.drain import DrainBlocked, DrainResult, _budget_text, is_evictable


def test_daemonset_and_mirror_pods_are_left_alone() -> None:
    assert is_evictable({"metadata": {"name": "web"}})
    assert is_evictable({"metadata": {"ownerReferences": [{"kind": "ReplicaSet"}]}})
    assert not is_evictable({"metadata": {"ownerReferences": [{"kind": "DaemonSet"}]}})
    assert not is_evictable({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}})


def test_budget_text_names_the_numbers_that_block() -> None:
    pdb = {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"minAvailable": 3},
        "status": {"currentHealthy": 3, "desiredHealthy": 3, "disruptionsAllowed": 0},
    }
    text = _budget_text(pdb)
    assert text == "shop/web (minAvailable 3: healthy 3, desired 3, disruptions allowed 0)"


def test_drain_blocked_is_a_wait_timeout_of_rot3_and_pickles() -> None:
    exc = DrainBlocked("node n not drained", ["shop/web-1"], ["shop/web (...)"])
    assert isinstance(exc, errors.WaitTimeout) and exc.step_id == "ROT3"
    back = pickle.loads(pickle.dumps(exc))
    assert (back.remaining, back.budgets, str(back)) == (exc.remaining, exc.budgets, str(exc))


def test_drain_result_evidence() -> None:
    r = DrainResult("n1", ["shop/web-1"], ["kube/ds-1"], 2.04, blocked_retries=2)
    text = r.evidence()
    assert "node n1 cordoned and drained in 2.0s" in text
    assert "2 eviction(s) refused by a PodDisruptionBudget first" in text and "kube/ds-1" in text
