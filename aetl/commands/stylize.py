"""`aetl stylize run=<run dir>`: style transfer with a finished run's autoencoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from aetl.api import trained_model
from aetl.errors import reports_errors
from aetl.infra.distributed import pick_device
from aetl.infra.rundir import Run, log_config, register_resolvers
from aetl.infra.schema import App, Device, Target, check_config

register_resolvers()


@dataclass
class Config:
    """What `aetl stylize` reads (configs/stylize.yaml)."""

    run: str      # a finished aetl train run dir, or its checkpoints/target.pt
    device: Device
    content: str
    style: str
    model: Target
    app: App


@hydra.main(version_base="1.3", config_path="pkg://aetl.configs", config_name="stylize")
@reports_errors
def main(cfg: DictConfig) -> dict:
    log_config(cfg, "stylize", HydraConfig.get().overrides.task)
    return stylize(cfg, Path(HydraConfig.get().runtime.output_dir))


def stylize(cfg: DictConfig, out_dir: Path) -> dict:
    check_config(cfg, Config)
    run = Run(out_dir)
    model, _ = trained_model(cfg.run, pick_device(cfg.device))
    app = instantiate(cfg.app, content=cfg.content, style=cfg.style)
    summary = {"run": str(Path(str(cfg.run)).expanduser()), **app(model, run)}
    run.write_summary(summary)
    alphas = ", ".join(f"{r['alpha']:g}" for r in summary["style_results"])
    run.announce(f"stylized {cfg.content} in the style of {cfg.style} ({summary['style_method']}, alpha {alphas}): "
                 f"{summary['style_seconds_per_image']:.2f} s per image")
    return summary
