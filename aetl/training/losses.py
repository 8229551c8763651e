"""Loss terms a phase may add to the reconstruction loss.

Each term is called once per step with the Step and returns named losses, already
weighted. Terms that compare latents are scale-free, so a weight means the same on
every backbone and pair: latents are divided by the root mean square of the
reference latents (without gradient) before they are compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from aetl.errors import AetlError
from aetl.infra.schema import NonNegative
from aetl.models import AEOutput, AutoEncoder


@dataclass
class Step:
    """What one training step sees: the batch, the model's output on it, and
    (when the phase asks for it) a batch of source images and labels."""

    model: AutoEncoder
    x: torch.Tensor
    y: torch.Tensor
    out: AEOutput
    xs: torch.Tensor | None = None
    ys: torch.Tensor | None = None
    _zs: torch.Tensor | None = field(default=None, repr=False)

    @property
    def zs(self) -> torch.Tensor:
        """The model's codes of the source batch, computed once per step."""
        if self._zs is None:
            self._zs = self.model.encode(self.xs)
        return self._zs


def scale_free(z: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rms = reference.detach().square().mean().sqrt().clamp_min(1e-6)
    return z / rms, reference / rms


@dataclass
class FeatureLoss:
    """weight * mean squared distance between the model's codes and a frozen reference
    encoder's codes of the same images (the leading dims when the model's code is wider)."""

    reference: AutoEncoder
    weight: float

    def __call__(self, step: Step) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            ref = self.reference.encode(step.x)
        z, ref = scale_free(step.out.z[:, : ref.shape[1]], ref)
        return {"feature": self.weight * F.mse_loss(z, ref)}


def coral(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius distance between the two feature covariances, over 4 d^2 (Sun & Saenko 2016)."""
    d = a.shape[1]
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    return (ca - cb).square().sum() / (4 * d * d)


def mmd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared maximum mean discrepancy with a sum of Gaussian kernels around the median distance."""
    both = torch.cat([a, b])
    dist = torch.cdist(both, both).square()
    scale = dist.detach().median().clamp_min(1e-6)
    kernel = sum(torch.exp(-dist / (scale * s)) for s in (0.25, 1.0, 4.0))
    n = len(a)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


ALIGNMENTS = {"coral": coral, "mmd": mmd}


@dataclass
class AlignSettings:
    """trainer.align: pull the target codes' statistics towards the source codes'."""

    kind: Literal["none", "coral", "mmd"]
    weight: NonNegative  # on scale-free codes


@dataclass
class AlignLoss:
    """weight * a discrepancy (CORAL or MMD) between target and source codes."""

    kind: str
    weight: float

    def __post_init__(self) -> None:
        if self.kind not in ALIGNMENTS:
            raise AetlError(f"unknown trainer.align.kind {self.kind!r}; choose none, {', '.join(ALIGNMENTS)}")

    def __call__(self, step: Step) -> dict[str, torch.Tensor]:
        zt, zs = scale_free(step.out.z.flatten(1), step.zs.flatten(1))
        return {"align": self.weight * ALIGNMENTS[self.kind](zt, zs)}


@dataclass
class ClassifyLoss:
    """weight * cross-entropy of the model's head on labelled images: the batch's own
    labels (source pretraining) or, with on_source, a source batch (DRCN-style transfer)."""

    weight: float
    on_source: bool = False

    def __call__(self, step: Step) -> dict[str, torch.Tensor]:
        z, y = (step.zs, step.ys) if self.on_source else (step.out.z, step.y)
        keep = y >= 0
        if not keep.any():
            return {}
        return {"cls": self.weight * F.cross_entropy(step.model.logits(z[keep]), y[keep])}
