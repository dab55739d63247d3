"""Config loading: YAML, dotted overrides, clear errors for unknown keys and bad values."""

from dataclasses import dataclass, field

import pytest

from llmlab.config import Registry, load_config, save_config


@dataclass
class Inner:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class Outer:
    name: str = "run"
    steps: int = 10
    optim: Inner = field(default_factory=Inner)

    def validate(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")


def test_yaml_then_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 20\noptim:\n  lr: 0.5\n")
    cfg = load_config(Outer, cfg_file, ["optim.lr=3e-4", "name=abc"])
    assert cfg.steps == 20 and cfg.optim.lr == pytest.approx(3e-4) and cfg.name == "abc"
    assert cfg.optim.betas == (0.9, 0.99)


def test_unknown_key_names_it(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key 'optim.lrr'"):
        load_config(Outer, None, ["optim.lrr=1"])
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("stepz: 3\n")
    with pytest.raises(ValueError, match=r"unknown config key 'stepz'"):
        load_config(Outer, cfg_file)


def test_bad_value_and_override_form():
    with pytest.raises(ValueError, match=r"bad value for config key 'steps'"):
        load_config(Outer, None, ["steps=ten"])
    with pytest.raises(ValueError, match=r"key=value"):
        load_config(Outer, None, ["steps"])
    with pytest.raises(ValueError, match=r"steps must be positive"):
        load_config(Outer, None, ["steps=0"])


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(Outer, "/nonexistent/x.yaml")


def test_save_round_trip(tmp_path):
    cfg = load_config(Outer, None, ["optim.lr=0.25"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(Outer, tmp_path / "out" / "config.yaml") == cfg
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["config.yaml"]


def test_registry_errors_list_names():
    reg: Registry[int] = Registry("preset")
    reg.add("a", 1)
    assert reg.get("a") == 1 and "a" in reg
    with pytest.raises(ValueError, match="unknown preset 'b'; choose one of: a"):
        reg.get("b")
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 2)


def test_config_to_yaml_reads_back(tmp_path):
    from llmlab.config import config_to_yaml

    cfg = load_config(Outer, None, ["name=a\\${b}", "optim.lr=0.125"])
    (tmp_path / "c.yaml").write_text(config_to_yaml(cfg))
    assert cfg.name == "a${b}" and load_config(Outer, tmp_path / "c.yaml") == cfg
