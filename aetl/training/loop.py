"""The one training loop. Pretraining and every strategy's transfer run through
`Loop.run`; a strategy changes what a Phase holds, never the loop."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Literal, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from aetl.data.storage import Feed, Split
from aetl.errors import AetlError
from aetl.evaluation.metrics import recon_errors
from aetl.infra.distributed import SINGLE, World
from aetl.infra.resume import LoopState, rng_states, set_rng_states
from aetl.infra.rundir import Run, log_to_files, resume_hint
from aetl.infra.schema import Count, Device, Natural, NonNegative, Positive, Seed, Target
from aetl.models import AutoEncoder
from aetl.training.losses import AlignSettings, Step

if TYPE_CHECKING:
    from pathlib import Path

    from aetl.infra.resume import Progress
    from aetl.infra.signals import StopSignals

log = logging.getLogger(__name__)
LossTerm = Callable[[Step], dict[str, torch.Tensor]]


@dataclass
class PhaseSettings:
    """trainer.pretrain and trainer.transfer (and a strategy's own `pretrain` overrides)."""

    steps: Count
    batch_size: Natural
    lr: Positive
    cls_weight: NonNegative  # x cross-entropy on the source labels


@dataclass
class PretrainSettings(PhaseSettings):
    """trainer.pretrain: a phase, and the seed Mf is pretrained with."""

    seed: Seed | None = None  # null: the run's `seed` (each seed of a sweep its own Mf); a number: that Mf
                              # for every seed (pretrained once; the seeds' spread then leaves Mf's out)


@dataclass
class TrainerSettings:
    """The `trainer` config: how every phase trains."""

    device: Device
    threads: Natural | None
    precision: Literal["auto", "fp32", "bf16"]
    compile: bool
    optimizer: Target
    eval_every: Natural
    progress: bool
    checkpoint_every: Count
    pretrain: PretrainSettings
    transfer: PhaseSettings
    align: AlignSettings


@dataclass
class Phase:
    """One stretch of training: what trains, at which learning rates, with which extra loss."""

    name: str
    steps: int
    batch_size: int
    groups: list[dict]  # optimiser param groups, each with its own "lr"
    frozen: Sequence[nn.Module] = field(default_factory=tuple)  # held fixed: no grads, BatchNorm in eval
    losses: list[LossTerm] = field(default_factory=list)  # added to the reconstruction loss
    source_images: Split | None = None  # when set, every step also draws a batch of these images
    inputs: Callable[[torch.Tensor], torch.Tensor] | None = None  # what the model sees of a batch (noise,
                                                                  # shifts); it reconstructs the clean batch

    def check(self) -> None:
        if self.steps < 0 or self.batch_size < 1:
            raise AetlError(f"{self.name}: steps must be >= 0 and batch_size >= 1, got {self.steps} and "
                            f"{self.batch_size}")
        for lr in (g["lr"] for g in self.groups):
            if not lr > 0:
                raise AetlError(f"{self.name}: learning rates must be > 0, got {lr}; fix the trainer config")


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
    out: Run | None = None  # where the metrics go (None: nowhere)
    progress: "Progress | None" = None  # where the run stands: last.pt is written and resumed from here

    @classmethod
    def from_config(cls, trainer: DictConfig, device: torch.device, out: Run | None = None, world: World = SINGLE,
                    signals: "StopSignals | None" = None, progress: "Progress | None" = None) -> "Loop":
        from hydra.utils import instantiate

        precision = trainer.precision
        if precision == "auto":  # bf16 where the device computes it fast
            precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        if precision not in ("fp32", "bf16"):
            raise AetlError(f"trainer.precision must be auto, fp32 or bf16, got {precision!r}")
        return cls(make_optimizer=instantiate(trainer.optimizer), eval_every=trainer.eval_every,
                   bars=trainer.progress, precision=precision, compile=trainer.compile, world=world,
                   checkpoint_every=trainer.checkpoint_every, signals=signals, out=out, progress=progress)

    def run(self, model: AutoEncoder, phase: Phase, train: Split, val_x: torch.Tensor, seed: int,
            first_step: int = 0) -> None:
        """Train model for phase.steps steps on the train split, logging validation MSE on val_x.

        Logged steps count on from first_step, so the phases of one transfer share one step
        axis. Under torchrun every rank draws the same batches and trains on its slice of each.
        With progress, the loop writes last.pt every checkpoint_every steps, at the end of the
        phase and before stopping for a signal, and a phase that last.pt is in carries on
        from it."""
        phase.check()
        state = self._prepare(model, phase, train, seed, first_step)
        objective = self._objective(model, phase)
        reporter = Reporter(phase.name, first_step, state.done, phase.steps, state.feed.batch_size,
                            self.bars and self.world.is_main)
        with self.signals.deferred() if self.signals else contextlib.nullcontext():
            for step in reporter:
                epoch, xb, yb = state.next_batch(step)
                self._step(objective, model, phase, state, xb, yb)
                logging_point = (first_step + step) % self.eval_every == 0 or step == phase.steps
                if logging_point:
                    means = self._log(model, phase, state, val_x, epoch, first_step + step)
                    reporter.report(step, means["train_loss"], means["val_mse"])
                due = step == phase.steps or (self.checkpoint_every and step % self.checkpoint_every == 0)
                saved = self._checkpoint(model, phase, state, first_step, step) if due else None
                if self._stop_requested(logging_point):
                    saved = saved or self._checkpoint(model, phase, state, first_step, step)
                    self._stop(phase, first_step + step, saved)

    def _prepare(self, model: AutoEncoder, phase: Phase, train: Split, seed: int, first_step: int) -> "_Training":
        """Freeze what the phase holds fixed, make its optimiser and batches, and put them back
        where last.pt left them when the phase is the one it is in."""
        model.requires_grad_(True)  # an earlier phase may have frozen what this one trains
        for module in phase.frozen:
            module.requires_grad_(False)
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in phase.groups]
        device = train.device
        state = _Training(optimizer=self.make_optimizer([g for g in groups if g["params"]]),
                          gen=torch.Generator(device=device).manual_seed(seed),  # on the device in either storage mode
                          feed=Feed(train, min(phase.batch_size, len(train)), self.world),
                          perm=torch.empty(0, dtype=torch.long, device=device))
        resumed = self.progress.resume_point(phase.name, first_step) if self.progress else None
        if resumed:
            state.restore(*resumed, model)
        return state

    def _step(self, objective: nn.Module, model: AutoEncoder, phase: Phase, state: "_Training",
              xb: torch.Tensor, yb: torch.Tensor) -> None:
        _train_mode(model, phase.frozen)
        with torch.autocast(xb.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            losses = objective(xb, yb, *_source_batch(phase.source_images, len(yb), state.gen, self.world))
            loss = torch.stack([v.float() for v in losses.values()]).sum()
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.add({"train_loss": loss, **losses})

    def _log(self, model: AutoEncoder, phase: Phase, state: "_Training", val_x: torch.Tensor, epoch: int,
             step: int) -> dict[str, float]:
        """The mean losses since the last log line (over the ranks) and the validation MSE, to
        metrics.jsonl; the only place the loop reads values back from the device."""
        means = {k: (v / state.since_log).item() for k, v in self.world.mean(state.running).items()}
        if not all(map(math.isfinite, means.values())):
            raise AetlError(f"{phase.name}: the loss became {means['train_loss']} by step {step}; lower the "
                            "learning rate (the last good checkpoint is kept)")
        means["val_mse"] = recon_errors(model, val_x).mean().item() if len(val_x) else float("nan")
        if self.out is not None:
            self.out.log_metrics(phase.name, epoch=epoch, step=step, **means)
        state.running.clear()
        state.since_log = 0
        return means

    def _checkpoint(self, model: AutoEncoder, phase: Phase, state: "_Training", first_step: int,
                    step: int) -> "Path | None":
        """last.pt after this step (rank 0 writes it), if this run keeps one."""
        if self.progress is None:
            return None
        if not all(torch.isfinite(t).all() for t in [*state.running.values(), *model.parameters()]):
            raise AetlError(f"{phase.name}: the loss or the weights became inf or nan by step {first_step + step}; "
                            "lower the learning rate (the last good checkpoint is kept)")
        return self.progress.save(model, state.loop_state(phase.name, first_step, step))

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

    def _stop(self, phase: Phase, step: int, saved: "Path | None") -> None:
        name = signal.Signals(self.signals.received).name
        done = f"saved {saved}" if saved else "nothing saved"
        where = f"; {resume_hint(self.out.root)}" if self.out is not None else ""
        self.signals.stop(f"stopped by {name} at {phase.name} step {step}; {done}{where}"
                          if self.world.is_main else None)

    def _objective(self, model: AutoEncoder, phase: Phase) -> nn.Module:
        objective: nn.Module = Objective(model, phase.losses, phase.inputs)
        if self.world.distributed:  # wrapped per phase: DDP syncs the parameters this phase trains
            objective = DistributedDataParallel(objective, find_unused_parameters=True)
        if self.compile:
            objective = torch.compile(objective)
        return objective


@dataclass
class _Training:
    """What changes while a phase trains, all of it kept in last.pt: the optimiser, the batch
    generator and this epoch's shuffle, the loss sums since the last log line (summed on the
    device, read only when logging) and how many steps are done."""

    optimizer: torch.optim.Optimizer
    gen: torch.Generator
    feed: Feed
    perm: torch.Tensor
    running: dict[str, torch.Tensor] = field(default_factory=dict)
    since_log: int = 0
    done: int = 0  # steps done before this job: a resumed phase starts after them
    batches: Iterator | None = None

    def next_batch(self, step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(epoch, images, labels) of this step; a new shuffle at every epoch's first step. The
        last partial batch of an epoch is dropped, so that every step has one shape."""
        per_epoch = len(self.feed.split) // self.feed.batch_size
        epoch, i = divmod(step - 1, per_epoch)
        if i == 0:
            self.perm = torch.randperm(len(self.feed.split), device=self.perm.device, generator=self.gen)
        if i == 0 or self.batches is None:  # a new epoch, or the one a resumed phase stopped in
            self.batches = self.feed.epoch(self.perm, i)
        xb, yb = next(self.batches)
        return epoch, xb, yb

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for key, value in losses.items():
            self.running[key] = self.running.get(key, 0) + value.detach().float()
        self.since_log += 1

    def loop_state(self, phase: str, first_step: int, step: int) -> LoopState:
        return LoopState(phase, first_step, step, self.optimizer.state_dict(), self.gen.get_state(), self.perm,
                         self.running, self.since_log, rng_states())

    def restore(self, model_state: dict, saved: LoopState, model: nn.Module) -> None:
        """Put the phase back where last.pt left it."""
        device = self.perm.device
        model.load_state_dict(model_state)
        self.optimizer.load_state_dict(saved.optimizer)
        self.gen.set_state(saved.generator)
        set_rng_states(saved.rng)
        self.running = {k: v.to(device) for k, v in saved.running.items()}
        self.perm, self.since_log, self.done = saved.perm.to(device), saved.since_log, saved.step


class Reporter:
    """A phase's progress, on rank 0 only: a tqdm bar showing the loss and validation MSE when
    stderr is a terminal (the same lines go to run.log, which the bar does not reach); else (a
    log file, SLURM) one log line per logging point with the step, loss, validation MSE,
    images/s and time left. Its last line says how the phase ended. Iterating it gives the
    steps to run."""

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
        if self.bar.disable and not self.lines:
            return
        seconds = time.perf_counter() - self.started
        per_step = seconds / max(step - self.start, 1)
        if step == self.steps:  # the phase's last line: how it ended, on the console and in run.log
            self.bar.close()
            log.info("%s: %d steps done in %.1f s, loss %.4g, val_mse %.4g, %.0f img/s", self.name,
                     self.first_step + step, seconds, loss, val_mse, self.batch / per_step)
            return
        left = round(per_step * (self.steps - step))
        line = (f"{self.name} step {self.first_step + step}/{self.first_step + self.steps}  loss {loss:.4g}  "
                f"val_mse {val_mse:.4g}  {self.batch / per_step:.0f} img/s  ETA {left // 3600}:{left // 60 % 60:02d}:"
                f"{left % 60:02d}")
        if self.bar.disable:
            log.info("%s", line)
        else:
            self.bar.set_postfix(loss=f"{loss:.4g}", val_mse=f"{val_mse:.4g}")
            log_to_files(log, line)


class Objective(nn.Module):
    """One step's named losses: reconstruction plus the phase's terms. A module, so that
    DDP sees every parameter any loss uses."""

    def __init__(self, model: AutoEncoder, terms: list[LossTerm],
                 inputs: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.model = model
        self.terms = list(terms)
        self.inputs = inputs

    def forward(self, x: torch.Tensor, y: torch.Tensor, xs: torch.Tensor | None = None,
                ys: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        step = Step(self.model, x, y, self.model(self.inputs(x) if self.inputs else x), xs, ys)
        losses = {"recon": F.mse_loss(step.out.recon, x)}
        for term in self.terms:
            losses.update(term(step))
        return losses


def _source_batch(images: Split | None, n: int, gen: torch.Generator, world: World) -> tuple:
    """n source images and labels (this rank's share of a draw every rank makes alike), or ()."""
    if images is None:
        return ()
    pick = world.shard(torch.randint(len(images), (n * world.size,), device=images.device, generator=gen))
    return images.batch(pick), images.y[pick]


def _train_mode(model: nn.Module, frozen: Sequence[nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()  # frozen BatchNorm keeps its running statistics
