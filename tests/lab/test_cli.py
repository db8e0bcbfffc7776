"""The lab's own plumbing: run-directory hygiene and the env file, without starting servers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab import cli
from lab.config import LabConfig, infrastructure_id
from lab.paths import LabPaths
from lab.process import LabError, port_in_use, require_binary, require_free_port


def _ctx(tmp_path: Path) -> cli.LabContext:
    paths = LabPaths(root=tmp_path / "lab", cache=tmp_path / "cache")
    cfg = LabConfig.from_env()
    return cli.LabContext(paths=paths, cfg=cfg, infra_id=infrastructure_id(paths, cfg))


def test_infrastructure_id_is_random_and_stable(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    assert ctx.infra_id.startswith(ctx.cfg.cluster_name + "-")
    assert len(ctx.infra_id.split("-")[-1]) == 5
    assert infrastructure_id(ctx.paths, ctx.cfg) == ctx.infra_id


def test_stale_state_is_cleared_but_identity_kept(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    ctx.paths.ensure()
    (ctx.paths.guests / "vm-42").mkdir()
    (ctx.paths.run / "vcsim.pid").write_text("999999\n")
    key = cli.ensure_ssh_key(ctx.paths)["LAB_SSH_PRIVATE_KEY"]
    cli.clear_stale(ctx)
    assert not ctx.paths.guests.exists()
    assert not ctx.paths.run.exists()
    assert Path(key).exists()
    assert infrastructure_id(ctx.paths, ctx.cfg) == ctx.infra_id


def test_refuses_to_clear_a_directory_it_did_not_make(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    ctx.paths.marker.unlink()  # e.g. WINNODES_LAB_DIR pointed at a directory of the user's
    (ctx.paths.root / "precious.txt").write_text("x")
    with pytest.raises(LabError, match="not made by the lab"):
        cli.clear_stale(ctx)
    assert (ctx.paths.root / "precious.txt").exists()


def test_env_file_is_sourceable(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    ctx.paths.ensure()
    ctx.env.update({"GOVC_URL": "https://127.0.0.1:1/sdk", "GOVC_PASSWORD": "a b'c$d"})
    cli.write_env(ctx)
    out = subprocess.run(
        ["bash", "-c", f'source {ctx.paths.env_file} && printf %s "$GOVC_PASSWORD"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "a b'c$d"
    assert cli.load_env(ctx.paths)["GOVC_URL"] == "https://127.0.0.1:1/sdk"


def test_ssh_key_is_pem_rsa_without_passphrase(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    key = Path(cli.ensure_ssh_key(ctx.paths)["LAB_SSH_PRIVATE_KEY"])
    assert key.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    bits = subprocess.run(["ssh-keygen", "-l", "-f", str(key)], capture_output=True, text=True)
    assert bits.stdout.split()[0] == "4096"


def test_missing_lab_is_reported(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="lab is not up"):
        cli.load_env(LabPaths(root=tmp_path / "nothing", cache=tmp_path))


def test_port_in_use_and_missing_binary_are_clear(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        with pytest.raises(LabError, match=f"127.0.0.1:{port} is already in use.*LAB_X_PORT"):
            require_free_port("127.0.0.1", port, "vcsim", "LAB_X_PORT")
    with pytest.raises(LabError, match=r"missing binary .*make lab-bin"):
        require_binary(tmp_path / "vcsim", "run `make lab-bin`")


def test_prefect_db_selects_the_postgres_component(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB_COMPONENTS", raising=False)
    monkeypatch.delenv("LAB_PREFECT_DB", raising=False)
    assert "lab.postgres" not in cli.component_names()  # SQLite: nothing to set up
    monkeypatch.setenv("LAB_PREFECT_DB", "postgres")
    assert cli.component_names()[-1] == "lab.postgres"
    monkeypatch.setenv("LAB_COMPONENTS", "vcsim,postgres")
    assert cli.component_names() == ["lab.vcsim", "lab.postgres"]
    monkeypatch.setenv("LAB_PREFECT_DB", "mysql")
    with pytest.raises(LabError, match="LAB_PREFECT_DB"):
        cli.component_names()
