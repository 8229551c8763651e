"""finetune (finetunable pretraining): start from Mf and train all of it on T.

The encoder learns at `encoder_lr_scale` times the decoder's rate, and the whole at
`lr_scale` times trainer.transfer.lr. With `unfreeze_fraction` > 0 the encoder is held
fixed for that share of the target steps while the decoder adapts (gradual
unfreezing), then everything trains to the end. `pretrain` gives Mf a schedule of
its own (e.g. longer, at a larger learning rate); it is then a cache entry of its own.
"""

from __future__ import annotations

from omegaconf import DictConfig

from aetl.infra.schema import Positive, Share
from aetl.models import AutoEncoder
from aetl.strategies import Context, Strategy, parts_params, split_steps
from aetl.training.loop import Phase


class Finetune(Strategy):
    reads_target_labels = False  # trains on the target images alone: one model for every label budget
    def __init__(self, name: str, encoder_lr_scale: Positive = 1.0, lr_scale: Positive = 1.0,
                 unfreeze_fraction: Share = 0.0, **common) -> None:
        super().__init__(name, **common)
        self.encoder_lr_scale = encoder_lr_scale
        self.lr_scale = lr_scale
        self.unfreeze_fraction = unfreeze_fraction

    def phases(self, model: AutoEncoder, trainer: DictConfig, ctx: Context) -> list[Phase]:
        t = trainer.transfer
        lr = t.lr * self.lr_scale
        held, rest = split_steps(t.steps, self.unfreeze_fraction, "unfreeze_fraction")
        phases = [Phase("transfer", rest, t.batch_size, parts_params(model, lr, self.encoder_lr_scale))]
        if held:
            phases.insert(0, Phase("transfer_frozen", held, t.batch_size, parts_params(model, lr, 1.0),
                                   frozen=[model.encoder]))
        return phases
