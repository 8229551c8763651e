"""`aetl rank`: which source will help this target, before any transfer.

Each candidate source (a domain name in `sources`, composed as `data/source=NAME` with the
command's other overrides, or a source-model checkpoint in `models`) gives a source model
Mf: from the cache when it is there, else pretrained once (and cached). Each Mf is then
scored on the target's images with forward passes only (aetl.evaluation.transferability):
the target's fit is chosen with it as `aetl train` would choose it, from the same unlabelled
images (its score is the zero-shot column), and, when target labels exist, LogME scores its
codes of the labelled images against the target's own PCA codes. Sources are ranked by that
LogME gain; the verdict says "helps" or "hurts" only when the gain is at least two standard
errors from 0, and otherwise leaves the call to `strategy=auto`. The table goes to stdout,
rank.json and rank.csv to the run dir.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException
from omegaconf import DictConfig

from aetl.data.fit import MAX_IMAGES, target_fit
from aetl.data.framing import Fit, Levels, fit_images
from aetl.data.pair import DataSettings, Unmapped, frame_shape, load_source, load_target
from aetl.errors import AetlError, reports_errors
from aetl.evaluation.transferability import PCA_IMAGES, encode, logme, logme_gain, pca_codes, zero_shot
from aetl.infra.checkpoint import load_checkpoint
from aetl.infra.distributed import pick_device
from aetl.infra.rundir import Run, log_config, register_resolvers
from aetl.infra.schema import Seed, Target, check_config
from aetl.models import AutoEncoder
from aetl.strategies.pretrain import load_mf, obtain_mf
from aetl.training.context import RunContext
from aetl.training.loop import Loop, TrainerSettings

log = logging.getLogger(__name__)
register_resolvers()
COLUMNS = ["source", "fit", "zero_shot", "domain_gap", "logme", "logme_pca", "logme_gain", "logme_gain_se", "mf_s",
           "score_s"]
DECISIVE = 2.0  # standard errors the LogME gain must be from 0 for a verdict of helps or hurts


@dataclass
class Config:
    """What `aetl rank` reads (configs/rank.yaml)."""

    sources: list[str]  # domains tried as data/source
    models: list[str]   # source models to score as well
    seed: Seed
    pretrained: str | None
    cache_dir: str | None
    data: DataSettings
    model: Target
    trainer: TrainerSettings


@hydra.main(version_base="1.3", config_path="pkg://aetl.configs", config_name="rank")
@reports_errors
def main(cfg: DictConfig) -> dict:
    hydra_cfg = HydraConfig.get()
    log_config(cfg, "rank", hydra_cfg.overrides.task)
    return rank(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task), compose_source)


def compose_source(overrides: list[str], name: str) -> DictConfig:
    """The rank config with data/source=name (inside a Hydra job: the user's search path holds)."""
    try:
        return compose("rank", overrides=[*overrides, f"data/source={name}"])
    except MissingConfigException as err:
        raise AetlError(f"unknown source {name!r} in sources; choose among {', '.join(sorted(err.options or []))}") \
            from None


def rank(cfg: DictConfig, out_dir: Path, overrides: list[str], composer=compose_source) -> dict:
    """Score every candidate source for the target of cfg.data; write rank.json and rank.csv."""
    check_config(cfg, Config)
    if not cfg.sources and not cfg.models:
        raise AetlError("nothing to rank: give sources=[mnist,fashion_mnist,...] and/or models=[path/to/source.pt]")
    run = Run(out_dir)
    device = pick_device(cfg.trainer.device)
    candidates = {name: composer(overrides, name) for name in cfg.sources}  # every name checked before any work
    target = load_target(cfg.data, cfg.seed)
    rows = []
    for name, composed in candidates.items():
        if composed.data.source.load == cfg.data.target.load:  # the same images: its Mf has seen the test split
            log.info("skipping source %s: it is the target's own domain", name)
            continue
        rows.append(score(_domain_mf(composed, name, run, device), target, cfg))
    for path in cfg.models:
        rows.append(score(_checkpoint_mf(str(path), frame_shape(cfg.data), device), target, cfg))
    rows.sort(key=lambda r: -r["logme_gain"] if r["logme_gain"] is not None else r["zero_shot"])
    verdict = recommend(rows)
    result = {"target": target.domain.name, "n_target_train": len(target.train),
              "n_target_labelled": int((target.train_labels >= 0).sum()), "sources": rows, "recommendation": verdict}
    run.save_bytes("rank.json", (json.dumps(result, indent=2) + "\n").encode())
    run.save_bytes("rank.csv", _csv(rows).encode())
    print(table(rows), verdict, sep="\n")
    log.info("%s", verdict)
    return result


@dataclass
class Candidate:
    """A source to score: its name (or checkpoint path), its Mf, the source's levels (what a
    `match` tone moves onto), the seconds Mf took, and Mf's zero-shot score on its own source's
    validation images when they are at hand."""

    name: str
    mf: AutoEncoder
    reference: Levels
    seconds: float
    own: float | None = None


def score(candidate: Candidate, target: Unmapped, cfg: DictConfig) -> dict:
    """One candidate's scores on the target's training images (aetl.evaluation.transferability)."""
    started = time.perf_counter()
    name, mf, own = candidate.name, candidate.mf, candidate.own
    channels, size = frame_shape(cfg.data)[:2]
    x = target.unlabelled_images(MAX_IMAGES)  # the sample `aetl train` chooses the fit from
    choice = target_fit(x, cfg.data.target, size, channels, mf, candidate.reference)
    fit = choice.fit
    alike = choice.scores.get(fit.label()) or zero_shot(mf, x, size, channels, fit)  # (chosen: scored already)
    row = {"source": name, "fit": fit.label(), "zero_shot": round(alike, 4),
           "domain_gap": round(alike / own, 3) if own else None,
           "logme": None, "logme_pca": None, "logme_gain": None, "logme_gain_se": None}
    labelled = np.flatnonzero(target.train_labels >= 0)
    y = torch.from_numpy(target.train_labels[labelled])
    if len(y.unique()) > 1:  # only the labelled images are encoded; PCA is fitted on a sample of all
        framed = fit_images(target.train_images(rows=labelled), size, channels, fit)
        codes = encode(mf, framed)
        own_codes = pca_codes(framed, codes.shape[1],  # as many components as Mf's code has entries
                              fit_images(target.train_images(PCA_IMAGES), size, channels, fit))
        gain, se = logme_gain(codes, own_codes, y, seed=cfg.seed)
        row.update(logme=round(logme(codes, y), 4), logme_pca=round(logme(own_codes, y), 4),
                   logme_gain=round(gain, 4), logme_gain_se=None if math.isnan(se) else round(se, 4))
    row.update(mf_s=round(candidate.seconds, 3), score_s=round(time.perf_counter() - started, 3))
    log.info("%s: %s", name, ", ".join(f"{k} {v}" for k, v in row.items() if k != "source"))
    return row


def recommend(rows: list[dict]) -> str:
    """The one-line verdict on the best-ranked source: helps, hurts, or too close to call."""
    if not rows:
        return "no source to rank"
    best = rows[0]
    if best["logme_gain"] is None:
        return (f"no verdict without labels of at least two target classes: {best['source']} reconstructs the "
                f"target best (zero-shot {best['zero_shot']:.3f}), which predicted little on docs/results.md's grid; "
                "label a few images per class for a verdict, or train with strategy=auto")
    gain, se = best["logme_gain"], best["logme_gain_se"]
    if se is None:
        return (f"too close to call: LogME of {best['source']}'s codes {gain:+.4f} against the target's own PCA codes, "
                "with too few labels per class (under 2) for a standard error; train with strategy=auto, which "
                "lets the validation split decide")
    evidence = (f"LogME of {best['source']}'s codes {gain:+.4f} ± {se:.4f} against the target's own PCA codes "
                "(per image; ± one standard error)")
    if gain > DECISIVE * se:
        return f"use {best['source']}: transfer is expected to help ({evidence})"
    if gain < -DECISIVE * se:
        return f"no source is expected to help ({evidence}); train with strategy=scratch"
    return f"too close to call ({evidence}); train with strategy=auto, which lets the validation split decide"


def table(rows: list[dict]) -> str:
    head = ["source", "target fit", "Mf zero-shot", "gap (T/S)", "LogME (Mf)", "LogME (PCA)", "LogME gain", "± s.e.",
            "Mf s", "score s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join("n/a" if r[c] is None else str(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def _domain_mf(cfg: DictConfig, name: str, run: Run, device: torch.device) -> Candidate:
    """The source domain `name`, its Mf obtained as `aetl train` would obtain it (cache first)."""
    started = time.perf_counter()
    source = load_source(cfg.data, device)
    out = Run(run.root / "sources" / name)
    mf = obtain_mf(RunContext(cfg, out, Loop.from_config(cfg.trainer, device, out), device), source, {})
    channels, size = frame_shape(cfg.data)[:2]
    own = zero_shot(mf.model, source.val.x.cpu(), size, channels, Fit()) if len(source.val) else None
    return Candidate(name, mf.model, Levels.of(source.train.x[:4096].cpu()), time.perf_counter() - started, own)


def _checkpoint_mf(path: str, shape: tuple[int, int, int], device: torch.device) -> Candidate:
    """Mf from a source.pt (a run's, or a cache entry), rebuilt from the recipe it carries."""
    started = time.perf_counter()
    state = load_checkpoint(path, kind="source")
    if list(state.get("shape", [])) != list(shape):
        raise AetlError(f"{path} is not a source model for {shape[0]}x{shape[1]}x{shape[2]} images (it was trained "
                        f"for {state.get('shape')}); rank models trained with this data.image_size and data.channels")
    bg, fg = state.get("source_levels") or (0.0, 1.0)
    return Candidate(path, load_mf(state, path, device).eval(), Levels(bg, fg), time.perf_counter() - started)


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
