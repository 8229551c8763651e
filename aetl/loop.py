"""The one training loop. Pretraining and every strategy's transfer run through
`run_phase`; a strategy changes what a Phase holds, never the loop."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from torch.nn.parallel import DistributedDataParallel

from aetl.distributed import SINGLE, World
from aetl.errors import AetlError
from aetl.evaluate import recon_errors
from aetl.losses import Step
from aetl.models import AutoEncoder
from aetl.rundir import Run

if TYPE_CHECKING:
    from aetl.data import Split

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


def run_phase(model: AutoEncoder, phase: Phase, train: "Split", val_x: torch.Tensor, run: Run,
              make_optimizer: Callable, eval_every: int, seed: int, progress: bool = True, first_step: int = 0,
              world: World = SINGLE) -> None:
    """Train `model` for phase.steps steps on the train split, logging validation MSE on val_x.

    Logged steps count on from first_step, so the phases of one transfer share one step axis.
    Under torchrun every rank draws the same batches and trains on its slice of each."""
    if phase.steps < 0 or phase.batch_size < 1:
        raise AetlError(f"{phase.name}: steps must be >= 0 and batch_size >= 1, got {phase.steps} and {phase.batch_size}")
    for lr in (g["lr"] for g in phase.groups):
        if not lr > 0:
            raise AetlError(f"{phase.name}: learning rates must be > 0, got {lr}; fix the trainer config")
    model.requires_grad_(True)  # an earlier phase may have frozen what this one trains
    for module in phase.frozen:
        module.requires_grad_(False)
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in phase.groups]
    optimizer = make_optimizer([g for g in groups if g["params"]])
    objective = Objective(model, phase.losses)
    if world.distributed:  # wrapped per phase: DDP syncs the parameters that train in this phase
        objective = DistributedDataParallel(objective, find_unused_parameters=True)
    train_x = train.x
    gen = torch.Generator(device=train_x.device).manual_seed(seed)
    n = len(train_x)
    bs = min(phase.batch_size, n)
    per_epoch = n // bs  # the last partial batch is dropped: every step sees the same shape
    running: dict[str, torch.Tensor] = {}  # summed on device, read only when logging
    since_log = 0
    for step in tqdm(range(1, phase.steps + 1), desc=phase.name, disable=None if progress else True, leave=False):
        epoch, i = divmod(step - 1, per_epoch)
        if i == 0:
            perm = torch.randperm(n, device=train_x.device, generator=gen)
        idx = world.shard(perm[i * bs:(i + 1) * bs])
        _train_mode(model, phase.frozen)
        losses = objective(train_x[idx], train.y[idx], *_source_batch(phase.source, len(idx), gen, world))
        loss = torch.stack(list(losses.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for key, value in {"train_loss": loss, **losses}.items():
            running[key] = running.get(key, 0) + value.detach()
        since_log += 1
        if (first_step + step) % eval_every == 0 or step == phase.steps:
            means = {k: (v / since_log).item() for k, v in world.mean(running).items()}
            if not all(map(math.isfinite, means.values())):
                raise AetlError(f"{phase.name}: the loss became {means['train_loss']} by step {step}; "
                                "lower the learning rate (the last good checkpoint is kept)")
            val_mse = recon_errors(model, val_x).mean().item() if len(val_x) else float("nan")
            run.log_metrics(phase.name, epoch=epoch, step=first_step + step, **means, val_mse=val_mse)
            running.clear()
            since_log = 0
    run.save_checkpoint("last.pt", {"phase": phase.name, "step": first_step + phase.steps, "model": model.state_dict(),
                                    "optimizer": optimizer.state_dict()})


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


def _source_batch(source: "Split | None", n: int, gen: torch.Generator, world: World) -> tuple:
    """n source images and labels (this rank's share of a draw every rank makes alike), or ()."""
    if source is None:
        return ()
    pick = world.shard(torch.randint(len(source), (n * world.size,), device=source.x.device, generator=gen))
    return source.x[pick], source.y[pick]


def _train_mode(model: nn.Module, frozen: Sequence[nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()  # frozen BatchNorm keeps its running statistics
