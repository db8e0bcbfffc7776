"""The fixtures of the cluster-side flow tests against the whole lab (tests.flows.cluster_lab),
for every module here without importing them one by one: the lab's variables (`env`), its blocks
saved (`blocks`), the cluster as an administrator sees it (`cluster`), cluster_prep run
(`prepared`)."""

from tests.flows.cluster_lab import blocks, cluster, env, prepared

__all__ = ["blocks", "cluster", "env", "prepared"]
