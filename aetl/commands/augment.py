"""`aetl augment run=<run dir>`: latent-space augmentation with a finished run's autoencoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aetl.api import trained_model
from aetl.data.fit import FitChoice
from aetl.data.pair import load_pair
from aetl.errors import reports_errors
from aetl.evaluation.metrics import EvalSettings
from aetl.infra.distributed import pick_device
from aetl.infra.rundir import Run, figure, log_config, register_resolvers
from aetl.infra.schema import App, Device, Seed, check_config

register_resolvers()


@dataclass
class Config:
    """What `aetl augment` reads (configs/augment.yaml)."""

    run: str  # a finished aetl train run dir, or its checkpoints/target.pt
    device: Device
    seed: Seed  # the augmentation's own draws
    cache_dir: str | None  # the image cache the run's images are read through (this machine's; null: none)
    eval: EvalSettings
    app: App
# What the report groups by, copied from the trained run's record (its summary.json's figures too).
KEPT = ("strategy", "source", "target", "seed", "labels_per_class", "n_target_train", "source_labels",
        "transfer_steps", "target_mse", "target_psnr")


@hydra.main(version_base="1.3", config_path="pkg://aetl.configs", config_name="augment")
@reports_errors
def main(cfg: DictConfig) -> dict:
    log_config(cfg, "augment", HydraConfig.get().overrides.task)
    return augment(cfg, Path(HydraConfig.get().runtime.output_dir))


def augment(cfg: DictConfig, out_dir: Path) -> dict:
    check_config(cfg, Config)
    run = Run(out_dir)
    device = pick_device(cfg.device)
    model, trained = trained_model(cfg.run, device)
    fit = FitChoice.from_summary(trained["fit"], "target")  # the run's own
    pair = load_pair(OmegaConf.create(trained["data"]), trained["seed"], device, fit=fit,
                     cache_dir=cfg.cache_dir)
    summary = {"run": str(cfg.run), **{k: trained["run"].get(k) for k in KEPT},
               **instantiate(cfg.app)(model, run, pair=pair)}
    run.write_summary(summary)
    used = summary.get("n_augmented_used")
    share = (f"{used} used (the share validation chose: {summary['augment_mix']})" if used
             else "none used: validation chose a share of 0, so the figures with them are the figures without")
    run.announce(f"augment {summary['augment_mode']}: {summary['n_augmented']} new images, {share}; target_acc "
                 f"{figure(summary['target_acc'])} without them, {figure(summary['target_acc_augmented'])} with them "
                 f"(validation {figure(summary['target_val_acc'])} -> {figure(summary['target_val_acc_augmented'])})")
    return summary
