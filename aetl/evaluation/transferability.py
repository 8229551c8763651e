"""Scores of how well a source model Mf suits a target, from forward passes only (`aetl rank`).

- With labels: LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for
  Transfer Learning", ICML 2021), the log marginal evidence per image of a Bayesian linear
  model from codes to the labels, for Mf's codes of the labelled target images and for the
  codes of the target's own images on as many principal components (PCA of up to
  PCA_IMAGES target training images, labelled or not): the choice the user faces, Mf's
  features or features learned from the target alone. `logme_gain` is the difference, with
  its standard error from resampling the labelled images within each class (paired: the
  same resample scores both).
- Label-free: Mf's zero-shot reconstruction error under the chosen fit (the fit's score).

On the grid of docs/results.md ("Ranking sources") the LogME gain ranked nine
(source, target) pairs by their measured finetune gain with Spearman 0.80; the
label-free scores did not (zero-shot 0.23; a held-out linear decoder on Mf's codes
against PCA, once reported here as `headroom`, -0.27), so they do not decide.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from aetl.data.fit import image_errors, spread
from aetl.data.framing import Fit
from aetl.models import AutoEncoder

RESAMPLES = 100  # bootstrap resamples of the labelled images behind logme_gain's standard error
PCA_IMAGES = 4096  # target images the principal components are fitted on


def zero_shot(mf: AutoEncoder, x: torch.Tensor, size: int, channels: int, fit: Fit) -> float:
    """FVU of Mf's own reconstructions of x under fit, in the images' own space."""
    return image_errors(mf, x, size, channels, fit).sum().item() / spread(x, channels)


def pca_codes(framed: torch.Tensor, k: int, sample: torch.Tensor | None = None) -> torch.Tensor:
    """The framed images' codes on the top k principal components (at most N - 1) of
    `sample` (framed target images; default: the first PCA_IMAGES of `framed`)."""
    fitted = (framed[:PCA_IMAGES] if sample is None else sample).flatten(1).double()
    mean = fitted.mean(0)
    basis = torch.linalg.svd(fitted - mean, full_matrices=False)[2][: max(1, min(k, len(fitted) - 1))]
    return (framed.flatten(1).double() - mean) @ basis.T


def logme_gain(mine: torch.Tensor, theirs: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """LogME(mine) - LogME(theirs) on the labelled images, and its bootstrap standard error:
    RESAMPLES resamples drawn within each class (so every class stays), each scoring both.
    nan where it does not exist (resampled() says why)."""
    def gain(pick: torch.Tensor | slice) -> float:
        return logme(mine[pick], labels[pick]) - logme(theirs[pick], labels[pick])

    return gain(slice(None)), resampled(gain, labels, seed)[0]


def paired_difference(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor],
                      labels: torch.Tensor, seed: int = 0) -> tuple[float, float, str | None]:
    """The LogME gain of codes a (Mf's, the PCA codes') minus that of codes b, on the same
    labelled images, with its bootstrap standard error: each resample scores both, so what the
    two sources share (the images drawn, the target's own PCA codes) cancels. nan and why where
    there is none."""
    def difference(pick: torch.Tensor | slice) -> float:
        return (logme(a[0][pick], labels[pick]) - logme(a[1][pick], labels[pick])
                - logme(b[0][pick], labels[pick]) + logme(b[1][pick], labels[pick]))

    return difference(slice(None)), *resampled(difference, labels, seed)


def resampled(score, labels: torch.Tensor, seed: int = 0) -> tuple[float, str | None]:
    """The standard error of score(picked rows) over RESAMPLES resamples of the labelled images
    within each class; nan and why when there is none."""
    classes = labels.unique()
    members = [torch.nonzero(labels == c).flatten() for c in classes]
    fewest = min(range(len(members)), key=lambda i: len(members[i]))
    if len(members[fewest]) < 2:
        return math.nan, (f"class {classes[fewest].item()} has {len(members[fewest])} labelled image; resampling "
                          "for a standard error needs at least 2 of every class")
    gen = torch.Generator().manual_seed(seed)
    draws = [score(torch.cat([m[torch.randint(len(m), (len(m),), generator=gen)] for m in members]))
             for _ in range(RESAMPLES)]
    finite = [d for d in draws if math.isfinite(d)]
    if len(finite) < RESAMPLES // 2:
        return math.nan, (f"LogME is undefined on {RESAMPLES - len(finite)} of {RESAMPLES} resamples of the "
                          "labelled images")
    return torch.tensor(finite, dtype=torch.float64).std().item(), None


@torch.no_grad()
def encode(mf: AutoEncoder, framed: torch.Tensor) -> torch.Tensor:
    mf.eval()
    device = next(mf.parameters()).device
    return torch.cat([mf.encode(xb.to(device)).flatten(1).double().cpu() for xb in framed.split(256)])


def logme(features: torch.Tensor, labels: torch.Tensor, iterations: int = 50) -> float:
    """LogME: the mean over classes of the log evidence per image of a Bayesian ridge regression
    from the standardised features to the one-hot label, with its prior and noise precisions
    (alpha, beta) set by MacKay's fixed-point updates, every class at once. Higher: the codes
    suit the labels better. (In NumPy: on arrays this small, torch's per-call overhead would
    make the bootstrap of logme_gain take seconds.) nan for features that do not vary across the
    images: the evidence would be that of the labels alone, whatever the features."""
    f = features.double().cpu().numpy()
    if not np.isfinite(f).all() or not (f.std(0) > 1e-6 * np.maximum(np.abs(f).max(0), 1e-6)).any():
        return math.nan  # codes that do not vary (identical images): no evidence either way to measure
    f = (f - f.mean(0)) / np.maximum(f.std(0), 1e-8)
    y = labels.cpu().numpy()
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s ** 2  # (r,)
    t = (y[:, None] == np.unique(y)[None, :]).astype(np.float64)  # (n, C) one-hot
    z2 = (u.T @ t).T ** 2  # (C, r)
    outside = np.maximum((t ** 2).sum(0) - z2.sum(1), 0)  # (C,) |t|^2 beyond the features' span
    alpha, beta = np.ones(len(z2)), np.ones(len(z2))
    for _ in range(iterations):
        a, b = alpha[:, None], beta[:, None]
        gamma = (b * sigma / (a + b * sigma)).sum(1)
        m2 = (b ** 2 * sigma * z2 / (a + b * sigma) ** 2).sum(1)
        res2 = (a ** 2 * z2 / (a + b * sigma) ** 2).sum(1) + outside
        alpha_new, beta_new = gamma / (m2 + 1e-10), (n - gamma) / (res2 + 1e-10)
        done = (np.abs(alpha_new - alpha) / alpha < 1e-4).all() and (np.abs(beta_new - beta) / beta < 1e-4).all()
        alpha, beta = alpha_new, beta_new
        if done:
            break
    # the evidence at the updated precisions with the last fit's m2 and res2, as LogME's reference code has it
    log_det = np.log(alpha[:, None] + beta[:, None] * sigma).sum(1) + (d - len(sigma)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * math.log(2 * math.pi)
                - beta / 2 * res2 - alpha / 2 * m2 - log_det / 2)
    return float((evidence / n).mean())
