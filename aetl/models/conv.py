"""A convolutional autoencoder: stride-2 conv blocks down to a linear latent, and back."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from aetl.infra.schema import LatentDim, Width
from aetl.models import AutoEncoder, check_size


class ConvAE(AutoEncoder):
    spatial = True

    def __init__(self, in_shape: tuple[int, int, int], latent_dim: LatentDim = 32,
                 channels: Sequence[Width] = (32, 64)) -> None:
        super().__init__(in_shape, latent_dim)
        c_in, h, w = in_shape
        factor = self.factor = 2 ** len(channels)
        check_size("conv", h, w, factor, f"{len(channels)} stride-2 blocks", "the number of model.channels")
        widths = [c_in, *channels]
        enc: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            enc += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        grid = (channels[-1], h // factor, w // factor)
        flat = grid[0] * grid[1] * grid[2]
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, latent_dim))
        dec: list[nn.Module] = [nn.Linear(latent_dim, flat), nn.ReLU(), nn.Unflatten(1, grid)]
        rev = widths[::-1]
        for a, b in zip(rev[:-2], rev[1:-1]):
            dec += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        self.decoder = nn.Sequential(*dec, nn.ConvTranspose2d(rev[-2], c_in, 4, stride=2, padding=1), nn.Sigmoid())
