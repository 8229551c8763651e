"""Latent-space data augmentation (DeVries & Taylor, "Dataset augmentation in feature
space", 2017): new labelled target images made by moving the labelled images' codes
and decoding them, and what they do to few-label accuracy.

Modes: `noise` adds Gaussian noise scaled by each code dimension's spread;
`interpolate` moves a code towards its nearest same-class neighbour, `extrapolate`
away from it, by a random share up to `strength`; `image` is the classic baseline in
pixel space (random shifts of up to 2 pixels and Gaussian pixel noise). The linear
probe is then fitted with and without the new images on the same labelled split and
scored on the same test split.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from aetl.errors import AetlError
from aetl.evaluate import accuracy, fit_probe
from aetl.models import AutoEncoder

MODES = ("noise", "interpolate", "extrapolate", "image")


def neighbours(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """For each code, the index of its nearest other code of the same class."""
    flat = z.flatten(1)
    dist = torch.cdist(flat, flat)
    dist.fill_diagonal_(float("inf"))
    dist[y[:, None] != y[None, :]] = float("inf")
    if torch.isinf(dist.min(1).values).any():
        raise AetlError("interpolate and extrapolate need at least 2 labelled images per class; "
                        "raise data.target.labels_per_class or use app.mode=noise")
    return dist.argmin(1)


def move_codes(z: torch.Tensor, y: torch.Tensor, mode: str, amount: int, strength: float,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`amount` new codes per code, with the labels of the codes they came from."""
    z_rep, y_rep = z.repeat(amount, *[1] * (z.dim() - 1)), y.repeat(amount)
    if mode == "noise":
        spread = z.std(0, unbiased=False, keepdim=True) if len(z) > 1 else z.abs().mean().expand_as(z[:1])
        return z_rep + strength * spread * torch.randn(z_rep.shape, generator=gen, device=z.device), y_rep
    other = z[neighbours(z, y)].repeat(amount, *[1] * (z.dim() - 1))
    share = strength * torch.rand((len(z_rep),) + (1,) * (z.dim() - 1), generator=gen, device=z.device)
    step = other - z_rep if mode == "interpolate" else z_rep - other
    return z_rep + share * step, y_rep


def move_pixels(x: torch.Tensor, y: torch.Tensor, amount: int, strength: float,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The image-space baseline: each copy shifted by up to 2 pixels, plus pixel noise."""
    out = []
    for _ in range(amount):
        dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
        shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        noise = strength * 0.1 * torch.randn(shifted.shape, generator=gen, device=x.device)
        out.append((shifted + noise).clamp(0, 1))
    return torch.cat(out), y.repeat(amount)


@torch.no_grad()
def augment(model: AutoEncoder, x: torch.Tensor, y: torch.Tensor, mode: str, amount: int, strength: float,
            seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """New labelled images made from (x, y) by `mode`."""
    if mode not in MODES:
        raise AetlError(f"unknown augment mode {mode!r}; choose one of {', '.join(MODES)}")
    if amount < 1 or strength < 0:
        raise AetlError(f"augment needs amount >= 1 and strength >= 0, got {amount} and {strength}")
    gen = torch.Generator(device=x.device).manual_seed(seed)
    if mode == "image":
        return move_pixels(x, y, amount, strength, gen)
    model.eval()
    z, z_y = move_codes(model.encode(x), y, mode, amount, strength, gen)
    return torch.cat([model.decode(chunk) for chunk in z.split(1024)]), z_y


def run_app(model: AutoEncoder, run, pair=None, mode: str = "interpolate", amount: int = 5, strength: float = 0.5,
            seed: int = 0, probe_l2: float = 1e-3, **_: object) -> dict:
    """Augment the labelled target images; write the .npz and a grid; score the probe with and without."""
    if pair is None:
        raise AetlError("augmentation needs the run's target data")
    labelled = pair.target.train.labelled()
    if not len(labelled):
        raise AetlError("augmentation needs labelled target images; set data.target.labels_per_class >= 1")
    new_x, new_y = augment(model, labelled.x, labelled.y, mode, amount, strength, seed)
    n_classes = len(pair.target.classes)
    without = fit_probe(model, labelled.x, labelled.y, n_classes, probe_l2)
    with_aug = fit_probe(model, torch.cat([labelled.x, new_x]), torch.cat([labelled.y, new_y]), n_classes, probe_l2)
    images = (new_x.clamp(0, 1) * 255).round().byte().cpu().numpy()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=new_y.cpu().numpy())
    run.save_bytes("augmented.npz", buffer.getvalue())
    show = min(8, len(labelled))
    run.save_recon_grid(f"augment_{mode}.png", labelled.x[:show], new_x[:show])
    result = {"augment_mode": mode, "augment_amount": amount, "augment_strength": strength,
              "n_augmented": len(new_x), "target_acc": accuracy(without, pair.target.test),
              "target_acc_augmented": accuracy(with_aug, pair.target.test),
              "target_val_acc": accuracy(without, pair.target.val),
              "target_val_acc_augmented": accuracy(with_aug, pair.target.val)}
    run.log_metrics("augment", **result)
    return result
