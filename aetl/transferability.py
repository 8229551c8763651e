"""Scores of how well a source model Mf suits a target, from forward passes only (`aetl rank`).

- Label-free: how much of the target's held-out variance a linear decoder fitted on Mf's
  codes explains, against a model of the target's own images: PCA with as many
  components, both fitted on 4/5 of the target's training images and scored on the rest
  (5-fold), in the images' own space (as aetl.fit scores). This mimics the choice the
  user faces: adapt Mf's features with the few target images, or learn features from
  those images alone. `headroom` = ln(PCA's unexplained / Mf's unexplained): above 0,
  Mf's features carry over. Mf's own zero-shot reconstruction error under the chosen fit
  (the fit's score) is reported too.
- With labels: LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for
  Transfer Learning", ICML 2021), the log marginal evidence per image of a Bayesian linear
  model from the codes to the labels, for Mf's codes and for the PCA codes.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from aetl.domains.shape import Fit, fit_images, to_channels
from aetl.fit import image_errors
from aetl.models import AEOutput, AutoEncoder

FOLDS = 5
RIDGE = 1e-3  # of the codes' mean variance: just enough to keep the decoder's solve stable


class Readout(nn.Module):
    """A fixed encoder with a linear decoder fitted (ridge regression) to some framed images."""

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], framed: torch.Tensor) -> None:
        super().__init__()
        self.encode_fn = encode
        z, y = encode(framed), framed.flatten(1).double()
        self.z_mean, self.y_mean, self.shape = z.mean(0), y.mean(0), tuple(framed.shape[1:])
        zc = z - self.z_mean
        gram = zc.T @ zc
        penalty = RIDGE * gram.trace().clamp_min(1e-12) / len(gram)
        self.decoder = torch.linalg.solve(gram + penalty * torch.eye(len(gram), dtype=gram.dtype), zc.T @ (y - self.y_mean))

    def forward(self, x: torch.Tensor) -> AEOutput:
        z = self.encode_fn(x) - self.z_mean
        return AEOutput((z @ self.decoder + self.y_mean).reshape(-1, *self.shape).float(), z.float())


def pca_encoder(framed: torch.Tensor, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Projection onto the top k principal components of some framed images."""
    flat = framed.flatten(1).double()
    mean = flat.mean(0)
    basis = torch.linalg.svd(flat - mean, full_matrices=False)[2][:k]
    return lambda x: (x.flatten(1).double() - mean) @ basis.T


def mf_encoder(mf: AutoEncoder) -> Callable[[torch.Tensor], torch.Tensor]:
    device = next(mf.parameters()).device

    @torch.no_grad()
    def encode(x: torch.Tensor) -> torch.Tensor:
        mf.eval()
        return torch.cat([mf.encode(xb.to(device)).flatten(1).double().cpu() for xb in x.split(256)])

    return encode


def zero_shot(mf: AutoEncoder, x: torch.Tensor, size: int, channels: int, fit: Fit) -> float:
    """FVU of Mf's own reconstructions of x under fit, in the images' own space."""
    return image_errors(mf, x, size, channels, fit).sum().item() / _spread(x, channels)


def held_out(encoder_for: Callable[[torch.Tensor], Callable], x: torch.Tensor, size: int, channels: int,
             fit: Fit) -> float:
    """Held-out FVU (FOLDS-fold over x) of a linear decoder on the codes of encoder_for(fold)."""
    if len(x) < 2:
        return math.nan
    folds = torch.arange(len(x)) % min(FOLDS, len(x))
    framed = fit_images(x, size, channels, fit)
    error = 0.0
    for f in folds.unique():
        held = folds == f
        readout = Readout(encoder_for(framed[~held]), framed[~held])
        error += image_errors(readout, x[held], size, channels, fit).sum().item()
    return error / _spread(x, channels)


def _spread(x: torch.Tensor, channels: int) -> float:
    own = to_channels(x.double(), channels)
    return (own - own.mean()).square().sum().clamp_min(1e-12).item()


def logme(features: torch.Tensor, labels: torch.Tensor, iterations: int = 50) -> float:
    """LogME: the mean over classes of the log evidence per image of a Bayesian ridge regression
    from the standardised features to the one-hot label, with its prior and noise precisions
    (alpha, beta) set by MacKay's fixed-point updates. Higher: the codes suit the labels better."""
    f = features.double()
    f = (f - f.mean(0)) / f.std(0, unbiased=False).clamp_min(1e-8)
    n, d = f.shape
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    sigma = s.square()
    evidences = []
    for c in labels.unique():
        t = (labels == c).double()
        z2 = (u.T @ t).square()
        outside = (t.square().sum() - z2.sum()).clamp_min(0)  # |t|^2 beyond the features' span
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            gamma = (beta * sigma / (alpha + beta * sigma)).sum()
            m2 = (beta ** 2 * sigma * z2 / (alpha + beta * sigma).square()).sum()
            res2 = (alpha ** 2 * z2 / (alpha + beta * sigma).square()).sum() + outside
            alpha_new, beta_new = (gamma / (m2 + 1e-10)).item(), ((n - gamma) / (res2 + 1e-10)).item()
            done = abs(alpha_new - alpha) / alpha < 1e-4 and abs(beta_new - beta) / beta < 1e-4
            alpha, beta = alpha_new, beta_new
            if done:
                break
        log_det = torch.log(alpha + beta * sigma).sum() + (d - len(sigma)) * math.log(alpha)
        evidence = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi)
                    - beta / 2 * res2 - alpha / 2 * m2 - log_det / 2)
        evidences.append(evidence.item() / n)
    return sum(evidences) / len(evidences)
