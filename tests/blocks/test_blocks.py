"""The Prefect blocks: validation on construction, and secrets that never show."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from blocks.vsphere import VSphereCredentials
from blocks.windows import WindowsAccess

PASSWORD = "Vc-S3cret-Passw0rd!"
ADMIN_PASSWORD = "Win-S3cret-Passw0rd!"


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _key_body(pem: str) -> str:
    return pem.splitlines()[1]


def test_vsphere_credentials_hide_the_password(caplog: pytest.LogCaptureFixture) -> None:
    creds = VSphereCredentials(
        server="vc.example.com", username="admin", password=SecretStr(PASSWORD)
    )
    logging.getLogger("test").warning("creds: %s %r", creds, creds)
    for text in (repr(creds), str(creds), caplog.text, creds.model_dump_json()):
        assert PASSWORD not in text
    assert creds.password.get_secret_value() == PASSWORD
    assert creds.trust().insecure is False  # verified by default


def test_vsphere_credentials_validation_errors_hide_the_password() -> None:
    with pytest.raises(ValueError) as info:
        VSphereCredentials(
            server="vc",
            username="u",
            password=SecretStr(PASSWORD),
            thumbprint="ab" * 20,
            insecure=True,
        )
    assert "choose one" in str(info.value)
    assert PASSWORD not in str(info.value)
    with pytest.raises(ValueError) as info:
        VSphereCredentials(
            server="vc", username="u", password=SecretStr(PASSWORD), thumbprint="nothex"
        )
    assert PASSWORD not in str(info.value)


def test_every_field_is_described() -> None:
    for block in (VSphereCredentials, WindowsAccess):
        for name, f in block.model_fields.items():
            assert f.description, f"{block.__name__}.{name} has no description"


def test_windows_access(pem: str, caplog: pytest.LogCaptureFixture) -> None:
    access = WindowsAccess(
        ssh_private_key=SecretStr(pem), administrator_password=SecretStr(ADMIN_PASSWORD)
    )
    assert access.admin_user == "Administrator"
    assert access.public_key().startswith("ssh-rsa AAAA")
    assert access.public_key("winnodes").endswith(" winnodes")
    assert access.fingerprint().startswith("SHA256:")
    logging.getLogger("test").warning("access: %s %r", access, access)
    for text in (repr(access), str(access), caplog.text, access.model_dump_json()):
        assert ADMIN_PASSWORD not in text
        assert _key_body(pem) not in text


@pytest.mark.parametrize("password", ["", "MyPassword", "short"])
def test_bad_administrator_passwords_are_refused(pem: str, password: str) -> None:
    with pytest.raises(ValueError) as info:
        WindowsAccess(ssh_private_key=SecretStr(pem), administrator_password=SecretStr(password))
    assert "administrator_password" in str(info.value)
    if password == "short":
        assert password not in str(info.value)


def test_bad_keys_are_refused_without_showing_them() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    small_pem = small.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    encrypted = small.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    ).decode()
    for bad, rule in ((small_pem, "2048"), (encrypted, "passphrase"), ("not a key", "PEM")):
        with pytest.raises(ValueError) as info:
            WindowsAccess(
                ssh_private_key=SecretStr(bad), administrator_password=SecretStr(ADMIN_PASSWORD)
            )
        text = str(info.value)
        assert rule in text
        assert ADMIN_PASSWORD not in text
        if bad.startswith("-----"):
            assert _key_body(bad) not in text


def test_ed25519_only_when_allowed() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ed = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError):
        WindowsAccess(
            ssh_private_key=SecretStr(ed), administrator_password=SecretStr(ADMIN_PASSWORD)
        )
    ok = WindowsAccess(
        ssh_private_key=SecretStr(ed),
        administrator_password=SecretStr(ADMIN_PASSWORD),
        allow_non_rsa_key=True,
    )
    assert ok.public_key().startswith("ssh-ed25519 ")
