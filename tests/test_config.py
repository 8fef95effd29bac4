import pytest
from pydantic import Field

from harness.config import HarnessModel, load_yaml, validate
from harness.errors import ConfigError


class Inner(HarnessModel):
    temperature_K: float = Field(gt=0)
    steps: int = 10


class Outer(HarnessModel):
    name: str
    md: Inner


def write(tmp_path, text):
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_valid_file_loads(tmp_path):
    spec = load_yaml(write(tmp_path, "name: a\nmd:\n  temperature_K: 500\n"), Outer)
    assert spec.md.temperature_K == 500 and spec.md.steps == 10


def test_models_are_frozen(tmp_path):
    spec = load_yaml(write(tmp_path, "name: a\nmd:\n  temperature_K: 500\n"), Outer)
    with pytest.raises(Exception):
        spec.name = "b"


def test_unknown_key_names_file_line_and_path(tmp_path):
    p = write(tmp_path, "name: a\nmd:\n  temperature_K: 500\n  timestep: 0.5\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(p, Outer)
    assert str(exc.value) == f"{p}:4: md.timestep: unknown key"


def test_bad_value_says_what_was_expected(tmp_path):
    p = write(tmp_path, "name: a\nmd:\n  temperature_K: -5\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(p, Outer)
    msg = str(exc.value)
    assert msg.startswith(f"{p}:3: md.temperature_K: ") and "greater than 0" in msg and "(got -5)" in msg


def test_missing_key_points_at_parent(tmp_path):
    p = write(tmp_path, "name: a\nmd:\n  steps: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(p, Outer)
    assert str(exc.value) == f"{p}:2: md.temperature_K: required key missing"


def test_invalid_yaml_and_empty_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"spec.yaml:3: invalid YAML: found character '\\t'"):
        load_yaml(write(tmp_path, "name: a\nmd:\n\t- 1\n"), Outer)
    with pytest.raises(ConfigError, match="config file is empty"):
        load_yaml(write(tmp_path, ""), Outer)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_yaml(tmp_path / "nope.yaml", Outer)
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(write(tmp_path, "- 1\n- 2\n"), Outer)


def test_validate_json_string():
    assert validate(Inner, '{"temperature_K": 300}', source="--opts").temperature_K == 300
    with pytest.raises(ConfigError, match=r"^--opts: invalid JSON"):
        validate(Inner, "{temperature", source="--opts")
    with pytest.raises(ConfigError, match=r"^--opts: steps: Input should be a valid integer"):
        validate(Inner, '{"temperature_K": 300, "steps": "many"}', source="--opts")
