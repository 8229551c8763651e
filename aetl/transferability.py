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

from aetl.domains.shape import Fit, to_channels
from aetl.fit import image_errors, own_space_errors
from aetl.models import AutoEncoder

FOLDS = 5
RIDGE = 1e-3  # of the codes' mean variance: just enough to keep the decoder's solve stable

Features = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (train, held) masks -> codes


def zero_shot(mf: AutoEncoder, x: torch.Tensor, size: int, channels: int, fit: Fit) -> float:
    """FVU of Mf's own reconstructions of x under fit, in the images' own space."""
    return image_errors(mf, x, size, channels, fit).sum().item() / spread(x, channels)


def held_out(features: Features, x: torch.Tensor, framed: torch.Tensor, fit: Fit) -> float:
    """Held-out FVU (FOLDS-fold over the images x, framed by fit) of a linear decoder fitted by
    ridge regression from the codes `features` gives to the framed training fold."""
    if len(x) < 2:
        return math.nan
    folds = torch.arange(len(x)) % min(FOLDS, len(x))
    error = 0.0
    for f in folds.unique():
        held = folds == f
        z_train, z_held = features(~held, held)
        y = framed[~held].flatten(1).double()
        z_mean, y_mean = z_train.mean(0), y.mean(0)
        zc = z_train - z_mean
        gram = zc.T @ zc
        penalty = RIDGE * gram.trace().clamp_min(1e-12) / len(gram)
        decoder = torch.linalg.solve(gram + penalty * torch.eye(len(gram), dtype=gram.dtype), zc.T @ (y - y_mean))
        recon = ((z_held - z_mean) @ decoder + y_mean).reshape(-1, *framed.shape[1:]).float()
        error += own_space_errors(recon, x[held], fit).sum().item()
    return error / spread(x, framed.shape[1])


def mf_features(mf: AutoEncoder, framed: torch.Tensor) -> Features:
    """Mf's codes of the framed images (computed once: they do not depend on the fold)."""
    z = encode(mf, framed)
    return lambda train, held: (z[train], z[held])


def pca_features(framed: torch.Tensor, k: int) -> Features:
    """Codes on the top k principal components of the training fold (at most its size - 1)."""
    flat = framed.flatten(1).double()

    def features(train: torch.Tensor, held: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = flat[train].mean(0)
        basis = torch.linalg.svd(flat[train] - mean, full_matrices=False)[2][: min(k, int(train.sum()) - 1) or 1]
        return (flat[train] - mean) @ basis.T, (flat[held] - mean) @ basis.T

    return features


@torch.no_grad()
def encode(mf: AutoEncoder, framed: torch.Tensor) -> torch.Tensor:
    mf.eval()
    device = next(mf.parameters()).device
    return torch.cat([mf.encode(xb.to(device)).flatten(1).double().cpu() for xb in framed.split(256)])


def spread(x: torch.Tensor, channels: int) -> float:
    """The images' squared deviation from their mean pixel value, in the frame's channels."""
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
