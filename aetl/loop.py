"""The one training loop. Pretraining and every strategy's transfer run through
`Loop.run`; a strategy changes what a Phase holds, never the loop."""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from aetl.distributed import SINGLE, World
from aetl.errors import AetlError
from aetl.evaluate import recon_errors
from aetl.losses import Step
from aetl.models import AutoEncoder
from aetl.resume import set_rng_states
from aetl.rundir import Run, resume_hint
from aetl.storage import Feed

if TYPE_CHECKING:
    from pathlib import Path

    from aetl.data import Split
    from aetl.resume import Progress, StopSignals

log = logging.getLogger(__name__)
LossTerm = Callable[[Step], dict[str, torch.Tensor]]


@dataclass
class Phase:
    """One stretch of training: what trains, at which learning rates, with which extra loss."""

    name: str
    steps: int
    batch_size: int
    groups: list[dict]  # optimiser param groups, each with its own "lr"
    frozen: Sequence[nn.Module] = field(default_factory=tuple)  # held fixed: no grads, BatchNorm in eval
    losses: list[LossTerm] = field(default_factory=list)  # added to the reconstruction loss
    source: "Split | None" = None  # when set, every step also draws a batch of these images


@dataclass
class Loop:
    """How every phase trains: the optimiser, the logging cadence, the precision,
    compilation, and the ranks of a torchrun job."""

    make_optimizer: Callable = torch.optim.Adam  # param groups -> optimiser
    eval_every: int = 50     # steps between train-loss and validation-MSE lines
    bars: bool = False       # progress: a tqdm bar on a terminal, else a log line per logging point
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    compile: bool = False    # torch.compile the training step
    world: World = SINGLE
    checkpoint_every: int = 0  # steps between saves of last.pt (0: only at the end of a phase)
    signals: "StopSignals | None" = None  # SIGTERM/SIGINT/SIGUSR2: save last.pt and stop after this step
                                          # (under torchrun: at the next logging point)

    @classmethod
    def from_config(cls, trainer: DictConfig, device: torch.device, world: World = SINGLE) -> "Loop":
        from hydra.utils import instantiate

        check_trainer(trainer)
        precision = trainer.precision
        if precision == "auto":  # bf16 where the device computes it fast
            precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        if precision not in ("fp32", "bf16"):
            raise AetlError(f"trainer.precision must be auto, fp32 or bf16, got {precision!r}")
        return cls(instantiate(trainer.optimizer), trainer.eval_every, trainer.progress, precision,
                   trainer.compile, world, trainer.checkpoint_every)

    def run(self, model: AutoEncoder, phase: Phase, train: "Split", val_x: torch.Tensor, run: Run, seed: int,
            first_step: int = 0, progress: "Progress | None" = None) -> None:
        """Train model for phase.steps steps on the train split, logging validation MSE on val_x.

        Logged steps count on from first_step, so the phases of one transfer share one step
        axis. Under torchrun every rank draws the same batches and trains on its slice of each.
        With progress, the loop writes last.pt every checkpoint_every steps, at the end of the
        phase and before stopping for a signal, and a phase that last.pt is in carries on
        from it."""
        if phase.steps < 0 or phase.batch_size < 1:
            raise AetlError(f"{phase.name}: steps must be >= 0 and batch_size >= 1, got {phase.steps} and "
                            f"{phase.batch_size}")
        for lr in (g["lr"] for g in phase.groups):
            if not lr > 0:
                raise AetlError(f"{phase.name}: learning rates must be > 0, got {lr}; fix the trainer config")
        model.requires_grad_(True)  # an earlier phase may have frozen what this one trains
        for module in phase.frozen:
            module.requires_grad_(False)
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in phase.groups]
        optimizer = self.make_optimizer([g for g in groups if g["params"]])
        step_fn = self._objective(model, phase)
        device, n = train.device, len(train)
        gen = torch.Generator(device=device).manual_seed(seed)  # on the device in either storage mode
        bs = min(phase.batch_size, n)
        per_epoch = n // bs  # the last partial batch is dropped: every step has one shape
        running: dict[str, torch.Tensor] = {}  # summed on the device, read only when logging
        since_log = start = 0
        perm = torch.empty(0, dtype=torch.long, device=device)  # this epoch's shuffle
        resumed = progress.state(phase.name, first_step) if progress else None
        if resumed:
            perm, running, since_log, start = _restore(resumed, model, optimizer, gen, device)
        feed, batches = Feed(train, bs, self.world), None

        def checkpoint(step: int) -> Path | None:
            """last.pt after this step (rank 0 writes it), if this run keeps one."""
            if progress is None:
                return None
            if not all(torch.isfinite(t).all() for t in [*running.values(), *model.parameters()]):
                raise AetlError(f"{phase.name}: the loss or the weights became inf or nan by step {first_step + step}; "
                                "lower the learning rate (the last good checkpoint is kept)")
            return progress.save(phase.name, first_step, step, model, {
                "optimizer": optimizer.state_dict(), "generator": gen.get_state(), "perm": perm,
                "running": running, "since_log": since_log})

        reporter = Reporter(phase.name, first_step, start, phase.steps, bs, self.bars and self.world.is_main)
        if self.signals:
            self.signals.in_loop = True  # a signal now waits for the end of the step
        try:
            for step in reporter:
                epoch, i = divmod(step - 1, per_epoch)
                if i == 0:
                    perm = torch.randperm(n, device=device, generator=gen)
                if i == 0 or batches is None:  # a new epoch, or the one a resumed phase stopped in
                    batches = feed.epoch(perm, i)
                xb, yb = next(batches)
                _train_mode(model, phase.frozen)
                with torch.autocast(device.type, torch.bfloat16, enabled=self.precision == "bf16"):
                    losses = step_fn(xb, yb, *_source_batch(phase.source, len(yb), gen, self.world))
                    loss = torch.stack([v.float() for v in losses.values()]).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for key, value in {"train_loss": loss, **losses}.items():
                    running[key] = running.get(key, 0) + value.detach().float()
                since_log += 1
                logging_point = (first_step + step) % self.eval_every == 0 or step == phase.steps
                if logging_point:
                    means = {k: (v / since_log).item() for k, v in self.world.mean(running).items()}
                    if not all(map(math.isfinite, means.values())):
                        raise AetlError(f"{phase.name}: the loss became {means['train_loss']} by step "
                                        f"{first_step + step}; lower the learning rate (the last good checkpoint "
                                        "is kept)")
                    val_mse = recon_errors(model, val_x).mean().item() if len(val_x) else float("nan")
                    run.log_metrics(phase.name, epoch=epoch, step=first_step + step, **means, val_mse=val_mse)
                    reporter.report(step, means["train_loss"], val_mse)
                    running.clear()
                    since_log = 0
                due = step == phase.steps or (self.checkpoint_every and step % self.checkpoint_every == 0)
                path = checkpoint(step) if due else None
                if self._stop_requested(logging_point):
                    path = path or checkpoint(step)
                    name = signal.Signals(self.signals.received).name
                    saved = f"saved {path}" if path else "nothing saved"
                    self.signals.stop(f"stopped by {name} at {phase.name} step {first_step + step}; {saved}; "
                                      f"{resume_hint(run.root)}" if self.world.is_main else None)
        finally:
            if self.signals:
                self.signals.in_loop = False

    def _stop_requested(self, logging_point: bool) -> bool:
        """A signal asked to stop. Under torchrun the ranks agree at logging points (every
        rank takes the first signal any rank got), so all stop after the same step."""
        if self.signals is None:
            return False
        if self.world.distributed:
            if not logging_point:
                return False
            agreed = self.world.first(self.signals.received)
            if agreed is None:  # (a signal that came during the gather is agreed on next time)
                return False
            self.signals.received = agreed
        return self.signals.received is not None

    def _objective(self, model: AutoEncoder, phase: Phase) -> nn.Module:
        objective: nn.Module = Objective(model, phase.losses)
        if self.world.distributed:  # wrapped per phase: DDP syncs the parameters this phase trains
            objective = DistributedDataParallel(objective, find_unused_parameters=True)
        if self.compile:
            objective = torch.compile(objective)
        return objective


class Reporter:
    """A phase's progress, on rank 0 only: a tqdm bar showing the loss and validation MSE when
    stderr is a terminal; else (a log file, SLURM) one log line per logging point with the
    step, loss, validation MSE, images/s and time left. Iterating it gives the steps to run."""

    def __init__(self, name: str, first_step: int, start: int, steps: int, batch: int, enabled: bool) -> None:
        self.name, self.first_step, self.start, self.steps, self.batch = name, first_step, start, steps, batch
        terminal = sys.stderr.isatty()
        self.bar = tqdm(range(start + 1, steps + 1), desc=name, initial=start, total=steps, leave=False,
                        disable=not (enabled and terminal))
        self.lines = enabled and not terminal
        self.started = time.perf_counter()

    def __iter__(self):
        return iter(self.bar)

    def report(self, step: int, loss: float, val_mse: float) -> None:
        if not self.bar.disable:
            self.bar.set_postfix(loss=f"{loss:.4g}", val_mse=f"{val_mse:.4g}")
        elif self.lines:
            per_step = (time.perf_counter() - self.started) / max(step - self.start, 1)
            left = round(per_step * (self.steps - step))
            log.info("%s step %d/%d  loss %.4g  val_mse %.4g  %.0f img/s  ETA %d:%02d:%02d", self.name,
                     self.first_step + step, self.first_step + self.steps, loss, val_mse, self.batch / per_step,
                     left // 3600, left // 60 % 60, left % 60)


def check_trainer(trainer: DictConfig) -> None:
    """Out-of-range numbers in the trainer config, refused before anything trains."""
    for name in ("pretrain", "transfer"):
        p = trainer[name]
        for key, value, ok, need in (("steps", p.steps, p.steps >= 0, ">= 0"),
                                     ("batch_size", p.batch_size, p.batch_size >= 1, ">= 1"),
                                     ("lr", p.lr, p.lr > 0, "> 0")):
            if not ok:
                raise AetlError(f"trainer.{name}.{key} must be {need}, got {value}; fix it in the override or config")
    for key, least in (("eval_every", 1), ("checkpoint_every", 0)):
        if trainer[key] < least:
            raise AetlError(f"trainer.{key} must be >= {least}, got {trainer[key]}")


class Objective(nn.Module):
    """One step's named losses: reconstruction plus the phase's terms. A module, so that
    DDP sees every parameter any loss uses."""

    def __init__(self, model: AutoEncoder, terms: list[LossTerm]) -> None:
        super().__init__()
        self.model = model
        self.terms = list(terms)

    def forward(self, x: torch.Tensor, y: torch.Tensor, xs: torch.Tensor | None = None,
                ys: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        step = Step(self.model, x, y, self.model(x), xs, ys)
        losses = {"recon": F.mse_loss(step.out.recon, x)}
        for term in self.terms:
            losses.update(term(step))
        return losses


def _restore(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, gen: torch.Generator,
             device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor], int, int]:
    """Put a phase back where last.pt left it; returns the epoch's shuffle, the loss sums
    since the last log line, their count, and the steps done."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    set_rng_states(state["rng"])
    running = {k: v.to(device) for k, v in state["running"].items()}
    return state["perm"].to(device), running, state["since_log"], state["step"]


def _source_batch(source: "Split | None", n: int, gen: torch.Generator, world: World) -> tuple:
    """n source images and labels (this rank's share of a draw every rank makes alike), or ()."""
    if source is None:
        return ()
    pick = world.shard(torch.randint(len(source), (n * world.size,), device=source.device, generator=gen))
    return source.batch(pick), source.y[pick]


def _train_mode(model: nn.Module, frozen: Sequence[nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()  # frozen BatchNorm keeps its running statistics
