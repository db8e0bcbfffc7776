"""The lab's DNS: a real BIND 9 (`named`) authoritative for the cluster's base domain.

Step DNS1 of the procedure adds `api-int.<cluster>.<base_domain>` next to the `api` record that the
cluster installation created. To exercise that step honestly the lab runs the server a site would run:
BIND, primary for `<base_domain>`, with `api.<cluster>` (and `*.apps.<cluster>`) but deliberately no
`api-int` record, recursion off, and RFC 2136 dynamic updates accepted only when signed with the lab's
TSIG key (hmac-sha256, made by `tsig-keygen` and kept as a BIND key file in the run directory). An
unsigned update is REFUSED and a wrong secret fails TSIG verification, exactly as in the field.

Everything named writes (configuration, zone, journal, pid and session key files) lives in
`<lab>/dns/`, so several labs can run side by side on different ports. Each start from a stopped
state writes a fresh zone and drops the journal: a lab starts clean.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from lab.process import (
    LabError,
    read_pid,
    require_binary,
    require_free_port,
    start_daemon,
    stop_daemon,
)

if TYPE_CHECKING:
    from lab.cli import LabContext
    from lab.paths import LabPaths

NAME = "named"
TSIG_KEY_NAME = "winnodes-lab-ddns"
TSIG_ALGORITHM = "hmac-sha256"
NAMED = Path(shutil.which("named") or "/usr/sbin/named")
TSIG_KEYGEN = Path(shutil.which("tsig-keygen") or "/usr/sbin/tsig-keygen")
_HINT = "install Debian's bind9 and bind9-utils (`make system-deps` runs scripts/system-deps.sh)"


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key as read from a BIND key file (`key "NAME" { algorithm A; secret "B64"; };`)."""

    name: str
    algorithm: str
    secret: str  # base64, as in the key file


def dns_dir(paths: LabPaths) -> Path:
    return paths.root / "dns"


def key_file(paths: LabPaths) -> Path:
    return dns_dir(paths) / "tsig.key"


def zone_name(ctx: LabContext) -> str:
    return ctx.cfg.base_domain.rstrip(".")


def read_tsig_key(path: Path) -> TsigKey:
    """Parse a BIND key file as written by `tsig-keygen` (one key)."""
    text = path.read_text()
    m = re.search(
        r'key\s+"?([^"\s{]+)"?\s*\{\s*algorithm\s+([\w-]+)\s*;\s*secret\s+"([^"]+)"\s*;',
        text,
    )
    if not m:
        raise LabError(f"{path} is not a BIND key file; delete it and start the lab's DNS again")
    return TsigKey(name=m.group(1), algorithm=m.group(2), secret=m.group(3))


def _ensure_key(paths: LabPaths) -> TsigKey:
    f = key_file(paths)
    if not f.exists():
        require_binary(TSIG_KEYGEN, _HINT)
        out = subprocess.run(
            [str(TSIG_KEYGEN), "-a", TSIG_ALGORITHM, TSIG_KEY_NAME],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        f.write_text(out)
        f.chmod(0o600)
    return read_tsig_key(f)


def _zone_text(ctx: LabContext, api_address: str) -> str:
    zone = zone_name(ctx)
    cluster = ctx.cfg.cluster_name
    serial = int(time.time())
    return f"""; written by lab/dns.py; the lab's stand-in for the site's DNS
$ORIGIN {zone}.
$TTL 60
@\tIN SOA ns1.{zone}. hostmaster.{zone}. ( {serial} 3600 600 86400 60 )
@\tIN NS ns1.{zone}.
ns1\tIN A {ctx.cfg.dns_address}
; created by the cluster installation; api-int is what step DNS1 adds
api.{cluster}\tIN A {api_address}
*.apps.{cluster}\tIN A {api_address}
"""


def _named_conf(ctx: LabContext, key: TsigKey) -> str:
    d = dns_dir(ctx.paths)
    zone = zone_name(ctx)
    return f"""// written by lab/dns.py
options {{
\tdirectory "{d}";
\tpid-file "{d}/named.pid";
\tsession-keyfile "{d}/session.key";
\tmanaged-keys-directory "{d}";
\tlisten-on port {ctx.cfg.dns_port} {{ {ctx.cfg.dns_address}; }};
\tlisten-on-v6 {{ none; }};
\trecursion no;
\tallow-query {{ any; }};
\tallow-transfer {{ none; }};
\tdnssec-validation no;
\tnotify no;
}};
controls {{ }};
include "{key_file(ctx.paths)}";
zone "{zone}" {{
\ttype primary;
\tfile "{d}/db.{zone}";
\tjournal "{d}/db.{zone}.jnl";
\tallow-update {{ key "{key.name}"; }};
}};
"""


def _udp_port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _soa_ready(ctx: LabContext) -> bool:
    q = dns.message.make_query(zone_name(ctx) + ".", dns.rdatatype.SOA)
    r = dns.query.udp(q, ctx.cfg.dns_address, port=ctx.cfg.dns_port, timeout=0.5)
    return r.rcode() == dns.rcode.NOERROR and bool(r.answer)


def _env(ctx: LabContext, key: TsigKey) -> dict[str, str]:
    return {
        "LAB_DNS_SERVER": ctx.cfg.dns_address,
        "LAB_DNS_PORT": str(ctx.cfg.dns_port),
        "LAB_DNS_ZONE": zone_name(ctx),
        "LAB_TSIG_KEYFILE": str(key_file(ctx.paths)),
        "LAB_TSIG_KEY_NAME": key.name,
        "LAB_TSIG_ALGORITHM": key.algorithm,
    }


def start(ctx: LabContext, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Start named (or keep the running one) and return the variables clients need.

    `extra_env` goes to named's environment (lab.dns_faults starts a clock-skewed named with it)."""
    ctx.paths.ensure()
    d = dns_dir(ctx.paths)
    d.mkdir(parents=True, exist_ok=True)
    key = _ensure_key(ctx.paths)
    if read_pid(ctx.paths, NAME) is not None:
        try:
            if _soa_ready(ctx):
                return _env(ctx, key)
        except Exception:
            pass
        stop_daemon(ctx.paths, NAME)
    require_binary(NAMED, _HINT)
    require_free_port(ctx.cfg.dns_address, ctx.cfg.dns_port, "the lab's DNS", "LAB_DNS_LISTEN_PORT")
    if _udp_port_in_use(ctx.cfg.dns_address, ctx.cfg.dns_port):
        raise LabError(
            f"the lab's DNS: UDP port {ctx.cfg.dns_address}:{ctx.cfg.dns_port} is already in use by "
            f"another process; stop it (see `ss -lunp 'sport = :{ctx.cfg.dns_port}'`) or choose "
            "another port with LAB_DNS_LISTEN_PORT=<port>"
        )
    api_address = ctx.env.get("LAB_APISERVER_ADDRESS", "127.0.0.1")
    zone = zone_name(ctx)
    for stale in d.glob(f"db.{zone}*"):
        stale.unlink()
    (d / f"db.{zone}").write_text(_zone_text(ctx, api_address))
    conf = d / "named.conf"
    conf.write_text(_named_conf(ctx, key))
    # -g: foreground, log to stderr (our log file); -n 1: one worker thread (the machine is shared).
    start_daemon(
        ctx.paths,
        NAME,
        [str(NAMED), "-g", "-n", "1", "-c", str(conf)],
        ready=lambda: _soa_ready(ctx),
        timeout=20.0,
        env=extra_env,
        cwd=d,
    )
    return _env(ctx, key)


def stop(ctx: LabContext) -> None:
    stop_daemon(ctx.paths, NAME)


def status(ctx: LabContext) -> str:
    pid = read_pid(ctx.paths, NAME)
    if pid is None:
        return "stopped"
    try:
        ok = _soa_ready(ctx)
    except Exception as exc:
        return f"not answering (pid {pid}): {exc}"
    where = f"{ctx.cfg.dns_address}:{ctx.cfg.dns_port}"
    return f"running (pid {pid}, zone {zone_name(ctx)} on {where})" if ok else "not answering SOA"
