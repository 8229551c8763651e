"""`aetl train`: obtain Mf, transfer to T with a strategy, evaluate on T, write the run dir."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aetl.data import Pair, load_pair
from aetl.distributed import World, join, leave
from aetl.errors import AetlError, in_multirun, reports_errors
from aetl.evaluate import accuracy, fit_probe, head_predictions, reconstruction_metrics
from aetl.loop import Loop, Phase
from aetl.loggers import open_loggers
from aetl.losses import AlignLoss, ClassifyLoss
from aetl.models import AutoEncoder
from aetl.objective import check_objective, objective_value
from aetl.pretrain import obtain_source, resumed_source
from aetl.resume import Progress, StopSignals, finished_run
from aetl.rundir import Run, register_resolvers
from aetl.strategies import Context

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
    world, device = join(cfg.trainer.device)
    run = Run(out_dir, enabled=world.is_main)
    try:
        with StopSignals(out_dir, quiet=not world.is_main) as signals:
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
    loop = Loop.from_config(cfg.trainer, device, world)  # checks the trainer's numbers first
    loop.signals = signals
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    pair = load_pair(cfg.data, cfg.seed, device)
    strategy = instantiate(cfg.strategy)
    source = None
    if strategy.uses_source:
        if progress.past_source:
            source = resumed_source(cfg, pair, run, progress.context["source"], device, world)
        else:
            source = obtain_source(cfg, pair, strategy.pretrain, run, loop, device, progress)
            progress.context["source"] = source.provenance()

    transfer_started = progress.context.setdefault("transfer_started_s", run.elapsed())
    torch.manual_seed(cfg.seed + 1)  # the same target initialisation whether Mf was trained or cached
    model = strategy.build(Context(cfg.model, pair.shape, source.model if source else None, device))
    phases = [p for p in strategy.phases(model, cfg.trainer) if p.steps > 0]
    done = 0
    for i, phase in enumerate(phases):
        if progress.passed(done):  # finished before an interruption: last.pt holds its result
            done += phase.steps
            continue
        add_common_losses(phase, model, cfg.trainer, pair)
        log.info("%s: phase %s, %d steps on %d %s images", strategy.name, phase.name, phase.steps,
                 len(pair.target_train), pair.target_name)
        loop.run(model, phase, pair.target_train, pair.target_val.x, run, cfg.seed + 1 + i, first_step=done,
                 progress=progress)
        done += phase.steps
    if not world.is_main:
        return {}  # rank 0 checkpoints, evaluates and writes the run dir
    transfer_s = run.elapsed() - transfer_started
    # Checkpoint first, then evaluate: a failed evaluation still leaves the model to inspect.
    run.save_checkpoint("target.pt", {"model": model.state_dict(), "model_cfg": OmegaConf.to_container(cfg.model),
                                      "strategy": strategy.name, "shape": list(pair.shape)})
    summary = {
        "strategy": strategy.name, "source": pair.source_name, "target": pair.target_name, "seed": cfg.seed,
        "labels_per_class": cfg.data.target.labels_per_class, "n_target_train": len(pair.target_train),
        **evaluate_run(model, pair, cfg.eval, run),
        "pretrain_s": round(source.seconds if source else 0.0, 3), "transfer_s": round(transfer_s, 3),
        "total_s": round(run.elapsed(), 3), "device": str(device),
        "model": type(model).__name__, "latent_dim": model.latent_dim, "image_shape": list(pair.shape),
        "source_fit": cfg.data.source.fit, "target_fit": cfg.data.target.fit,
        "source_model": source.origin if source else None, "source_cache": source.cache if source else None,
        "source_labels": bool(source and source.labels), "align": cfg.trainer.align.kind,
        "transfer_steps": done,
    }
    if cfg.app.get("_target_"):
        summary.update(instantiate(cfg.app)(model, run, pair=pair))
    run.write_summary(summary)
    log.info("target_mse %.5f  target_psnr %.2f dB  target_acc %s  (%s -> %s, %s)", summary["target_mse"],
             summary["target_psnr"], "n/a" if summary["target_acc"] is None else f"{summary['target_acc']:.3f}",
             pair.source_name, pair.target_name, strategy.name)
    log.info("run dir: %s", run.root)
    return summary


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
        phase.source = pair.source_train


def evaluate_run(model: AutoEncoder, pair: Pair, cfg: DictConfig, run: Run) -> dict:
    """Target and source test metrics (logged to metrics.jsonl) and the reconstruction grids.

    target_acc is the linear probe on the labelled target images; with no target
    labels it is the source classifier applied to T as it is (when Mf has one)."""
    target = reconstruction_metrics(model, pair.target_test.x)
    labelled = pair.target_train.labelled()
    head = head_predictions(model) if model.has_head and pair.classes == pair.source_classes else None
    # images -> classes: the linear probe, else Mf's own head applied to T as it is
    predict = fit_probe(model, labelled.x, labelled.y, len(pair.classes), cfg.probe_l2) if len(labelled) else head
    head_acc = accuracy(head, pair.target_test)
    acc = accuracy(predict, pair.target_test)
    val_acc = accuracy(predict, pair.target_val)  # for tuning: model selection never reads the test split
    metrics = {"target_mse": target["mse"], "target_psnr": target["psnr"], "target_acc": acc,
               "target_acc_source_head": head_acc, "target_val_acc": val_acc,
               "source_mse": reconstruction_metrics(model, pair.source_test.x)["mse"],
               "target_val_mse": reconstruction_metrics(model, pair.target_val.x)["mse"] if len(pair.target_val) else None,
               "n_target_labelled": len(labelled)}
    run.log_metrics("eval", **metrics)
    for name, x in (("recon_source.png", pair.source_test.x), ("recon_target.png", pair.target_test.x)):
        x = x[: cfg.n_images]
        run.save_recon_grid(name, x, reconstruction(model, x))
    return metrics


@torch.no_grad()
def reconstruction(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x).recon


def pick_device(name: str) -> torch.device:
    """`auto` takes CUDA when a device is visible, else the CPU; `mps` is Apple's GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AetlError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise AetlError("trainer.device=mps but PyTorch's MPS backend is not available here (it needs Apple "
                        "silicon and macOS); use trainer.device=auto or cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise AetlError(f"unknown trainer.device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)
