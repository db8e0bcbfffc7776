"""The lab's own plumbing: run-directory hygiene and the env file, without starting servers."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from lab import cli, vcsim
from lab.config import LabConfig, infrastructure_id
from lab.paths import LabPaths
from lab.process import (
    LabError,
    PortInUse,
    free_guest_net,
    free_port,
    port_in_use,
    require_binary,
    require_free_port,
)


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


# ------------------------------------------------------------------ labs of their own (tests' isolation)
USER_DEFAULTS = {  # what `make demo` runs on: LabConfig's defaults
    "LAB_VCSIM_PORT": "18989",
    "LAB_VCSIM_CONTROL_PORT": "18990",
    "LAB_ETCD_PORT": "12379",
    "LAB_ETCD_PEER_PORT": "12380",
    "LAB_APISERVER_PORT": "16443",
    "LAB_DNS_LISTEN_PORT": "15353",
    "LAB_GUEST_NET": "77",
}


def test_private_settings_stay_off_the_users_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session lab's settings share nothing with the environment's lab (e.g. after `source
    .lab/env`, or a helper's ports in the environment): run directory, ports, guest network; and
    it has every component whatever LAB_COMPONENTS says."""
    for var, value in USER_DEFAULTS.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("LAB_COMPONENTS", "vcsim")
    monkeypatch.setenv("WINNODES_LAB_DIR", str(tmp_path / "users"))
    s = cli.private_settings(tmp_path / "mine")
    assert s["WINNODES_LAB_DIR"] == str(tmp_path / "mine")
    ports = [int(s[var]) for var in cli.PORT_VARS]
    assert len(set(ports)) == len(ports)
    assert not set(ports) & {int(v) for v in USER_DEFAULTS.values()}
    assert s["LAB_GUEST_NET"] != "77"
    assert s["LAB_COMPONENTS"].split(",") == [c.removeprefix("lab.") for c in cli.ALL_COMPONENTS]
    monkeypatch.setenv("LAB_GUEST_NET", "150")
    assert all(cli.private_settings(tmp_path)["LAB_GUEST_NET"] != "150" for _ in range(50))
    assert os.environ["LAB_VCSIM_PORT"] == "18989"  # nothing written to the environment


def test_free_guest_net_skips_networks_in_use() -> None:
    """A guest network where something listens (a running lab's guests' sshd) is never chosen."""
    socks = []
    try:
        for net in range(100, 250):
            if net == 123:
                continue
            s = socket.socket()
            socks.append(s)
            s.bind((f"127.{net}.0.1", 0))
            s.listen()
        assert free_guest_net() == 123
        assert free_guest_net() == 123
    finally:
        for s in socks:
            s.close()


def _vms(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [env["LAB_GOVC"], "find", "/", "-type", "m"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return sorted(out.stdout.split())


@pytest.mark.lab
def test_the_session_lab_leaves_a_running_users_lab_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lab the user runs (a stand-in for `make demo`'s, vcsim only, its settings in the
    environment as after `source .lab/env`) and the session fixture's mechanism (cli.private_lab)
    started beside it: the private lab gets another directory, ports and guest network, a VM made
    in it does not appear in the user's lab, and the user's lab still runs, unchanged, after the
    private one is down. (The fixture used to reuse whatever lab ran in `.lab/`.)"""
    monkeypatch.setenv("WINNODES_LAB_DIR", str(tmp_path / "users"))
    monkeypatch.setenv("LAB_COMPONENTS", "vcsim")
    monkeypatch.setenv("LAB_VCSIM_PORT", str(free_port()))
    monkeypatch.setenv("LAB_VCSIM_CONTROL_PORT", str(free_port()))
    monkeypatch.setenv("LAB_GUEST_NET", str(free_guest_net()))
    users = cli.context()
    cli.up(users)
    try:
        before = _vms(users.env)
        assert before
        with cli.private_lab(tmp_path / "session", ["vcsim"]) as mine:
            assert mine.paths.root != users.paths.root
            assert mine.env["GOVC_URL"] != users.env["GOVC_URL"]
            assert mine.cfg.guest_net != users.cfg.guest_net
            env = mine.env
            folder = env["LAB_VSPHERE_FOLDER"]
            subprocess.run(
                [
                    env["LAB_GOVC"],
                    "vm.clone",
                    "-vm",
                    f"{folder}/{env['LAB_VSPHERE_TEMPLATE']}",
                    "-on=false",
                    "-folder",
                    folder,
                    "-pool",
                    env["LAB_VSPHERE_RESOURCE_POOL"],
                    "e2e-isolation",
                ],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
                timeout=60,
            )
            assert f"{folder}/e2e-isolation" in _vms(env)
        assert os.environ["WINNODES_LAB_DIR"] == str(tmp_path / "users")
        assert vcsim.status(users).startswith("running")
        assert _vms(users.env) == before
    finally:
        cli.down(users)


def test_a_private_lab_whose_port_was_taken_meanwhile_picks_new_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Labs started side by side (fault-matrix jobs) each pick free ports; one may take another's
    before it binds. Before: the second lab failed ("port ... already in use"); now it picks new
    ports and starts. A port taken for good still fails, after PRIVATE_PORT_ATTEMPTS tries."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = str(taken.getsockname()[1])
    real = cli.private_settings
    tries: list[str] = []

    def settings(*args: object, **kwargs: object) -> dict[str, str]:
        s = real(*args, **kwargs)  # type: ignore[arg-type]
        if not tries or always:
            s["LAB_VCSIM_PORT"] = port  # taken meanwhile
        tries.append(s["LAB_VCSIM_PORT"])
        return s

    monkeypatch.setattr(cli, "private_settings", settings)
    try:
        always = False
        with cli.private_lab(tmp_path / "a", ["vcsim"]) as ctx:
            assert ctx.env["LAB_VSPHERE_SERVER"].endswith(":" + tries[-1])
        assert len(tries) == 2 and tries[0] == port != tries[1]
        always, tries[:] = True, []
        with pytest.raises(PortInUse), cli.private_lab(tmp_path / "b", ["vcsim"]):
            pass
        assert len(tries) == cli.PRIVATE_PORT_ATTEMPTS
    finally:
        taken.close()
