"""`aetl augment run=<run dir>`: latent-space augmentation with a finished run's autoencoder."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from aetl.apps import load_run
from aetl.data import load_pair
from aetl.errors import reports_errors
from aetl.fit import FitChoice
from aetl.rundir import Run, register_resolvers
from aetl.schema import check_config
from aetl.train import pick_device

register_resolvers()
# What the report groups by, copied from the trained run's summary.
KEPT = ("strategy", "source", "target", "seed", "labels_per_class", "n_target_train", "source_labels",
        "transfer_steps", "target_mse", "target_psnr")


@hydra.main(version_base="1.3", config_path="pkg://aetl.configs", config_name="augment")
@reports_errors
def main(cfg: DictConfig) -> dict:
    return augment(cfg, Path(HydraConfig.get().runtime.output_dir))


def augment(cfg: DictConfig, out_dir: Path) -> dict:
    check_config(cfg)
    run = Run(out_dir)
    device = pick_device(cfg.device)
    model, trained = load_run(cfg.run, device)
    source = json.loads((Path(str(cfg.run)).expanduser() / "summary.json").read_text())
    fit = FitChoice.from_summary(source, "target")  # the run's own
    pair = load_pair(trained.data, trained.seed, device, fit=fit, cache_dir=trained.get("cache_dir"))
    summary = {"run": str(cfg.run), **{k: source.get(k) for k in KEPT}, **instantiate(cfg.app)(model, run, pair=pair)}
    run.write_summary(summary)
    return summary
