"""OpenShiftCredentials: exactly one way in, TLS verified by default, secrets hidden, client closed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError

from blocks.openshift import OpenShiftCredentials

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "u", "user": {"token": "sha256~supersecrettoken"}}],
    "contexts": [
        {"name": "one", "context": {"cluster": "c", "user": "u"}},
        {"name": "two", "context": {"cluster": "c", "user": "u", "namespace": "x"}},
    ],
    "current-context": "one",
}


def test_kubeconfig_content_and_context() -> None:
    creds = OpenShiftCredentials(kubeconfig=SecretStr(yaml.safe_dump(KUBECONFIG)), context="two")
    assert "supersecrettoken" not in repr(creds)
    with creds.get_client() as api:
        assert api.configuration.host == "https://127.0.0.1:6443"
        assert api.configuration.verify_ssl is True


def test_kubeconfig_path(tmp_path: Path) -> None:
    p = tmp_path / "kubeconfig"
    p.write_text(yaml.safe_dump(KUBECONFIG))
    with OpenShiftCredentials(kubeconfig_path=str(p)).get_client() as api:
        assert api.configuration.host == "https://127.0.0.1:6443"


def test_server_and_token() -> None:
    creds = OpenShiftCredentials(
        server="https://api.ocp.example.com:6443", token=SecretStr("sha256~tok")
    )
    assert "sha256~tok" not in repr(creds)
    with creds.get_client() as api:
        assert api.configuration.verify_ssl is True
        assert api.configuration.api_key["authorization"] == "sha256~tok"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "exactly one"),
        (
            {"kubeconfig_path": "/x", "server": "https://a", "token": SecretStr("t")},
            "exactly one",
        ),
        ({"server": "https://a"}, "go together"),
        ({"server": "http://a", "token": SecretStr("t")}, "https://"),
        ({"kubeconfig": SecretStr("not: [yaml")}, "not valid YAML"),
        ({"kubeconfig": SecretStr("a: b")}, "not a kubeconfig"),
        ({"kubeconfig_path": "/x", "insecure_skip_tls_verify": True}, "applies to server"),
    ],
)
def test_invalid(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(PydanticValidationError, match=words):
        OpenShiftCredentials(**kwargs)  # type: ignore[arg-type]


def test_https_proxy_for_kubeconfig_and_token() -> None:
    """Both ways of reaching the API server honour the site's proxy (the client tunnels with
    CONNECT: a request through the loopback proxy shows the API server as its target)."""
    from kubernetes import client as k8s

    from tests.winnodes.proxy_support import connect_proxy

    by_config = OpenShiftCredentials(
        kubeconfig=SecretStr(yaml.safe_dump(KUBECONFIG)), https_proxy="proxy.corp:3128"
    )
    with by_config.get_client() as api:
        assert api.configuration.proxy == "http://proxy.corp:3128"
    with connect_proxy(refuse=True) as (proxy, seen):
        creds = OpenShiftCredentials(
            server="https://api.ocp.example.com:6443", token=SecretStr("t"), https_proxy=proxy
        )
        with creds.get_client() as api:
            assert api.configuration.proxy == f"http://{proxy}"
            with pytest.raises(Exception):  # noqa: B017 - the proxy refuses: any client error
                k8s.VersionApi(api).get_code(_request_timeout=5)
        assert seen and set(seen) == {"api.ocp.example.com:6443"}  # (the client retries)
