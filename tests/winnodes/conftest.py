"""Shared fixtures of the pure-layer tests: a minimal valid configuration and SSH keys (generated
once per session: RSA generation is the only noticeable cost here)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from winnodes.model import PipelineConfig, parse_config

GOOD_PASSWORD = "Str0ng!Passw0rd"


def config_data() -> dict[str, Any]:
    return {
        "golden_image": {
            "profile": "current",
            "placement": {
                "datacenter": "dc1",
                "cluster": "cluster1",
                "datastore": "datastore1",
                "folder": "/dc1/vm/golden-images",
                "network": "VM Network",
            },
            "source": {
                "windows_iso": "[datastore1] iso/windows-server-2022.iso",
                "tools_iso": "[datastore1] iso/vmware-tools.iso",
            },
        },
        "cluster": {"name": "ocp", "base_domain": "example.com"},
        "machineset": {
            "name": "winworker",
            "network_name": "VM Network",
            "workspace": {
                "datacenter": "dc1",
                "datastore": "datastore1",
                "folder": "/dc1/vm/lab-7xk2p",
                "resource_pool": "/dc1/host/cluster1/Resources",
                "server": "vcenter.example.com",
            },
        },
    }


@pytest.fixture
def config() -> PipelineConfig:
    return parse_config(config_data())


def _pem(
    key: Any, fmt: serialization.PrivateFormat = serialization.PrivateFormat.TraditionalOpenSSL
) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def keys(rsa_key: rsa.RSAPrivateKey) -> dict[str, str]:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ed = ed25519.Ed25519PrivateKey.generate()
    return {
        "rsa-pkcs1": _pem(rsa_key),
        "rsa-pkcs8": _pem(rsa_key, serialization.PrivateFormat.PKCS8),
        "rsa-openssh": _pem(rsa_key, serialization.PrivateFormat.OpenSSH),
        "rsa-1024": _pem(small),
        "rsa-encrypted": rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ).decode(),
        "rsa-openssh-encrypted": rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(b"secret"),
        ).decode(),
        "ed25519": _pem(ed, serialization.PrivateFormat.OpenSSH),
        "ecdsa": _pem(ec.generate_private_key(ec.SECP256R1())),
        "dsa": _pem(dsa.generate_private_key(key_size=1024), serialization.PrivateFormat.PKCS8),
    }
