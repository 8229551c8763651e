"""finetune: start from the source AE and train all of it on the target images,
the encoder at `encoder_lr_scale` times the transfer learning rate."""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

from aetl.loop import Phase
from aetl.models import AutoEncoder
from aetl.strategies import Strategy, load_weights


class Finetune(Strategy):
    def __init__(self, name: str, encoder_lr_scale: float = 1.0) -> None:
        super().__init__(name)
        self.encoder_lr_scale = encoder_lr_scale

    def build(self, new_model: Callable[[], AutoEncoder], source: AutoEncoder | None) -> AutoEncoder:
        model = new_model()
        load_weights(model, source.state_dict(), "the source model")
        return model

    def phases(self, model: AutoEncoder, trainer: DictConfig) -> list[Phase]:
        t = trainer.transfer
        groups = [{"params": list(model.encoder.parameters()), "lr": t.lr * self.encoder_lr_scale},
                  {"params": list(model.decoder.parameters()), "lr": t.lr}]
        return [Phase("transfer", t.steps, t.batch_size, groups)]
