"""PRE-3/G5: the SSH private key WMCO uses, checked the way WMCO will use it, and its fingerprint.

A key WMCO cannot use is not noticed until a Machine is provisioned; WMCO then fails to log in and
deletes the Machine, which is re-created and deleted again, forever. So the key is checked before
anything runs, and the template records the public key's fingerprint (G10) so a MachineSet is never
applied with a template whose key differs from the cluster's secret (issue 5).

Rules (decided from WMCO's documentation and code, see the report of this module's author):
- PEM-armored text (`-----BEGIN ... PRIVATE KEY-----`): PKCS#1 "RSA PRIVATE KEY", PKCS#8
  "PRIVATE KEY", or "OPENSSH PRIVATE KEY" (what `ssh-keygen` writes today). WMCO parses the secret with
  golang.org/x/crypto/ssh `ParsePrivateKey`, which reads all three.
- No passphrase: WMCO has nowhere to get one from (`PassphraseMissingError`).
- RSA of at least 2048 bits: WMCO documents "PEM encoded RSA", and the lab's WMCO twin accepts RSA.
  Ed25519 and ECDSA parse in x/crypto and work with Windows' OpenSSH, but WMCO does not document them,
  so they are refused unless the caller passes `allow_non_rsa=True` (a conscious decision per site).
- DSA is always refused: OpenSSH (Windows' sshd included) disabled ssh-dss years ago.

Key material never appears in a Problem; fingerprints are public and may.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import warnings
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from winnodes.errors import Problem

MIN_RSA_BITS = 2048
FIELD = "windows_access.ssh_private_key"


@dataclass(frozen=True)
class KeyInfo:
    """What is public about a private key: its type, size, OpenSSH public line and fingerprint."""

    key_type: str  # "rsa" | "ed25519" | "ecdsa" | "dsa"
    bits: int
    public_openssh: str  # "ssh-rsa AAAA..." (no comment)
    fingerprint: str  # "SHA256:..." as `ssh-keygen -l` prints it


def fingerprint_of_public_key(public_line: str) -> str:
    """The SHA256 fingerprint of an OpenSSH public key line ("ssh-rsa AAAA... [comment]"), like
    `ssh-keygen -l`: 'SHA256:' + unpadded base64 of the SHA-256 of the key blob."""
    parts = public_line.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    blob = base64.b64decode(parts[1], validate=True)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _problem(rule: str, text: str, field: str) -> Problem:
    return Problem(step_id="PRE-3", field=field, rule=rule, message=f"{field}: {text} (PRE-3)")


#: inspect_private_key's answers by (SHA-256 of the key, field, allow_non_rsa): only public facts
#: and problems are kept, never the key. Loading an RSA-4096 key makes OpenSSL check it (~0.1-0.3 s
#: of CPU), and every task that loads the WindowsAccess block validates its key: measured, 57 % of a
#: golden-image build's CPU before this cache.
_INSPECTED: dict[tuple[bytes, str, bool], tuple[KeyInfo | None, tuple[Problem, ...]]] = {}
_INSPECTED_MAX = 16
_INSPECTED_LOCK = threading.Lock()


def inspect_private_key(
    pem: str | bytes, *, field: str = FIELD, allow_non_rsa: bool = False
) -> tuple[KeyInfo | None, list[Problem]]:
    """Parse and check a private key as WMCO will use it. Returns the key's public facts (None when
    it cannot be read) and the problems found (empty when WMCO can use it). Pure: the answer for a
    key is remembered by its digest."""
    data = pem.encode() if isinstance(pem, str) else pem
    cache_key = (hashlib.sha256(data).digest(), field, allow_non_rsa)
    if (known := _INSPECTED.get(cache_key)) is not None:
        return known[0], list(known[1])
    info, problems = _inspect(data, field, allow_non_rsa)
    with _INSPECTED_LOCK:
        if len(_INSPECTED) >= _INSPECTED_MAX:
            _INSPECTED.pop(next(iter(_INSPECTED)))
        _INSPECTED[cache_key] = (info, tuple(problems))
    return info, problems


def _inspect(data: bytes, field: str, allow_non_rsa: bool) -> tuple[KeyInfo | None, list[Problem]]:
    text = data.decode("ascii", errors="replace").strip()
    if not text.startswith("-----BEGIN ") or "PRIVATE KEY-----" not in text.splitlines()[0]:
        return None, [
            _problem(
                "pem",
                "the SSH private key is not PEM-armored text ('-----BEGIN ... PRIVATE KEY-----'); "
                "WMCO reads the secret's private-key.pem as PEM",
                field,
            )
        ]
    header = text.splitlines()[0]
    if "ENCRYPTED" in header or "Proc-Type: 4,ENCRYPTED" in text:
        return None, [_passphrase_problem(field)]
    key: object
    try:
        if "OPENSSH PRIVATE KEY" in header:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography raises TypeError for every encrypted form (PKCS#8, PKCS#1 Proc-Type, OpenSSH)
        return None, [_passphrase_problem(field)]
    except (ValueError, UnsupportedAlgorithm) as exc:
        return None, [
            _problem(
                "parse",
                f"the SSH private key cannot be read ({type(exc).__name__}); is it complete?",
                field,
            )
        ]
    with warnings.catch_warnings():  # naming the DSA class warns; the check is why we name it
        warnings.simplefilter("ignore")
        is_dsa = isinstance(key, dsa.DSAPrivateKey)
    if is_dsa:
        return None, [
            _problem("no-dsa", "DSA keys are rejected by WMCO and by OpenSSH; use RSA", field)
        ]
    if isinstance(key, rsa.RSAPrivateKey):
        key_type, bits = "rsa", key.key_size
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        key_type, bits = "ed25519", 256
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        key_type, bits = "ecdsa", key.curve.key_size
    else:
        return None, [
            _problem("key-type", f"unsupported key type {type(key).__name__}; use RSA", field)
        ]
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    info = KeyInfo(key_type, bits, public, fingerprint_of_public_key(public))
    problems: list[Problem] = []
    if key_type == "rsa" and bits < MIN_RSA_BITS:
        problems.append(
            _problem(
                "min-rsa-bits",
                f"the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required",
                field,
            )
        )
    if key_type != "rsa" and not allow_non_rsa:
        problems.append(
            _problem(
                "rsa-only",
                f"the key is {key_type}; WMCO documents PEM-encoded RSA keys (use "
                "`ssh-keygen -t rsa -b 4096 -m PEM`), so other types are refused unless allowed",
                field,
            )
        )
    return info, problems


def _passphrase_problem(field: str) -> Problem:
    return _problem(
        "no-passphrase",
        "the SSH private key is protected by a passphrase; WMCO cannot use it (remove it with "
        "`ssh-keygen -p -N ''`)",
        field,
    )


def check_private_key(
    pem: str | bytes, *, field: str = FIELD, allow_non_rsa: bool = False
) -> list[Problem]:
    """PRE-3: the problems WMCO would have with this key (empty list: usable)."""
    return inspect_private_key(pem, field=field, allow_non_rsa=allow_non_rsa)[1]


def private_key_fingerprint(pem: str | bytes) -> str:
    """The SHA256 fingerprint of the private key's public half (recorded on the template, G10).
    Raises ValueError when the key cannot be read."""
    info, problems = inspect_private_key(pem, allow_non_rsa=True)
    if info is None:
        raise ValueError(problems[0].message if problems else "unreadable key")
    return info.fingerprint


def public_key_line(pem: str | bytes, comment: str = "") -> str:
    """The OpenSSH public key line for administrators_authorized_keys (G5)."""
    info, problems = inspect_private_key(pem, allow_non_rsa=True)
    if info is None:
        raise ValueError(problems[0].message if problems else "unreadable key")
    return f"{info.public_openssh} {comment}".strip()
