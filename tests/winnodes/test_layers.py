"""The pure layers import no I/O library (architecture: model, render, validate are pure), checked
in a fresh interpreter so other tests' imports cannot hide a violation."""

from __future__ import annotations

import subprocess
import sys

IO_LIBRARIES = ("pyVmomi", "paramiko", "kubernetes", "dns", "prefect", "lab", "requests", "urllib3")


def test_pure_layers_import_no_io_library() -> None:
    code = (
        "import sys, winnodes.errors, winnodes.model, winnodes.model.naming, winnodes.render, "
        "winnodes.render.powershell, winnodes.validate, winnodes.plan.rotation, "
        "winnodes.plan.retention, winnodes.plan.status\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {IO_LIBRARIES!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
