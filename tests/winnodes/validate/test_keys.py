"""PRE-3 key rules as WMCO applies them, and fingerprints equal to ssh-keygen's."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from winnodes.validate.keys import (
    check_private_key,
    fingerprint_of_public_key,
    inspect_private_key,
    private_key_fingerprint,
    public_key_line,
)


@pytest.mark.parametrize("name", ["rsa-pkcs1", "rsa-pkcs8", "rsa-openssh"])
def test_rsa_2048_in_every_pem_form_is_accepted(keys: dict[str, str], name: str) -> None:
    info, problems = inspect_private_key(keys[name])
    assert problems == []
    assert info is not None and info.key_type == "rsa" and info.bits == 2048
    assert info.public_openssh.startswith("ssh-rsa ")


def test_all_forms_of_one_key_have_one_fingerprint(keys: dict[str, str]) -> None:
    fps = {private_key_fingerprint(keys[n]) for n in ("rsa-pkcs1", "rsa-pkcs8", "rsa-openssh")}
    assert len(fps) == 1
    fp = fps.pop()
    assert fp.startswith("SHA256:") and not fp.endswith("=")


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("rsa-1024", "min-rsa-bits"),
        ("rsa-encrypted", "no-passphrase"),
        ("rsa-openssh-encrypted", "no-passphrase"),
        ("dsa", "no-dsa"),
        ("ed25519", "rsa-only"),
        ("ecdsa", "rsa-only"),
    ],
)
def test_refused_keys(keys: dict[str, str], name: str, rule: str) -> None:
    problems = check_private_key(keys[name])
    assert [p.rule for p in problems] == [rule]
    p = problems[0]
    assert p.step_id == "PRE-3" and p.field == "windows_access.ssh_private_key"
    assert p.message.endswith("(PRE-3)")
    # never any key material in the message
    body = "".join(keys[name].splitlines()[1:-1])
    assert body[:20] not in p.message


@pytest.mark.parametrize("name", ["ed25519", "ecdsa"])
def test_non_rsa_keys_when_allowed(keys: dict[str, str], name: str) -> None:
    assert check_private_key(keys[name], allow_non_rsa=True) == []


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("ssh-rsa AAAAB3NzaC1yc2E public key, not private", "pem"),
        ("", "pem"),
        ("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "parse"),
    ],
)
def test_not_a_usable_pem(text: str, rule: str) -> None:
    assert [p.rule for p in check_private_key(text)] == [rule]


def test_fingerprint_matches_the_definition(keys: dict[str, str]) -> None:
    line = public_key_line(keys["rsa-pkcs1"], comment="winnodes")
    assert line.endswith(" winnodes")
    blob = base64.b64decode(line.split()[1])
    want = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert fingerprint_of_public_key(line) == want == private_key_fingerprint(keys["rsa-pkcs1"])


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_fingerprint_equals_ssh_keygen(keys: dict[str, str], tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text(keys["rsa-pkcs1"])
    key.chmod(0o600)
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(key)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split()[1] == private_key_fingerprint(keys["rsa-pkcs1"])


def test_unreadable_key_raises_for_fingerprint() -> None:
    with pytest.raises(ValueError, match="PRE-3"):
        private_key_fingerprint("nope")


def test_a_key_is_checked_once_per_process_and_the_cache_holds_no_key(
    keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every task that loads the WindowsAccess block validates its key; OpenSSL's check of an RSA
    key was 57 % of a build's CPU. The answer is remembered by digest: the same facts, fresh lists,
    and nothing of the key itself kept."""
    from winnodes.validate import keys as mod

    parsed: list[int] = []
    real = mod.serialization.load_pem_private_key

    def counting(data: bytes, password: bytes | None = None) -> object:
        parsed.append(1)
        return real(data, password=password)

    monkeypatch.setattr(mod.serialization, "load_pem_private_key", counting)
    monkeypatch.setattr(mod, "_INSPECTED", {})
    first = inspect_private_key(keys["rsa-1024"])
    first[1].append(first[1][0])  # a caller's list is its own
    again = inspect_private_key(keys["rsa-1024"])
    assert parsed == [1]
    assert again[0] == first[0] and [p.rule for p in again[1]] == ["min-rsa-bits"]
    other_field = inspect_private_key(keys["rsa-1024"], field="other.field")
    assert parsed == [1, 1] and other_field[1][0].field == "other.field"
    body = keys["rsa-1024"].encode()
    assert all(len(k[0]) == 32 and k[0] not in body for k in mod._INSPECTED)
