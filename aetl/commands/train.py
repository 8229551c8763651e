"""`aetl train`: obtain Mf, transfer to T with a strategy, evaluate on T, write the run dir."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aetl.data.pair import DataSettings, Pair, frame_shape, load_source, load_target, map_target
from aetl.data.storage import Storage
from aetl.errors import AetlError, in_multirun, reports_errors
from aetl.evaluation.metrics import EvalSettings, evaluate_run
from aetl.infra.checkpoint import pack
from aetl.infra.distributed import join, leave, pick_device
from aetl.infra.lock import owned
from aetl.infra.loggers import open_loggers
from aetl.infra.objective import Objective, check_objective, objective_value
from aetl.infra.resume import Progress
from aetl.infra.runconfig import finished_run
from aetl.infra.rundir import Run, figure, log_config, register_resolvers
from aetl.infra.schema import App, Seed, Target, check_config
from aetl.infra.signals import StopSignals
from aetl.models import AutoEncoder
from aetl.strategies.pretrain import settle_fit
from aetl.strategies.transfer import check_adaptable, transfer
from aetl.training.budget import check_memory
from aetl.training.context import RunContext
from aetl.training.loop import Loop, TrainerSettings

log = logging.getLogger(__name__)
register_resolvers()


@dataclass
class Config:
    """What `aetl train` reads (configs/train.yaml and its groups): each branch declared by the
    code that reads it (aetl.infra.schema)."""

    seed: Seed
    pretrained: str | None  # a source.pt to use as Mf instead of pretraining one
    cache_dir: str | None   # the source-model and image caches (null: none)
    objective: Objective
    eval: EvalSettings
    data: DataSettings
    model: Target
    strategy: Target
    app: App
    trainer: TrainerSettings
    logger: dict[str, Target]


@hydra.main(version_base="1.3", config_path="pkg://aetl.configs", config_name="train")
def main(cfg: DictConfig) -> float:
    """The Hydra task: the pipeline, then the objective as a float for sweepers (e.g. Optuna)."""
    hydra_cfg = HydraConfig.get()
    log_config(cfg, "train", hydra_cfg.overrides.task)
    summary = reports_errors(train)(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))
    return objective_value(summary, cfg.objective)


def train(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> dict:
    """Run the whole pipeline into out_dir and return the summary (`main` hands sweepers its objective).
    overrides: the command line's, kept in last.pt for `aetl train resume=`."""
    check_objective(cfg.objective)
    check_config(cfg, Config)
    world, device = join(cfg.trainer.device)
    run = Run(out_dir, enabled=world.is_main)
    finished = (Path(out_dir) / "summary.json").is_file()  # a finished run is only read
    try:  # rank 0 holds the run dir (a sweep's job too): one process per run dir
        with owned(out_dir) if world.is_main and not finished else contextlib.nullcontext(), \
                StopSignals(out_dir, quiet=not world.is_main) as signals:
            if finished:
                return finished_summary(run)
            progress = Progress(run, cfg, world, overrides)  # resumes from checkpoints/last.pt when the dir has one
            run.loggers = open_loggers(cfg.logger, run)  # after Progress: they start from what metrics.jsonl kept
            device = device or pick_device(cfg.trainer.device)
            loop = Loop.from_config(cfg.trainer, device, run, world, signals, progress)  # checks the trainer first
            return _train(RunContext(cfg, run, loop, device))
    finally:
        run.close()
        leave()


def finished_summary(run: Run) -> dict:
    """A run dir that holds a finished run: refused, except in a sweep run again into its dirs."""
    if not in_multirun():
        raise AetlError(finished_run(run.root))
    log.info("%s already holds a finished run: kept as it is", run.root)
    return json.loads((run.root / "summary.json").read_text())


def _train(ctx: RunContext) -> dict:
    cfg, run = ctx.cfg, ctx.run
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    strategy = instantiate(cfg.strategy)
    check_memory(cfg, ctx.device)  # before anything is decoded or allocated
    source = load_source(cfg.data, ctx.device, cfg.cache_dir)
    target = load_target(cfg.data, cfg.seed, cfg.cache_dir)
    check_adaptable(strategy, (source.classes, target.domain.classes), int(cfg.data.target.labels_per_class))
    # Mf: for the strategy, and to choose the target's fit where it is auto (then scratch needs it too)
    mf, fit = settle_fit(ctx, strategy, source, target)
    storage = Storage.of(cfg.data, ctx.device, cfg.cache_dir)
    pair = Pair(source, map_target(target, cfg.data, source, None, storage, fit), frame_shape(cfg.data))

    state = ctx.progress.state
    state.transfer_started_s = run.elapsed() if state.transfer_started_s is None else state.transfer_started_s
    model, choice = transfer(ctx, strategy, pair, mf)
    if not ctx.world.is_main:
        return {}  # rank 0 checkpoints, evaluates and writes the run dir
    transfer_s = run.elapsed() - state.transfer_started_s
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
        "total_s": round(run.elapsed(), 3), "device": str(ctx.device),
        "model": type(model).__name__, "latent_dim": model.latent_dim, "image_shape": list(pair.shape),
        **source.fit.summary("source"), **pair.target.fit.summary("target"),
        "source_model": mf.origin if mf else None, "source_cache": mf.cache if mf else None,
        "source_labels": trained["source_labels"], "align": cfg.trainer.align.kind, "target_cache": choice.cache,
        "transfer_steps": choice.steps, **choice.record(),
    }
    if cfg.app.get("_target_"):
        summary.update(instantiate(cfg.app)(model, run, pair=pair))
    run.write_summary(summary)
    run.announce(f"target_mse {summary['target_mse']:.5f}  target_psnr {summary['target_psnr']:.2f} dB  target_acc "
                 f"{figure(summary['target_acc'])}  ({source.name} -> {pair.target.name}, {strategy.name})")
    return summary


def target_checkpoint(model: AutoEncoder, cfg: DictConfig, pair: Pair, trained: dict) -> dict:
    """target.pt: the model's weights and how to rebuild it (`recipe`), and what the apps need to
    use it on their own (`aetl stylize run=<target.pt>`): the data config and the target's fit.
    Nothing of the machine that wrote it (no cache_dir: the reader uses its own)."""
    return pack("target", model.state_dict(), model.recipe, model_cfg=OmegaConf.to_container(cfg.model),
                strategy=trained["strategy"], shape=list(pair.shape), run=trained,
                data=OmegaConf.to_container(cfg.data, resolve=True), fit=pair.target.fit.summary("target"))
