"""Where the lab keeps things: one run directory per checkout, one build cache per machine.

The run directory (`.lab/` in the repository, or `$WINNODES_LAB_DIR`) holds everything a running
lab produces and a client needs: `env` (shell exports), `lab.json` (the same, machine-readable), PKI,
SSH keys, logs, sockets and the Windows guests' disks. It is disposable: `lab down` keeps it for
post-mortems, `lab up` on a stopped lab starts from a clean one.

The cache (`$WINNODES_LAB_CACHE`, default `~/.cache/winnodes/lab`) holds the Go-built servers, keyed
by version, so only the first `lab up` on a machine compiles anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _cache_root() -> Path:
    if env := os.environ.get("WINNODES_LAB_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "winnodes" / "lab"


@dataclass(frozen=True)
class LabPaths:
    """Every path the lab uses, derived from one run directory and one cache directory."""

    root: Path
    cache: Path

    @classmethod
    def default(cls) -> LabPaths:
        root = Path(os.environ.get("WINNODES_LAB_DIR") or REPO_ROOT / ".lab")
        return cls(root=root.resolve(), cache=_cache_root())

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def lab_json(self) -> Path:
        return self.root / "lab.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def guests(self) -> Path:
        return self.root / "guests"

    @property
    def datastore(self) -> Path:
        return self.root / "datastore"

    @property
    def media(self) -> Path:
        return self.root / "media"

    @property
    def supervisor_socket(self) -> Path:
        return self.run / "guest-supervisor.sock"

    @property
    def infrastructure_id_file(self) -> Path:
        return self.root / "infrastructure_id"

    def bin(self, name: str, version: str) -> Path:
        """Path of a cached, Go-built binary keyed by its version."""
        return self.cache / f"{name}-{version}" / name

    @property
    def marker(self) -> Path:
        """Present in every run directory the lab made; nothing else is ever wiped."""
        return self.root / ".winnodes-lab"

    def ensure(self) -> None:
        for d in (self.root, self.logs, self.run, self.pki, self.ssh, self.guests, self.media):
            d.mkdir(parents=True, exist_ok=True)
        self.marker.touch()
