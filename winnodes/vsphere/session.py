"""A vCenter session: verified TLS, bounded timeouts, one re-login on expiry, always logged out.

Why not `pyVim.connect.SmartConnect`: it cannot take a session that re-logs in *once* (pyvmomi's
`SessionOrientedStub` also retries socket errors, which could start a second CloneVM_Task after a
reset), its thumbprint pinning is unsafe (see `tls`), and its errors are not the product's.

`VSphereSession` wraps the SOAP stub in `_ReloginStub`: a call answered with `NotAuthenticated`
(session expired or terminated on the server) logs in again with the same credentials and repeats the
call one time; a second `NotAuthenticated` becomes `SessionExpired` (transient) at the boundary. This
is safe because a call refused with NotAuthenticated did nothing on the server.

Sharing: one session serves every task of a flow run (`SharedSessions`, keyed by the run), from
several threads: the re-login is done once per expiry, inventory lookups that do not change during
a run are remembered per session (`memo`), and the private property collectors of waits are reused
(`collector`), so a wait costs three calls instead of four and a run one Login instead of one per
task.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import threading
import urllib.parse
from collections.abc import Callable, Hashable, Iterator
from http.cookies import SimpleCookie
from typing import Any

from pydantic import SecretStr
from pyVim.connect import SmartStubAdapter
from pyVmomi import StubAdapterBase, vim

from winnodes import errors
from winnodes.proxy import parse_proxy
from winnodes.vsphere.faults import boundary
from winnodes.vsphere.tls import TlsTrust, ssl_context

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0  # seconds per HTTP request (connect and read); waits stay below it


def parse_server(server: str) -> tuple[str, int]:
    """`vc.example.com`, `vc:8443`, `https://vc/sdk`, `[::1]:443` -> (host, port)."""
    raw = server.strip()
    if "://" not in raw:
        raw = "https://" + raw
    parts = urllib.parse.urlsplit(raw)
    if not parts.hostname:
        raise errors.ConfigError(f"vsphere server: {server!r} has no host name")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise errors.ConfigError(f"vsphere server: {server!r} has an invalid port") from exc
    return parts.hostname, port


class _ReloginStub(StubAdapterBase):  # type: ignore[misc]
    """Delegates to the SOAP stub; on NotAuthenticated logs in again and repeats the call once.

    Thread-safe: tasks of one flow run share a session from several threads. Every login bumps a
    generation; a call refused with NotAuthenticated logs in again only if no other thread did so
    since the call started, so N threads that see one expiry make one Login, not N."""

    def __init__(self, soap: Any, relogin: Callable[[], None]) -> None:
        StubAdapterBase.__init__(self, version=soap.version)
        self.soapStub = soap
        self._relogin = relogin
        self._enabled = False  # only after the first successful login
        self._lock = threading.Lock()
        self.relogins = 0
        self.generation = 0

    def InvokeMethod(self, mo: Any, info: Any, args: Any) -> Any:
        generation = self.generation
        status, obj = self.soapStub.InvokeMethod(mo, info, args, self)
        if status == 200:
            return obj
        if (
            isinstance(obj, vim.fault.NotAuthenticated)
            and self._enabled
            and info.wsdlName not in ("Login", "Logout")
        ):
            with self._lock:
                if self.generation == generation and self._enabled:
                    self._relogin()  # Login is never retried (excluded above): no recursion
                    self.relogins += 1
                    self.generation += 1
            status, obj = self.soapStub.InvokeMethod(mo, info, args, self)
            if status == 200:
                return obj
        raise obj


class VSphereSession:
    """A logged-in vCenter session. Use `connect()`; the password never appears in its repr."""

    def __init__(
        self,
        server: str,
        username: str,
        password: str,
        *,
        trust: TlsTrust | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        proxy: str | None = None,
    ) -> None:
        self.host, self.port = parse_server(server)
        self.proxy = proxy  # HTTP CONNECT proxy 'host:port' (winnodes.proxy), or None
        self.username = username
        self.__password = SecretStr(password)
        self.trust = trust or TlsTrust()
        self.timeout = timeout
        self._stub: _ReloginStub | None = None
        self._si: vim.ServiceInstance | None = None
        self._content: Any = None
        self.ssl_context: Any = None
        self._lock = threading.Lock()
        self._memo: dict[Hashable, Any] = {}
        self._collectors: list[tuple[int, Any]] = []  # idle private collectors (generation, pc)

    def __repr__(self) -> str:
        return f"VSphereSession({self.username}@{self.host}:{self.port})"

    # -- life cycle ------------------------------------------------------------------------------
    def login(self) -> VSphereSession:
        """Open the connection (TLS per `trust`) and log in.

        Raises:
            AuthenticationError: wrong user name or password (permanent).
            Conflict: the server's certificate is not trusted / the pin does not match (permanent).
            ConnectionLost / ApiUnavailable: the server is unreachable or failing (transient).
        """
        with boundary(action=f"connect to vCenter {self.host}:{self.port}"):
            self.ssl_context = ssl_context(
                self.trust, self.host, self.port, self.timeout, self.proxy
            )
            via: dict[str, Any] = {}
            if self.proxy:
                phost, pport = parse_proxy(self.proxy)
                via = {"httpProxyHost": phost, "httpProxyPort": pport}  # pyVmomi tunnels (CONNECT)
            try:
                soap = SmartStubAdapter(
                    host=self.host,
                    port=self.port,
                    sslContext=self.ssl_context,
                    **via,
                    httpConnectionTimeout=self.timeout,
                    connectionPoolTimeout=-1,
                )
            except Exception as exc:
                if type(exc) is Exception:  # "is down or is not a VIM server"
                    raise errors.NotFound(f"{self.host}:{self.port} is not a vSphere API") from exc
                raise
            self._stub = _ReloginStub(soap, self._login_call)
            self._si = vim.ServiceInstance("ServiceInstance", self._stub)
            self._content = self._si.RetrieveContent()
            self._login_call()
            self._stub._enabled = True
        return self

    def https_connection(self, timeout: float) -> http.client.HTTPSConnection:
        """An HTTPS connection to vCenter (datastore HTTP transfers), through the proxy if any,
        verified with the session's TLS context."""
        if not self.proxy:
            return http.client.HTTPSConnection(
                self.host, self.port, context=self.ssl_context, timeout=timeout
            )
        phost, pport = parse_proxy(self.proxy)
        conn = http.client.HTTPSConnection(phost, pport, context=self.ssl_context, timeout=timeout)
        conn.set_tunnel(self.host, self.port)
        return conn

    def _login_call(self) -> None:
        assert self._content is not None
        self._content.sessionManager.Login(
            userName=self.username, password=self.__password.get_secret_value()
        )

    def logout(self) -> None:
        """Log out and close pooled connections; never raises (it runs in `finally`)."""
        if self._stub is None:
            return
        stub, self._stub = self._stub, None
        stub._enabled = False
        with self._lock:
            self._collectors.clear()  # they belong to the session: Logout removes them
        with contextlib.suppress(Exception):
            if self._content is not None:
                self._content.sessionManager.Logout()
        with contextlib.suppress(Exception):
            stub.soapStub.DropConnections()

    # -- what the other modules use ----------------------------------------------------------------
    @property
    def si(self) -> vim.ServiceInstance:
        if self._si is None or self._stub is None:
            raise errors.SessionExpired("the vCenter session is closed (use connect())")
        return self._si

    @property
    def content(self) -> Any:
        self.si  # noqa: B018 (raises when closed)
        assert self._content is not None
        return self._content

    @property
    def relogins(self) -> int:
        """How many times the session was re-established after NotAuthenticated."""
        return self._stub.relogins if self._stub else 0

    @property
    def session_cookie(self) -> str:
        """`vmware_soap_session=...` for the datastore HTTP interface (same session, no password)."""
        assert self._stub is not None
        raw = self._stub.soapStub.cookie or ""
        morsel = SimpleCookie(raw).get("vmware_soap_session")
        if morsel is None:
            raise errors.SessionExpired("vCenter gave no session cookie")
        return f"vmware_soap_session={morsel.coded_value}"

    @property
    def session_key(self) -> str:
        """The server-side key of this session (what SessionManager.TerminateSession takes)."""
        with boundary(action="read the current session"):
            current = self.content.sessionManager.currentSession
            if current is None:
                raise errors.SessionExpired("no current vCenter session")
            return str(current.key)

    def memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """`make()` once per session and key (thread-safe): inventory objects that do not move
        during a run (datacenter, folder, pool, datastore, network). Managed object references stay
        valid across re-logins, so the memo does too. A failing `make` is not remembered."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        value = make()  # outside the lock: it makes calls; a concurrent duplicate is harmless
        with self._lock:
            return self._memo.setdefault(key, value)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._memo.pop(key, None)

    @contextlib.contextmanager
    def collector(self) -> Iterator[Any]:
        """A private PropertyCollector for one wait, reused by later waits of this session.

        Waits in different threads each get their own (a collector's WaitForUpdatesEx reports the
        changes of all its filters). The caller must leave it without filters; one that raised is
        destroyed instead of reused. Collectors of an expired session are dropped (re-login)."""
        stub = self._stub
        generation = stub.generation if stub is not None else -1
        pc = None
        with self._lock:
            while self._collectors:
                gen, candidate = self._collectors.pop()
                if gen == generation:
                    pc = candidate
                    break
        if pc is None:
            pc = self.content.propertyCollector.CreatePropertyCollector()
        try:
            yield pc
        except BaseException:
            with contextlib.suppress(Exception):
                pc.DestroyPropertyCollector()
            raise
        stub = self._stub
        if stub is not None and stub.generation == generation:
            with self._lock:
                self._collectors.append((generation, pc))

    def moref(self, type_name: str, moid: str) -> Any:
        """A managed object of this session from its type and ID (e.g. "Task", "task-42")."""
        cls = getattr(vim, type_name)
        return cls(moid, self._stub)


@contextlib.contextmanager
def connect(
    server: str,
    username: str,
    password: str,
    *,
    trust: TlsTrust | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    proxy: str | None = None,
) -> Iterator[VSphereSession]:
    """A logged-in session that is always logged out at the end of the `with` block.

    Args:
        server: `host`, `host:port` or `https://host[:port]/sdk`.
        trust: TLS trust (CA bundle, pinned thumbprint, or insecure); default: system CAs.
        timeout: seconds for each HTTP request (connect and read).
        proxy: HTTP CONNECT proxy 'host:port' between the product and vCenter, if the site has one.
    """
    session = VSphereSession(server, username, password, trust=trust, timeout=timeout, proxy=proxy)
    try:
        session.login()
        yield session
    finally:
        session.logout()


class SharedSessions:
    """Logged-in sessions shared under a scope (e.g. one flow run) and closed by its owner.

    Why: a session per operation costs a Login and a Logout each time, and vCenters shared by many
    teams limit sessions per user. The registry is thread-safe (tasks of one run may run in
    threads): the first caller of a (scope, identity) logs in while later callers wait for that
    session instead of opening their own. `close(scope)` logs out every session of the scope; it is
    the owner's job to call it (a flow's completion/failure/crash hooks), `close_all` is for exit.
    The identity tells different servers or credentials apart within one scope; it is a key only,
    never shown.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[Hashable, str], VSphereSession] = {}
        self._opening: dict[tuple[Hashable, str], threading.Lock] = {}

    def get(
        self, scope: Hashable, identity: str, open_session: Callable[[], VSphereSession]
    ) -> VSphereSession:
        """The scope's session for `identity`, logged in by `open_session()` the first time."""
        key = (scope, identity)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                return session
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:
            with self._lock:
                session = self._sessions.get(key)
            if session is None:
                session = open_session()
                with self._lock:
                    self._sessions[key] = session
            return session

    def close(self, scope: Hashable) -> int:
        """Log out every session of `scope`; returns how many. Never raises."""
        with self._lock:
            keys = [k for k in self._sessions if k[0] == scope]
            doomed = [self._sessions.pop(k) for k in keys]
            for k in keys:
                self._opening.pop(k, None)
        for session in doomed:
            session.logout()
        if doomed:
            log.debug("logged out %d vCenter session(s) of %s", len(doomed), scope)
        return len(doomed)

    def close_all(self) -> int:
        with self._lock:
            scopes = {k[0] for k in self._sessions}
        return sum(self.close(scope) for scope in scopes)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
