"""`aetl train`: pretrain on S, transfer to T with a strategy, evaluate on T, write the run dir."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aetl.data import Pair, load_pair
from aetl.errors import AetlError, reports_errors
from aetl.evaluate import probe_accuracy, reconstruction_metrics
from aetl.loop import run_phase
from aetl.models import AutoEncoder, build_model
from aetl.pretrain import source_model
from aetl.rundir import Run, register_resolvers

log = logging.getLogger(__name__)
register_resolvers()


@hydra.main(version_base="1.3", config_path="pkg://aetl.configs", config_name="train")
@reports_errors
def main(cfg: DictConfig) -> dict:
    return train(cfg, Path(HydraConfig.get().runtime.output_dir))


def train(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the whole pipeline into out_dir and return the summary (what sweepers optimise)."""
    run = Run(out_dir)
    device = pick_device(cfg.trainer.device)
    seed_everything(cfg.seed, cfg.trainer.threads)
    pair = load_pair(cfg.data, cfg.seed, device)
    strategy = instantiate(cfg.strategy)
    make_optimizer = instantiate(cfg.trainer.optimizer)
    def new_model(): return build_model(cfg.model, pair.shape).to(device)  # noqa: E704

    source, pretrain_s, origin = None, 0.0, None
    if strategy.uses_source:
        source, pretrain_s, origin = source_model(cfg, pair, new_model, run, make_optimizer)
    started = time.perf_counter()
    model = strategy.build(new_model, source)
    for i, phase in enumerate(strategy.phases(model, cfg.trainer)):
        log.info("%s: phase %s, %d steps on %d %s images", strategy.name, phase.name, phase.steps,
                 len(pair.target_train), pair.target_name)
        run_phase(model, phase, pair.target_train.x, pair.target_val.x, run, make_optimizer,
                  cfg.trainer.eval_every, cfg.seed + 1 + i, cfg.trainer.progress)
    transfer_s = time.perf_counter() - started
    # Checkpoint first, then evaluate: a failed evaluation still leaves the model to inspect.
    run.save_checkpoint("target.pt", {"model": model.state_dict(), "model_cfg": OmegaConf.to_container(cfg.model),
                                      "strategy": strategy.name, "shape": list(pair.shape)})
    summary = {
        "strategy": strategy.name, "source": pair.source_name, "target": pair.target_name, "seed": cfg.seed,
        "labels_per_class": cfg.data.target.labels_per_class, "n_target_train": len(pair.target_train),
        **evaluate_run(model, pair, cfg.eval, run),
        "pretrain_s": round(pretrain_s, 3), "transfer_s": round(transfer_s, 3),
        "total_s": round(time.perf_counter() - run.started, 3), "device": str(device),
        "model": type(model).__name__, "latent_dim": model.latent_dim, "image_shape": list(pair.shape),
        "source_fit": cfg.data.source.fit, "target_fit": cfg.data.target.fit, "source_model": origin,
    }
    run.write_summary(summary)
    log.info("target_mse %.5f  target_psnr %.2f dB  target_acc %s  (%s -> %s, %s)", summary["target_mse"],
             summary["target_psnr"], "n/a" if summary["target_acc"] is None else f"{summary['target_acc']:.3f}",
             pair.source_name, pair.target_name, strategy.name)
    log.info("run dir: %s", run.root)
    return summary


def evaluate_run(model: AutoEncoder, pair: Pair, cfg: DictConfig, run: Run) -> dict:
    """Target and source test metrics (logged to metrics.jsonl) and the reconstruction grids."""
    target = reconstruction_metrics(model, pair.target_test.x)
    labelled = pair.target_train.labelled()
    acc = None
    if len(labelled):
        acc = probe_accuracy(model, labelled.x, labelled.y, pair.target_test.x, pair.target_test.y,
                             len(pair.classes), cfg.probe_l2)
    metrics = {"target_mse": target["mse"], "target_psnr": target["psnr"], "target_acc": acc,
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
    """`auto` takes CUDA when a device is visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AetlError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu")
    if name not in ("cpu", "cuda"):
        raise AetlError(f"unknown trainer.device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int, threads: int | None) -> None:
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(int(threads))
