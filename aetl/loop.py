"""The one training loop. Pretraining and every strategy's transfer run through
`run_phase`; a strategy changes what a Phase holds, never the loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from aetl.errors import AetlError
from aetl.evaluate import recon_errors
from aetl.models import AEOutput, AutoEncoder
from aetl.rundir import Run

ExtraLoss = Callable[[AutoEncoder, torch.Tensor, AEOutput], dict[str, torch.Tensor]]


@dataclass
class Phase:
    """One stretch of training: what trains, at which learning rates, with which extra loss."""

    name: str
    steps: int
    batch_size: int
    groups: list[dict]  # optimiser param groups, each with its own "lr"
    frozen: Sequence[nn.Module] = field(default_factory=tuple)  # held fixed: no grads, BatchNorm in eval
    extra_loss: ExtraLoss | None = None


def run_phase(model: AutoEncoder, phase: Phase, train_x: torch.Tensor, val_x: torch.Tensor, run: Run,
              make_optimizer: Callable, eval_every: int, seed: int, progress: bool = True) -> None:
    """Train `model` for phase.steps steps on train_x, logging validation MSE on val_x."""
    if phase.steps < 0 or phase.batch_size < 1:
        raise AetlError(f"{phase.name}: steps must be >= 0 and batch_size >= 1, got {phase.steps} and {phase.batch_size}")
    for lr in (g["lr"] for g in phase.groups):
        if not lr > 0:
            raise AetlError(f"{phase.name}: learning rates must be > 0, got {lr}; fix the trainer config")
    for module in phase.frozen:
        module.requires_grad_(False)
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in phase.groups]
    optimizer = make_optimizer([g for g in groups if g["params"]])
    gen = torch.Generator(device=train_x.device).manual_seed(seed)
    n = len(train_x)
    bs = min(phase.batch_size, n)
    per_epoch = n // bs  # the last partial batch is dropped: every step sees the same shape
    running = torch.zeros((), device=train_x.device)  # summed on device, read only when logging
    since_log = 0
    for step in tqdm(range(1, phase.steps + 1), desc=phase.name, disable=None if progress else True, leave=False):
        epoch, i = divmod(step - 1, per_epoch)
        if i == 0:
            perm = torch.randperm(n, device=train_x.device, generator=gen)
        batch = train_x[perm[i * bs:(i + 1) * bs]]
        _train_mode(model, phase.frozen)
        out = model(batch)
        losses = {"recon": F.mse_loss(out.recon, batch)}
        if phase.extra_loss is not None:
            losses.update(phase.extra_loss(model, batch, out))
        loss = torch.stack(list(losses.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.detach()
        since_log += 1
        if step % eval_every == 0 or step == phase.steps:
            train_loss = (running / since_log).item()
            if not torch.isfinite(torch.tensor(train_loss)):
                raise AetlError(f"{phase.name}: the loss became {train_loss} by step {step}; "
                                "lower the learning rate (the last good checkpoint is kept)")
            val_mse = recon_errors(model, val_x).mean().item() if len(val_x) else float("nan")
            run.log_metrics(phase.name, epoch=epoch, step=step, train_loss=train_loss, val_mse=val_mse)
            running.zero_()
            since_log = 0
    run.save_checkpoint("last.pt", {"phase": phase.name, "step": phase.steps, "model": model.state_dict(),
                                    "optimizer": optimizer.state_dict()})


def _train_mode(model: nn.Module, frozen: Sequence[nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()  # frozen BatchNorm keeps its running statistics
