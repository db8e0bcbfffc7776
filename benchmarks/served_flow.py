"""The fault matrix's served golden-image flow (the `retry` kill cells, benchmarks/faults.py).

Why a module of its own: the cells' runner (`faults.py --serve`, Prefect's `serve`) starts each flow
run as `python -m prefect.engine`, which loads the flow from the deployment's entrypoint. This
entrypoint is the product's flow itself; importing it here first kills the flow-run process where
the cell says (faults.install_kill_hook) and names the process for the cell (its pid file), which
the product's own module must not know about.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import faults  # noqa: E402
from flows.golden_image import golden_image  # noqa: E402

faults.flow_run_process_started()

__all__ = ["golden_image"]
