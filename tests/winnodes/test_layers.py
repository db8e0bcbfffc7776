"""The layer contracts (architecture): app -> deployments -> flows -> tasks -> blocks -> winnodes
adapters -> winnodes pure; nothing in the product imports the lab, the lab imports nothing from the
product; the pure layers import no I/O library.

import-linter checks them statically from `[tool.importlinter]` in pyproject.toml (`make test` runs
`lint-imports`); these tests run it on the repository and prove that each contract fails on a
violation, on a small tree of stand-in packages. The pure layers are also checked at run time, in
a fresh interpreter, for what a static check cannot see (imports made by the libraries they use)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
IO_LIBRARIES = ("pyVmomi", "paramiko", "kubernetes", "dns", "prefect", "lab", "requests", "urllib3")

# Stand-ins for every module the contracts name: packages, and winnodes.errors as a module.
STAND_INS = [
    "app",
    "deployments",
    "flows",
    "tasks",
    "blocks",
    "lab",
    "winnodes",
    *(
        f"winnodes.{p}"
        for p in ("vsphere", "guest", "cluster", "dns", "model", "render", "validate")
    ),
]


def _lint(cwd: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    args += [a for c in contracts for a in ("--contract", c)]
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_repository_keeps_every_contract() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 kept, 0 broken" in out.stdout, out.stdout


def _stand_in_tree(tmp_path: Path) -> Path:
    for name in STAND_INS:
        d = tmp_path.joinpath(*name.split("."))
        d.mkdir(parents=True)
        (d / "__init__.py").write_text("")
    (tmp_path / "winnodes" / "errors.py").write_text("")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_stand_in_tree_keeps_every_contract(tmp_path: Path) -> None:
    out = _lint(_stand_in_tree(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("module", "code", "contract"),
    [
        ("winnodes/model/__init__.py", "import winnodes.vsphere\n", "layers"),
        ("winnodes/vsphere/__init__.py", "import blocks\n", "layers"),
        ("blocks/__init__.py", "import tasks\n", "layers"),
        ("tasks/__init__.py", "import flows\n", "layers"),
        ("flows/__init__.py", "import deployments\n", "layers"),
        ("winnodes/__init__.py", "import app\n", "library-below-its-users"),
        ("winnodes/__init__.py", "import flows\n", "library-below-its-users"),
        ("deployments/__init__.py", "import app\n", "layers"),
        ("winnodes/guest/__init__.py", "import lab\n", "product-without-lab"),
        ("app/__init__.py", "from lab import cli\n", "product-without-lab"),
        ("lab/__init__.py", "from winnodes import errors\n", "lab-without-product"),
        ("lab/__init__.py", "import flows\n", "lab-without-product"),
        ("winnodes/render/__init__.py", "import paramiko\n", "pure-without-io"),
        ("winnodes/errors.py", "import prefect\n", "pure-without-io"),
    ],
)
def test_each_contract_fails_on_a_violation(
    tmp_path: Path, module: str, code: str, contract: str
) -> None:
    tree = _stand_in_tree(tmp_path)
    (tree / module).write_text(code)
    out = _lint(tree, contract)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "BROKEN" in out.stdout, out.stdout


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
