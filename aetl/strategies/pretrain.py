"""The source model Mf: loaded from `pretrained=`, found in the cache, or pretrained
on the source images (joined by a classification loss on the source labels when
trainer.pretrain.cls_weight > 0, as in DRCN, Ghifary et al. 2016)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

import aetl
from aetl.data.pair import Side, frame_shape
from aetl.infra.cache import SourceCache, cache_key
from aetl.infra.rundir import load_checkpoint
from aetl.models import AutoEncoder, build_model, place
from aetl.models.weights import load_weights
from aetl.strategies import Strategy
from aetl.training.context import RunContext
from aetl.training.loop import Phase
from aetl.training.losses import ClassifyLoss

log = logging.getLogger(__name__)


@dataclass
class SourceModel:
    """Mf and where it came from."""

    model: AutoEncoder
    seconds: float  # spent pretraining in this job
    origin: str     # "pretrained", "cache", or the checkpoint path given
    cache: str      # "hit", "miss" or "off"
    labels: bool    # trained with source labels

    def provenance(self) -> dict:
        """Everything but the model: what a resumed run needs to report Mf as this job found it."""
        return {"seconds": self.seconds, "origin": self.origin, "cache": self.cache, "labels": self.labels}


def pretrain_settings(cfg: DictConfig, overrides: dict) -> DictConfig:
    """trainer.pretrain with a strategy's own overrides on top."""
    return OmegaConf.merge(cfg.trainer.pretrain, overrides)


def source_spec(cfg: DictConfig, pretrain: DictConfig) -> dict:
    """Everything that determines Mf: its cache key is the hash of this."""
    data = {k: cfg.data[k] for k in ("source", "image_size", "channels", "split_seed")}
    return OmegaConf.to_container(OmegaConf.create({
        "data": data, "model": cfg.model, "pretrain": pretrain, "optimizer": cfg.trainer.optimizer,
        "seed": cfg.seed, "aetl": aetl.__version__}), resolve=True)


def obtain_mf(ctx: RunContext, source: Side, overrides: dict) -> SourceModel:
    """Mf for this job, trained on (or loaded for) the source side; also written to the run dir
    as checkpoints/source.pt. With the run's progress, pretraining checkpoints into last.pt and
    resumes from it. Its classifier head, when it has one, scores the source's classes."""
    cfg, run, progress = ctx.cfg, ctx.run, ctx.progress
    shape = frame_shape(cfg.data)
    pretrain = pretrain_settings(cfg, overrides)
    given = load_checkpoint(cfg.pretrained) if cfg.pretrained else None
    labels = "head.weight" in given["model"] if given else pretrain.cls_weight > 0
    if labels and not given and not _labelled(source):
        log.warning("%s has no labels: pretraining on reconstruction only (trainer.pretrain.cls_weight ignored)",
                    source.name)
        labels = False
        pretrain.cls_weight = 0.0
    torch.manual_seed(cfg.seed)  # Mf's initialisation does not depend on what ran before
    n_classes = given["model"]["head.weight"].shape[0] if given and labels else len(source.classes)
    model = place(build_model(cfg.model, shape, n_classes if labels else 0), ctx.device)
    started = time.perf_counter()
    if progress:  # a resumed pretraining counts the time it spent before the interruption
        started -= run.elapsed() - progress.context.setdefault("source_started_s", run.elapsed())
    if given:
        load_weights(model, given["model"], str(cfg.pretrained))
        log.info("source model loaded from %s", cfg.pretrained)
        mf = SourceModel(model, 0.0, str(cfg.pretrained), "off", labels)
    elif cfg.cache_dir:
        mf = _cached_mf(ctx, model, pretrain, source, labels)
        mf.seconds = time.perf_counter() - started if mf.cache == "miss" else 0.0
    else:
        _pretrain(ctx, model, pretrain, source)
        mf = SourceModel(model, time.perf_counter() - started, "pretrained", "off", labels)
    run.save_checkpoint("source.pt", _state(model, cfg, source, shape, labels))
    return mf


def _cached_mf(ctx: RunContext, model: AutoEncoder, pretrain: DictConfig, source: Side, labels: bool) -> SourceModel:
    """Mf from the source-model cache, or pretrained and stored there. Under torchrun rank 0
    holds the lock and decides; the others follow."""
    cfg, world = ctx.cfg, ctx.world
    cache, spec = SourceCache(cfg.cache_dir), source_spec(cfg, pretrain)
    key = cache_key(spec)
    # A resumed pretraining finishes its own Mf (and stores it), as the uninterrupted job would have.
    resuming = ctx.progress is not None and ctx.progress.resuming_pretraining
    with cache.locked(key) if world.is_main else contextlib.nullcontext():
        state = cache.load(key) if world.is_main and not resuming else None
        if world.broadcast(state is not None):
            state = state or cache.load(key)
            load_weights(model, state["model"], str(cache.entry(key)))
            log.info("source model: cache hit %s", cache.entry(key))
            return SourceModel(model, 0.0, "cache", "hit", labels)
        log.info("source model: cache miss, pretraining into %s", cache.entry(key))
        _pretrain(ctx, model, pretrain, source)
        if world.is_main:
            cache.store(key, _state(model, cfg, source, frame_shape(cfg.data), labels), spec)
        return SourceModel(model, 0.0, "pretrained", "miss", labels)


def settle_mf(ctx: RunContext, strategy: Strategy, source: Side) -> SourceModel:
    """Mf as obtain_mf finds it, or as an interrupted run of this dir had settled it."""
    progress = ctx.progress
    if progress is not None and progress.past_source:  # (a last.pt from before Mf's provenance was "mf": "source")
        return resumed_mf(ctx, progress.context.get("mf") or progress.context["source"])
    mf = obtain_mf(ctx, source, strategy.pretrain)
    if progress is not None:
        progress.context["mf"] = mf.provenance()
    return mf


def resumed_mf(ctx: RunContext, provenance: dict) -> SourceModel:
    """Mf as an interrupted run had settled it: checkpoints/source.pt and how it was obtained."""
    path = ctx.run.checkpoints / "source.pt"
    state = ctx.world.broadcast(load_checkpoint(path) if ctx.world.is_main else None)
    head = state["model"]["head.weight"].shape[0] if "head.weight" in state["model"] else 0
    model = place(build_model(ctx.cfg.model, frame_shape(ctx.cfg.data), head), ctx.device)
    load_weights(model, state["model"], str(path))
    return SourceModel(model, **provenance)


def _pretrain(ctx: RunContext, model: AutoEncoder, p: DictConfig, source: Side) -> None:
    losses = [ClassifyLoss(p.cls_weight)] if p.cls_weight > 0 else []
    phase = Phase("pretrain", p.steps, p.batch_size, [{"params": list(model.parameters()), "lr": p.lr}],
                  losses=losses)
    log.info("pretraining %s on %d %s images for %d steps%s", type(model).__name__, len(source.train),
             source.name, p.steps, " with source labels" if losses else "")
    ctx.loop.run(model, phase, source.train, source.val.pixels(), ctx.seed)


def _labelled(source: Side) -> bool:
    return len(source.classes) > 1 and bool((source.train.y >= 0).all())


def _state(model: AutoEncoder, cfg: DictConfig, source: Side, shape: tuple[int, int, int], labels: bool) -> dict:
    levels = source.levels()  # what a target's `match` tone moves onto (aetl rank models=)
    return {"model": model.state_dict(), "model_cfg": OmegaConf.to_container(cfg.model, resolve=True),
            "source": source.name, "shape": list(shape), "source_labels": labels,
            "source_classes": list(source.classes), "source_levels": [levels.background, levels.foreground]}
