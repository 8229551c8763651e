"""aetl from Python: a finished run's model and record, as `aetl stylize run=` and
`aetl augment run=` load them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from aetl.errors import AetlError
from aetl.infra.checkpoint import load_checkpoint
from aetl.models import AutoEncoder, place, rebuild
from aetl.models.weights import load_weights
from aetl.strategies import Context
from aetl.strategies.pretrain import load_mf


def load_run(run: str | Path, device: torch.device) -> tuple[AutoEncoder, dict]:
    """The transferred model of a finished `aetl train` run, and what its target.pt records
    of the run: `run` (strategy, pair, seed, ...; with summary.json's figures when it is
    beside it), `data` (the data config), `seed`, `cache_dir` and `fit` (the target's).
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
    figures = json.loads(summary.read_text()) if summary.is_file() else {}
    record = {"run": {**target["run"], **figures}, "data": target["data"], "seed": target["run"]["seed"],
              "cache_dir": target["cache_dir"], "fit": target["fit"]}
    return model.eval(), record


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
              "cache_dir": cfg.get("cache_dir"), "fit": summary}
    return model.eval(), record
