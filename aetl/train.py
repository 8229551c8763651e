"""`aetl train`: obtain Mf, transfer to T with a strategy, evaluate on T, write the run dir."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aetl.data import Pair, Side, frame_shape, load_source, load_target, map_target
from aetl.errors import AetlError, in_multirun, reports_errors
from aetl.evaluate import Predictor, accuracy, reconstruction_metrics, source_head, target_predictor
from aetl.fit import is_open
from aetl.infra.distributed import World, join, leave, pick_device
from aetl.infra.lock import owned
from aetl.infra.loggers import open_loggers
from aetl.infra.objective import check_objective, objective_value
from aetl.infra.resume import Progress
from aetl.infra.runconfig import finished_run
from aetl.infra.rundir import Run, load_checkpoint, register_resolvers
from aetl.infra.schema import check_config
from aetl.infra.signals import StopSignals
from aetl.loop import Loop, Phase
from aetl.losses import AlignLoss, ClassifyLoss
from aetl.models import AutoEncoder
from aetl.pretrain import SourceModel, obtain_mf, resumed_mf
from aetl.strategies import Context, Strategy
from aetl.transfer import load_weights

log = logging.getLogger(__name__)
register_resolvers()


@hydra.main(version_base="1.3", config_path="pkg://aetl.configs", config_name="train")
def main(cfg: DictConfig) -> float:
    """The Hydra task: the pipeline, then the objective as a float for sweepers (e.g. Optuna)."""
    hydra_cfg = HydraConfig.get()
    summary = reports_errors(train)(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))
    return objective_value(summary, cfg.objective)


def train(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> dict:
    """Run the whole pipeline into out_dir and return the summary (`main` hands sweepers its objective).
    overrides: the command line's, kept in last.pt for `aetl train resume=`."""
    check_objective(cfg.objective)
    check_config(cfg)
    world, device = join(cfg.trainer.device)
    run = Run(out_dir, enabled=world.is_main)
    finished = (Path(out_dir) / "summary.json").is_file()  # a finished run is only read
    try:  # rank 0 holds the run dir (a sweep's job too): one process per run dir
        with owned(out_dir) if world.is_main and not finished else contextlib.nullcontext(), \
                StopSignals(out_dir, quiet=not world.is_main) as signals:
            return _train(cfg, run, world, device or pick_device(cfg.trainer.device), signals, overrides)
    finally:
        run.close()
        leave()


def _train(cfg: DictConfig, run: Run, world: World, device: torch.device,
           signals: StopSignals | None = None, overrides: list[str] | None = None) -> dict:
    if (run.root / "summary.json").is_file():
        if not in_multirun():
            raise AetlError(finished_run(run.root))
        log.info("%s already holds a finished run: kept as it is", run.root)  # a sweep run again into its dir
        return json.loads((run.root / "summary.json").read_text())
    progress = Progress(run, cfg, world, overrides)  # resumes from checkpoints/last.pt when the dir has one
    run.loggers = open_loggers(cfg.logger, run)  # after Progress: they start from what metrics.jsonl kept
    loop = Loop.from_config(cfg.trainer, device, world, signals)  # checks the trainer's numbers first
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    strategy = instantiate(cfg.strategy)
    source = load_source(cfg.data, device, cfg.cache_dir)
    target = load_target(cfg.data, cfg.seed, cfg.cache_dir)
    # Mf: for the strategy, and to choose the target's fit where it is auto (then scratch needs it too)
    mf = settle_mf(cfg, strategy, source, run, loop, device, progress, world) \
        if strategy.uses_source or is_open(cfg.data.target) else None
    pair = Pair(source, map_target(target, cfg.data, source, mf and mf.model, device, cache_dir=cfg.cache_dir),
                frame_shape(cfg.data))

    transfer_started = progress.context.setdefault("transfer_started_s", run.elapsed())
    model, choice = transfer(strategy, pair, mf, cfg, run, loop, progress, device)
    if not world.is_main:
        return {}  # rank 0 checkpoints, evaluates and writes the run dir
    transfer_s = run.elapsed() - transfer_started
    # Checkpoint first, then evaluate: a failed evaluation still leaves the model to inspect.
    used = mf if choice.strategy.uses_source else None  # (auto: the kept model may be scratch)
    trained = {  # what the run is, known before it is evaluated; target.pt carries it too
        "strategy": strategy.name, "source": source.name, "target": pair.target.name, "seed": cfg.seed,
        "labels_per_class": cfg.data.target.labels_per_class, "n_target_train": len(pair.target.train),
        "source_labels": bool(used and used.labels), "transfer_steps": choice.steps}
    run.save_checkpoint("target.pt", target_checkpoint(model, cfg, pair, trained))
    summary = {
        **{k: trained[k] for k in ("strategy", "source", "target", "seed", "labels_per_class", "n_target_train")},
        **evaluate_run(model, pair, cfg.eval, run),
        "pretrain_s": round(mf.seconds if mf else 0.0, 3), "transfer_s": round(transfer_s, 3),
        "total_s": round(run.elapsed(), 3), "device": str(device),
        "model": type(model).__name__, "latent_dim": model.latent_dim, "image_shape": list(pair.shape),
        **source.fit.summary("source"), **pair.target.fit.summary("target"),
        "source_model": mf.origin if mf else None, "source_cache": mf.cache if mf else None,
        "source_labels": trained["source_labels"], "align": cfg.trainer.align.kind,
        "transfer_steps": choice.steps, **choice.record(),
    }
    if cfg.app.get("_target_"):
        summary.update(instantiate(cfg.app)(model, run, pair=pair))
    run.write_summary(summary)
    log.info("target_mse %.5f  target_psnr %.2f dB  target_acc %s  (%s -> %s, %s)", summary["target_mse"],
             summary["target_psnr"], "n/a" if summary["target_acc"] is None else f"{summary['target_acc']:.3f}",
             source.name, pair.target.name, strategy.name)
    log.info("run dir: %s", run.root)
    return summary


def settle_mf(cfg: DictConfig, strategy: Strategy, source: Side, run: Run, loop: Loop, device: torch.device,
              progress: Progress, world: World) -> SourceModel:
    """Mf as obtain_mf finds it, or as an interrupted run of this dir had settled it."""
    shape = frame_shape(cfg.data)
    if progress.past_source:  # (a last.pt from before Mf's provenance was "mf" calls it "source")
        return resumed_mf(cfg, shape, run, progress.context.get("mf") or progress.context["source"], device, world)
    mf = obtain_mf(cfg, source, shape, strategy.pretrain, run, loop, device, progress)
    progress.context["mf"] = mf.provenance()
    return mf


def target_checkpoint(model: AutoEncoder, cfg: DictConfig, pair: Pair, trained: dict) -> dict:
    """target.pt: the model's weights and how to rebuild it (`recipe`), and what the apps need to
    use it on their own (`aetl stylize run=<target.pt>`): the data config and the target's fit."""
    return {"model": model.state_dict(), "recipe": model.recipe, "model_cfg": OmegaConf.to_container(cfg.model),
            "strategy": trained["strategy"], "shape": list(pair.shape), "run": trained,
            "data": OmegaConf.to_container(cfg.data, resolve=True), "cache_dir": cfg.cache_dir,
            "fit": pair.target.fit.summary("target")}


def transfer(strategy: Strategy, pair: Pair, mf: SourceModel | None, cfg: DictConfig, run: Run, loop: Loop,
             progress: Progress, device: torch.device) -> tuple[AutoEncoder, Choice]:
    """Build and train each model the strategy asks for on T (one; `auto`: a few, to choose
    among on the validation split) and return the one it keeps."""
    options = strategy.candidates()
    if len(options) > 1 and not len(pair.target.val):
        raise AetlError(f"strategy={strategy.name} chooses on the target validation split, which is empty; "
                        "set data.target.n_val >= 1")
    models, steps_of, position = [], [], 0
    for candidate in options:
        torch.manual_seed(cfg.seed + 1)  # every model starts as it would on its own, Mf trained or cached
        ctx = Context(cfg.model, pair.shape, mf=mf.model if mf and candidate.uses_source else None, device=device)
        model = candidate.build(ctx)
        phases = [p for p in candidate.phases(model, cfg.trainer, ctx) if p.steps > 0]
        steps = sum(p.steps for p in phases)
        kept = run.checkpoints / f"candidate_{candidate.name}.pt"
        started = run.elapsed()
        if len(options) > 1 and progress.finished(position + steps):  # trained before an interruption
            load_weights(model, load_checkpoint(kept)["model"], str(kept))
        else:
            prefix = f"{candidate.name}/" if len(options) > 1 else ""
            train_phases(candidate, model, phases, pair, cfg, run, loop, progress, position, prefix)
            if len(options) > 1:
                run.save_checkpoint(kept.name, {"model": model.state_dict()})
                progress.context.setdefault("seconds", {})[candidate.name] = run.elapsed() - started
        models.append(model)
        steps_of.append(steps)
        position += steps
    if len(options) == 1:
        return models[0], Choice(strategy, steps_of[0])
    seconds = progress.context.get("seconds", {})
    figures = [{**validation_figures(m, pair, cfg.eval), "transfer_s": round(seconds.get(o.name, math.nan), 3)}
               for o, m in zip(options, models)]
    chosen = strategy.choose(figures)
    log.info("%s: chose %s on the validation split (%s)", strategy.name, options[chosen].name, "; ".join(
        f"{o.name}: val_mse {f['val_mse']:.5f}, val_acc {_pct(f['val_acc'])}" for o, f in zip(options, figures)))
    return models[chosen], Choice(options[chosen], steps_of[chosen], {o.name: f for o, f in zip(options, figures)})


def train_phases(strategy: Strategy, model: AutoEncoder, phases: list[Phase], pair: Pair, cfg: DictConfig,
                 run: Run, loop: Loop, progress: Progress, position: int, prefix: str = "") -> None:
    """One model's phases on the target images, one step axis across them; `position` counts
    the target steps of the models trained before it (where last.pt says a run stopped)."""
    done = 0
    for i, phase in enumerate(phases):
        if progress.finished(position + done + phase.steps):  # last.pt holds a later phase: carry on there
            done += phase.steps
            continue
        phase.name = prefix + phase.name
        add_common_losses(phase, model, cfg.trainer, pair)
        log.info("%s: phase %s, %d steps on %d %s images", strategy.name, phase.name, phase.steps,
                 len(pair.target.train), pair.target.name)
        progress.context["position"] = position + done
        loop.run(model, phase, pair.target.train, pair.target.val.pixels(), run, cfg.seed + 1 + i, first_step=done,
                 progress=progress)
        done += phase.steps


@dataclass
class Choice:
    """The strategy whose model a run keeps, and (for auto) every candidate's validation figures."""

    strategy: Strategy
    steps: int  # the kept model's target steps
    candidates: dict[str, dict] | None = None

    def record(self) -> dict:
        return {} if self.candidates is None else {"chosen": self.strategy.name, "candidates": self.candidates}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def add_common_losses(phase: Phase, model: AutoEncoder, trainer: DictConfig, pair: Pair) -> None:
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


def evaluate_run(model: AutoEncoder, pair: Pair, cfg: DictConfig, run: Run) -> dict:
    """Target and source test metrics (logged to metrics.jsonl) and the reconstruction grids.

    target_acc is the linear probe on the labelled target images; with no target labels it
    is Mf's source classifier applied to T as it is (when it has one and the target's classes
    are among the source's)."""
    target = reconstruction_metrics(model, pair.target.test.pixels())
    head = source_head(model, pair)
    predict = target_predictor(model, pair, cfg.probe_l2)
    val = validation_figures(model, pair, cfg, predict)  # for tuning: model selection never reads the test split
    metrics = {"target_mse": target["mse"], "target_psnr": target["psnr"],
               "target_acc": accuracy(predict, pair.target.test),
               "target_acc_source_head": accuracy(head, pair.target.test), "target_val_acc": val["val_acc"],
               "source_mse": reconstruction_metrics(model, pair.source.test.pixels())["mse"],
               "target_val_mse": val["val_mse"], "n_target_labelled": len(pair.target.train.labelled())}
    run.log_metrics("eval", **metrics)
    for name, split in (("recon_source.png", pair.source.test), ("recon_target.png", pair.target.test)):
        x = split.batch(slice(0, cfg.n_images))
        run.save_recon_grid(name, x, reconstruction(model, x))
    return metrics


def validation_figures(model: AutoEncoder, pair: Pair, cfg: DictConfig, predict: Predictor | None = None) -> dict:
    """Validation MSE, and validation accuracy where the target has labels: what choices are made on."""
    val = pair.target.val
    if not len(val):
        return {"val_mse": None, "val_acc": None}
    predict = predict or target_predictor(model, pair, cfg.probe_l2)
    return {"val_mse": reconstruction_metrics(model, val.pixels())["mse"], "val_acc": accuracy(predict, val)}


@torch.no_grad()
def reconstruction(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x).recon
