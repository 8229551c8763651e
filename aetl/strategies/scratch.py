"""scratch: a fresh AE trained on the target images only; the baseline."""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

from aetl.loop import Phase
from aetl.models import AutoEncoder
from aetl.strategies import Strategy


class Scratch(Strategy):
    uses_source = False

    def build(self, new_model: Callable[[], AutoEncoder], source: AutoEncoder | None) -> AutoEncoder:
        return new_model()

    def phases(self, model: AutoEncoder, trainer: DictConfig) -> list[Phase]:
        t = trainer.transfer
        return [Phase("transfer", t.steps, t.batch_size, [{"params": list(model.parameters()), "lr": t.lr}])]
