"""DNS fault points for the lab: a fault proxy in front of BIND, and a BIND whose clock is off.

Why. Step DNS1 talks to the site's DNS server over UDP (queries) and TCP (the RFC 2136 update). The
failures a site's server really shows are: slow answers (a loaded server, a long path), no answer at
all (UDP datagrams dropped by a firewall or an overloaded server, a TCP connection accepted by a
load balancer or a stuck server that never answers), an update applied whose answer is lost on the
way back, and TSIG refusals (RFC 8945 §5.2: BADKEY, BADSIG, BADTIME). The lab's BIND is real, so the
refusals come from BIND itself; the transport faults come from this proxy, which forwards each DNS
message to BIND unchanged unless a rule says otherwise.

The proxy (`FaultProxy`) listens on UDP and TCP on one port and forwards to BIND. Every message is
named by the operation DNS1 performs, read from the message itself (dnspython), so that the fault
matrix can aim at one operation:

    update                       an RFC 2136 UPDATE (opcode 5)
    check:<TYPE>:<first label>   a query before any update succeeded, e.g. check:A:api
    verify:<TYPE>:<first label>  the same query after BIND answered an update NOERROR

Rules (`Rule`): `op` (an operation name or "*"), `action`, `count` (1, N, or 0 = always) and `hits`:
    delay  forward after `delay_ms` (the answer may come after the client gave up; an update is
           then applied although the client saw a timeout)
    drop   the server never sees the message and never answers (UDP: nothing comes back; TCP: the
           connection is accepted, the message read, and it stays silent until the client closes)
    lose   the server applies the message, its answer is lost on the way back

"Connection refused" (a stopped server) is not a rule: the client sees it at once, as it sees a
reset (`ConnectionRefusedError` is an `OSError` like a reset), so it adds nothing over `drop`
except speed; a UDP "port unreachable" cannot be produced from user space.

The control endpoint (HTTP, JSON, `DnsFaultControl` is its client) lists, adds and clears rules with
their hit counts, and reports the operations the proxy saw (the matrix's baseline).

The clock-skewed BIND (`start_skewed_named`): a second named with the lab's key and zone whose
wall clock runs `offset` seconds off, so that BIND itself answers BADTIME to a signed update when
the offset exceeds the fudge (300 s, RFC 8945 §5.2.3). Debian's libfaketime does not work with
named 9.18: named links jemalloc, whose initialisation calls clock_gettime() inside libfaketime's
own initialisation ("Cannot recover from unexpected recursive calls to clock_gettime()"), and named
then hangs before listening. The lab therefore preloads a ten-line shim of its own (compiled once
into the cache with the system's C compiler) that shifts CLOCK_REALTIME, gettimeofday() and time()
with a raw system call and no dlsym/malloc. BIND's monotonic clock is left alone, as NTP would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import socket
import socketserver
import struct
import subprocess
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype

from lab.process import LabError, free_port, json_request, send_json

if TYPE_CHECKING:
    from lab.cli import LabContext

ACTIONS = ("delay", "drop", "lose")


# ------------------------------------------------------------------------------------- the rules
@dataclass
class Rule:
    """One fault: on messages of `op` ("*": any), do `action`, `count` times (0: always)."""

    op: str
    action: str
    count: int = 1
    delay_ms: int = 0
    hits: int = 0
    id: int = 0

    def matches(self, op: str) -> bool:
        return (self.op == "*" or self.op == op) and (self.count == 0 or self.hits < self.count)


def operation(wire: bytes, updated: bool) -> str:
    """The DNS1 operation a message is (see the module docstring); "other" when unreadable."""
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=True, keyring=False)
    except (dns.exception.DNSException, ValueError):
        return "other"
    if msg.opcode() == dns.opcode.UPDATE:
        return "update"
    if not msg.question:
        return "other"
    q = msg.question[0]
    first = q.name.labels[0].decode(errors="replace").lower() if q.name.labels else ""
    phase = "verify" if updated else "check"
    return f"{phase}:{dns.rdatatype.to_text(q.rdtype)}:{first}"


# -------------------------------------------------------------------------------------- the proxy
class FaultProxy:
    """UDP+TCP DNS proxy to `upstream` with fault rules and an HTTP control endpoint."""

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.host = host
        self.port = free_port(host)
        self.control_port = free_port(host)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._next_id = 1
        self.seen: Counter[str] = Counter()
        self.updated = False  # BIND answered an update NOERROR since the last reset
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((host, self.port))
        self._udp.settimeout(0.2)
        proxy = self

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._tcp_client(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._tcp = Server((host, self.port), Tcp)

        class Control(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                send_json(self, status, body)

            def do_GET(self) -> None:
                if self.path == "/rules":
                    self._send(200, proxy.rules())
                elif self.path == "/seen":
                    self._send(200, dict(proxy.seen))
                else:
                    self._send(404, {"error": "GET /rules or /seen"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path == "/rules":
                    try:
                        self._send(200, asdict(proxy.add_rule(**body)))
                    except (TypeError, ValueError) as exc:
                        self._send(400, {"error": str(exc)})
                elif self.path == "/reset":
                    proxy.reset()
                    self._send(200, {})
                else:
                    self._send(404, {"error": "POST /rules or /reset"})

            def do_DELETE(self) -> None:
                proxy.clear_rules()
                self._send(200, {})

        self._control = ThreadingHTTPServer((host, self.control_port), Control)
        self._control.daemon_threads = True

    # -- control
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    def add_rule(self, op: str, action: str, count: int = 1, delay_ms: int = 0) -> Rule:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
        if count < 0 or delay_ms < 0:
            raise ValueError("count and delay_ms are >= 0")
        with self._lock:
            rule = Rule(op, action, int(count), int(delay_ms), 0, self._next_id)
            self._next_id += 1
            self._rules.append(rule)
            return rule

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def reset(self) -> None:
        """No rules, nothing seen, back to the check phase (a new flow run)."""
        with self._lock:
            self._rules.clear()
            self.seen.clear()
            self.updated = False

    def _decide(self, wire: bytes) -> tuple[str, Rule | None]:
        with self._lock:
            op = operation(wire, self.updated)
            self.seen[op] += 1
            for rule in self._rules:
                if rule.matches(op):
                    rule.hits += 1
                    return op, dataclasses.replace(rule)
            return op, None

    def _note_answer(self, op: str, answer: bytes) -> None:
        if op == "update" and len(answer) >= 4 and (answer[3] & 0x0F) == dns.rcode.NOERROR:
            with self._lock:
                self.updated = True

    # -- the data path
    def _upstream_udp(self, wire: bytes, timeout: float = 5.0) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(wire, self.upstream)
            try:
                return s.recv(65535)
            except OSError:
                return None

    def _upstream_tcp(self, wire: bytes, timeout: float = 5.0) -> bytes | None:
        try:
            with socket.create_connection(self.upstream, timeout=timeout) as s:
                s.sendall(struct.pack("!H", len(wire)) + wire)
                return _read_tcp_message(s)
        except OSError:
            return None

    def _udp_one(self, wire: bytes, client: tuple[str, int]) -> None:
        op, rule = self._decide(wire)
        if rule is not None and rule.action == "drop":
            return
        if rule is not None and rule.action == "delay":
            time.sleep(rule.delay_ms / 1000)
        answer = self._upstream_udp(wire)
        if answer is None:
            return
        self._note_answer(op, answer)
        if rule is not None and rule.action == "lose":
            return
        with contextlib.suppress(OSError):
            self._udp.sendto(answer, client)

    def _udp_loop(self) -> None:
        while not self._closing.is_set():
            try:
                wire, client = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._udp_one, args=(wire, client), daemon=True)
            t.start()

    def _tcp_client(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        while not self._closing.is_set():
            try:
                wire = _read_tcp_message(conn)
            except OSError:
                return
            if wire is None:
                return
            op, rule = self._decide(wire)
            if rule is not None and rule.action in ("drop", "lose"):
                if rule.action == "lose":
                    answer = self._upstream_tcp(wire)
                    if answer is not None:
                        self._note_answer(op, answer)
                _silent_until_closed(conn, self._closing)
                return
            if rule is not None and rule.action == "delay":
                time.sleep(rule.delay_ms / 1000)
            answer = self._upstream_tcp(wire)
            if answer is None:
                return
            self._note_answer(op, answer)
            try:
                conn.sendall(struct.pack("!H", len(answer)) + answer)
            except OSError:
                return

    def start(self) -> FaultProxy:
        for target in (self._udp_loop, self._tcp.serve_forever, self._control.serve_forever):
            t = threading.Thread(target=target, daemon=True, name=f"dns-fault-proxy-{target}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._closing.set()
        self._tcp.shutdown()
        self._control.shutdown()
        self._tcp.server_close()
        self._control.server_close()
        self._udp.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _read_tcp_message(conn: socket.socket) -> bytes | None:
    """One DNS message over TCP (RFC 1035 §4.2.2: two-byte length prefix); None at EOF."""
    head = _read_exact(conn, 2)
    if head is None:
        return None
    return _read_exact(conn, struct.unpack("!H", head)[0])


def _silent_until_closed(conn: socket.socket, closing: threading.Event) -> None:
    """Keep an accepted connection open and answer nothing until the client gives up."""
    conn.settimeout(0.5)
    while not closing.is_set():
        try:
            if not conn.recv(4096):
                return
        except TimeoutError:
            continue
        except OSError:
            return


class DnsFaultControl:
    """Client of the proxy's control endpoint (what the fault matrix and the tests use)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return json_request(self.url + path, method, body, timeout=10)

    def add_rule(self, op: str, action: str, count: int = 1, delay_ms: int = 0) -> dict[str, Any]:
        rule: dict[str, Any] = self._call(
            "POST", "/rules", {"op": op, "action": action, "count": count, "delay_ms": delay_ms}
        )
        return rule

    def rules(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self._call("GET", "/rules")
        return rules

    def hits(self) -> int:
        return sum(int(r["hits"]) for r in self.rules())

    def seen(self) -> dict[str, int]:
        seen: dict[str, int] = self._call("GET", "/seen")
        return seen

    def clear_rules(self) -> None:
        self._call("DELETE", "/rules")

    def reset(self) -> None:
        self._call("POST", "/reset", {})


# --------------------------------------------------------------------------- the skewed clock
_SHIM_C = r"""
/* winnodes lab: shift the wall clock by WINNODES_CLOCK_OFFSET seconds (LD_PRELOAD). Raw system call,
   no dlsym and no malloc, so it is safe in processes linked with jemalloc (named 9.18). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <time.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <unistd.h>
static long offset(void) {
  static long s = 0; static int read = 0;
  if (!read) { const char *v = getenv("WINNODES_CLOCK_OFFSET"); s = v ? atol(v) : 0; read = 1; }
  return s;
}
int clock_gettime(clockid_t c, struct timespec *ts) {
  long r = syscall(SYS_clock_gettime, c, ts);
  if (r == 0 && (c == CLOCK_REALTIME || c == CLOCK_REALTIME_COARSE)) ts->tv_sec += offset();
  return (int)r;
}
int gettimeofday(struct timeval *tv, void *tz) {
  struct timespec ts; int r = clock_gettime(CLOCK_REALTIME, &ts);
  (void)tz;
  if (r == 0 && tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
  return r;
}
time_t time(time_t *t) {
  struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts);
  if (t) *t = ts.tv_sec;
  return ts.tv_sec;
}
"""
_CC_HINT = "install Debian's gcc and libc6-dev (`make system-deps` runs scripts/system-deps.sh)"


def clock_shim(cache: Path) -> Path:
    """The LD_PRELOAD clock shim, compiled once per machine into the lab's cache."""
    tag = hashlib.sha256(_SHIM_C.encode()).hexdigest()[:10]
    out = cache / f"clock-shim-{tag}" / "libwinnodes-clock.so"
    if out.exists():
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise LabError(f"the clock-skewed DNS server needs a C compiler: {_CC_HINT}")
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".c")
    src.write_text(_SHIM_C)
    tmp = out.with_suffix(".tmp")
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(src)], check=True)
    tmp.replace(out)
    return out


def skewed_context(env: dict[str, str], root: Path) -> LabContext:
    """A lab context for a second named in `root`, on a free port, serving the running lab's zone
    (from its variables `env`) with the lab's TSIG key."""
    from lab import dns as lab_dns
    from lab.cli import LabContext
    from lab.config import LabConfig
    from lab.paths import LabPaths

    paths = LabPaths(root=root, cache=LabPaths.default().cache)
    address = env["LAB_DNS_SERVER"]
    cfg = dataclasses.replace(
        LabConfig.from_env(),
        dns_address=address,
        dns_port=free_port(address),
        cluster_name=env["LAB_CLUSTER_NAME"],
        base_domain=env["LAB_BASE_DOMAIN"],
    )
    skewed = LabContext(paths=paths, cfg=cfg, infra_id="lab-skewed-dns", env=dict(env))
    lab_dns.dns_dir(paths).mkdir(parents=True, exist_ok=True)
    key = lab_dns.key_file(paths)
    shutil.copyfile(env["LAB_TSIG_KEYFILE"], key)
    key.chmod(0o600)
    return skewed


def start_skewed_named(
    env: dict[str, str], root: Path, offset: int
) -> tuple[LabContext, dict[str, str]]:
    """Start a second named (the running lab's zone and key, its variables `env`) in `root` whose
    wall clock is `offset` seconds off; returns its context (for `lab.dns.stop`) and variables."""
    from lab import dns as lab_dns

    skewed = skewed_context(env, root)
    shim = clock_shim(skewed.paths.cache)
    started = lab_dns.start(
        skewed, extra_env={"LD_PRELOAD": str(shim), "WINNODES_CLOCK_OFFSET": str(int(offset))}
    )
    return skewed, started
