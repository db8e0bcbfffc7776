"""How long things take inside a Windows guest twin: the lab's timing profile.

Real Windows work has very different durations: Windows setup from the ISO takes many minutes, the
OpenSSH Features-on-Demand download minutes, a restart about a minute, one command a second. The
order of events (VMware Tools report an IP while the OpenSSH capability is still being added) and
these proportions are what automation gets wrong, so the lab keeps both, scaled down so a test takes
seconds:

- `LAB_TIMING=fast` (default): the old behaviour, nothing but the supervisor's boot and shutdown
  delays takes time; for unit tests and the quick suite.
- `LAB_TIMING=realistic`: every duration below times `LAB_TIMING_SCALE` (default 0.01: a 15-minute
  setup becomes 9 s, the 3-minute OpenSSH download 1.8 s, a restart 0.6 s).

The supervisor writes the profile into each guest's runtime.json, so the PowerShell emulator running
behind sshd (another process, with sshd's clean environment) sleeps for the same durations.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Real-world durations in seconds (orders of magnitude seen on vSphere; see docs/lab-fidelity.md).
REAL_SECONDS: dict[str, float] = {
    "setup": 900.0,  # Windows Setup from the ISO until the first logon
    "restart": 60.0,  # Restart-Computer until services run again
    "shutdown": 15.0,  # shutdown until the VM is off
    "tools_install": 60.0,  # VMware Tools setup64.exe /S
    "capability": 180.0,  # Add-WindowsCapability OpenSSH.Server: Features-on-Demand download
    "capability_local": 30.0,  # the same from local media (-Source/-LimitAccess) or the MSI
    "psgallery": 60.0,  # Install-Module / Install-Package from PSGallery
    "command": 1.0,  # one short command (a FirstLogonCommand's start-up)
}
DEFAULT_SCALE = 0.01
PROFILES = ("fast", "realistic")


@dataclass(frozen=True)
class Timing:
    profile: str = "fast"
    scale: float = DEFAULT_SCALE
    overrides: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Timing:
        env = os.environ if env is None else env
        profile = env.get("LAB_TIMING", "fast").strip().lower() or "fast"
        if profile not in PROFILES:
            raise ValueError(f"LAB_TIMING={profile!r}: expected one of {', '.join(PROFILES)}")
        try:
            scale = float(env.get("LAB_TIMING_SCALE", DEFAULT_SCALE))
        except ValueError as exc:
            raise ValueError(f"LAB_TIMING_SCALE={env.get('LAB_TIMING_SCALE')!r}") from exc
        return cls(profile, scale)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Timing:
        if not data:
            return cls()
        return cls(
            str(data.get("profile", "fast")),
            float(data.get("scale", DEFAULT_SCALE)),
            {k: float(v) for k, v in dict(data.get("overrides") or {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "scale": self.scale, "overrides": dict(self.overrides)}

    def seconds(self, kind: str) -> float:
        """The lab's duration of `kind` (0 in the fast profile unless overridden)."""
        if kind in self.overrides:
            return self.overrides[kind]
        if self.profile != "realistic":
            return 0.0
        return REAL_SECONDS[kind] * self.scale


def spend(timing: Timing, kind: str, stop: threading.Event | None = None) -> bool:
    """Let `kind`'s duration pass (interruptible by `stop`). False when stopped early."""
    s = timing.seconds(kind)
    if s <= 0:
        return True
    if stop is not None:
        return not stop.wait(s)
    time.sleep(s)
    return True


def spend_on(disk: Any, kind: str) -> None:
    """`spend` with the profile the supervisor wrote into the guest's runtime.json (the emulator
    behind sshd runs in another process)."""
    spend(Timing.from_json(disk.runtime().timing), kind)


#: A running lab's profile can be switched without a restart (tests do): this file next to the
#: guests' disks overrides LAB_TIMING for the supervisor's next decisions.
TIMING_FILE = "timing.json"


def set_lab_timing(guests_dir: Any, timing: Timing | None) -> None:
    """Switch a running lab's timing profile (None: back to LAB_TIMING)."""
    import json
    from pathlib import Path

    path = Path(guests_dir) / TIMING_FILE
    if timing is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timing.to_json()))


def lab_timing(guests_dir: Any, default: Timing) -> Timing:
    import json
    from pathlib import Path

    try:
        return Timing.from_json(json.loads((Path(guests_dir) / TIMING_FILE).read_text()))
    except (OSError, ValueError):
        return default
