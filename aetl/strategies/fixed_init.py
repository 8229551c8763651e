"""fixed_init (fixed weight initialisation): the target AE, which may be larger than Mf
(`target_model`), starts from Mf by the fixed rule of aetl.models.weights. The transferred
encoder is first held fixed for `frozen_fraction` of the target steps while the rest
adapts to T; then everything is fine-tuned with a feature loss (weight
`feature_weight`, scale-free) that keeps the target codes close to the frozen Mf's
codes of the same images."""

from __future__ import annotations

import copy

from omegaconf import DictConfig

from aetl.infra.schema import NonNegative, Share
from aetl.models import AutoEncoder
from aetl.strategies import Context, Strategy, all_params, split_steps
from aetl.training.loop import Phase
from aetl.training.losses import FeatureLoss


class FixedInit(Strategy):
    reads_target_labels = False  # trains on the target images alone: one model for every label budget
    def __init__(self, name: str, frozen_fraction: Share = 0.3, feature_weight: NonNegative = 1e-3,
                 **common) -> None:
        super().__init__(name, **common)
        self.frozen_fraction = frozen_fraction
        self.feature_weight = feature_weight

    def phases(self, model: AutoEncoder, trainer: DictConfig, ctx: Context) -> list[Phase]:
        t = trainer.transfer
        held, rest = split_steps(t.steps, self.frozen_fraction, "frozen_fraction")
        reference = copy.deepcopy(ctx.mf).eval().requires_grad_(False)  # Mf as it is now, kept fixed
        losses = [FeatureLoss(reference, self.feature_weight)] if self.feature_weight > 0 else []
        return [Phase("transfer_frozen", held, t.batch_size, all_params(model, t.lr), frozen=[model.encoder]),
                Phase("transfer", rest, t.batch_size, all_params(model, t.lr), losses=losses)]
