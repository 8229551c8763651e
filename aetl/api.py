"""aetl from Python.

    import aetl
    run = aetl.load_run("outputs/2026-11-28/10-00-00")  # a run dir, or its checkpoints/target.pt
    codes = run.encode(images)                            # (N, C, H, W) in [0, 1] (or uint8)
    images_again = run.decode(codes)                      # = run.reconstruct(images)
    cfg = aetl.compose("train", ["strategy=concat"])      # the config the command line would compose
    summary = aetl.run("train", cfg, "outputs/from_python")

`trained_model` is what `aetl stylize run=` and `aetl augment run=` load.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aetl.data.domains import unit
from aetl.data.pair import DataSettings
from aetl.errors import AetlError
from aetl.evaluation.metrics import eval_batches
from aetl.infra.checkpoint import load_checkpoint
from aetl.infra.schema import Seed, check_config
from aetl.models import AutoEncoder, place, rebuild
from aetl.models.weights import load_weights
from aetl.strategies import Context
from aetl.strategies.pretrain import load_mf

log = logging.getLogger(__name__)

COMMANDS = ("train", "rank", "stylize", "augment")  # the commands a config runs (report reads run dirs)


@dataclass
class Run:
    """A finished `aetl train` run: its transferred `model` (on `device`, in eval mode), its
    `config` (.hydra/config.yaml; None for a target.pt copied on its own), its `summary`
    (summary.json, else what target.pt records) and `record` (what target.pt holds of the
    run: its data config, seed, the target's fit)."""

    model: AutoEncoder
    config: DictConfig | None
    summary: dict
    record: dict
    device: torch.device

    @torch.no_grad()
    def encode(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Codes of images (N, C, H, W) in the run's frame: floats in [0, 1] or uint8."""
        return torch.cat([self.model.encode(unit(xb)) for xb in eval_batches(self._images(images))])

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from codes as `encode` gives them."""
        codes = torch.as_tensor(codes).to(self.device)
        return torch.cat([self.model.decode(z) for z in codes.split(EVAL_CODES)])

    def reconstruct(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.decode(self.encode(images))

    def _images(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(images).to(self.device)
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.model.in_shape):
            raise AetlError(f"images must be (N, {', '.join(map(str, self.model.in_shape))}): the run's frame; got "
                            f"{tuple(x.shape)} (data.channels x data.image_size^2 of the run's config)")
        return x


EVAL_CODES = 1024  # codes decoded at a time


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """A finished run from its dir or its target.pt (see Run)."""
    device = torch.device(device)
    model, record = trained_model(path, device)
    root = Path(str(path)).expanduser()
    config = root / ".hydra" / "config.yaml" if root.is_dir() else None
    cfg = OmegaConf.load(config) if config and config.is_file() else None
    return Run(model, cfg, record["run"], record, device)


def compose(command: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """The config of `aetl <command> <overrides>` (Hydra's compose API on aetl's configs)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from aetl.infra.rundir import register_resolvers

    if command not in COMMANDS:
        raise AetlError(f"unknown command {command!r}; choose one of {', '.join(COMMANDS)}")
    register_resolvers()
    with initialize_config_module("aetl.configs", version_base="1.3"):
        return hydra_compose(command, overrides=list(overrides))


def run(command: str, cfg: DictConfig, out_dir: str | Path) -> dict:
    """Run a composed config (aetl.compose) into out_dir, as the command would, and return its
    summary (rank: its result)."""
    import importlib

    from hydra import initialize_config_module

    if command not in COMMANDS:
        raise AetlError(f"unknown command {command!r}; choose one of {', '.join(COMMANDS)}")
    module = importlib.import_module(f"aetl.commands.{command}")
    with initialize_config_module("aetl.configs", version_base="1.3"):  # (rank composes each source's config)
        return getattr(module, command)(cfg, Path(out_dir), *(([],) if command == "rank" else ()))


def trained_model(run: str | Path, device: torch.device) -> tuple[AutoEncoder, dict]:
    """The transferred model of a finished `aetl train` run, and what its target.pt records
    of the run: `run` (strategy, pair, seed, ...; with summary.json's figures when it is
    beside it), `data` (the data config), `seed` and `fit` (the target's). (A target.pt an older
    aetl wrote also names the cache_dir of the machine that wrote it: never read.)
    `run` is the run dir or a target.pt file, which is enough on its own."""
    path = Path(str(run)).expanduser()
    ckpt = path / "checkpoints" / "target.pt" if path.is_dir() else path
    if not ckpt.is_file():
        raise AetlError(f"run={path} is not a finished aetl train run (it needs checkpoints/target.pt) nor a "
                        "target.pt; pass the dir a finished run wrote, or its target.pt")
    target = load_checkpoint(ckpt, kind="target")
    summary = ckpt.parent.parent / "summary.json"
    if not target.get("recipe"):
        return _from_run_config(ckpt, target, device)
    model = place(rebuild(target["recipe"]), device)
    load_weights(model, target["model"], str(ckpt))
    run = target.get("run")
    record = {"run": {**(run if isinstance(run, dict) else {}), **_figures(summary)}, "data": target.get("data"),
              "seed": run.get("seed") if isinstance(run, dict) else None, "fit": target.get("fit")}
    _check_record(record, ckpt)
    return model.eval(), record


@dataclass
class Recorded:
    """What a trained run's record gives `aetl augment` to load its pair with: checked as the
    run's config was, before any size in it is used."""

    seed: Seed
    data: DataSettings


def _check_record(record: dict, ckpt: Path) -> None:
    if not isinstance(record["data"], dict) or not isinstance(record["fit"], dict):
        raise AetlError(f"{ckpt}: it records no data config or fit; the file is damaged or not a checkpoint aetl wrote")
    try:
        check_config(OmegaConf.create({k: record[k] for k in ("seed", "data")}), Recorded)
    except AetlError as err:
        raise AetlError(f"{ckpt}: its recorded {str(err).split('; ')[0]}; the file is damaged or not a checkpoint "
                        "aetl wrote") from None


def _figures(summary: Path) -> dict:
    """summary.json's figures (only copied into what is written): {} with a warning when damaged."""
    if not summary.is_file():
        return {}
    try:
        figures = json.loads(summary.read_text())
    except (OSError, ValueError) as err:
        figures = err
    if not isinstance(figures, dict):
        log.warning("%s is damaged (%s): its figures are left out", summary, type(figures).__name__)
        return {}
    return figures


def _from_run_config(ckpt: Path, target: dict, device: torch.device) -> tuple[AutoEncoder, dict]:
    """A target.pt from before checkpoints carried their recipe: the model rebuilt as its
    strategy built it, from the run dir's .hydra/config.yaml and source.pt."""
    root = ckpt.parent.parent
    needed = [root / "summary.json", root / ".hydra" / "config.yaml"]
    if not all(p.is_file() for p in needed):
        raise AetlError(f"{ckpt} was written by an older aetl and needs its run dir (summary.json, "
                        ".hydra/config.yaml) beside it; pass that run dir")
    cfg = OmegaConf.load(root / ".hydra" / "config.yaml")
    shape = tuple(target["shape"])
    source = root / "checkpoints" / "source.pt"
    mf = load_mf(load_checkpoint(source, kind="source"), str(source), device, cfg.model, shape) \
        if source.is_file() else None
    model = instantiate(cfg.strategy).build(Context(cfg.model, shape, mf=mf, device=device))
    load_weights(model, target["model"], str(ckpt))
    summary = json.loads(needed[0].read_text())
    record = {"run": summary, "data": OmegaConf.to_container(cfg.data, resolve=True), "seed": cfg.seed,
              "fit": summary}
    _check_record(record, ckpt)
    return model.eval(), record
