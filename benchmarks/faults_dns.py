"""The DNS family of the fault matrix: the cluster-prep flow's step DNS1 under DNS faults.

Why. DNS1 adds `api-int` with an RFC 2136 update signed with TSIG, then checks that it resolves.
A site's DNS server can be slow, silent (UDP dropped, a TCP connection accepted and never
answered), can apply an update whose answer is lost, and refuses updates whose TSIG is wrong or
whose time is off (RFC 8945 §5.2). Transient faults must be retried within DNS1's budget and end
in exactly one api-int record; TSIG refusals must fail at once, naming DNS1, the cause and the fix.

How. The lab's real BIND sits behind `lab.dns_faults.FaultProxy` (UDP+TCP, control endpoint); the
flow's DNS update block points at the proxy, with a 1 s timeout per query/update. The operations
are those a clean run sends through the proxy (baseline): `check:<TYPE>:<label>` (api-int and api
before the update), `update`, `verify:<TYPE>:<label>` (after it). Each operation gets
{slow, silent} x {once, three, always}:
  slow    the message reaches BIND 1.5 s late, after the client gave up (an update is applied and
          its answer lost);
  silent  the message never reaches BIND and nothing answers (UDP dropped; TCP accepted, silent).
Once and three times stay within the tasks' retry budget (4 retries) -> Completed; always ->
Failed@DNS1. Plus: every message 300 ms late (within the timeout) -> Completed; an update whose
answer alone is lost, once -> Completed (idempotency); BADTIME from a second BIND whose clock runs
10 minutes ahead (`lab.dns_faults.start_skewed_named`), BADSIG (wrong secret), BADKEY (unknown key
name) -> Failed@DNS1 after exactly one update (no retry), message naming the cause.

End state, read with dnspython straight from BIND (not through the proxy): exactly one api-int A
record, api's address, and no CNAME; a failed cell is re-run without the fault and must converge.

Usage:
    .venv/bin/python benchmarks/faults_dns.py [--only update] [--sample N --seed S] [--list]
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import faults  # noqa: E402
from benchmarks.faults import Cell, Outcome  # noqa: E402
from lab import dns as lab_dns  # noqa: E402
from lab.dns_faults import DnsFaultControl, FaultProxy, start_skewed_named  # noqa: E402

KIND = "dns"
LAB = ["kube", "dns"]
STEP = "DNS1"
OCP_BLOCK = "fdns-openshift"
WIN_BLOCK = "fdns-windows"
DNS_BLOCK = "fdns-update"  # through the proxy to BIND
SKEWED_BLOCK = "fdns-skewed"  # through a second proxy to the clock-skewed BIND
BADSIG_BLOCK = "fdns-badsig"  # the right key name, a wrong secret
BADKEY_BLOCK = "fdns-badkey"  # a key name BIND does not know
TIMEOUT = 1.0  # the DNS block's timeout of one query or update
SLOW_MS = 1500  # "slow": later than TIMEOUT
WITHIN_MS = 300  # "slow-within": later, but within TIMEOUT
WAIT_SECONDS = 10  # DNS1's budget for the update and its verification
CLOCK_OFFSET = 600  # the skewed BIND's clock: 10 minutes ahead, beyond the 300 s fudge
FAULTS = {"slow": ("delay", SLOW_MS), "silent": ("drop", 0)}
#: The TSIG refusals (RFC 8945 §5.2) and what the error must name.
PERMANENT = {"BADTIME": "clock skew", "BADSIG": "BADSIG", "BADKEY": "BADKEY"}
#: Operations of a clean DNS1 run when no baseline was run (`--list`, the unit test).
DEFAULT_OPS = [
    "check:A:api",
    "check:CNAME:api-int",
    "check:A:api-int",
    "update",
    "verify:A:api",
    "verify:CNAME:api-int",
    "verify:A:api-int",
]


# -------------------------------------------------------------------------------------------- cells
def matrix(ops: list[str]) -> list[Cell]:
    """Every cell of the family, from the operations a clean run sends."""
    cells: list[Cell] = []
    for op in ops:
        for fault in FAULTS:
            for times in faults.TIMES:
                expect = "Failed" if times == "always" else "Completed"
                cells.append(
                    Cell(KIND, op, fault, "", times, expect, STEP if times == "always" else "")
                )
    cells.append(Cell(KIND, "*", "slow-within", "", "always", "Completed"))
    cells.append(Cell(KIND, "update", "lost-answer", "", "once", "Completed"))
    for tsig in PERMANENT:
        cells.append(Cell(KIND, "update", tsig, "", "always", "Failed", STEP))
    return cells


def cells() -> list[Cell]:
    """The family's cells for a clean run's usual operations (the lead's `make faults`)."""
    return matrix(DEFAULT_OPS)


# ---------------------------------------------------------------------------------------- the state
@dataclass
class State:
    proxy: FaultProxy
    control: DnsFaultControl
    skewed_proxy: FaultProxy
    skewed_ctx: Any
    ops: list[str] = field(default_factory=list)
    base_seconds: float = 0.0

    def close(self) -> None:
        self.proxy.stop()
        self.skewed_proxy.stop()
        lab_dns.stop(self.skewed_ctx)


def _bind(env: dict[str, str]) -> tuple[str, int]:
    return env["LAB_DNS_SERVER"], int(env["LAB_DNS_PORT"])


def save_blocks(env: dict[str, str], proxy: FaultProxy, skewed_proxy: FaultProxy) -> None:
    import base64

    from pydantic import SecretStr

    from blocks.dns import DnsUpdateCredentials
    from blocks.openshift import OpenShiftCredentials
    from blocks.windows import WindowsAccess

    OpenShiftCredentials(kubeconfig_path=env["KUBECONFIG"]).save(OCP_BLOCK, overwrite=True)
    WindowsAccess(
        ssh_private_key=SecretStr(Path(env["LAB_SSH_PRIVATE_KEY"]).read_text()),
        administrator_password=SecretStr(faults.PASSWORD),
    ).save(WIN_BLOCK, overwrite=True)
    key = lab_dns.read_tsig_key(Path(env["LAB_TSIG_KEYFILE"]))
    wrong = base64.b64encode(b"\x5a" * 32).decode()
    for name, where, key_name, secret in (
        (DNS_BLOCK, proxy, key.name, key.secret),
        (SKEWED_BLOCK, skewed_proxy, key.name, key.secret),
        (BADSIG_BLOCK, proxy, key.name, wrong),
        (BADKEY_BLOCK, proxy, "no-such-key", key.secret),
    ):
        DnsUpdateCredentials(
            server=where.host,
            port=where.port,
            zone=env["LAB_DNS_ZONE"],
            key_name=key_name,
            algorithm=key.algorithm,
            secret=SecretStr(secret),
            timeout_seconds=TIMEOUT,
        ).save(name, overwrite=True)


def cluster_config(env: dict[str, str], block: str) -> Any:
    from winnodes.model.config import ClusterConfig, DnsConfig

    return ClusterConfig(
        name=env["LAB_CLUSTER_NAME"],
        base_domain=env["LAB_BASE_DOMAIN"],
        openshift_block=OCP_BLOCK,
        dns=DnsConfig(dns_update_block=block, record_type="A", ttl=60),
    )


def _api_int(env: dict[str, str]) -> str:
    return f"api-int.{env['LAB_CLUSTER_NAME']}.{env['LAB_BASE_DOMAIN']}."


def _api(env: dict[str, str]) -> str:
    return f"api.{env['LAB_CLUSTER_NAME']}.{env['LAB_BASE_DOMAIN']}."


def remove_api_int(env: dict[str, str], server: tuple[str, int] | None = None) -> None:
    """Delete api-int straight on BIND (an administrator's signed update), so DNS1 must add it."""
    import dns.name
    import dns.query
    import dns.tsigkeyring
    import dns.update

    key = lab_dns.read_tsig_key(Path(env["LAB_TSIG_KEYFILE"]))
    ring = dns.tsigkeyring.from_text({key.name: (key.algorithm, key.secret)})
    upd = dns.update.UpdateMessage(
        env["LAB_DNS_ZONE"], keyring=ring, keyname=dns.name.from_text(key.name)
    )
    upd.delete(_api_int(env))
    host, port = server or _bind(env)
    r = dns.query.tcp(upd, host, port=port, timeout=5)
    if r.rcode() != 0:
        raise RuntimeError(f"could not delete api-int on {host}:{port}: rcode {r.rcode()}")


def _rrsets(env: dict[str, str], name: str, server: tuple[str, int]) -> dict[str, list[str]]:
    import dns.message
    import dns.query
    import dns.rdatatype

    out: dict[str, list[str]] = {}
    for rdtype in ("A", "CNAME"):
        q = dns.message.make_query(name, rdtype)
        r = dns.query.udp(q, server[0], port=server[1], timeout=5)
        for rrset in r.answer:
            if rrset.name.to_text().lower() == name.lower():
                out.setdefault(dns.rdatatype.to_text(rrset.rdtype), []).extend(
                    rd.to_text() for rd in rrset
                )
    return out


def end_state(env: dict[str, str]) -> list[str]:
    """Straight from BIND (dnspython, not through the proxy): exactly one api-int A record with
    api's address, and no CNAME."""
    bind = _bind(env)
    api = _rrsets(env, _api(env), bind).get("A", [])
    got = _rrsets(env, _api_int(env), bind)
    problems: list[str] = []
    if got.get("CNAME"):
        problems.append(f"api-int has a CNAME {got['CNAME']}")
    if sorted(got.get("A", [])) != api or len(got.get("A", [])) != 1:
        problems.append(f"api-int A records {got.get('A', [])}, expected exactly {api}")
    return problems


# ------------------------------------------------------------------------------------------ the runs
def run_flow(cfg: Any) -> tuple[str, BaseException | None, float]:
    """One cluster-prep flow run in this process: (final state, its exception, seconds)."""
    from flows.cluster_prep import cluster_prep

    t0 = time.monotonic()
    state = cluster_prep(
        cfg, windows_access_block=WIN_BLOCK, dns_wait_seconds=WAIT_SECONDS, return_state=True
    )
    return faults.settle(state, t0)


def prepare(env: dict[str, str]) -> State:
    """Proxies, the clock-skewed BIND, the blocks, and a clean baseline run (the operations)."""
    proxy = FaultProxy(_bind(env)).start()
    root = Path(tempfile.mkdtemp(prefix="winnodes-faults-dns-skewed-", dir="/tmp"))
    skewed_ctx, skewed_env = start_skewed_named(env, root, CLOCK_OFFSET)
    skewed_proxy = FaultProxy((skewed_env["LAB_DNS_SERVER"], int(skewed_env["LAB_DNS_PORT"])))
    skewed_proxy.start()
    state = State(proxy, DnsFaultControl(proxy.control_url), skewed_proxy, skewed_ctx)
    try:
        save_blocks(env, proxy, skewed_proxy)
        remove_api_int(env)
        state.control.reset()
        result, exc, state.base_seconds = run_flow(cluster_config(env, DNS_BLOCK))
        if result != "Completed":
            raise RuntimeError(f"the clean baseline run did not complete: {result} {exc!r}")
        seen = state.control.seen()
        state.ops = [op for op in DEFAULT_OPS if op in seen]
        state.ops += sorted(op for op in seen if op not in DEFAULT_OPS and op != "other")
        if problems := end_state(env):
            raise RuntimeError(f"the clean baseline run left: {problems}")
    except BaseException:
        state.close()
        raise
    return state


def _block_for(cell: Cell) -> str:
    return {"BADTIME": SKEWED_BLOCK, "BADSIG": BADSIG_BLOCK, "BADKEY": BADKEY_BLOCK}.get(
        cell.fault, DNS_BLOCK
    )


def run_cell(env: dict[str, str], state: State, cell: Cell) -> Outcome:
    out = Outcome(cell)
    control = state.control
    skewed = DnsFaultControl(state.skewed_proxy.control_url)
    remove_api_int(env)
    # (the skewed BIND refuses every signed update, so it never holds api-int)
    control.reset()
    skewed.reset()
    count = faults.TIMES[cell.times]
    if cell.fault in FAULTS:
        action, delay = FAULTS[cell.fault]
        control.add_rule(cell.target, action, count, delay)
    elif cell.fault == "slow-within":
        control.add_rule("*", "delay", 0, WITHIN_MS)
    elif cell.fault == "lost-answer":
        control.add_rule("update", "lose", 1)
    try:
        with faults.on_step({}) as entered:
            out.state, exc, out.seconds = run_flow(cluster_config(env, _block_for(cell)))
        out.report_step = next(
            (e.removeprefix("failed:") for e in entered if e.startswith("failed:")), None
        )
        if exc is not None:
            out.failed_step = getattr(exc, "step_id", None)
            out.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        out.hits = control.hits()
        updates = (skewed if cell.fault == "BADTIME" else control).seen().get("update", 0)
    finally:
        control.reset()
        skewed.reset()

    if out.state != cell.expect:
        out.problems.append(f"ended {out.state}, expected {cell.expect}: {out.error}"[:240])
    if cell.expect == "Failed" and out.state == "Failed":
        if out.failed_step != STEP:
            out.problems.append(f"the failure names step {out.failed_step}, expected {STEP}")
        if out.report_step != STEP:
            out.problems.append(f"step {out.report_step} failed in the report, expected {STEP}")
        if cell.fault in PERMANENT:
            out.hits = updates
            if updates != 1:
                out.problems.append(f"{updates} updates sent for a TSIG refusal (retried)")
            if PERMANENT[cell.fault] not in out.error:
                out.problems.append(f"the error does not name {PERMANENT[cell.fault]!r}")
            if cell.fault == "BADTIME" and "NTP" not in out.error:
                out.problems.append("the BADTIME error does not name NTP (the fix)")
            skewed_bind = (state.skewed_ctx.cfg.dns_address, state.skewed_ctx.cfg.dns_port)
            if any(_rrsets(env, _api_int(env), s) for s in (_bind(env), skewed_bind)):
                out.problems.append("a refused update left an api-int record")
    if cell.fault in FAULTS and cell.times != "always" and out.hits != count:
        out.problems.append(f"the fault was hit {out.hits} times, expected {count}")
    if out.state == "Completed":
        out.recovery = max(0.0, out.seconds - state.base_seconds)
    else:  # nothing half-made: a fresh run without the fault converges
        result, exc, seconds = run_flow(cluster_config(env, DNS_BLOCK))
        out.recovery = seconds
        control.reset()
        if result != "Completed":
            out.problems.append(f"re-run ended {result}: {exc!r}"[:200])
    out.problems += end_state(env)
    return out


# --------------------------------------------------------------------------------------------- main
def run_family(
    env: dict[str, str],
    *,
    only: str = "",
    n: int = 0,
    seed: int | None = None,
    deadline: float = 0.0,
    shard: tuple[int, int] = (0, 1),
) -> tuple[list[Outcome], float, list[str]]:
    state = prepare(env)
    try:
        print(
            f"baseline: {len(state.ops)} DNS operations in {state.base_seconds:.1f}s: "
            + ", ".join(state.ops),
            flush=True,
        )
        todo = [c for c in matrix(state.ops) if only in c.name]
        if n:
            todo = faults.sample(todo, n, faults.DEFAULT_SEED if seed is None else seed)
        elif seed is not None:
            todo = faults.sample(todo, len(todo), seed)
        todo = todo[shard[0] :: shard[1]]  # this job's share (benchmarks/fault_matrix.py)
        outcomes: list[Outcome] = []
        for i, cell in enumerate(todo, 1):
            if deadline and time.monotonic() > deadline:
                print(f"time is up after {i - 1} of {len(todo)} cells", flush=True)
                break
            o = run_cell(env, state, cell)
            outcomes.append(o)
            print(
                f"[{i}/{len(todo)}] {cell.name}: {o.state} {faults._failed(o)} {o.seconds:.1f}s "
                f"-> {'pass' if o.passed else 'FAIL ' + '; '.join(o.problems)}",
                flush=True,
            )
        return outcomes, state.base_seconds, state.ops
    finally:
        state.close()


def main(argv: list[str] | None = None) -> int:
    return faults.family_main(
        argv,
        doc=__doc__,
        kind=KIND,
        lab=LAB,
        cells=cells,
        run=run_family,
        title="cluster-prep flow, DNS1",
    )


if __name__ == "__main__":
    raise SystemExit(main())
