"""vSphere SOAP calls of one golden-image build: the product vs a govc script, side by side.

`.venv/bin/python benchmarks/vcenter_calls.py` brings up a lab of its own (vcsim + the Windows guest
twin, fresh run directory, free ports, its own guest network), then builds one golden image twice
against it: with the product (the `golden-image` flow, Prefect test harness) and with
`benchmarks/govc_build.sh` (govc doing the same vSphere operations, its session kept on disk between
commands). Both start from the same state: an older template of their series that retention must
delete. The lab's vCenter counts the calls (GET /stats); the script prints calls per method, per
step ID, the totals and the ratio product / govc, then takes its lab down.

What is counted, honestly: the calls of the sessions that logged in during the build (the product's
or govc's), plus the calls made without a session (service content, logins) in that time. Sessions
opened before the count starts are not the build's and are left out: the lab's guest twin watching
its VMs, and this script's own session, which it uses only outside the measured windows to read a
VM's ID. Guest work over SSH (host key, sysprep) makes no vSphere calls on either side.

Steps: the product's calls are split at the boundaries of its run report's steps (the benchmark
wraps `RunReport.step` to read /stats at each entry and exit); calls outside a step (planning, the
existing-template lookup, the final logout) are "outside steps". The govc script's calls are split
by the script step that made them, named with the same step IDs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from lab import cli, media, scenario  # noqa: E402
from lab.pipeline import placement  # noqa: E402
from lab.process import free_port  # noqa: E402
from lab.vcsim import VcsimControl  # noqa: E402

PASSWORD = "Lab-Passw0rd!"
OUTSIDE = "outside steps"
STEP_ORDER = ["G1", "G2", "G3a", "G3b", "G3c", "G4", "G5", "G6", "G7", "G8", "G9", "G10", OUTSIDE]


# ---------------------------------------------------------------------------------------- counting
def measured(stats: dict[str, Any], keys: set[str] | None = None) -> Counter[str]:
    """Calls per method of the sessions in `keys` (default: those that logged in since the reset)
    plus the calls without a session."""
    out: Counter[str] = Counter(stats["anonymous"]["methods"])
    for s in stats["sessions"]:
        if (s["key"] in keys) if keys is not None else s["logins"] > 0:
            out.update(s["methods"])
    return out


class StepCounter:
    """Reads /stats at step boundaries; at the end splits the build's calls by step."""

    def __init__(self, control: VcsimControl) -> None:
        self.control = control
        self.marks: list[tuple[str, dict[str, Any]]] = []  # (label of the segment that ends here)

    def start(self) -> None:
        self.control.reset_stats()
        self.marks = [("", self.control.stats())]

    def mark(self, segment: str) -> None:
        """The calls since the previous mark belong to `segment`."""
        self.marks.append((segment, self.control.stats()))

    def split(self) -> tuple[dict[str, Counter[str]], dict[str, Any]]:
        final = self.marks[-1][1]
        keys = {s["key"] for s in final["sessions"] if s["logins"] > 0}
        per_step: dict[str, Counter[str]] = {}
        previous = measured(self.marks[0][1], keys)
        for segment, stats in self.marks[1:]:
            now = measured(stats, keys)
            per_step.setdefault(segment, Counter()).update(now - previous)
            previous = now
        return per_step, final


# ----------------------------------------------------------------------------------------- the lab
@contextlib.contextmanager
def own_lab(guest_net: str, keep: bool) -> Iterator[dict[str, str]]:
    run_dir = Path(tempfile.mkdtemp(prefix="winnodes-calls-", dir="/tmp"))
    os.environ.update(
        {
            "WINNODES_LAB_DIR": str(run_dir),
            "LAB_COMPONENTS": "vcsim,guest.supervisor",
            "LAB_VCSIM_PORT": str(free_port()),
            "LAB_VCSIM_CONTROL_PORT": str(free_port()),
            "LAB_GUEST_NET": guest_net,
        }
    )
    ctx = cli.context()
    print(f"lab: {run_dir}", flush=True)
    cli.up(ctx)
    try:
        yield dict(ctx.env)
    finally:
        cli.down(ctx)
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def seed_old_template(si: Any, site: scenario.Site, env: dict[str, str], name: str) -> None:
    """An older template of the series, for retention to delete (both builds start like this)."""
    rhcos: Any = scenario.find(si, f"{site.folder}/{env['LAB_VSPHERE_TEMPLATE']}")
    scenario.clone(si, site, rhcos, name, template=True)


# ------------------------------------------------------------------------------------- the product
def product_build(
    env: dict[str, str], site: scenario.Site, si: Any, counter: StepCounter, tag: str
) -> str:
    from flows import reporting
    from flows.golden_image import golden_image
    from tests.flows.cluster_lab import save_vcenter_and_windows_blocks
    from winnodes.model.config import GoldenImageConfig

    save_vcenter_and_windows_blocks(env, "bench-vsphere", "bench-windows", PASSWORD)
    series = f"bench-p-{tag}"
    gi = GoldenImageConfig.model_validate(
        {
            "profile": "current",
            "vsphere_credentials_block": "bench-vsphere",
            "windows_access_block": "bench-windows",
            "placement": placement(env),
            "source": {
                "windows_iso": env["LAB_WINDOWS_ISO_CURRENT"],
                "tools_iso": env["LAB_TOOLS_ISO"],
            },
            "hardware": {"num_cpus": 2, "memory_mib": 4096, "disk_gib": 40},
            "unattend": {"computer_name": "winworker"},
            "names": {"base_vm": f"bench-p-base-{tag}", "template_series": series},
            "keep_templates": 1,
            "timeouts": {
                "vcenter_task_seconds": 120,
                "install_seconds": 300,
                "ssh_seconds": 30,
                "command_seconds": 120,
                "sysprep_seconds": 300,
            },
        }
    )
    seed_old_template(si, site, env, f"{series}-00000000000000")

    original: Callable[..., Any] = reporting.RunReport.step

    @contextlib.contextmanager
    def counted_step(self: Any, step: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        counter.mark(OUTSIDE)
        try:
            with original(self, step, *args, **kwargs) as out:
                yield out
        finally:
            counter.mark(str(step.value))

    reporting.RunReport.step = counted_step  # type: ignore[method-assign]
    try:
        counter.start()
        result = golden_image(gi)
        counter.mark(OUTSIDE)  # includes the logout by the flow's completion hook
    finally:
        reporting.RunReport.step = original  # type: ignore[method-assign]
    return result.template


# ---------------------------------------------------------------------------------------- the govc
def govc_build(
    env: dict[str, str], site: scenario.Site, si: Any, counter: StepCounter, tag: str, work: Path
) -> str:
    from paramiko import PKey

    series = f"bench-g-{tag}"
    build = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    base, template = f"bench-g-base-{tag}", f"{series}-{build}"
    public_key = Path(env["LAB_SSH_PUBLIC_KEY"]).read_text().strip()
    answer = work / "answers.iso"
    media.build_iso(
        answer,
        {
            "/autounattend.xml": scenario.autounattend("winworker", PASSWORD).encode(),
            "/first-logon.ps1": scenario.first_logon_script(
                public_key, firewall_ports=(10250, 9182)
            ).encode(),
        },
        "ANSWERS",
    )
    key_file = env["LAB_SSH_PRIVATE_KEY"]
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", key_file], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    rel = lambda ds_path: ds_path.split("] ", 1)[1]  # noqa: E731 - "[ds] iso/x.iso" -> "iso/x.iso"
    sh_env = dict(env) | {
        "GOVC": env["LAB_GOVC"],
        "GOVMOMI_HOME": str(work / "govmomi"),  # govc's session cache: empty at the start
        "BENCH_DS": site.datastore,
        "BENCH_NET": site.network,
        "BENCH_FOLDER": site.folder,
        "BENCH_POOL": site.resource_pool,
        "BENCH_BASE": base,
        "BENCH_TEMPLATE": template,
        "BENCH_SERIES": series,
        "BENCH_BUILD": build,
        "BENCH_WIN_ISO": rel(site.windows_iso["current"]),
        "BENCH_TOOLS_ISO": rel(site.tools_iso),
        "BENCH_ANSWER_LOCAL": str(answer),
        "BENCH_PROFILE": "current",
        "BENCH_FINGERPRINT": fingerprint,
        "BENCH_TOOLS_VERSION": "12.1.5",
        "BENCH_KEEP": "1",
    }
    script = str(REPO_ROOT / "benchmarks" / "govc_build.sh")

    def step(step_id: str, name: str, *args: str, **more: str) -> str:
        proc = subprocess.run(
            ["bash", script, name, *args],
            env=sh_env | more,
            capture_output=True,
            text=True,
            timeout=900,
        )
        counter.mark(step_id)
        if proc.returncode != 0 or ((name.endswith("-ip") or name == "g2") and not proc.stdout):
            raise RuntimeError(f"govc_build.sh {name} failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout.strip()

    seed_old_template(si, site, env, f"{series}-00000000000000")
    counter.start()
    step("G1", "g1")
    ip = step("G2", "g2").splitlines()[0]
    counter.mark(OUTSIDE)
    vm = scenario.vm_by_name(si, site, base)  # this script's own session: not counted
    keys: list[PKey] = scenario.host_keys(site, vm)
    host_key = f"{keys[0].get_name()} {keys[0].get_base64()}"
    counter.mark(OUTSIDE)  # the same segment boundary again: nothing of govc's in between
    step("G4", "g4", BENCH_HOSTKEY=host_key, BENCH_IP=ip)
    step("G8", "g8")
    clone_ip = step("G9", "g9-ip").splitlines()[0]
    step("G9", "g9-mark", "keys-removed")
    with scenario.ssh(clone_ip, key_file, keys) as c:
        rc, _, err = scenario.run(c, "Remove-Item -Force C:\\ProgramData\\ssh\\ssh_host_*")
        assert rc == 0, err
        sftp = c.open_sftp()
        with sftp.open("C:/Windows/Temp/unattend.xml", "w") as fh:
            fh.write(scenario.sysprep_unattend("winworker", PASSWORD))
        sftp.close()
        step("G9", "g9-mark", "started")
        with contextlib.suppress(Exception):  # the session may drop as the clone shuts down
            scenario.run(
                c,
                "C:\\Windows\\System32\\Sysprep\\sysprep.exe /generalize /oobe /shutdown "
                "/unattend:C:\\Windows\\Temp\\unattend.xml",
            )
    counter.mark("G9")
    step("G9", "g9-wait")
    step("G10", "g10")
    step(OUTSIDE, "logout")
    return template


# --------------------------------------------------------------------------------------------- main
def table(product: dict[str, Counter[str]], govc: dict[str, Counter[str]]) -> None:
    p_total = sum(sum(c.values()) for c in product.values())
    g_total = sum(sum(c.values()) for c in govc.values())
    methods: Counter[str] = Counter()
    g_methods: Counter[str] = Counter()
    for c in product.values():
        methods.update(c)
    for c in govc.values():
        g_methods.update(c)

    print("\nSOAP calls per method")
    print(f"{'method':<34} {'product':>8} {'govc':>8}")
    for m in sorted(set(methods) | set(g_methods), key=lambda m: -(methods[m] + g_methods[m])):
        print(f"{m:<34} {methods[m]:>8} {g_methods[m]:>8}")

    print("\nSOAP calls per step ID")
    print(f"{'step':<34} {'product':>8} {'govc':>8}")
    for s in [s for s in STEP_ORDER if s in product or s in govc]:
        p = sum(product.get(s, Counter()).values())
        g = sum(govc.get(s, Counter()).values())
        print(f"{s:<34} {p:>8} {g:>8}")
    print(f"{'total':<34} {p_total:>8} {g_total:>8}")
    print(f"\nratio product / govc: {p_total / max(1, g_total):.2f} (target <= 0.5)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--guest-net", default=os.environ.get("BENCH_GUEST_NET", "98"))
    parser.add_argument("--keep", action="store_true", help="keep the lab's run directory")
    parser.add_argument("--govc-only", action="store_true", help="skip the product's build")
    args = parser.parse_args(argv)

    os.environ.setdefault("WINNODES_RETRY_DELAY", "0.5")
    from prefect.testing.utilities import prefect_test_harness

    tag = uuid.uuid4().hex[:4]
    with (
        own_lab(args.guest_net, args.keep) as env,
        tempfile.TemporaryDirectory(prefix="winnodes-govc-") as tmp,
        prefect_test_harness(server_startup_timeout=60),
    ):
        control = VcsimControl.from_env(env)
        site = scenario.Site.from_env(env)
        with scenario.connect(site) as si:
            product: dict[str, Counter[str]] = {}
            p_stats: dict[str, Any] = {"sessions": []}
            if not args.govc_only:
                t0 = time.monotonic()
                print("product build (golden-image flow) ...", flush=True)
                counter = StepCounter(control)
                template = product_build(env, site, si, counter, tag)
                product, p_stats = counter.split()
                print(f"  {template} in {time.monotonic() - t0:.0f}s", flush=True)

            t0 = time.monotonic()
            print("govc script build (benchmarks/govc_build.sh) ...", flush=True)
            counter = StepCounter(control)
            template = govc_build(env, site, si, counter, tag, Path(tmp))
            govc, g_stats = counter.split()
            print(f"  {template} in {time.monotonic() - t0:.0f}s", flush=True)

        for who, stats in (("product", p_stats), ("govc", g_stats)):
            logins = [s for s in stats["sessions"] if s["logins"] > 0]
            agents = sorted({s["user_agent"].split()[0] for s in logins})
            print(f"{who}: {len(logins)} session(s) logged in ({', '.join(agents)})")
        table(product, govc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
