"""Applications of a trained autoencoder: style transfer and latent-space augmentation.

Each runs inside `aetl train` (the `app` config group) on the freshly trained model,
or on its own from a finished run (`aetl stylize run=...`, `aetl augment run=...`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aetl.errors import AetlError
from aetl.models import AutoEncoder, build_model
from aetl.rundir import load_checkpoint
from aetl.strategies import Context, load_weights


def load_run(run_dir: str | Path, device: torch.device) -> tuple[AutoEncoder, DictConfig]:
    """The transferred model of a finished `aetl train` run, rebuilt as its strategy built it."""
    root = Path(str(run_dir)).expanduser()
    needed = [root / "summary.json", root / "checkpoints" / "target.pt", root / ".hydra" / "config.yaml"]
    if not all(p.is_file() for p in needed):
        raise AetlError(f"run={root} is not a finished aetl train run (it needs summary.json, "
                        "checkpoints/target.pt and .hydra/config.yaml); pass the dir a finished run wrote")
    cfg = OmegaConf.load(root / ".hydra" / "config.yaml")
    target = load_checkpoint(root / "checkpoints" / "target.pt")
    shape = tuple(target["shape"])
    source = None
    if (root / "checkpoints" / "source.pt").is_file():
        state = load_checkpoint(root / "checkpoints" / "source.pt")
        head = state["model"]["head.weight"].shape[0] if "head.weight" in state["model"] else 0
        source = build_model(cfg.model, shape, head).to(device)
        load_weights(source, state["model"], str(root / "checkpoints" / "source.pt"))
    model = instantiate(cfg.strategy).build(Context(cfg.model, shape, source, device))
    load_weights(model, target["model"], str(root / "checkpoints" / "target.pt"))
    return model.eval(), cfg
