"""Transfer strategies: how the target AE is built from the source model Mf and which
phases train it. Each strategy is one module here plus one YAML in configs/strategy/.

Every strategy's phases add up to `trainer.transfer.steps` target steps, so
strategies are compared at equal target steps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from aetl.errors import AetlError
from aetl.infra.schema import ModelOverrides
from aetl.models import AutoEncoder, build_model, place
from aetl.models.weights import transfer_weights
from aetl.training.loop import Phase, PhaseSettings

if TYPE_CHECKING:
    from aetl.data.pair import Pair

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What a strategy builds from: the model config, the image shape, Mf (None for a
    strategy that does not use it) and the pair (what a strategy that also trains on source
    batches draws them from; None where a model is only rebuilt)."""

    model_cfg: DictConfig
    shape: tuple[int, int, int]
    mf: AutoEncoder | None
    device: torch.device
    pair: "Pair | None" = None

    def new_model(self, overrides: dict | None = None, in_shape: tuple[int, ...] | None = None,
                  latent_dim: int | None = None) -> AutoEncoder:
        """A fresh model: the model config with overrides (a dict with its own _target_ replaces
        it), with a classifier head like Mf's when Mf has one."""
        cfg = self.model_cfg
        if overrides:
            cfg = OmegaConf.create(overrides) if "_target_" in overrides else OmegaConf.merge(cfg, overrides)
        if latent_dim is not None:
            cfg = OmegaConf.merge(cfg, {"latent_dim": latent_dim})
        head = self.mf.head.out_features if self.mf is not None and self.mf.head is not None else 0
        return place(build_model(cfg, in_shape or self.shape, head), self.device)


class Strategy:
    """The base: subclasses override `phases`, and `build` or `initialise`. Both take the
    Context, so a strategy keeps no state between building a model and training it."""

    uses_source = True  # False: no source model is pretrained or loaded
    # False: training reads no target label, so the model is the same at every labels_per_class
    # and the target-model cache trains it once per label-budget sweep (the probe alone is refitted)
    reads_target_labels = True

    def __init__(self, name: str, pretrain: PhaseSettings | None = None,
                 target_model: ModelOverrides | None = None) -> None:
        self.name = name
        self.pretrain = dict(pretrain or {})  # overrides of trainer.pretrain for this strategy's Mf
        self.target_model = dict(target_model or {})  # overrides of the model config for the target AE

    def build(self, ctx: Context) -> AutoEncoder:
        """The target AE, ready for the first phase: by default a model of the target
        config initialised from Mf."""
        model = ctx.new_model(self.target_model)
        self.initialise(model, ctx)
        return model

    def initialise(self, model: torch.nn.Module, ctx: Context) -> None:
        """Start model (or a concat model's own encoder and decoder) from Mf."""
        report = transfer_weights(model, ctx.mf.state_dict())
        log.info("%s: initialised from Mf: %s", self.name, report.line())

    def phases(self, model: AutoEncoder, trainer: DictConfig, ctx: Context) -> list[Phase]:
        """The training phases of model (as `build` made it from ctx) on the target images, in order."""
        raise NotImplementedError

    def refusal(self, classes: "tuple[Sequence[str], Sequence[str]]", labels_per_class: int,
                has_head: bool | None) -> str | None:
        """Why this strategy cannot adapt to a target (one line), or None where it can: classes
        are the source's and the target's class names, has_head whether Mf has a source
        classifier (None before Mf is there: refusals that need it wait)."""
        return None

    def candidates(self) -> list["Strategy"]:
        """The strategies whose models a run trains on T: this one (`auto`: several, to choose among)."""
        return [self]

    def choose(self, figures: list[dict]) -> int:
        """Which candidate to keep, given each one's validation figures (val_mse, val_acc)."""
        return 0


def split_steps(total: int, first_fraction: float, what: str) -> tuple[int, int]:
    if not 0 <= first_fraction <= 1:
        raise AetlError(f"strategy.{what} must be in [0, 1], got {first_fraction}")
    first = round(total * first_fraction)
    return first, total - first


def all_params(model: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
    return [{"params": list(model.parameters()), "lr": lr}]


def parts_params(model: AutoEncoder, lr: float, encoder_scale: float) -> list[dict[str, Any]]:
    """The encoder at lr * encoder_scale, everything else (decoder, head) at lr."""
    encoder = list(model.encoder.parameters())
    ids = {id(p) for p in encoder}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": encoder, "lr": lr * encoder_scale}, {"params": rest, "lr": lr}]
