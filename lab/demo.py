"""`make demo` while the product's flows are being built: show the lab working end to end.

It does by hand what the golden-image flow will automate: installs a Windows Server VM from ISO with
answer media, waits for VMware Tools to report its IP through vCenter, runs PowerShell on it over
verified SSH, clones it, and reaches the clone over SSH too — printing each step with its duration.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from lab import scenario

if TYPE_CHECKING:
    from lab.cli import LabContext


def _step(title: str) -> float:
    print(f"==> {title}", flush=True)
    return time.monotonic()


def run_demo(ctx: LabContext) -> int:
    from lab.cli import load_env

    env = load_env(ctx.paths)
    site = scenario.Site.from_env(env)
    key_file = env["LAB_SSH_PRIVATE_KEY"]
    public_key = Path(env["LAB_SSH_PUBLIC_KEY"]).read_text()
    suffix = time.strftime("%H%M%S")
    with scenario.connect(site) as si:
        t = _step(
            "G1-G7: install Windows Server 2022 from ISO with answer media (Tools, OpenSSH, key)"
        )
        vm, ip = scenario.install_windows(si, site, f"win-base-{suffix}", public_key)
        print(f"    {vm.name}: VMware Tools report {ip} ({time.monotonic() - t:.1f}s)")

        t = _step("over SSH (host key verified): what the guest says")
        with scenario.ssh(ip, key_file, scenario.host_keys(site, vm)) as c:
            for cmd in (
                "hostname",
                "Get-Service -Name VMTools, sshd | Select-Object Name, Status, StartType",
                "Get-HotFix",
            ):
                _, out, err = scenario.run(c, cmd)
                print(
                    f"    PS> {cmd}\n"
                    + "\n".join("      " + line for line in (out or err).strip().splitlines())
                )
        print(f"    ({time.monotonic() - t:.1f}s)")

        t = _step("G8: clone the base VM and reach the clone over SSH")
        clone = scenario.clone(si, site, vm, f"win-clone-{suffix}", power=True)
        cip = scenario.wait_for_ip(si, clone)
        with scenario.ssh(cip, key_file, scenario.host_keys(site, clone)) as c:
            _rc, out, _ = scenario.run(
                c, "Test-Path C:\\ProgramData\\ssh\\administrators_authorized_keys"
            )
        print(
            f"    {clone.name}: {cip}, authorized key copied with the disk: {out.strip()} "
            f"({time.monotonic() - t:.1f}s)"
        )
    print("\nThe lab is up; `source .lab/env` and try `govc ls " + site.folder + "`.")
    return 0
