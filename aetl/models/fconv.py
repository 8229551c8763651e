"""A fully convolutional autoencoder: its code is a feature map (latent_channels x
H/f x W/f), so it takes images of any size divisible by f = 2 ** len(channels) and
its codes are the feature space of style transfer."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from aetl.models import AutoEncoder, check_size


class FullyConvAE(AutoEncoder):
    spatial = True
    flat_code = False

    def __init__(self, in_shape: tuple[int, int, int], latent_channels: int = 32,
                 channels: Sequence[int] = (32, 64)) -> None:
        c_in, h, w = in_shape
        self.factor = 2 ** len(channels)
        check_size("fconv", h, w, self.factor, f"{len(channels)} stride-2 blocks", "the number of model.channels")
        super().__init__(in_shape, latent_channels * (h // self.factor) * (w // self.factor))
        widths = [c_in, *channels]
        enc: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            enc += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        self.encoder = nn.Sequential(*enc, nn.Conv2d(widths[-1], latent_channels, 1))
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, widths[-1], 1), nn.ReLU()]
        rev = widths[::-1]
        for a, b in zip(rev[:-2], rev[1:-1]):
            dec += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        self.decoder = nn.Sequential(*dec, nn.ConvTranspose2d(rev[-2], c_in, 4, stride=2, padding=1), nn.Sigmoid())

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z.flatten(1))
