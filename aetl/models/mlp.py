"""A fully connected autoencoder: flatten, shrink to the latent, grow back."""

from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from aetl.infra.schema import LatentDim, Width
from aetl.models import AutoEncoder


class MLPAE(AutoEncoder):
    def __init__(self, in_shape: tuple[int, int, int], latent_dim: LatentDim = 32,
                 hidden: Sequence[Width] = (512, 256)) -> None:
        super().__init__(in_shape, latent_dim)
        widths = [math.prod(in_shape), *hidden]
        enc: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths, widths[1:]):
            enc += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(*enc, nn.Linear(widths[-1], latent_dim))
        dec: list[nn.Module] = [nn.Linear(latent_dim, widths[-1])]
        for a, b in zip(widths[::-1], widths[-2::-1]):
            dec += [nn.ReLU(), nn.Linear(a, b)]
        self.decoder = nn.Sequential(*dec, nn.Sigmoid(), nn.Unflatten(1, tuple(in_shape)))
