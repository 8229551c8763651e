"""The wheel ships every package and config, every config names code that exists, and a new
option is one YAML file: a copy of a strategy's YAML under a new name is a strategy."""

import shutil
from pathlib import Path

import pytest
import tomllib
from conftest import FIGURES, TINY, TINY_MODEL, options
from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.utils import get_object
from omegaconf import OmegaConf

from aetl.commands.train import Config, train
from aetl.errors import AetlError
from aetl.infra.overrides import check

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# Every config group a user selects: the folders of configs/, less Hydra's own settings and
# the experiment bundles (tested as sweeps below).
SELECTABLE = sorted(str(d.relative_to(CONFIGS)) for d in CONFIGS.rglob("*") if d.is_dir() and any(d.glob("*.yaml"))
                    and d.relative_to(CONFIGS).parts[0] not in ("hydra", "experiment", "domain"))


def test_pyproject_lists_every_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "aetl").rglob("__init__.py")}
    assert listed == found | {"aetl.configs"}


def _targets(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)


def selections(configs: Path) -> list[str]:
    return [f"{group}={p.stem}" for group in SELECTABLE for p in sorted((configs / group).glob("*.yaml"))]


def composes_and_names_real_code(override: str, cfg_of=None) -> None:
    role = override.split("=")[0].split("/")[-1]  # source / target when a domain is swapped
    extra = [f"data.{role}.root=/x"] if override.endswith("=folder") else []
    if cfg_of is None:
        with initialize_config_module("aetl.configs", version_base="1.3"):
            cfg = compose("train", overrides=[override, *extra])
    else:
        cfg = cfg_of([override, *extra])
    for target in _targets(OmegaConf.to_container(cfg, resolve=True)):
        assert callable(get_object(target)), target


def test_the_groups_are_read_from_the_config_folders():
    assert {"data", "data/source", "data/target", "model", "strategy", "app", "trainer", "logger"} <= set(SELECTABLE)


@pytest.mark.parametrize("override", selections(CONFIGS))
def test_every_config_option_composes_and_names_real_code(override):
    composes_and_names_real_code(override)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml")))
def test_every_experiment_composes_a_sweep_over_every_strategy(experiment):
    """The benchmark experiments sweep every strategy; `style` is a bundle for one run."""
    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    if experiment == "style":
        assert not params and cfg.model._target_.endswith("FullyConvAE") and cfg.app.name == "style_transfer"
    else:
        assert params.strategy == "scratch,fixed_init,concat,finetune,mixed" and params.seed == "0,1,2"
    for target in _targets(OmegaConf.to_container(cfg.data, resolve=True)):
        assert callable(get_object(target)), target


def test_a_copy_of_a_strategy_yaml_under_a_new_name_is_a_strategy(tmp_path, monkeypatch):
    """The config tree copied, plus configs/strategy/finetune.yaml copied as finetune_copy.yaml
    and nothing else changed: everything the suite derives from the config folders takes it
    in, the command line accepts it, and it trains exactly as finetune does."""
    configs = Path(shutil.copytree(CONFIGS, tmp_path / "configs"))
    shutil.copy(configs / "strategy" / "finetune.yaml", configs / "strategy" / "finetune_copy.yaml")
    assert options("strategy", configs) == options("strategy").replace("finetune,", "finetune, finetune_copy,")

    def cfg_of(overrides):
        with initialize_config_dir(str(configs), version_base="1.3"):
            return compose("train", overrides=overrides)

    for override in selections(configs):
        composes_and_names_real_code(override, cfg_of)
    # the command line's checks (aetl/infra/overrides.py) see it on Hydra's search path
    searchpath = f"hydra.searchpath=[file://{configs}]"
    assert check("train", ["strategy=finetune_copy", searchpath], Config).strategy._target_.endswith("Finetune")
    with pytest.raises(AetlError, match=r"unknown strategy 'finetune_cpy' \(did you mean finetune_copy\?\)"):
        check("train", ["strategy=finetune_cpy", searchpath], Config)
    run = [*TINY, *TINY_MODEL, "cache_dir=null"]
    copy = train(cfg_of([*run, "strategy=finetune_copy"]), tmp_path / "copy")
    with initialize_config_module("aetl.configs", version_base="1.3"):
        original = train(compose("train", overrides=[*run, "strategy=finetune"]), tmp_path / "original")
    assert [copy[k] for k in FIGURES] == [original[k] for k in FIGURES]
