"""A fault-injecting proxy in front of the lab's real kube-apiserver (issue 11, Kubernetes part).

Why. The product talks to OpenShift's API with the `kubernetes` client, and what a real cluster does
when it is busy or briefly down (API Priority and Fairness answering 429 with Retry-After, 500/503
Status errors, a load balancer resetting a connection, a watch ending early, a watch resumed from a
compacted resourceVersion answered with 410 "too old resource version") has to be tested against the
real server's own answers, not mocks of the client. kube-apiserver cannot be told to fail on demand,
so this proxy sits in front of it: it forwards every request unchanged (HTTP/1.1, keep-alive, watch
responses streamed event by event as they arrive) and, when a rule matches, answers the way
kube-apiserver does instead. Nothing in the product knows about it; the product's kubeconfig simply
points at the proxy.

TLS. The proxy terminates TLS with a certificate signed by the lab's own Kubernetes serving CA
(`<lab>/pki/kube/serving-ca.*`, lab.pki), so the product keeps verifying the server certificate with
the same CA data as for the real server. It asks for a client certificate (verified against the
lab's client CA when one is sent) and talks to the real apiserver with the lab's admin certificate;
an Authorization header is passed through unchanged.

How it is used (the fault-family runner's choice, benchmarks/faults_kube.py): `running(lab_env)`
starts the proxy in threads of the calling process in front of a (private) lab's apiserver, writes
`<lab>/kube-faults/kubeconfig` and yields the proxy; `proxy.env()` gives KUBECONFIG (through the
proxy), LAB_KUBE_FAULTS_URL and LAB_KUBE_FAULTS_CONTROL_URL. Controllers of the lab (machine-api,
WMCO simulators, kube-controller-manager) keep talking to the real apiserver: faults hit the product
only. `python -m lab.kubefaults` runs the same proxy in the foreground in front of the lab in
WINNODES_LAB_DIR (ports from LAB_KUBE_FAULTS_PORT / LAB_KUBE_FAULTS_CONTROL_PORT, default: free).

Request attributes are derived as kube-apiserver's RequestInfoFactory does: verb from the method
(GET -> get / list / watch with `watch=true`, POST create, PUT update, PATCH patch, DELETE delete /
deletecollection), resource, subresource, namespace and name from the path.

Control endpoint (plain HTTP + JSON on 127.0.0.1, LAB_KUBE_FAULTS_CONTROL_URL):
  GET    /healthz          {"ok": true}
  GET    /rules            {"rules": [rule...]}; each with "id", "hits" (times injected), "seen"
  POST   /rules            add {"verb": "list" | "*", "resource": "machinesets" | "*",
                           "namespace": "", "name": "", "fault": <fault>, "times": 1 (0 = always),
                           "retry_after": 1, "after": 1} -> the rule
  DELETE /rules            remove every rule -> {"cleared": n}
  GET    /stats            {"requests": {"<verb> <resource>": n}, "total": n} since the last reset
  DELETE /stats            start a new count
Faults (what kube-apiserver v1.36 sends, see docs/lab-fidelity.md "Kubernetes API faults (h1)"):
  429          APF rejection: `Retry-After: <retry_after>`, text/plain "Too many requests, please
               try again later." (priority-and-fairness.go tooManyRequests -> http.Error)
  500          Status InternalError "Internal error occurred: ..." (apierrors.NewInternalError)
  503          Status ServiceUnavailable (apierrors.NewServiceUnavailable)
  reset        the connection is closed with a TCP RST after the request was read, no response
  reset-after  the request is forwarded and done by the apiserver, then the connection is reset
               instead of the response (the client cannot know whether its change happened)
  watch-close  a watch ends cleanly (last chunk) after `after` events were relayed
  gone         a watch with a resourceVersion other than ""/"0" gets HTTP 200 and one ERROR event
               with Status 410 Expired "too old resource version: <rv> (<newer>)", then ends
               (cacher.newErrWatcher with watchCache's NewResourceExpired)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import struct
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from lab.pki import CertDir
from lab.process import LabError, json_request, send_json

FAULTS = ("429", "500", "503", "reset", "reset-after", "watch-close", "gone")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}


# ------------------------------------------------------------------------------ request attributes
@dataclass(frozen=True)
class RequestInfo:
    """What kube-apiserver's RequestInfoFactory derives from a request (resource requests only)."""

    verb: str
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    resource_version: str = ""

    @property
    def key(self) -> str:
        res = self.resource + (f"/{self.subresource}" if self.subresource else "")
        return f"{self.verb} {res}" if res else f"{self.verb} (non-resource)"


def request_info(method: str, target: str) -> RequestInfo:
    """Verb, resource, subresource, namespace, name of `method target` (path + query)."""
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query)
    parts = [p for p in url.path.split("/") if p]
    method = method.upper()
    if len(parts) < 3 or parts[0] not in ("api", "apis") or (parts[0] == "apis" and len(parts) < 4):
        return RequestInfo(verb=method.lower())
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    watch_path = False
    if rest and rest[0] == "watch":  # the deprecated /watch/ prefix
        watch_path, rest = True, rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        rest = rest[2:] if len(rest) > 2 else ["namespaces", namespace]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    watch = watch_path or query.get("watch", [""])[0].lower() in ("true", "1")
    if method in ("GET", "HEAD"):
        verb = "get" if name else ("watch" if watch else "list")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    return RequestInfo(
        verb=verb,
        resource=resource,
        subresource=sub,
        namespace=namespace,
        name=name,
        resource_version=query.get("resourceVersion", [""])[0],
    )


# ------------------------------------------------------------------------------------------ rules
@dataclass
class Rule:
    verb: str = "*"
    resource: str = "*"
    namespace: str = ""
    name: str = ""
    fault: str = "503"
    times: int = 1  # 0 = always
    retry_after: int = 1
    after: int = 1  # watch-close: events relayed before the stream ends
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    hits: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; one of {', '.join(FAULTS)}")
        if self.verb != "*" and self.verb not in VERBS:
            raise ValueError(f"unknown verb {self.verb!r}; one of {', '.join(VERBS)} or *")
        if self.fault in ("watch-close", "gone") and self.verb not in ("watch", "*"):
            raise ValueError(f"fault {self.fault} applies to watches only")
        if self.times < 0 or self.retry_after < 0 or self.after < 0:
            raise ValueError("times, retry_after and after are >= 0")

    def matches(self, info: RequestInfo) -> bool:
        resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
        if self.verb != "*" and self.verb != info.verb:
            return False
        if self.resource != "*" and self.resource not in (resource, info.resource):
            return False
        if self.fault in ("watch-close", "gone") and info.verb != "watch":
            return False
        if self.fault == "reset-after" and info.verb == "watch":
            return False  # a watch's response never ends by itself: nothing to reset after
        if self.fault == "gone" and info.resource_version in ("", "0"):
            return False  # only a watch *resumed* from a resourceVersion can be too old
        if self.namespace and self.namespace != info.namespace:
            return False
        return not (self.name and self.name != info.name)


class Rules:
    """The rule table and the request counts, shared by the proxy's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._counts: dict[str, int] = {}

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> int:
        with self._lock:
            n = len(self._rules)
            self._rules.clear()
        return n

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": dict(self._counts), "total": sum(self._counts.values())}

    def reset_stats(self) -> None:
        with self._lock:
            self._counts.clear()

    def decide(self, info: RequestInfo) -> Rule | None:
        """Count the request; the first rule that matches and has injections left, if any (its
        hit count taken)."""
        with self._lock:
            self._counts[info.key] = self._counts.get(info.key, 0) + 1
            for rule in self._rules:
                if not rule.matches(info):
                    continue
                rule.seen += 1
                if rule.times and rule.hits >= rule.times:
                    continue
                rule.hits += 1
                return rule
        return None


# ------------------------------------------------------------------------------ what the server says
def status_body(code: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """A metav1.Status as kube-apiserver serialises it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        **extra,
        "code": code,
    }


def fault_response(rule: Rule, info: RequestInfo) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of an injected 429/500/503 (as kube-apiserver v1.36 sends them)."""
    if rule.fault == "429":
        # priority-and-fairness.go tooManyRequests: Retry-After, then net/http's http.Error.
        return (
            429,
            {
                "Retry-After": str(rule.retry_after),
                "Content-Type": "text/plain; charset=utf-8",
                "X-Content-Type-Options": "nosniff",
            },
            b"Too many requests, please try again later.\n",
        )
    if rule.fault == "500":
        cause = "etcdserver: request timed out (fault injected by the lab)"
        body = status_body(
            500,
            "InternalError",
            f"Internal error occurred: {cause}",
            details={"causes": [{"message": cause}]},
        )
    else:
        body = status_body(
            503, "ServiceUnavailable", "the server is currently unable to handle the request"
        )
    return (
        int(rule.fault),
        {"Content-Type": "application/json", "Cache-Control": "no-cache, private"},
        json.dumps(body).encode(),
    )


def gone_event(resource_version: str) -> bytes:
    """The one event of a watch whose resourceVersion the watch cache no longer holds."""
    try:
        newer = str(int(resource_version) + 1)
    except ValueError:
        newer = "0"
    status = status_body(410, "Expired", f"too old resource version: {resource_version} ({newer})")
    return json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"


# ----------------------------------------------------------------------------------------- proxy
@dataclass(frozen=True)
class Upstream:
    """The real apiserver and how the proxy authenticates to it."""

    url: str
    ca_file: Path
    client_cert: Path | None = None
    client_key: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if self.client_cert and self.client_key:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx

    @property
    def host_port(self) -> tuple[str, int]:
        u = urllib.parse.urlsplit(self.url)
        return u.hostname or "127.0.0.1", u.port or 443


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the lab's logs are enough
        return

    def _upstream(self, fresh: bool = False) -> http.client.HTTPSConnection:
        conn: http.client.HTTPSConnection | None = getattr(self, "_conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            host, port = self.server.upstream.host_port
            conn = http.client.HTTPSConnection(
                host, port, context=self.server.upstream_ctx, timeout=600
            )
            self._conn = conn
        return conn

    def finish(self) -> None:
        with contextlib.suppress(Exception):
            super().finish()
        if (conn := getattr(self, "_conn", None)) is not None:
            conn.close()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        info = request_info(self.command, self.path)
        rule = self.server.rules.decide(info)
        if rule is not None and rule.fault == "reset":
            self._reset()
            return
        if rule is not None and rule.fault in ("429", "500", "503"):
            status, headers, payload = fault_response(rule, info)
            self._send(status, headers, payload)
            return
        if rule is not None and rule.fault == "gone":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(gone_event(info.resource_version))
            self._chunk(b"")
            return
        self._forward(body, info, rule)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _reset(self) -> None:
        """Close with RST and no response (a load balancer or apiserver process going away)."""
        with contextlib.suppress(OSError):  # linger 0: close() sends RST, not FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _forward(self, body: bytes | None, info: RequestInfo, rule: Rule | None) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        host, port = self.server.upstream.host_port
        headers["Host"] = f"{host}:{port}"
        if body is not None:
            headers["Content-Length"] = str(len(body))
        streaming = info.verb == "watch"
        resp: http.client.HTTPResponse | None = None
        for attempt in range(2):  # a kept-alive upstream connection may have been closed
            conn = self._upstream(fresh=streaming or attempt > 0)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                break
            except (http.client.HTTPException, OSError):
                if attempt:
                    raise
        assert resp is not None
        if rule is not None and rule.fault == "reset-after":
            resp.read()
            self._upstream(fresh=True)
            self._reset()
            return
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        chunked = resp.getheader("Transfer-Encoding", "").lower() == "chunked"
        if not chunked:
            payload = resp.read()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
            if resp.will_close:
                self._upstream(fresh=True)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        close_after = rule.after if rule is not None and rule.fault == "watch-close" else None
        try:
            self._relay(resp, close_after)
        finally:
            if streaming or close_after is not None:
                self._upstream(fresh=True)  # the upstream watch ends with its connection

    def _relay(self, resp: http.client.HTTPResponse, close_after: int | None) -> None:
        """Copy a chunked response as it arrives; for watch-close, end it after N events. Either
        side going away ends the relay (the client stopped watching, the apiserver stopped)."""
        try:
            self._copy(resp, close_after)
        except (http.client.HTTPException, OSError):
            self.close_connection = True

    def _copy(self, resp: http.client.HTTPResponse, close_after: int | None) -> None:
        if close_after is None:
            while data := resp.read1(65536):
                self._chunk(data)
            self._chunk(b"")
            return
        events, buf = 0, b""
        while events < close_after and (data := resp.read1(65536)):
            buf += data
            while events < close_after and b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self._chunk(line + b"\n")
                events += 1
        self._chunk(b"")  # a clean end of the stream, as when the watch's timeout expires


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke mid-request is normal traffic for a fault proxy: no traceback."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (OSError, http.client.HTTPException, ssl.SSLError)):
            super().handle_error(request, client_address)

    def __init__(
        self,
        addr: tuple[str, int],
        server_ctx: ssl.SSLContext,
        upstream: Upstream,
        rules: Rules,
    ) -> None:
        super().__init__(addr, _ProxyHandler)
        self.server_ctx = server_ctx
        self.upstream = upstream
        self.upstream_ctx = upstream.ssl_context()
        self.rules = rules

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake in the connection's own thread (a slow client blocks nobody else)."""
        try:
            request.settimeout(30)
            tls = self.server_ctx.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except (ssl.SSLError, OSError):
            return
        try:
            _ProxyHandler(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class _ControlHandler(BaseHTTPRequestHandler):
    server: _ControlServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, status: int, payload: Any) -> None:
        send_json(self, status, payload)

    def do_GET(self) -> None:
        rules = self.server.rules
        if self.path == "/healthz":
            self._reply(200, {"ok": True})
        elif self.path == "/rules":
            self._reply(200, {"rules": rules.list()})
        elif self.path == "/stats":
            self._reply(200, rules.stats())
        else:
            self._reply(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/rules":
            self._reply(404, {"error": f"no such path {self.path}"})
            return
        try:
            raw = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            allowed = {"verb", "resource", "namespace", "name", "fault", "times"}
            allowed |= {"retry_after", "after"}
            unknown = set(raw) - allowed
            if unknown:
                raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
            rule = self.server.rules.add(Rule(**raw))
        except (ValueError, TypeError) as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, asdict(rule))

    def do_DELETE(self) -> None:
        if self.path == "/rules":
            self._reply(200, {"cleared": self.server.rules.clear()})
        elif self.path == "/stats":
            self.server.rules.reset_stats()
            self._reply(200, {"reset": True})
        else:
            self._reply(404, {"error": f"no such path {self.path}"})


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], rules: Rules) -> None:
        super().__init__(addr, _ControlHandler)
        self.rules = rules


class KubeFaultProxy:
    """The proxy and its control endpoint, served by threads of this process."""

    def __init__(
        self,
        upstream: Upstream,
        cert: Path,
        key: Path,
        *,
        client_ca: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
    ) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            ctx.load_verify_locations(cafile=str(client_ca))
            ctx.verify_mode = ssl.CERT_OPTIONAL
        self.rules = Rules()
        self._proxy = _ProxyServer((host, port), ctx, upstream, self.rules)
        self._control = _ControlServer((host, control_port), self.rules)
        self.host = host
        self._threads: list[threading.Thread] = []
        self.kubeconfig: Path | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self._proxy.server_address[1]}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self._control.server_address[1]}"

    def start(self) -> KubeFaultProxy:
        for name, srv in (("kube-faults", self._proxy), ("kube-faults-control", self._control)):
            t = threading.Thread(target=srv.serve_forever, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in (self._proxy, self._control):
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def env(self) -> dict[str, str]:
        out = {"LAB_KUBE_FAULTS_URL": self.url, "LAB_KUBE_FAULTS_CONTROL_URL": self.control_url}
        if self.kubeconfig is not None:
            out["KUBECONFIG"] = str(self.kubeconfig)
        return out


def _lab_proxy(lab_env: dict[str, str], port: int = 0, control_port: int = 0) -> KubeFaultProxy:
    """A proxy in front of the apiserver of the lab whose variables are `lab_env`, with a server
    certificate from the lab's serving CA and a kubeconfig that points at it."""
    lab_dir = Path(lab_env["LAB_DIR"])
    pki = CertDir(lab_dir / "pki" / "kube")
    host = lab_env.get("LAB_APISERVER_ADDRESS", "127.0.0.1")
    if not pki.crt("serving-ca").exists():
        raise LabError(f"{pki.dir} has no serving CA: start the lab's kube component first")
    cert, key = pki.leaf(
        "kube-faults", "serving-ca", "kube-faults-proxy", server=True, dns=["localhost"], ips=[host]
    )
    upstream = Upstream(
        lab_env["LAB_APISERVER_URL"], pki.crt("serving-ca"), pki.crt("admin"), pki.key("admin")
    )
    proxy = KubeFaultProxy(
        upstream,
        cert,
        key,
        client_ca=pki.crt("client-ca"),
        host=host,
        port=port,
        control_port=control_port,
    )
    kubeconfig = yaml.safe_load(Path(lab_env["KUBECONFIG"]).read_text())
    for c in kubeconfig["clusters"]:
        c["cluster"]["server"] = proxy.url
    out = lab_dir / "kube-faults"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"kubeconfig-{proxy._proxy.server_address[1]}"
    path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
    path.chmod(0o600)
    proxy.kubeconfig = path
    return proxy


@contextlib.contextmanager
def running(lab_env: dict[str, str]) -> Iterator[KubeFaultProxy]:
    """The proxy in front of the lab's apiserver while the block runs (threads of this process)."""
    proxy = _lab_proxy(lab_env).start()
    try:
        yield proxy
    finally:
        proxy.stop()
        if proxy.kubeconfig is not None:
            proxy.kubeconfig.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- client
class KubeFaultsControl:
    """Typed client of the control endpoint."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_env(cls, env: dict[str, str]) -> KubeFaultsControl:
        try:
            return cls(env["LAB_KUBE_FAULTS_CONTROL_URL"])
        except KeyError as exc:
            raise LabError("LAB_KUBE_FAULTS_CONTROL_URL is not set: start the proxy") from exc

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return json_request(self.base_url + path, method, body, self.timeout)
        except urllib.error.HTTPError as exc:
            raise LabError(f"kube-faults control: HTTP {exc.code}: {exc.read()!r}") from None

    def add_rule(
        self,
        verb: str,
        resource: str,
        fault: str,
        *,
        times: int = 1,
        namespace: str = "",
        name: str = "",
        retry_after: int = 1,
        after: int = 1,
    ) -> dict[str, Any]:
        rule: dict[str, Any] = self._call(
            "POST",
            "/rules",
            {
                "verb": verb,
                "resource": resource,
                "fault": fault,
                "times": times,
                "namespace": namespace,
                "name": name,
                "retry_after": retry_after,
                "after": after,
            },
        )
        return rule

    def rules(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/rules")["rules"])

    def clear(self) -> int:
        return int(self._call("DELETE", "/rules")["cleared"])

    def stats(self) -> dict[str, int]:
        return dict(self._call("GET", "/stats")["requests"])

    def reset_stats(self) -> None:
        self._call("DELETE", "/stats")


def main(argv: list[str] | None = None) -> int:
    """Run the proxy in the foreground in front of the lab in WINNODES_LAB_DIR (or .lab)."""
    from lab.cli import load_env

    env = load_env()
    port = int(os.environ.get("LAB_KUBE_FAULTS_PORT") or 0)
    control = int(os.environ.get("LAB_KUBE_FAULTS_CONTROL_PORT") or 0)
    proxy = _lab_proxy(env, port, control).start()
    for k, v in proxy.env().items():
        print(f"export {k}={v}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
