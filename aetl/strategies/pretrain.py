"""The source model Mf: loaded from `pretrained=`, found in the cache, or pretrained
on the source images (joined by a classification loss on the source labels when
trainer.pretrain.cls_weight > 0, as in DRCN, Ghifary et al. 2016); and the target's fit
where its config leaves it to be chosen with Mf (`settle_fit`)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, replace

import torch
from omegaconf import DictConfig, OmegaConf

import aetl
from aetl.data.fit import MAX_IMAGES, FitChoice, is_open, target_fit
from aetl.data.pair import Side, Unmapped, frame_shape
from aetl.errors import AetlError
from aetl.infra.cache import FitCache, SourceCache, cache_key
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


def mf_seed(cfg: DictConfig, pretrain: DictConfig | None = None) -> int:
    """The seed Mf is pretrained with: trainer.pretrain.seed, or the run's seed where it is null."""
    seed = (cfg.trainer.pretrain if pretrain is None else pretrain).get("seed")
    return int(cfg.seed if seed is None else seed)


def source_spec(cfg: DictConfig, pretrain: DictConfig) -> dict:
    """Everything that determines Mf: its cache key is the hash of this. (Mf's seed once, as
    `seed`: `seed=3` and `seed=5 trainer.pretrain.seed=3` are the same Mf; the run settings
    that change nothing of it, trainer.checkpoint_every, progress, threads, the logger, are not in it.)"""
    data = {k: cfg.data[k] for k in ("source", "image_size", "channels", "split_seed")}
    phase = {k: v for k, v in OmegaConf.to_container(pretrain, resolve=True).items() if k != "seed"}
    return OmegaConf.to_container(OmegaConf.create({
        "data": data, "model": cfg.model, "pretrain": phase, "optimizer": cfg.trainer.optimizer,
        "seed": mf_seed(cfg, pretrain), "aetl": aetl.__version__}), resolve=True)


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
    torch.manual_seed(mf_seed(cfg, pretrain))  # Mf's initialisation does not depend on what ran before
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


def settle_mf(ctx: RunContext, strategy: Strategy, source: Side, overrides: dict | None = None) -> SourceModel:
    """Mf as obtain_mf finds it (with the strategy's pretrain overrides, or these), or as an
    interrupted run of this dir had settled it."""
    progress = ctx.progress
    if progress is not None and progress.past_source:
        return resumed_mf(ctx, progress.state.mf)
    mf = obtain_mf(ctx, source, strategy.pretrain if overrides is None else overrides)
    if progress is not None:
        progress.state.mf = mf.provenance()
    return mf


def fit_seed(cfg: DictConfig, pretrain: DictConfig) -> int:
    """The seed of the Mf that chooses an open fit: trainer.pretrain.seed, else data.split_seed;
    one Mf for every seed of a sweep, as the images it scores are (aetl.data.pair)."""
    seed = pretrain.get("seed")
    return int(cfg.data.split_seed if seed is None else seed)


def settle_fit(ctx: RunContext, strategy: Strategy, source: Side,
               target: Unmapped) -> tuple[SourceModel | None, FitChoice | None]:
    """Mf for the strategy (None where it needs none), and the target's fit where its config
    leaves it open (None: a fixed fit, which map_target applies). The fit is chosen with the
    fit seed's Mf (the run's own when it has that seed; `pretrained=` when given) and kept in the
    fit cache, so a sweep chooses once; `strategy=scratch` obtains Mf only to choose with."""
    cfg, world = ctx.cfg, ctx.world
    if not is_open(cfg.data.target):
        return (settle_mf(ctx, strategy, source) if strategy.uses_source else None), None
    seed = fit_seed(cfg, pretrain_settings(cfg, strategy.pretrain))
    chooser = {**strategy.pretrain, "seed": seed}  # the fit's Mf: the strategy's schedule, the fit seed
    own = strategy.pretrain if strategy.uses_source else chooser
    fits = FitCache(cfg.cache_dir) if cfg.cache_dir and not cfg.pretrained else None
    spec = fit_spec(cfg, pretrain_settings(cfg, chooser), target)
    key = cache_key(spec)
    with fits.locked(key) if fits and world.is_main else contextlib.nullcontext():
        found = _usable(world.broadcast(fits.load(key) if fits and world.is_main else None), fits, key)
        mf = settle_mf(ctx, strategy, source, own) if strategy.uses_source or found is None else None
        if found is not None:
            choice = FitChoice.from_summary(found, "target")
            log.info("fit auto: %s, from the fit cache %s (chosen with seed %d's Mf)", choice.fit.label(),
                     fits.entry(key), seed)
            return mf, choice
        same = cfg.pretrained or mf_seed(cfg, pretrain_settings(cfg, own)) == seed
        chooser_mf = mf.model if same else _fit_mf(ctx, pretrain_settings(cfg, chooser), source)
        choice = target_fit(target.unlabelled_images(MAX_IMAGES), cfg.data.target, cfg.data.image_size,
                            cfg.data.channels, chooser_mf, source.levels())
        if fits and world.is_main:
            fits.store(key, choice.summary("target"), spec)
    return mf, choice


def _usable(found: dict | None, fits: FitCache | None, key: str) -> dict | None:
    """A fit cache entry whose record is sound (None, with a warning, for one that is not)."""
    if found is None:
        return None
    try:
        FitChoice.from_summary(found, "target")
    except (AetlError, KeyError) as err:
        log.warning("the fit choice cache entry %s is damaged (%s); choosing again", fits.entry(key).parent, err)
        return None
    return found


def fit_spec(cfg: DictConfig, pretrain: DictConfig, target: Unmapped) -> dict:
    """What decides an open fit: the chooser Mf's own spec, the target's images (its image cache
    key and fingerprint), the fit settings and splits, and the frame."""
    keys = ("fit", "margin", "tone", "n_test", "n_val")
    return {"kind": "fit", "mf": source_spec(cfg, pretrain), "target": target.key, "fingerprint": target.fingerprint,
            "settings": {k: cfg.data.target.get(k) for k in keys}, "split_seed": int(cfg.data.split_seed),
            "frame": list(frame_shape(cfg.data)), "images": MAX_IMAGES}


def _fit_mf(ctx: RunContext, pretrain: DictConfig, source: Side) -> AutoEncoder:
    """Mf of another seed than the run's, to choose the fit with: from the source-model cache, or
    pretrained (and cached), out of the run's record (no source.pt, metrics or last.pt)."""
    aside = RunContext(ctx.cfg, ctx.run, replace(ctx.loop, out=None, progress=None), ctx.device)
    if pretrain.cls_weight > 0 and not _labelled(source):
        pretrain.cls_weight = 0.0  # as obtain_mf does (and warns)
    log.info("fit auto: choosing with the Mf of seed %d (shared by every seed of a sweep)", mf_seed(ctx.cfg, pretrain))
    torch.manual_seed(mf_seed(ctx.cfg, pretrain))
    if ctx.cfg.cache_dir:
        return _cached_mf(aside, pretrain, source).model
    return _pretrained(aside, pretrain, source)


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
    ctx.loop.run(model, phase, source.train, source.val.pixels(), mf_seed(ctx.cfg, p))
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
