"""drcn: adaptation with no target labels (Ghifary et al., "Deep Reconstruction-Classification
Networks for Unsupervised Domain Adaptation", ECCV 2016).

One encoder serves two heads trained jointly: the classifier on labelled *source* batches and
the decoder reconstructing the unlabelled *target* batches, so that the codes the classifier
reads are also the codes that describe the target's images. The loss is the paper's
`balance * cross-entropy + (1 - balance) * reconstruction`, written here as reconstruction
plus balance / (1 - balance) x cross-entropy (Adam's steps do not depend on the loss's
overall scale). As in the paper the reconstructed input is corrupted (masking noise, random
shifts) while the target of the reconstruction stays the clean image. Target images that
carry labels (labels_per_class > 0) join the cross-entropy, under their source class.

Options from the domain-adaptation literature, each kept on only where it paid on the
label-free validation figures (docs/results.md, "No target labels": `adapt.im` and
`augment.source` are on by default, the rest off):
- `adapt.adabn`: BatchNorm's running statistics are the target's only (AdaBN, Li et al.,
  "Revisiting Batch Normalization For Practical Domain Adaptation", 2016): source batches are
  normalised by their own statistics while training and leave the running ones alone.
- `adapt.pseudo`: target images the head classifies with at least this confidence join the
  cross-entropy with that class (Lee, "Pseudo-Label", 2013; the confidence threshold of
  French et al., "Self-ensembling for visual domain adaptation", 2018).
- `adapt.im`: the target predictions are made confident and, over a batch, diverse: the
  mean entropy of the predictions minus the entropy of their mean (information
  maximisation, Krause et al. 2010; SHOT, Liang et al., ICML 2020). It is what the IM
  validation figure scores, so where it is on, settings are chosen by source validation
  accuracy instead (docs/results.md).
- `augment.source`: the source batches are shifted too (French et al. 2018 augment both).
- `augment.invert`, `augment.tint`, `augment.mix`: the source images restyled towards the
  target's, so that the classifier learns digits of either polarity, in any colour, on the
  target's backgrounds: half inverted (the intensity flip of French et al. 2018), each
  channel scaled by a random gain in [0.2, 1], and a random target image of the batch
  blended in by a share drawn up to `mix` (domain mixup, Xu et al., AAAI 2020; only the
  source label is used). Off in `drcn`; on in `drcn_styled` (configs/strategy/), which also
  leaves the IM loss off. They pay where the target looks far from the source (MNIST ->
  MNIST-M) and cost where it looks near (MNIST -> digits); `strategy=auto` tells the two
  apart without target labels (aetl/strategies/auto.py).
- CORAL or MMD alignment of the target codes with the source codes: `trainer.align`, which
  any strategy takes (Sun & Saenko 2016; Long et al. 2015).

The model starts from Mf (`init: mf`) or from scratch (`init: scratch`); it needs Mf's
source classifier (trainer.pretrain.cls_weight > 0), and with no target labels a target whose
classes are the source's: otherwise there is no shared label space to adapt, and it refuses.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Annotated, Iterator, Literal, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from aetl.data.pair import shared_classes
from aetl.errors import AetlError
from aetl.evaluation.metrics import prediction_entropies
from aetl.infra.schema import Count, NonNegative, Range, Share
from aetl.models import AutoEncoder
from aetl.strategies import Context, Strategy, all_params
from aetl.training.loop import Phase
from aetl.training.losses import Step

log = logging.getLogger(__name__)
Balance = Annotated[float, Range(0, 0.99, hint="set it in [0, 0.99]: the share of the loss that is classification")]


@dataclass
class Augment:
    """strategy.augment: what the encoder sees of a batch (the reconstruction target stays clean)."""

    noise: Share = 0.2   # share of the target's pixels set to 0 (masking noise: the denoising criterion)
    shift: Count = 2     # random shift of every image by up to this many pixels each way
    source: bool = False  # shift the source batches too
    invert: bool = False  # invert the intensities of half the source images (1 - x)
    tint: bool = False   # scale each source image's channels by random gains in [0.2, 1]
    mix: Share = 0.0     # blend into each source image a random target image of the batch, by a share drawn up to this


@dataclass
class Adapt:
    """strategy.adapt: the options beyond the paper's (see the module's docstring)."""

    adabn: bool = False  # BatchNorm's running statistics from target batches only
    pseudo: Share = 0.0  # confidence above which target predictions join the cross-entropy (0: off)
    im: NonNegative = 0.0  # weight of the information-maximisation loss on target predictions (0: off)


class Drcn(Strategy):
    def __init__(self, name: str, balance: Balance = 0.6, init: Literal["mf", "scratch"] = "mf",
                 steps: Count | None = None, augment: Augment | None = None, adapt: Adapt | None = None,
                 **common) -> None:
        super().__init__(name, **common)
        self.balance = float(balance)
        self.init = init
        self.steps = steps  # None: trainer.transfer.steps, as every strategy
        self.augment = Augment(**(augment or {}))
        self.adapt = Adapt(**(adapt or {}))
        if not 0 <= self.balance < 1:
            raise AetlError(f"strategy.balance must be in [0, 1), got {balance}: the share of the loss that is "
                            "classification")

    def refusal(self, classes: tuple[Sequence[str], Sequence[str]], labels_per_class: int,
                has_head: bool | None) -> str | None:
        source, target = classes
        if not labels_per_class and shared_classes(source, target) is None:
            return (f"strategy={self.name} with no target labels needs the target's classes among the source's "
                    f"(source: {_classes(source)}; target: {_classes(target)}): there is no shared label space "
                    "to adapt; give the target labels (data.target.labels_per_class > 0) or choose another strategy")
        if has_head is False:
            return (f"strategy={self.name} trains Mf's source classifier, and this Mf has none: it needs a source "
                    "with labels and trainer.pretrain.cls_weight > 0 (the default 0.5)")
        return None

    def build(self, ctx: Context) -> AutoEncoder:
        model = ctx.new_model(self.target_model)
        if self.init == "mf":
            self.initialise(model, ctx)
        return model

    def phases(self, model: AutoEncoder, trainer: DictConfig, ctx: Context) -> list[Phase]:
        t = trainer.transfer
        steps = t.steps if self.steps is None else self.steps
        phase = Phase("transfer", steps, t.batch_size, all_params(model, t.lr), inputs=self._target_inputs)
        if ctx.pair is not None:
            phase.source_images = ctx.pair.source.train
            phase.losses.append(JointClassify(self.balance / (1 - self.balance), ctx.pair.head_classes(),
                                              self._source_inputs, self.adapt.adabn, self.adapt.pseudo,
                                              self.adapt.im))
        return [phase]

    def _target_inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = shifted(x, self.augment.shift)
        if self.augment.noise > 0:
            x = x * (torch.rand_like(x[:, :1]) >= self.augment.noise)  # one mask for all channels
        return x

    def _source_inputs(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """What the classifier sees of a source batch x, restyled as `augment` says (target: the
        step's target batch, whose images `mix` blends in); x itself where nothing is on."""
        x = shifted(x, self.augment.shift) if self.augment.source else x
        if self.augment.tint:
            x = x * (0.2 + 0.8 * torch.rand(len(x), x.shape[1], 1, 1, device=x.device, dtype=x.dtype))
        if self.augment.invert:
            flip = torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, 1 - x, x)
        if self.augment.mix > 0:
            share = self.augment.mix * torch.rand(len(x), 1, 1, 1, device=x.device, dtype=x.dtype)
            x = (1 - share) * x + share * target[torch.randint(len(target), (len(x),), device=x.device)]
        return x


@dataclass
class JointClassify:
    """weight x cross-entropy of the head on the source batch, and on the target images of the
    batch that carry labels (`classes`: each target class's index in the head), plus the
    confident target predictions with `pseudo` > 0. Source codes are computed here (augmented
    by `source_inputs`; with adabn, leaving BatchNorm's running statistics alone) and left
    in the Step for the terms after it (alignment)."""

    weight: float
    classes: torch.Tensor | None
    source_inputs: object = None  # (source images, target images) -> source images, or None
    adabn: bool = False
    pseudo: float = 0.0
    im: float = 0.0

    def __call__(self, step: Step) -> dict[str, torch.Tensor]:
        xs = self.source_inputs(step.xs, step.x) if self.source_inputs else step.xs
        with _running_stats_kept(step.model.encoder) if self.adabn else contextlib.nullcontext():
            step._zs = step.model.encode(xs)
        losses = {"cls": self.weight * F.cross_entropy(step.model.logits(step._zs), step.ys)}
        if self.classes is None:
            return losses
        logits = step.model.logits(step.out.z.flatten(1))
        labelled = step.y >= 0
        if labelled.any():
            losses["cls_target"] = self.weight * F.cross_entropy(logits[labelled], self.classes[step.y[labelled]])
        if self.im > 0:
            entropy, diversity = prediction_entropies(logits[:, self.classes].softmax(1), 1e-8)
            losses["im"] = self.im * (entropy - diversity)
        if self.pseudo > 0:
            confidence, guess = logits.detach()[:, self.classes].softmax(1).max(1)
            keep = (confidence >= self.pseudo) & ~labelled
            if keep.any():
                losses["cls_pseudo"] = self.weight * F.cross_entropy(logits[keep], self.classes[guess[keep]])
        return losses


def shifted(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Every image moved by its own random whole-pixel shift of up to `pixels` each way (the
    edge pixels repeat into the gap), in one sampling call."""
    if pixels <= 0:
        return x
    n, _, h, w = x.shape
    d = torch.randint(-pixels, pixels + 1, (n, 2), device=x.device).to(x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = -2 * d[:, 0] / w, -2 * d[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)


@contextlib.contextmanager
def _running_stats_kept(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers of module normalise by the batch's statistics but leave their running
    ones as they are (momentum 0) for as long as the block runs."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def _classes(names: list[str]) -> str:
    shown = ", ".join(map(str, names[:4]))
    return f"{shown}, ..." if len(names) > 4 else shown
