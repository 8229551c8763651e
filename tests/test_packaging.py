"""The wheel ships every package and config, and every config names code that exists."""

import tomllib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import get_object
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SELECTABLE = ["data", "data/source", "data/target", "model", "strategy", "app", "trainer", "logger", "hparams_search"]


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


@pytest.mark.parametrize("override", [f"{group}={p.stem}" for group in SELECTABLE
                                      for p in sorted((CONFIGS / group).glob("*.yaml"))])
def test_every_config_option_composes_and_names_real_code(override):
    with initialize_config_module("aetl.configs", version_base="1.3"):
        role = override.split("=")[0].split("/")[-1]  # source / target when a domain is swapped
        extra = [f"data.{role}.root=/x"] if override.endswith("=folder") else []
        cfg = compose("train", overrides=[override, *extra])
    container = OmegaConf.to_container(cfg, resolve=True)
    for target in _targets(container):
        assert callable(get_object(target)), target


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
