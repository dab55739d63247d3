"""Configs do not read the environment unless the user opts in; key references still work; saves round-trip."""

from dataclasses import dataclass, field

import pytest
from omegaconf import OmegaConf

from llmlab.config import ALLOW_ENV_VARIABLE, load_config, save_config
from llmlab.config.interpolation import escape_interpolations, unsafe_resolvers

SECRET = "s3cr3t-token-value"


@dataclass
class Inner:
    lr: float = 1e-3
    min_lr: float = 0.0


@dataclass
class Run:
    name: str = "run"
    note: str = ""
    tags: list[str] = field(default_factory=list)
    optim: Inner = field(default_factory=Inner)


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLAB_TEST_SECRET", SECRET)
    monkeypatch.delenv(ALLOW_ENV_VARIABLE, raising=False)


def test_env_in_yaml_is_refused_naming_key_and_opt_in(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("name: ${oc.env:LLMLAB_TEST_SECRET}\n")
    with pytest.raises(ValueError) as exc:
        load_config(Run, cfg_file)
    msg = str(exc.value)
    assert "'name'" in msg and str(cfg_file) in msg and ALLOW_ENV_VARIABLE in msg and "\n" not in msg
    assert SECRET not in msg


@pytest.mark.parametrize(
    "override",
    [
        "name=${oc.env:LLMLAB_TEST_SECRET}",
        "note=prefix-${oc.env:LLMLAB_TEST_SECRET,default}",
        "name=${oc.decode:${oc.env:LLMLAB_TEST_SECRET}}",  # nested inside a safe resolver
        "tags=[a,${oc.env:LLMLAB_TEST_SECRET}]",
        "name=${some_custom_resolver:x}",  # third-party resolvers may run code
    ],
)
def test_env_in_overrides_is_refused(override):
    with pytest.raises(ValueError, match=ALLOW_ENV_VARIABLE):
        load_config(Run, None, [override])


def test_env_nested_in_yaml_list_names_the_index(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("tags:\n  - ok\n  - ${oc.env:LLMLAB_TEST_SECRET}\n")
    with pytest.raises(ValueError, match=r"config key 'tags\[1\]'"):
        load_config(Run, cfg_file)


def test_opt_in_by_environment_and_by_argument(tmp_path, monkeypatch):
    assert load_config(Run, None, ["name=${oc.env:LLMLAB_TEST_SECRET}"], allow_env=True).name == SECRET
    monkeypatch.setenv(ALLOW_ENV_VARIABLE, "1")
    assert load_config(Run, None, ["name=${oc.env:LLMLAB_TEST_SECRET}"]).name == SECRET
    with pytest.raises(ValueError, match=ALLOW_ENV_VARIABLE):  # the argument wins over the environment
        load_config(Run, None, ["name=${oc.env:LLMLAB_TEST_SECRET}"], allow_env=False)


def test_key_references_and_safe_resolvers_still_resolve(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("optim:\n  lr: 0.5\n  min_lr: ${optim.lr}\nnote: ${oc.select:missing_key,fallback}\n")
    cfg = load_config(Run, cfg_file, ["name=${.note}x"])
    assert cfg.optim.min_lr == 0.5 and cfg.note == "fallback" and cfg.name == "fallbackx"


def test_escaped_env_is_a_literal_and_survives_save(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("name: \\${oc.env:LLMLAB_TEST_SECRET}\n")
    cfg = load_config(Run, cfg_file)
    assert cfg.name == "${oc.env:LLMLAB_TEST_SECRET}"
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert SECRET not in (tmp_path / "out" / "config.yaml").read_text()
    assert load_config(Run, tmp_path / "out" / "config.yaml") == cfg  # not resolved, not refused on reload


@pytest.mark.parametrize("text", ["a${b}", "a\\${b}", "x\\\\${oc.env:HOME}y", "${", "${a", "c:\\dir\\", "no dollars"])
def test_escape_round_trips_through_omegaconf(text):
    assert OmegaConf.create({"v": escape_interpolations(text)}).v == text


def test_unsafe_resolvers_lists_only_unsafe_calls():
    assert unsafe_resolvers("${a.b} ${oc.select:x,1} \\${oc.env:Y}") == []
    assert unsafe_resolvers("${oc.decode:${oc.env:Y}}") == ["oc.env"]
