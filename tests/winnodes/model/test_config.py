"""YAML loading, defaults from the procedure, structural errors and the Prefect-form constraints."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from tests.winnodes.conftest import config_data
from winnodes.errors import ConfigError
from winnodes.model import config as cfg
from winnodes.model import load_config

REPO = Path(__file__).resolve().parents[3]


def test_defaults_from_the_procedure() -> None:
    c = cfg.parse_config(config_data())
    ms = c.machineset
    assert (ms.disk_gib, ms.memory_mib, ms.num_cpus, ms.num_cores_per_socket) == (128, 16384, 4, 1)
    assert ms.credentials_secret == "vsphere-cloud-credentials"
    assert ms.user_data_secret == "windows-user-data"
    assert c.golden_image.hardware.hardware_version == "vmx-15"
    assert c.cluster.api_int_name == "api-int.ocp.example.com"


def test_load_from_text_and_from_path(tmp_path: Path) -> None:
    text = yaml.safe_dump(config_data())
    from_text = load_config(text)
    p = tmp_path / "pipeline.yaml"
    p.write_text(text)
    assert load_config(p) == from_text == load_config(str(p))


def test_structural_errors_are_collected_with_field_and_step() -> None:
    data = config_data()
    data["machineset"]["replicas"] = -1
    data["golden_image"]["hardware"] = {"firmware": "uefi"}
    data["golden_image"]["unknown"] = 1
    with pytest.raises(ConfigError) as info:
        cfg.parse_config(data)
    by_field = {p.field: p for p in info.value.problems}
    assert by_field["machineset.replicas"].step_id == "M5"
    assert by_field["golden_image.hardware.firmware"].step_id == "G1"
    assert "golden_image.unknown" in by_field
    assert "machineset.replicas" in str(info.value) and "(M5)" in str(info.value)


@pytest.mark.parametrize("text", ["- a list", "key: [unclosed"])
def test_bad_yaml(text: str) -> None:
    with pytest.raises(ConfigError):
        load_config(text)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for f in model.model_fields.values():
        for t in (f.annotation, *getattr(f.annotation, "__args__", ())):
            if isinstance(t, type) and issubclass(t, BaseModel):
                _models(t, seen)


def test_every_field_has_a_description_and_no_secret_types() -> None:
    seen: set[type[BaseModel]] = set()
    _models(cfg.PipelineConfig, seen)
    assert len(seen) >= 10
    for model in seen:
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"
            assert "Secret" not in str(f.annotation), f"{model.__name__}.{name} is a secret"
            assert "password" not in name and "private_key" not in name


def test_json_schema_renders() -> None:
    schema = cfg.PipelineConfig.model_json_schema()
    assert "golden_image" in schema["properties"]


def test_example_pipeline_file_loads_and_validates() -> None:
    from winnodes.validate import collect_problems

    c = load_config(REPO / "examples" / "pipeline.example.yaml")
    assert collect_problems(c) == []
