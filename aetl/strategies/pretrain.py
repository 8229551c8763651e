"""The source model Mf: loaded from `pretrained=`, found in the cache, or pretrained
on the source images (joined by a classification loss on the source labels when
trainer.pretrain.cls_weight > 0, as in DRCN, Ghifary et al. 2016)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass

import torch
from omegaconf import DictConfig, OmegaConf

import aetl
from aetl.data.pair import Side, frame_shape
from aetl.infra.cache import SourceCache, cache_key
from aetl.infra.checkpoint import load_checkpoint, pack
from aetl.infra.resume import Provenance
from aetl.models import AutoEncoder, build_model, place, rebuild
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

    def provenance(self) -> Provenance:
        """Everything but the model: what a resumed run needs to report Mf as this job found it."""
        return Provenance(self.seconds, self.origin, self.cache, self.labels)


def pretrain_settings(cfg: DictConfig, overrides: dict) -> DictConfig:
    """trainer.pretrain with a strategy's own overrides on top."""
    return OmegaConf.merge(cfg.trainer.pretrain, overrides)


def source_spec(cfg: DictConfig, pretrain: DictConfig) -> dict:
    """Everything that determines Mf: its cache key is the hash of this."""
    data = {k: cfg.data[k] for k in ("source", "image_size", "channels", "split_seed")}
    return OmegaConf.to_container(OmegaConf.create({
        "data": data, "model": cfg.model, "pretrain": pretrain, "optimizer": cfg.trainer.optimizer,
        "seed": cfg.seed, "aetl": aetl.__version__}), resolve=True)


def load_mf(state: dict, origin: str, device: torch.device, model_cfg: DictConfig | None = None,
            shape: tuple[int, int, int] | None = None) -> AutoEncoder:
    """Mf from a source checkpoint, rebuilt the one way for every path (pretrained=, a cache
    entry, a resumed run's source.pt, `aetl rank models=`): the model the run's `model_cfg`
    describes for `shape` (the weights must fit it), or, without a config, the one the
    checkpoint's own recipe describes; then the checkpoint's weights, head included."""
    if model_cfg is None:
        model = rebuild(state["recipe"])  # only aetl's own autoencoder classes: a checkpoint names no other code
    else:
        head = state["model"].get("head.weight")
        model = build_model(model_cfg, shape, int(head.shape[0]) if head is not None else 0)
    model = place(model, device)
    load_weights(model, state["model"], origin)
    return model


def obtain_mf(ctx: RunContext, source: Side, overrides: dict) -> SourceModel:
    """Mf for this job: loaded from `pretrained=`, found in the source-model cache, or pretrained
    on the source side; also written to the run dir as checkpoints/source.pt. With the run's
    progress, pretraining checkpoints into last.pt and resumes from it. Its classifier head,
    when it has one, scores the source's classes."""
    cfg, run, shape = ctx.cfg, ctx.run, frame_shape(ctx.cfg.data)
    pretrain = pretrain_settings(cfg, overrides)
    if pretrain.cls_weight > 0 and not cfg.pretrained and not _labelled(source):
        log.warning("%s has no labels: pretraining on reconstruction only (trainer.pretrain.cls_weight ignored)",
                    source.name)
        pretrain.cls_weight = 0.0
    torch.manual_seed(cfg.seed)  # Mf's initialisation does not depend on what ran before
    started = time.perf_counter()
    state = ctx.progress.state if ctx.progress else None
    if state is not None:  # a resumed pretraining counts the time it spent before the interruption
        state.pretrain_started_s = run.elapsed() if state.pretrain_started_s is None else state.pretrain_started_s
        started -= run.elapsed() - state.pretrain_started_s
    if cfg.pretrained:
        given = load_checkpoint(cfg.pretrained)
        mf = SourceModel(load_mf(given, str(cfg.pretrained), ctx.device, cfg.model, shape), 0.0,
                         str(cfg.pretrained), "off", "head.weight" in given["model"])
        log.info("source model loaded from %s", cfg.pretrained)
    elif cfg.cache_dir:
        mf = _cached_mf(ctx, pretrain, source)
        mf.seconds = time.perf_counter() - started if mf.cache == "miss" else 0.0
    else:
        mf = SourceModel(_pretrained(ctx, pretrain, source), 0.0, "pretrained", "off", pretrain.cls_weight > 0)
        mf.seconds = time.perf_counter() - started
    run.save_checkpoint("source.pt", source_checkpoint(mf, cfg, source))
    return mf


def _cached_mf(ctx: RunContext, pretrain: DictConfig, source: Side) -> SourceModel:
    """Mf from the source-model cache, or pretrained and stored there. Under torchrun rank 0
    holds the lock and decides; the others follow."""
    cfg, world = ctx.cfg, ctx.world
    cache, spec = SourceCache(cfg.cache_dir), source_spec(cfg, pretrain)
    key = cache_key(spec)
    labels = pretrain.cls_weight > 0
    # A resumed pretraining finishes its own Mf (and stores it), as the uninterrupted job would have.
    resuming = ctx.progress is not None and ctx.progress.resuming_pretraining
    with cache.locked(key) if world.is_main else contextlib.nullcontext():
        state = cache.load(key) if world.is_main and not resuming else None
        if world.broadcast(state is not None):
            state = state or cache.load(key)
            model = load_mf(state, str(cache.entry(key)), ctx.device, cfg.model, frame_shape(cfg.data))
            log.info("source model: cache hit %s", cache.entry(key))
            return SourceModel(model, 0.0, "cache", "hit", labels)
        log.info("source model: cache miss, pretraining into %s", cache.entry(key))
        mf = SourceModel(_pretrained(ctx, pretrain, source), 0.0, "pretrained", "miss", labels)
        if world.is_main:
            cache.store(key, source_checkpoint(mf, cfg, source), spec)
        return mf


def settle_mf(ctx: RunContext, strategy: Strategy, source: Side) -> SourceModel:
    """Mf as obtain_mf finds it, or as an interrupted run of this dir had settled it."""
    progress = ctx.progress
    if progress is not None and progress.past_source:
        return resumed_mf(ctx, progress.state.mf)
    mf = obtain_mf(ctx, source, strategy.pretrain)
    if progress is not None:
        progress.state.mf = mf.provenance()
    return mf


def resumed_mf(ctx: RunContext, provenance: Provenance) -> SourceModel:
    """Mf as an interrupted run had settled it: checkpoints/source.pt and how it was obtained."""
    path = ctx.run.checkpoints / "source.pt"
    state = ctx.world.broadcast(load_checkpoint(path, kind="source") if ctx.world.is_main else None)
    model = load_mf(state, str(path), ctx.device, ctx.cfg.model, frame_shape(ctx.cfg.data))
    return SourceModel(model, **asdict(provenance))


def _pretrained(ctx: RunContext, p: DictConfig, source: Side) -> AutoEncoder:
    """A fresh Mf (with a classifier head for the source's classes when p.cls_weight > 0),
    pretrained on the source images."""
    head = len(source.classes) if p.cls_weight > 0 else 0
    model = place(build_model(ctx.cfg.model, frame_shape(ctx.cfg.data), head), ctx.device)
    losses = [ClassifyLoss(p.cls_weight)] if p.cls_weight > 0 else []
    phase = Phase("pretrain", p.steps, p.batch_size, [{"params": list(model.parameters()), "lr": p.lr}],
                  losses=losses)
    log.info("pretraining %s on %d %s images for %d steps%s", type(model).__name__, len(source.train),
             source.name, p.steps, " with source labels" if losses else "")
    ctx.loop.run(model, phase, source.train, source.val.pixels(), ctx.seed)
    return model


def _labelled(source: Side) -> bool:
    return len(source.classes) > 1 and bool((source.train.y >= 0).all())


def source_checkpoint(mf: SourceModel, cfg: DictConfig, source: Side) -> dict:
    """source.pt (and a cache entry): Mf, and what `aetl rank models=` needs of its source."""
    levels = source.levels()  # what a target's `match` tone moves onto
    return pack("source", mf.model.state_dict(), mf.model.recipe,
                model_cfg=OmegaConf.to_container(cfg.model, resolve=True), source=source.name,
                shape=list(frame_shape(cfg.data)), source_labels=mf.labels, source_classes=list(source.classes),
                source_levels=[levels.background, levels.foreground])
