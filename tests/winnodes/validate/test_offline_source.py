"""PRE check for offline and proxied sites (issue 9): an offline guest network needs an offline
OpenSSH source (or a proxy), and ocp-4.9's Docker needs a proxy; the error names field, rule, step."""

from __future__ import annotations

from typing import Any

from tests.winnodes.conftest import config_data
from winnodes.model import parse_config
from winnodes.validate import golden_image_problems


def _problems(profile: str = "current", **source: Any) -> list[Any]:
    data = config_data()
    data["golden_image"]["profile"] = profile
    data["golden_image"]["source"].update(source)
    return [p for p in golden_image_problems(parse_config(data).golden_image) if p.rule != "none"]


def _rules(problems: list[Any]) -> set[str]:
    return {p.rule for p in problems}


def test_offline_without_openssh_media_names_the_field_rule_and_g4() -> None:
    probs = [p for p in _problems(offline=True) if p.rule == "offline-openssh-source"]
    assert len(probs) == 1
    p = probs[0]
    assert p.step_id == "G4" and p.field == "golden_image.source.openssh_msi"
    assert "(G4)" in p.message and "0x800f0954" in p.message


def test_offline_with_the_msi_or_a_proxy_is_fine_for_current() -> None:
    msi = "[LocalDS_0] iso/OpenSSH-Win64-v9.5.0.0.msi"
    assert not {"offline-openssh-source", "offline-psgallery"} & _rules(
        _problems(offline=True, openssh_msi=msi)
    )
    assert not {"offline-openssh-source", "offline-psgallery"} & _rules(
        _problems(offline=True, winhttp_proxy="proxy.corp:3128")
    )


def test_offline_ocp49_needs_a_proxy_for_docker() -> None:
    msi = "[LocalDS_0] iso/OpenSSH-Win64-v9.5.0.0.msi"
    probs = [
        p
        for p in _problems("ocp-4.9", offline=True, openssh_msi=msi)
        if p.rule == "offline-psgallery"
    ]
    assert (
        probs and probs[0].step_id == "G6" and probs[0].field == "golden_image.source.winhttp_proxy"
    )


def test_openssh_msi_and_proxy_formats() -> None:
    assert "msi-file" in _rules(_problems(openssh_msi="[LocalDS_0] iso/openssh.zip"))
    assert not _problems(openssh_msi="[LocalDS_0] iso/OpenSSH-Win64-v9.5.0.0.msi")
    assert "host-port" in _rules(_problems(winhttp_proxy="not a proxy"))
    assert not {"host-port"} & _rules(_problems(winhttp_proxy="http://proxy.corp:8080"))
