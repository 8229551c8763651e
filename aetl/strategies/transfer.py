"""Transfer to T with a strategy: build each model the strategy asks for (one; `auto`: a few),
train its phases on the target images through the one loop, and keep the one the strategy
chooses on the target validation split.

A strategy whose training reads no target label trains the same model at every
labels_per_class, so its model goes to the target-model cache (aetl.infra.cache.TargetCache),
keyed by everything that can change its weights but the label budget: the next job of a
label-budget sweep loads it (with the metrics lines and the RNG state its training left) and
only refits the probe, with the figures an uncached run gives."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

import aetl
from aetl.data.pair import Pair
from aetl.errors import AetlError
from aetl.evaluation.metrics import validation_figures
from aetl.infra.cache import TargetCache, cache_key
from aetl.infra.checkpoint import load_checkpoint, pack
from aetl.infra.resume import CandidateTime, rng_states, set_rng_states
from aetl.models import AutoEncoder
from aetl.models.weights import load_weights
from aetl.strategies import Context, Strategy
from aetl.strategies.pretrain import SourceModel, pretrain_settings, source_spec
from aetl.training.context import RunContext
from aetl.training.loop import Phase
from aetl.training.losses import AlignLoss, ClassifyLoss

log = logging.getLogger(__name__)


@dataclass
class Choice:
    """The strategy whose model a run keeps, and (for auto) every candidate's validation figures."""

    strategy: Strategy
    steps: int  # the kept model's target steps
    candidates: dict[str, dict] | None = None
    cache: str | None = None  # the target-model cache: hit, miss, off (None: not for this strategy)

    def record(self) -> dict:
        return {} if self.candidates is None else {"chosen": self.strategy.name, "candidates": self.candidates}


def transfer(ctx: RunContext, strategy: Strategy, pair: Pair, mf: SourceModel | None) -> tuple[AutoEncoder, Choice]:
    """Build and train each model the strategy asks for on T (one; `auto`: a few, to choose
    among on the validation split) and return the one it keeps."""
    options = usable(strategy, pair, int(ctx.cfg.data.target.labels_per_class), mf.model if mf else None)
    if len(options) > 1 and not len(pair.target.val):
        raise AetlError(f"strategy={strategy.name} chooses on the target validation split, which is empty; "
                        "set data.target.n_val >= 1")
    if len(options) == 1 and not strategy.reads_target_labels:
        return _trained_once(ctx, strategy, pair, mf)
    models, steps_of, position = [], [], 0
    for candidate in options:
        model, steps = _train_candidate(ctx, candidate, pair, mf, position, several=len(options) > 1)
        models.append(model)
        steps_of.append(steps)
        position += steps
    if len(options) == 1:
        return models[0], Choice(strategy, steps_of[0])
    state = ctx.progress.state if ctx.progress else None
    figures = [{**validation_figures(m, pair, ctx.cfg.eval),
                "transfer_s": round(_or_nan(state.seconds_of(o.name) if state else None), 3)}
               for o, m in zip(options, models)]
    chosen = strategy.choose(figures)
    log.info("%s: chose %s on the validation split (%s)", strategy.name, options[chosen].name, "; ".join(
        f"{o.name}: val_mse {f['val_mse']:.5f}, val_acc {_pct(f['val_acc'])}, val_im {_num(f['val_im'])}, "
        f"source_val_acc {_pct(f['source_val_acc'])}" for o, f in zip(options, figures)))
    return models[chosen], Choice(options[chosen], steps_of[chosen], {o.name: f for o, f in zip(options, figures)})


def _trained_once(ctx: RunContext, strategy: Strategy, pair: Pair, mf: SourceModel | None) -> tuple[AutoEncoder, Choice]:
    """The model of a strategy whose training reads no target label: from the target-model cache,
    or trained and stored there (once per key: a job holds the key's lock while it trains)."""
    cfg, run = ctx.cfg, ctx.run
    resuming = ctx.progress is not None and ctx.progress.past_source  # carries its own training on
    if not cfg.cache_dir or resuming or ctx.world.size > 1:
        model, steps = _train_candidate(ctx, strategy, pair, mf, 0, several=False)
        return model, Choice(strategy, steps, cache="off")
    cache, spec = TargetCache(cfg.cache_dir), target_spec(ctx, strategy, pair, mf)
    key = cache_key(spec)
    with cache.locked(key):
        state = cache.load(key)
        if state is not None:
            model, _ = _built(ctx, strategy, pair, mf)  # as the run that trained it built it
            load_weights(model, state["model"], str(cache.entry(key)))
            run.replay_metrics(state["metrics"])
            set_rng_states(state["rng"])
            log.info("target model: cache hit %s (trained once for every labels_per_class; the probe is refitted)",
                     cache.entry(key))
            return model, Choice(strategy, int(state["steps"]), cache="hit")
        log.info("target model: cache miss, training into %s", cache.entry(key))
        start = run.metrics_bytes()
        model, steps = _train_candidate(ctx, strategy, pair, mf, 0, several=False)
        cache.store(key, pack("candidate", model.state_dict(), model.recipe, steps=steps, rng=rng_states(),
                              metrics=run.metrics_since(start)), spec)
    return model, Choice(strategy, steps, cache="miss")


def target_spec(ctx: RunContext, strategy: Strategy, pair: Pair, mf: SourceModel | None) -> dict:
    """Everything that can change a label-free strategy's model, and nothing else: the data but the
    label budget (and where the images live), the fit, Mf's identity, the model, the strategy, the
    transfer settings, the seed, the device's kind and aetl's version. Run settings that change no
    weight (checkpoint_every, progress, threads, the logger, cache_dir) are not in it."""
    cfg = ctx.cfg
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data["target"].pop("labels_per_class", None)
    for key in ("storage", "memory_share", "workers"):
        data.pop(key, None)
    trainer = OmegaConf.create({k: cfg.trainer[k] for k in ("optimizer", "transfer", "align", "eval_every", "compile")})
    return {"kind": "target", "data": data, "fit": pair.target.fit.fit.record(), "mf": _mf_identity(cfg, strategy, mf),
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "strategy": OmegaConf.to_container(cfg.strategy, resolve=True),
            "trainer": OmegaConf.to_container(trainer, resolve=True), "precision": ctx.loop.precision, "seed": ctx.seed,
            "device": ctx.device.type, "aetl": aetl.__version__}


def _mf_identity(cfg: DictConfig, strategy: Strategy, mf: SourceModel | None) -> dict | str | None:
    """What Mf the model started from: the spec it was pretrained from, or the hash of the file given."""
    if mf is None or not strategy.uses_source:
        return None
    if cfg.pretrained:
        return hashlib.sha256(Path(str(cfg.pretrained)).expanduser().read_bytes()).hexdigest()
    return source_spec(cfg, pretrain_settings(cfg, strategy.pretrain))


def usable(strategy: Strategy, pair: Pair, labels_per_class: int, mf: AutoEncoder | None) -> list[Strategy]:
    """The strategy's candidates that can adapt to this target: a strategy of its own that
    cannot is refused in one line; `auto` leaves such a candidate out and says why."""
    options = strategy.candidates()
    classes = (pair.source.classes, pair.target.classes)
    why = {o.name: o.refusal(classes, labels_per_class, mf is not None and mf.has_head) for o in options}
    kept = [o for o in options if why[o.name] is None]
    if len(options) == 1 and not kept:
        raise AetlError(why[options[0].name])
    for left in (o for o in options if o not in kept):
        log.info("%s: %s left out: %s", strategy.name, left.name, why[left.name])
    return kept


def check_adaptable(strategy: Strategy, classes: tuple[Sequence[str], Sequence[str]], labels_per_class: int) -> None:
    """Before Mf is pretrained: a strategy of its own that cannot adapt to a target with these
    (source, target) classes is refused now, not after minutes of pretraining (`usable` sorts
    out auto's candidates, and the refusals that need Mf, later)."""
    options = strategy.candidates()
    if len(options) == 1 and (why := options[0].refusal(classes, labels_per_class, None)):
        raise AetlError(why)


def _train_candidate(ctx: RunContext, candidate: Strategy, pair: Pair, mf: SourceModel | None, position: int,
                     several: bool) -> tuple[AutoEncoder, int]:
    """One candidate's model, trained (or, when an interrupted run had finished it, loaded from
    its candidate checkpoint), and its target steps; `position` counts the steps before it."""
    model, build = _built(ctx, candidate, pair, mf)
    phases = [p for p in candidate.phases(model, ctx.cfg.trainer, build) if p.steps > 0]
    steps = sum(p.steps for p in phases)
    kept = ctx.run.checkpoints / f"candidate_{candidate.name}.pt"
    started = ctx.run.elapsed()
    if several and ctx.progress is not None and ctx.progress.finished(position + steps):
        load_weights(model, load_checkpoint(kept, kind="candidate")["model"], str(kept))  # trained before a stop
        return model, steps
    train_phases(ctx, model, phases, pair, position, prefix=f"{candidate.name}/" if several else "")
    if several:
        ctx.run.save_checkpoint(kept.name, pack("candidate", model.state_dict(), model.recipe))
        if ctx.progress is not None:
            ctx.progress.state.candidates.append(CandidateTime(candidate.name, ctx.run.elapsed() - started))
    return model, steps


def _built(ctx: RunContext, candidate: Strategy, pair: Pair, mf: SourceModel | None) -> tuple[AutoEncoder, Context]:
    """The candidate's model before training, and the Context it was built from; seeded, so
    every model starts as it would on its own, Mf trained or cached."""
    torch.manual_seed(ctx.seed + 1)
    build = Context(ctx.cfg.model, pair.shape, mf=mf.model if mf and candidate.uses_source else None,
                    device=ctx.device, pair=pair)
    return candidate.build(build), build


def train_phases(ctx: RunContext, model: AutoEncoder, phases: list[Phase], pair: Pair, position: int,
                 prefix: str = "") -> None:
    """One model's phases on the target images, one step axis across them; `position` counts
    the target steps of the models trained before it (where last.pt says a run stopped)."""
    done = 0
    progress = ctx.progress
    for i, phase in enumerate(phases):
        if progress is not None and progress.finished(position + done + phase.steps):
            done += phase.steps  # last.pt holds a later phase: carry on there
            continue
        phase.name = prefix + phase.name
        add_common_losses(phase, model, ctx.cfg.trainer, pair)
        log.info("%s: phase %s, %d steps on %d %s images", ctx.cfg.strategy.name, phase.name, phase.steps,
                 len(pair.target.train), pair.target.name)
        if progress is not None:
            progress.state.position = position + done
        ctx.loop.run(model, phase, pair.target.train, pair.target.val.pixels(), ctx.seed + 1 + i, first_step=done)
        done += phase.steps


def add_common_losses(phase: Phase, model: AutoEncoder, trainer, pair: Pair) -> None:
    """Terms any strategy's transfer phases take from the trainer config: alignment of
    target and source codes, and cross-entropy on source batches (DRCN-style)."""
    if trainer.align.kind != "none" and trainer.align.weight > 0:
        phase.losses.append(AlignLoss(trainer.align.kind, trainer.align.weight))
    if trainer.transfer.cls_weight > 0:
        if not model.has_head:
            raise AetlError("trainer.transfer.cls_weight > 0 needs a source classifier: set "
                            "trainer.pretrain.cls_weight > 0 and use a strategy that starts from Mf")
        phase.losses.append(ClassifyLoss(trainer.transfer.cls_weight, on_source=True))
    if any(isinstance(t, (AlignLoss, ClassifyLoss)) for t in phase.losses):
        phase.source_images = pair.source.train


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
