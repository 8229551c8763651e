"""Shared fixtures: configs composed with Hydra's compose API on tiny synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

# Small, fast settings every in-process test starts from.
TINY = [
    "data=synthetic_pair",
    "trainer.device=cpu",
    "trainer.progress=false",
    "trainer.pretrain.steps=20",
    "trainer.pretrain.batch_size=16",
    "trainer.transfer.steps=10",
    "trainer.transfer.batch_size=8",
    "trainer.eval_every=5",
]
TINY_MODEL = ["model=mlp", "model.hidden=[32]", "model.latent_dim=4"]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group: str) -> str:
    """A config group's options as aetl lists them ("concat, finetune, ..."), read from the
    config folder, so that a new option (one YAML file) needs no test edited."""
    return ", ".join(sorted(p.stem for p in (CONFIGS / group).glob("*.yaml")))


@pytest.fixture
def make_cfg():
    """make_cfg(*overrides) -> the composed `train` config with TINY (and TINY_MODEL,
    unless the overrides choose a model) applied first."""

    def make(*overrides: str) -> DictConfig:
        model = [] if any(o.startswith("model=") for o in overrides) else TINY_MODEL
        with initialize_config_module("aetl.configs", version_base="1.3"):
            return compose("train", overrides=[*TINY, *model, *overrides])

    return make


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Seeded, with a source cache of its own (cache_dir reads AETL_CACHE_DIR)."""
    torch.manual_seed(0)
    monkeypatch.setenv("AETL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
