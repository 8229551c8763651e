"""What one run shares while it trains, made once by the command and handed down."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from aetl.infra.distributed import World
from aetl.infra.resume import Progress
from aetl.infra.rundir import Run
from aetl.training.loop import Loop


@dataclass
class RunContext:
    """The run's config (parts read the branch they need: `ctx.cfg.trainer`, ...), its run dir,
    the device, and the training loop, which holds the ranks, the stop signals and where the
    run stands (`progress`: last.pt)."""

    cfg: DictConfig
    run: Run
    loop: Loop
    device: torch.device

    @property
    def world(self) -> World:
        return self.loop.world

    @property
    def progress(self) -> Progress | None:
        return self.loop.progress

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)
