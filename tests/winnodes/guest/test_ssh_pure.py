"""The guest adapter without a guest: error mapping, host key forms, paths, key loading."""

from __future__ import annotations

import errno
import socket

import paramiko
import pytest
from paramiko.ssh_exception import NoValidConnectionsError

from winnodes import errors
from winnodes.guest.ssh import (
    GuestSession,
    Result,
    host_key_fingerprint,
    key_line,
    load_private_key,
    map_exception,
)
from winnodes.validate.keys import fingerprint_of_public_key


@pytest.fixture(scope="module")
def host_keys() -> tuple[paramiko.PKey, paramiko.PKey]:
    return paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()


def test_bad_host_key_is_a_permanent_security_stop(
    host_keys: tuple[paramiko.PKey, paramiko.PKey],
) -> None:
    offered, trusted = host_keys
    mapped = map_exception(paramiko.BadHostKeyException("10.0.0.5", offered, trusted), step_id="G4")
    assert isinstance(mapped, errors.HostKeyMismatch)
    assert isinstance(mapped, errors.Conflict) and not mapped.transient
    assert fingerprint_of_public_key(key_line(offered)) in str(mapped)
    assert mapped.step_id == "G4"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (paramiko.AuthenticationException("denied"), errors.AuthenticationError),
        (paramiko.BadAuthenticationType("no", ["password"]), errors.AuthenticationError),
        (NoValidConnectionsError({("10.0.0.5", 22): OSError(111, "refused")}), errors.SSHDropped),
        (paramiko.SSHException("Error reading SSH protocol banner"), errors.SSHDropped),
        (paramiko.ChannelException(2, "open failed"), errors.SSHDropped),
        (EOFError(), errors.SSHDropped),
        (ConnectionResetError(104, "reset"), errors.SSHDropped),
        (ConnectionRefusedError(111, "refused"), errors.SSHDropped),
        (TimeoutError("timed out"), errors.SSHDropped),
        (TimeoutError("timed out"), errors.SSHDropped),
        (OSError(errno.EHOSTUNREACH, "no route"), errors.SSHDropped),
        (FileNotFoundError(errno.ENOENT, "No such file"), errors.NotFound),
        (OSError(errno.ENOENT, "No such file"), errors.NotFound),
        (PermissionError(errno.EACCES, "denied"), errors.PermanentError),
        (socket.gaierror(socket.EAI_NONAME, "unknown"), errors.NotFound),
    ],
)
def test_error_mapping(exc: Exception, expected: type) -> None:
    assert type(map_exception(exc)) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # a property of the peer: the same connection fails the same way every time
        (
            paramiko.ssh_exception.IncompatiblePeer(
                "Incompatible ssh peer (no acceptable kex algorithm)"
            ),
            errors.IncompatiblePeer,
        ),
        (
            paramiko.ssh_exception.IncompatiblePeer(
                "Incompatible ssh peer (no acceptable host key)"
            ),
            errors.IncompatiblePeer,
        ),
        (
            paramiko.ssh_exception.IncompatiblePeer(
                "Incompatible ssh server (no acceptable ciphers)"
            ),
            errors.IncompatiblePeer,
        ),
        (
            paramiko.ssh_exception.IncompatiblePeer("Incompatible ssh server (no acceptable macs)"),
            errors.IncompatiblePeer,
        ),
        (
            paramiko.ssh_exception.IncompatiblePeer("Incompatible version (1.5 instead of 2.0)"),
            errors.IncompatiblePeer,
        ),
        (
            paramiko.SSHException('Indecipherable protocol version "HTTP/1.1 400 Bad Request"'),
            errors.IncompatiblePeer,
        ),
        (paramiko.SSHException("Invalid SSH banner"), errors.IncompatiblePeer),
        (paramiko.SSHException("Unknown host key type"), errors.IncompatiblePeer),
        (
            paramiko.SSHException("Signature verification (ssh-ed25519) failed."),
            errors.IncompatiblePeer,
        ),
        # a property of the moment: the guest rebooted, sshd is starting, the link dropped
        (
            paramiko.SSHException("Error reading SSH protocol banner[Errno 104] reset by peer"),
            errors.SSHDropped,
        ),
        (paramiko.SSHException("Error reading SSH protocol banner"), errors.SSHDropped),
        (paramiko.SSHException("SSH session not active"), errors.SSHDropped),
        (paramiko.SSHException("Negotiation failed."), errors.SSHDropped),
        (paramiko.SSHException("Timeout opening channel."), errors.SSHDropped),
        (paramiko.SSHException("Mismatched MAC"), errors.SSHDropped),
        (paramiko.SSHException(), errors.SSHDropped),
        (EOFError(), errors.SSHDropped),
        (ConnectionResetError(104, "Connection reset by peer"), errors.SSHDropped),
        (BrokenPipeError(32, "Broken pipe"), errors.SSHDropped),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, type) else str(v)[:50],
)
def test_ssh_failures_are_mapped_by_cause(exc: Exception, expected: type) -> None:
    mapped = map_exception(exc, step_id="G4")
    assert mapped is not None and type(mapped) is expected
    assert mapped.transient is (expected is errors.SSHDropped)
    assert mapped.step_id == "G4"


def test_programming_errors_are_not_mapped() -> None:
    assert map_exception(TypeError("bug")) is None


def test_host_key_fingerprints(host_keys: tuple[paramiko.PKey, paramiko.PKey]) -> None:
    line = key_line(host_keys[0])
    fp = host_key_fingerprint(line)
    assert fp.startswith("SHA256:") and host_key_fingerprint(fp) == fp


def test_sftp_paths() -> None:
    assert GuestSession.sftp_path(r"C:\Windows\Temp\unattend.xml") == "C:/Windows/Temp/unattend.xml"
    assert GuestSession.sftp_path("C:/ProgramData/ssh") == "C:/ProgramData/ssh"


def test_result() -> None:
    assert Result(0, "", "").ok and not Result(1, "", "boom").ok


def test_unreadable_private_key_names_the_field_not_the_key() -> None:
    secret = "-----BEGIN RSA PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END RSA PRIVATE KEY-----"
    with pytest.raises(errors.ConfigError) as info:
        load_private_key(secret)
    assert "ssh_private_key" in str(info.value)
    assert "TOPSECRET" not in str(info.value)


def test_guest_command_failed_carries_what_a_report_needs() -> None:
    e = errors.GuestCommandFailed("G7", "Get-NetFirewallRule", 1, "boom\n")
    assert (e.step_id, e.command, e.exit_code) == ("G7", "Get-NetFirewallRule", 1)
    assert isinstance(e, errors.GuestCheckFailed) and not e.transient
    assert "boom" in e.evidence and "boom" in str(e)


def test_a_private_key_is_parsed_once_per_process(keys: dict[str, str]) -> None:
    """Each SSH session of each task loads the same key; parsing an RSA key (OpenSSL checks it)
    cost more CPU than the session. Same text, same key object; another text, another key."""
    one = load_private_key(keys["rsa-pkcs1"])
    assert load_private_key(keys["rsa-pkcs1"]) is one
    other = load_private_key(keys["ed25519"])
    assert other is not one and other.get_name() == "ssh-ed25519"
    assert load_private_key(keys["rsa-pkcs8"]).get_fingerprint() == one.get_fingerprint()


@pytest.mark.parametrize(
    "text",
    ["Authentication failed: transport shut down or saw EOF", "Authentication timeout."],
)
def test_a_connection_cut_during_authentication_is_a_drop_not_a_refused_key(text: str) -> None:
    """paramiko raises AuthenticationException when sshd went away mid-authentication (a guest
    going down for a restart): transient, not the permanent "key refused" that stops a build."""
    mapped = map_exception(paramiko.AuthenticationException(text), step_id="G6u")
    assert isinstance(mapped, errors.SSHDropped) and mapped.transient
    assert mapped.step_id == "G6u"


def test_a_refused_key_stays_permanent() -> None:
    mapped = map_exception(paramiko.AuthenticationException("Authentication failed."))
    assert isinstance(mapped, errors.AuthenticationError) and not mapped.transient
    bad_type = paramiko.BadAuthenticationType("Bad authentication type", ["password"])
    assert isinstance(map_exception(bad_type), errors.AuthenticationError)
