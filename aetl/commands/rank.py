"""`aetl rank`: which source will help this target, before any transfer.

Each candidate source (a domain name in `sources`, composed as `data/source=NAME` with the
command's other overrides, or a source-model checkpoint in `models`) gives a source model
Mf: from the cache when it is there, else pretrained once (and cached). Each Mf is then
scored on the target's images (read through the image cache, as `aetl train` reads them)
with forward passes only (aetl.evaluation.transferability): the target's fit is chosen with
it as `aetl train` would choose it, from the same unlabelled images (its score is the
zero-shot column), and, when target labels exist, LogME scores its codes of the labelled
images against the target's own PCA codes. Sources are ranked by that LogME gain, and every
other source's gain is compared with the best's on the same resamples of the same images
(behind_best). The verdict says "use X" only when X's gain is at least two standard errors
above 0 and above the runner-up's, "hurts" when it is two below 0, and otherwise leaves the
call to `strategy=auto`. A score that does not exist is null, with a note saying why. The
table goes to stdout, rank.json and rank.csv to the run dir.
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
from aetl.evaluation.transferability import (
    PCA_IMAGES,
    encode,
    logme,
    paired_difference,
    pca_codes,
    resampled,
    zero_shot,
)
from aetl.infra.checkpoint import load_checkpoint
from aetl.infra.distributed import pick_device
from aetl.infra.rundir import Run, log_config, log_to_files, register_resolvers
from aetl.infra.schema import Seed, Target, check_config
from aetl.models import AutoEncoder
from aetl.strategies.pretrain import load_mf, obtain_mf
from aetl.training.context import RunContext
from aetl.training.loop import Loop, TrainerSettings

log = logging.getLogger(__name__)
register_resolvers()
COLUMNS = ["source", "fit", "zero_shot", "domain_gap", "logme", "logme_pca", "logme_gain", "logme_gain_se",
           "behind_best", "behind_best_se", "mf_s", "score_s", "note"]
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
    candidates = {name: composer(overrides, name) for name in cfg.sources}  # every name checked before any work
    own = [name for name, composed in candidates.items() if composed.data.source.load == cfg.data.target.load]
    for name in own:  # the same images: its Mf has seen the target's test split
        log.info("skipping source %s: it is the target's own domain", name)
        del candidates[name]
    if not candidates and not cfg.models:
        skipped = f"{', '.join(own)} {'is' if len(own) == 1 else 'are'} the target's own domain; " if own else ""
        raise AetlError(f"nothing to rank: {skipped}give sources=[mnist,fashion_mnist,...] (other than the "
                        "target's domain) and/or models=[path/to/source.pt]")
    run = Run(out_dir)
    device = pick_device(cfg.trainer.device)
    target = load_target(cfg.data, cfg.seed, cfg.cache_dir)
    scored = [score(_domain_mf(composed, name, run, device), target, cfg) for name, composed in candidates.items()]
    scored += [score(_checkpoint_mf(str(path), frame_shape(cfg.data), device), target, cfg) for path in cfg.models]
    rows = compare(scored, cfg.seed)
    verdict = recommend(rows)
    result = {"target": target.domain.name, "n_target_train": len(target.train),
              "n_target_labelled": int((target.train_labels >= 0).sum()), "sources": rows, "recommendation": verdict}
    run.save_bytes("rank.json", (json.dumps(result, indent=2, allow_nan=False) + "\n").encode())
    run.save_bytes("rank.csv", _csv(rows).encode())
    print(table(rows), verdict, sep="\n")
    log_to_files(log, verdict)  # (the terminal has it just above)
    log.info("run dir: %s (rank.json, rank.csv: every score; sources/: each source's Mf; run.log)",
             run.root)
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


NO_LABELS = "no LogME without labels of at least two target classes"


@dataclass
class Scored:
    """A candidate's row of the table, and what its LogME gain came from: Mf's codes and the
    target's own PCA codes of the labelled images, and their labels (for the paired comparison)."""

    row: dict
    codes: tuple[torch.Tensor, torch.Tensor] | None = None
    labels: torch.Tensor | None = None
    gain: float = math.nan  # the LogME gain, unrounded


def score(candidate: Candidate, target: Unmapped, cfg: DictConfig) -> Scored:
    """One candidate's scores on the target's training images (aetl.evaluation.transferability)."""
    started = time.perf_counter()
    name, mf, own = candidate.name, candidate.mf, candidate.own
    channels, size = frame_shape(cfg.data)[:2]
    x = target.unlabelled_images(MAX_IMAGES)  # the sample `aetl train` chooses the fit from
    choice = target_fit(x, cfg.data.target, size, channels, mf, candidate.reference)
    fit = choice.fit
    alike = choice.scores.get(fit.label()) or zero_shot(mf, x, size, channels, fit)  # (chosen: scored already)
    row = {"source": name, "fit": fit.label(), "zero_shot": _rounded(alike, 4),
           "domain_gap": _rounded(alike / own, 3) if own else None, **dict.fromkeys(COLUMNS[4:])}
    labelled = np.flatnonzero(target.train_labels >= 0)
    y = torch.from_numpy(target.train_labels[labelled])
    scored = Scored(row)
    if len(y.unique()) > 1:  # only the labelled images are encoded; PCA is fitted on a sample of all
        framed = fit_images(target.train_images(rows=labelled), size, channels, fit)
        codes = encode(mf, framed)
        own_codes = pca_codes(framed, codes.shape[1],  # as many components as Mf's code has entries
                              fit_images(target.train_images(PCA_IMAGES), size, channels, fit))
        scored = Scored(row, (codes, own_codes), y)
        _logme_scores(scored, cfg.seed)
    else:
        row["note"] = NO_LABELS
    row.update(mf_s=round(candidate.seconds, 3), score_s=round(time.perf_counter() - started, 3))
    log.info("%s: %s", name, ", ".join(f"{k} {v}" for k, v in row.items() if k != "source" and v is not None))
    return scored


def _logme_scores(scored: Scored, seed: int) -> None:
    """LogME of both codes, the gain and its standard error into the row; a note on any that does not exist."""
    (codes, own_codes), y, row = scored.codes, scored.labels, scored.row
    mine, theirs = logme(codes, y), logme(own_codes, y)
    row.update(logme=_rounded(mine, 4), logme_pca=_rounded(theirs, 4))
    still = [what for what, value in (("Mf's codes", mine), ("the target's PCA codes", theirs))
             if not math.isfinite(value)]
    if still:
        row["note"] = (f"LogME undefined: {' and '.join(still)} do not vary across the labelled images (are the "
                       "images identical?)")
        return
    scored.gain = mine - theirs
    se, why = resampled(lambda pick: logme(codes[pick], y[pick]) - logme(own_codes[pick], y[pick]), y, seed)
    row.update(logme_gain=_rounded(scored.gain, 4), logme_gain_se=_rounded(se, 4))
    if why:
        row["note"] = f"no standard error: {why}"


def compare(scored: list[Scored], seed: int) -> list[dict]:
    """The rows, best first by LogME gain (rows without one after them, by zero-shot), each
    with its gain's paired difference from the best's (behind_best, <= 0) and that difference's
    standard error: is the best ahead of the runner-up, or only by chance?"""
    order = sorted(scored, key=lambda s: (0, -s.gain) if math.isfinite(s.gain) else
                   (1, s.row["zero_shot"] if s.row["zero_shot"] is not None else math.inf))
    best = order[0]
    for other in order[1:] if math.isfinite(best.gain) else []:
        if math.isfinite(other.gain):
            difference, se, why = paired_difference(other.codes, best.codes, best.labels, seed)
            other.row.update(behind_best=_rounded(difference, 4), behind_best_se=_rounded(se, 4))
            if why and not other.row["note"]:
                other.row["note"] = f"no standard error of behind_best: {why}"
    return [s.row for s in order]


def _rounded(value: float, digits: int) -> float | None:
    """JSON's spelling of a score: rounded, or null for one that does not exist (nan, inf)."""
    return round(value, digits) if math.isfinite(value) else None


def recommend(rows: list[dict]) -> str:
    """The one-line verdict on the best-ranked source: helps (and by how much it beats the
    runner-up), hurts, or too close to call."""
    best = rows[0]
    if best["logme_gain"] is None:
        if best["note"] != NO_LABELS:
            return f"no verdict for {best['source']}: {best['note']}; train with strategy=auto, which lets the " \
                   "validation split decide"
        alike = "" if best["zero_shot"] is None else f" (zero-shot {best['zero_shot']:.3f})"
        return (f"no verdict without labels of at least two target classes: {best['source']} reconstructs the "
                f"target best{alike}, which predicted little on docs/results.md's grid; "
                "label a few images per class for a verdict, or train with strategy=auto")
    gain, se = best["logme_gain"], best["logme_gain_se"]
    if se is None:
        why = (best["note"] or "").removeprefix("no standard error: ")
        return (f"too close to call: LogME of {best['source']}'s codes {gain:+.4f} against the target's own PCA codes, "
                f"with no standard error ({why}); train with strategy=auto, which lets the validation split decide")
    evidence = (f"LogME of {best['source']}'s codes {gain:+.4f} ± {se:.4f} against the target's own PCA codes "
                "(per image; ± one standard error)")
    if gain > DECISIVE * se:
        return _best_or_tie(rows, evidence)
    if gain < -DECISIVE * se:
        return f"no source is expected to help ({evidence}); train with strategy=scratch"
    return f"too close to call ({evidence}); train with strategy=auto, which lets the validation split decide"


def _best_or_tie(rows: list[dict], evidence: str) -> str:
    """'use X' when X's gain is decisively above 0 and above the runner-up's; else both are named."""
    best = rows[0]["source"]
    runner = next((r for r in rows[1:] if r["behind_best"] is not None), None)
    if runner is None:
        return f"use {best}: transfer is expected to help ({evidence})"
    lead, lead_se = -runner["behind_best"], runner["behind_best_se"]
    margin = f"{lead:+.4f}" + (f" ± {lead_se:.4f}" if lead_se is not None else " (no standard error)")
    if lead_se is None or lead <= DECISIVE * lead_se:
        return (f"use {best} or {runner['source']}: transfer is expected to help ({evidence}), but {best} is ahead "
                f"of {runner['source']} by only {margin} (paired, within two standard errors), so either may be "
                "the better source: train with each and compare them on the validation split")
    return f"use {best}: transfer is expected to help ({evidence}); {margin} ahead of {runner['source']} (paired)"


def table(rows: list[dict]) -> str:
    """The scores as a Markdown table (README, "Which source?", says what each column is), then each row's note."""
    head = ["source", "target fit", "Mf zero-shot", "gap (T/S)", "LogME (Mf)", "LogME (PCA)", "LogME gain", "± s.e.",
            "behind best", "± s.e.", "Mf s", "score s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows):
        cells = ["n/a" if r[c] is None else f"{r[c]:.1f}" if c.endswith("_s") else str(r[c]) for c in COLUMNS[:-1]]
        if i == 0 and r["logme_gain"] is not None:
            cells[8:10] = ["(best)", ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"- {r['source']}: {r['note']}" for r in rows if r["note"]]
    return "\n".join(lines)


def _domain_mf(cfg: DictConfig, name: str, run: Run, device: torch.device) -> Candidate:
    """The source domain `name`, its Mf obtained as `aetl train` would obtain it (cache first)."""
    started = time.perf_counter()
    source = load_source(cfg.data, device, cfg.cache_dir)  # decoded once into the image cache, as train does
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
