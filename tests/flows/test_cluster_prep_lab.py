"""cluster_prep against the whole lab: DNS1 with and without update credentials, a conflicting
api-int, PRE-4 missing, PRE-3's secret; failures write nothing."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from flows.cluster_prep import cluster_prep
from tests.flows.cluster_lab import WIN_BLOCK, Cluster, cluster_config, resolver
from winnodes import errors

pytestmark = pytest.mark.lab


@pytest.fixture
def clean(env: dict[str, str], blocks: None, cluster: Cluster) -> Iterator[None]:
    """No api-int and no key secret before; api-int as a CNAME and the secret after (for the
    tests that follow, e.g. the machineset flow's)."""
    cluster.set_api_int(None)
    cluster.delete_key_secret()
    yield
    cluster_prep(cluster_config(env), windows_access_block=WIN_BLOCK, dns_resolver=resolver(env))


def test_creates_api_int_and_secret_then_changes_nothing(
    env: dict[str, str], clean: None, cluster: Cluster
) -> None:
    first = cluster_prep(
        cluster_config(env), windows_access_block=WIN_BLOCK, dns_resolver=resolver(env)
    )
    assert (first.api_int, first.key_secret) == ("created", "created")
    assert "CNAME api." in first.api_int_state
    again = cluster_prep(
        cluster_config(env), windows_access_block=WIN_BLOCK, dns_resolver=resolver(env)
    )
    assert (again.api_int, again.key_secret) == ("present", "unchanged")


def test_missing_api_int_without_credentials_names_the_record(
    env: dict[str, str], clean: None, cluster: Cluster
) -> None:
    with pytest.raises(errors.NotFound) as exc:
        cluster_prep(
            cluster_config(env, dns_block=False),
            windows_access_block=WIN_BLOCK,
            dns_resolver=resolver(env),
        )
    name = f"api-int.{env['LAB_CLUSTER_NAME']}.{env['LAB_BASE_DOMAIN']}."
    assert f"{name} 300 IN CNAME api.{env['LAB_CLUSTER_NAME']}.{env['LAB_BASE_DOMAIN']}." in str(
        exc.value
    )
    assert cluster.key_secret() is None  # no partial changes


def test_conflicting_api_int_is_not_overwritten(
    env: dict[str, str], clean: None, cluster: Cluster
) -> None:
    cluster.set_api_int("A", "10.9.9.9")
    with pytest.raises(errors.Conflict, match=r"10\.9\.9\.9"):
        cluster_prep(
            cluster_config(env), windows_access_block=WIN_BLOCK, dns_resolver=resolver(env)
        )
    assert cluster.key_secret() is None
    replaced = cluster_prep(
        cluster_config(env, allow_overwrite=True),
        windows_access_block=WIN_BLOCK,
        dns_resolver=resolver(env),
    )
    assert replaced.api_int == "replaced" and "CNAME api." in replaced.api_int_state


def test_missing_hybrid_overlay_is_listed_and_nothing_written(
    env: dict[str, str], clean: None, cluster: Cluster
) -> None:
    net = cluster.custom.get_cluster_custom_object(
        "operator.openshift.io", "v1", "networks", "cluster"
    )
    saved = copy.deepcopy(net["spec"]["defaultNetwork"]["ovnKubernetesConfig"])
    patch = {"spec": {"defaultNetwork": {"ovnKubernetesConfig": {"hybridOverlayConfig": None}}}}
    cluster.custom.patch_cluster_custom_object(
        "operator.openshift.io", "v1", "networks", "cluster", patch
    )
    try:
        with pytest.raises(errors.ConfigError) as exc:
            cluster_prep(
                cluster_config(env), windows_access_block=WIN_BLOCK, dns_resolver=resolver(env)
            )
        assert [p.step_id for p in exc.value.problems] == ["PRE-4"]
        assert cluster.key_secret() is None
    finally:
        restore = {"spec": {"defaultNetwork": {"ovnKubernetesConfig": saved}}}
        cluster.custom.patch_cluster_custom_object(
            "operator.openshift.io", "v1", "networks", "cluster", restore
        )
