"""SSH to the Windows guest with paramiko: verified host keys, bounded waits, mapped errors.

Host key trust. The adapter never accepts an unknown key (no AutoAddPolicy). The caller passes the
trusted key, as an OpenSSH public key line (`ssh-ed25519 AAAA...`, preferred) or as a fingerprint
(`SHA256:...`). Where that key comes from is the flow's decision (G4/G5):

* recorded at first contact: `fetch_host_key(host, port)` reads the key the guest offers right after
  it reports its IP (trust on first use, TOFU); the flow stores it in its persisted state and every
  later session, including a resumed run, verifies against the stored key. A changed key afterwards
  raises `HostKeyMismatch` (permanent) instead of being accepted;
* or published out of band (e.g. through vCenter guestinfo by the guest itself, or by a lab that reads
  the guest's disk) and passed in directly.

With a key line, paramiko's `RejectPolicy` and a known_hosts entry do the check (and paramiko asks the
server for that key type first); with a fingerprint, the offered key's SHA256 fingerprint must match.

Commands. `run()` sends the command string as is and returns `Result(exit_code, stdout, stderr)`;
`run_checked()` raises `GuestCommandFailed` (step ID, command, exit code, stderr tail) on a non-zero
exit. Commands come from `winnodes.render.powershell` (quoting included); wrap them with its
`powershell_command_line()` when the guest's OpenSSH default shell is cmd.exe. Every command has a
deadline, read with `select` on the channel (no sleep loop). Text from the guest is passed through
`redact()` with the secrets the session was given before it reaches an exception.

The socket has TCP_NODELAY: paramiko's default (Nagle on) costs ~40 ms per command (field notes).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import select
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import paramiko

from winnodes import errors
from winnodes.errors import redact, truncate
from winnodes.validate.keys import fingerprint_of_public_key

DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_COMMAND_TIMEOUT = 900.0


@dataclass(frozen=True)
class Result:
    """What a guest command returned."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


# -- host keys ---------------------------------------------------------------------------------------
def _known_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def key_line(key: paramiko.PKey) -> str:
    """`ssh-ed25519 AAAA...` for a paramiko key."""
    return f"{key.get_name()} {key.get_base64()}"


def host_key_fingerprint(host_key: str) -> str:
    """SHA256 fingerprint of a key line; a fingerprint is returned unchanged."""
    text = host_key.strip()
    return text if text.startswith("SHA256:") else fingerprint_of_public_key(text)


def _parse_key_line(line: str) -> paramiko.PKey:
    import base64

    parts = line.split()
    if len(parts) < 2:
        raise errors.ConfigError("trusted host key: expected 'type base64' or 'SHA256:...'")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as exc:
        raise errors.ConfigError(f"trusted host key: unreadable {parts[0]} key") from exc


class _RejectUnknown(paramiko.RejectPolicy):
    """RejectPolicy that says *why*: the guest offered a key type we hold no trusted key for."""

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> NoReturn:
        raise errors.HostKeyMismatch(
            f"{hostname} offered a {key.get_name()} host key "
            f"({fingerprint_of_public_key(key_line(key))}) that is not the trusted one"
        )


class _PinnedFingerprint(paramiko.MissingHostKeyPolicy):
    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        got = fingerprint_of_public_key(key_line(key))
        if got != self.fingerprint:
            raise errors.HostKeyMismatch(
                f"{hostname} offered host key {got}, but {self.fingerprint} is trusted"
            )


def fetch_host_key(
    host: str, port: int = 22, *, timeout: float = DEFAULT_CONNECT_TIMEOUT, proxy: str | None = None
) -> str:
    """The host key the guest offers (`type base64`), *unverified*: for trust on first use, the
    caller records it (with its fingerprint) in the flow's persisted state before trusting it."""
    with _boundary(None, f"read the SSH host key of {host}:{port}"):
        sock = _socket(host, port, timeout, proxy)
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = timeout
            transport.start_client(timeout=timeout)
            key = transport.get_remote_server_key()
        finally:
            transport.close()
        return key_line(key)


#: What paramiko raises as AuthenticationException when no answer came: the transport closed or
#: saw EOF (sshd stopped as the guest goes down), or the server did not answer in time. Only an
#: answer of the server (USERAUTH_FAILURE, "Authentication failed.") is a refused key.
_NOT_A_REFUSAL = ("transport shut down or saw EOF", "Authentication timeout")


def _cut_during_auth(exc: BaseException) -> bool:
    return any(text in str(exc) for text in _NOT_A_REFUSAL)


# -- errors --------------------------------------------------------------------------------------------
def map_exception(
    exc: BaseException, *, step_id: str | None = None, action: str = "SSH"
) -> errors.WinNodesError | None:
    """The product error for a paramiko/socket/SFTP exception (None: not an upstream error)."""
    if isinstance(exc, errors.WinNodesError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return errors.HostKeyMismatch(
            f"{action}: host key mismatch for {exc.hostname}: offered "
            f"{fingerprint_of_public_key(key_line(exc.key))}, trusted "
            f"{fingerprint_of_public_key(key_line(exc.expected_key))}",
            step_id=step_id,
        )
    if isinstance(exc, paramiko.AuthenticationException) and _cut_during_auth(exc):
        return errors.SSHDropped(
            f"{action}: the connection closed during authentication ({truncate(str(exc), 120)}); "
            "the guest may be going down or sshd restarting",
            step_id=step_id,
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return errors.AuthenticationError(
            f"{action}: the guest refused the SSH key ({type(exc).__name__})", step_id=step_id
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return errors.SSHDropped(f"{action}: cannot connect ({exc})", step_id=step_id)
    if isinstance(exc, paramiko.SSHException) and _incompatible(exc):
        return errors.IncompatiblePeer(
            f"{action}: the guest's SSH server and this client cannot agree on the protocol "
            f"({type(exc).__name__}: {truncate(str(exc), 200)}); retrying cannot help: enable a "
            "common algorithm on one side or check that the port is the guest's sshd",
            step_id=step_id,
        )
    if isinstance(exc, (paramiko.SSHException, EOFError, ConnectionError, TimeoutError)):
        return errors.SSHDropped(f"{action}: {type(exc).__name__}: {exc}", step_id=step_id)
    if isinstance(exc, FileNotFoundError) or (
        isinstance(exc, OSError) and exc.errno == errno.ENOENT
    ):
        return errors.NotFound(f"{action}: no such file in the guest", step_id=step_id)
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno == errno.EACCES):
        return errors.PermanentError(f"{action}: permission denied in the guest", step_id=step_id)
    if isinstance(exc, socket.gaierror):
        return errors.NotFound(f"{action}: the guest address does not resolve", step_id=step_id)
    if isinstance(exc, OSError):
        # Other socket-level errors (unreachable, refused, reset...): the guest may be rebooting.
        return errors.SSHDropped(f"{action}: {exc}", step_id=step_id)
    return None


#: paramiko raises plain `SSHException` for these, with no subclass: the peer is not an SSH-2 server
#: at all (another service on the port), or proves a host key it does not hold. "Error reading SSH
#: protocol banner" is *not* here: paramiko raises it when the connection closes or times out before
#: the banner (sshd starting, MaxStartups), which passes.
_INCOMPATIBLE_MESSAGES = (
    "Indecipherable protocol version",
    "Invalid SSH banner",
    "Unknown host key type",
    "Signature verification",
)


def _incompatible(exc: paramiko.SSHException) -> bool:
    """True when the failure is a property of the peer, not of the moment (see the table above)."""
    if isinstance(exc, paramiko.ssh_exception.IncompatiblePeer):
        return True  # no common kex/host key/cipher/MAC algorithm, or SSH-1 only
    text = str(exc.args[0]) if exc.args else ""
    return text.startswith(_INCOMPATIBLE_MESSAGES)


@contextlib.contextmanager
def _boundary(step_id: str | None, action: str) -> Iterator[None]:
    try:
        yield
    except errors.WinNodesError:
        raise
    except Exception as exc:
        mapped = map_exception(exc, step_id=step_id, action=action)
        if mapped is None:
            raise
        raise mapped from exc


def _socket(host: str, port: int, timeout: float, proxy: str | None = None) -> socket.socket:
    """A TCP connection to the guest, direct or through an HTTP CONNECT proxy (the site's)."""
    if proxy:
        from winnodes.proxy import tunnel

        sock = tunnel(proxy, host, port, timeout)
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


#: Parsed keys by the SHA-256 of their text: parsing an RSA-4096 key (OpenSSL checks it) costs
#: more CPU than the SSH session it is for, and every task opens sessions with the same key. Kept
#: in this process only, as the block's own value is.
_KEYS: dict[bytes, paramiko.PKey] = {}
_KEYS_MAX = 8
_KEYS_LOCK = threading.Lock()


def load_private_key(pem: str) -> paramiko.PKey:
    """A paramiko key from the text PRE-3 accepts: PKCS#1, PKCS#8 or OpenSSH PEM (RSA, Ed25519 or
    ECDSA; no passphrase). paramiko reads PKCS#1 and OpenSSH but not PKCS#8 ("BEGIN PRIVATE KEY"),
    which WMCO reads: such a key is re-encoded in OpenSSH form in memory first."""
    digest = hashlib.sha256(pem.encode()).digest()
    if (known := _KEYS.get(digest)) is not None:
        return known
    key = _paramiko_key(pem) or _paramiko_key(_as_openssh(pem))
    if key is None:
        raise errors.ConfigError(
            "windows_access.ssh_private_key: not a readable private key without passphrase"
        )
    with _KEYS_LOCK:
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.pop(next(iter(_KEYS)))
        _KEYS[digest] = key
    return key


def _paramiko_key(text: str) -> paramiko.PKey | None:
    for cls in (paramiko.RSAKey, paramiko.Ed25519Key, paramiko.ECDSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))  # type: ignore[attr-defined,no-any-return]
        except (paramiko.SSHException, ValueError):
            continue
    return None


def _as_openssh(pem: str) -> str:
    """`pem` in OpenSSH private key form ("" when cryptography cannot read it either)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode()
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return ""


#: How long output may still come after the exit status before the command counts as ended
#: without its EOF (see `GuestSession._collect`).
EOF_GRACE_SECONDS = 5.0


class _StatusEvent(threading.Event):
    """paramiko's `Channel.status_event`, which also wakes a `select` through a pipe: the channel's
    own pipe signals data and EOF, not the exit status."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd = wake_fd

    def set(self) -> None:
        super().set()
        with contextlib.suppress(OSError):
            os.write(self._wake_fd, b"x")


# -- the session -----------------------------------------------------------------------------------------
class GuestSession:
    """One SSH connection to a guest. Use `connect_guest()` (closes on exit)."""

    def __init__(
        self,
        host: str,
        *,
        username: str,
        private_key: str,
        host_key: str,
        port: int = 22,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        secrets: Sequence[str] = (),
        proxy: str | None = None,
    ) -> None:
        self.host = host
        self.proxy = proxy
        self.port = port
        self.username = username
        self.__pkey = load_private_key(private_key)
        self.__secrets = tuple(s for s in secrets if s)
        self.host_key = host_key.strip()
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._client: paramiko.SSHClient | None = None

    def __repr__(self) -> str:
        return f"GuestSession({self.username}@{self.host}:{self.port})"

    def _redact(self, text: str) -> str:
        return redact(text, self.__secrets)

    def connect(self, step_id: str | None = None) -> GuestSession:
        """Open the SSH connection and verify the host key.

        Raises:
            HostKeyMismatch: the guest's host key is not the trusted one (permanent).
            AuthenticationError: the key was refused (permanent).
            SSHDropped: no connection / it broke (transient: the guest may still be booting).
        """
        client = paramiko.SSHClient()
        if self.host_key.startswith("SHA256:"):
            client.set_missing_host_key_policy(_PinnedFingerprint(self.host_key))
        else:
            key = _parse_key_line(self.host_key)
            client.get_host_keys().add(_known_name(self.host, self.port), key.get_name(), key)
            client.set_missing_host_key_policy(_RejectUnknown())
        with _boundary(step_id, f"SSH to {self.host}:{self.port}"):
            sock = _socket(self.host, self.port, self.connect_timeout, self.proxy)
            try:
                client.connect(
                    self.host,
                    port=self.port,
                    username=self.username,
                    pkey=self.__pkey,
                    sock=sock,
                    timeout=self.connect_timeout,
                    banner_timeout=self.connect_timeout,
                    auth_timeout=self.connect_timeout,
                    channel_timeout=self.connect_timeout,
                    allow_agent=False,
                    look_for_keys=False,
                )
            except BaseException:
                client.close()
                sock.close()
                raise
        self._client = client
        return self

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            raise errors.SSHDropped(f"no SSH connection to {self.host} (closed)")
        return self._client

    def run(
        self, command: str, *, timeout: float | None = None, step_id: str | None = None
    ) -> Result:
        """Run one command; returns its exit code and output (whatever the exit code).

        Raises:
            SSHDropped: the session ended before the command finished.
            CommandTimeout: the command ran longer than `timeout` (default: `command_timeout`);
                transient: the caller's retry opens a new session and runs it again.
        """
        limit = self.command_timeout if timeout is None else timeout
        action = f"run a command on {self.host}"
        with _boundary(step_id, action):
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise errors.SSHDropped(
                    f"the SSH session to {self.host} is closed", step_id=step_id
                )
            chan = transport.open_session(timeout=self.connect_timeout)
            wake_r, wake_w = os.pipe()
            chan.status_event = _StatusEvent(wake_w)  # before exec: the status cannot be earlier
            try:
                chan.exec_command(command)
                return self._collect(chan, wake_r, limit, command, step_id)
            finally:
                chan.close()
                os.close(wake_r)
                os.close(wake_w)

    def _collect(
        self, chan: paramiko.Channel, wake: int, limit: float, command: str, step_id: str | None
    ) -> Result:
        """Drain stdout/stderr until both the exit status and the end of the output (EOF or close)
        arrived. OpenSSH sends the exit status as soon as the command's process exits, which may be
        before it has read and sent the last of the process's output: stopping at the exit status
        returned an empty stdout now and then (the fault matrix saw G7 read "no rule" right after
        creating it). `select` wakes on data, EOF/close (paramiko's channel pipe) and on the exit
        status (`wake`, written by `_StatusEvent`), so nothing polls."""
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + limit
        status_at: float | None = None  # when the exit status arrived
        chan.setblocking(False)
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            ended = chan.eof_received or chan.closed
            if chan.exit_status_ready():
                if status_at is None:
                    status_at = time.monotonic()
                # A process that left a child holding its output open never sends EOF (`ssh`
                # would hang): after a short grace, the exit status alone ends the command.
                if ended or time.monotonic() - status_at >= EOF_GRACE_SECONDS:
                    while chan.recv_ready():
                        out += chan.recv(65536)
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(65536)
                    break
            if chan.closed:
                break
            if status_at is not None:
                select.select([chan.fileno()], [], [], EOF_GRACE_SECONDS)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.CommandTimeout(
                    f"guest command still running after {limit:.0f}s: "
                    f"{truncate(self._redact(command), 200)}",
                    step_id=step_id,
                )
            select.select([chan.fileno(), wake], [], [], left)
            if chan.closed and not chan.exit_status_ready():
                break
        if not chan.exit_status_ready():
            raise errors.SSHDropped(
                f"the SSH session to {self.host} ended before the command finished: "
                f"{truncate(self._redact(command), 200)}",
                step_id=step_id,
            )
        code = chan.recv_exit_status()
        if code == -1:  # the server sent no exit status (the channel was torn down)
            raise errors.SSHDropped(
                f"no exit status from {self.host} (session dropped)", step_id=step_id
            )
        return Result(
            code, out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace")
        )

    def run_checked(self, command: str, *, step_id: str, timeout: float | None = None) -> Result:
        """Like `run`, but a non-zero exit raises `GuestCommandFailed` (redacted stderr tail)."""
        result = self.run(command, timeout=timeout, step_id=step_id)
        if result.exit_code != 0:
            tail = self._redact(result.stderr or result.stdout)[-1000:]
            raise errors.GuestCommandFailed(step_id, self._redact(command), result.exit_code, tail)
        return result

    # -- files -----------------------------------------------------------------------------------------
    @staticmethod
    def sftp_path(path: str) -> str:
        """`C:\\Windows\\Temp\\x.xml` -> `C:/Windows/Temp/x.xml` (what Windows' sftp-server takes)."""
        return path.replace("\\", "/")

    @contextlib.contextmanager
    def _sftp(self, step_id: str | None, action: str) -> Iterator[paramiko.SFTPClient]:
        with _boundary(step_id, action):
            # The channel's timeout is set before the SFTP version exchange: `open_sftp()` sets
            # none, so an sftp-server that never answered hung the step for ever (the fault
            # matrix's SSH stall on a G9 upload).
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise paramiko.SSHException("the SSH session is closed")
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.settimeout(self.command_timeout)
            try:
                channel.invoke_subsystem("sftp")
                sftp = paramiko.SFTPClient(channel)
            except BaseException:
                channel.close()
                raise
            try:
                yield sftp
            finally:
                sftp.close()

    def put_file(self, path: str, data: bytes, *, step_id: str | None = None) -> None:
        """Write `data` to `path` in the guest (C:/... form or backslashes), replacing it."""
        remote = self.sftp_path(path)
        with self._sftp(step_id, f"upload {remote}") as sftp, sftp.open(remote, "wb") as fh:
            fh.write(data)

    def get_file(self, path: str, *, step_id: str | None = None) -> bytes:
        """Read a file from the guest. NotFound when it does not exist."""
        remote = self.sftp_path(path)
        with self._sftp(step_id, f"download {remote}") as sftp, sftp.open(remote, "rb") as fh:
            return bytes(fh.read())


@contextlib.contextmanager
def connect_guest(
    host: str,
    *,
    username: str,
    private_key: str,
    host_key: str,
    port: int = 22,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    secrets: Sequence[str] = (),
    step_id: str | None = None,
    proxy: str | None = None,
) -> Iterator[GuestSession]:
    """A verified SSH session to the guest, closed at the end of the `with` block."""
    session = GuestSession(
        host,
        proxy=proxy,
        username=username,
        private_key=private_key,
        host_key=host_key,
        port=port,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
        secrets=secrets,
    )
    session.connect(step_id)
    try:
        yield session
    finally:
        session.close()
