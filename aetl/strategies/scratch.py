"""scratch: a fresh AE trained on the target images only; the baseline."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from aetl.models import AutoEncoder
from aetl.strategies import Context, Strategy, all_params
from aetl.training.loop import Phase


class Scratch(Strategy):
    uses_source = False
    reads_target_labels = False  # trains on the target images alone: one model for every label budget

    def initialise(self, model: nn.Module, ctx: Context) -> None:
        pass  # a fresh model: nothing comes from Mf

    def phases(self, model: AutoEncoder, trainer: DictConfig, ctx: Context) -> list[Phase]:
        t = trainer.transfer
        return [Phase("transfer", t.steps, t.batch_size, all_params(model, t.lr))]
