"""A fully convolutional autoencoder: its code is a feature map (latent_channels x
H/f x W/f), so it takes images of any size divisible by f = 2 ** len(channels) and
its codes are the feature space of style transfer.

The decoder upsamples by resizing, then convolving (`upsample: resize`, Odena et al.,
"Deconvolution and checkerboard artifacts", 2016): a stride-2 transposed convolution
(`upsample: transpose`) covers every other output pixel with a different number of
kernel taps, and that uneven overlap prints a grid over every image it decodes.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from aetl.errors import AetlError
from aetl.infra.schema import Depth, Width
from aetl.models import AutoEncoder, check_size

UPSAMPLING = ("resize", "transpose")


class FullyConvAE(AutoEncoder):
    spatial = True
    flat_code = False

    def __init__(self, in_shape: tuple[int, int, int], latent_channels: Width = 32,
                 channels: Sequence[Width] = (32, 64), convs: Depth = 1,
                 upsample: Literal["resize", "transpose"] = "resize") -> None:
        """channels: the width of each stride-2 level; convs: 3x3 convolutions per level."""
        c_in, h, w = in_shape
        self.factor = 2 ** len(channels)
        check_size("fconv", h, w, self.factor, f"{len(channels)} stride-2 blocks", "the number of model.channels")
        if upsample not in UPSAMPLING:
            raise AetlError(f"unknown model.upsample {upsample!r}; choose one of {', '.join(UPSAMPLING)}")
        if convs < 1:
            raise AetlError(f"model.convs must be >= 1, got {convs}")
        super().__init__(in_shape, latent_channels * (h // self.factor) * (w // self.factor))
        widths = [c_in, *channels]
        enc: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            enc += block(a, b, stride=2)
            for _ in range(convs - 1):
                enc += block(b, b)
        self.encoder = nn.Sequential(*enc, nn.Conv2d(widths[-1], latent_channels, 1))
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, widths[-1], 1), nn.ReLU()]
        rev = widths[::-1]
        for a, b in zip(rev[:-2], rev[1:-1]):
            for _ in range(convs - 1):
                dec += block(a, a)
            dec += [*up(a, b, upsample, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        for _ in range(convs - 1):
            dec += block(rev[-2], rev[-2])
        self.decoder = nn.Sequential(*dec, *up(rev[-2], c_in, upsample, bias=True), nn.Sigmoid())

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z.flatten(1))


def block(a: int, b: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(a, b, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]


def up(a: int, b: int, upsample: str, bias: bool) -> list[nn.Module]:
    """Twice the resolution, a channels -> b channels."""
    if upsample == "transpose":
        return [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=bias)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1, bias=bias)]
