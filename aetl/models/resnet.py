"""A residual convolutional autoencoder for 32-128 px colour images.

Encoder: a 3x3 stem at `width` channels, then `depth` stages, each a stride-2 3x3
convolution (stage k = 1..depth has width * 2**(k-1) channels) followed by `blocks` residual blocks
(two 3x3 convolutions with GroupNorm or BatchNorm around an identity shortcut, He et al.
2016). The decoder mirrors it, upsampling (nearest, then a 3x3 convolution: no
checkerboard) instead of striding. The code is either flat (`code: flat`, a linear map
to `latent_dim`: every strategy, concat included) or a feature map (`code: map`, a 1x1
convolution to `latent_channels` x H/f x W/f with f = 2**depth: style transfer).

`features(x)` gives what a style app compares: the stem's and every stage's output,
then the code; `factor` is the stride f an image's size must be divisible by.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aetl.errors import AetlError
from aetl.models import AutoEncoder, check_size

NORMS = ("group", "batch")
CODES = ("flat", "map")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(channels, 8), channels)  # 8 groups where the width allows


def _conv(a: int, b: int, norm: str, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(a, b, 3, stride=stride, padding=1, bias=False), _norm(norm, b), nn.ReLU()]


class Residual(nn.Module):
    """x + two 3x3 convolutions of x, then ReLU."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv(channels, channels, norm),
                                  nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(norm, channels))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class ResNetAE(AutoEncoder):
    spatial = True

    def __init__(self, in_shape: tuple[int, int, int], latent_dim: int = 128, width: int = 32, depth: int = 3,
                 blocks: int = 1, norm: str = "group", code: str = "flat", latent_channels: int = 32) -> None:
        c_in, h, w = in_shape
        if norm not in NORMS or code not in CODES or depth < 1 or width < 1 or blocks < 0 or latent_channels < 1:
            raise AetlError(f"model=resnet needs norm in {NORMS}, code in {CODES}, depth >= 1, width >= 1, blocks >= 0 "
                            f"and latent_channels >= 1; got norm={norm!r}, code={code!r}, depth={depth}, width={width}, "
                            f"blocks={blocks}, latent_channels={latent_channels}")
        self.factor = 2 ** depth
        check_size("resnet", h, w, self.factor, f"depth {depth}", "model.depth")
        grid = (h // self.factor, w // self.factor)
        widths = [width] + [width * 2 ** k for k in range(depth)]  # the stem's, then each stage's
        super().__init__(in_shape, latent_dim if code == "flat" else latent_channels * grid[0] * grid[1])
        self.flat_code = code == "flat"
        stages = [nn.Sequential(*_conv(c_in, width, norm))]
        for a, b in zip(widths, widths[1:]):
            stages.append(nn.Sequential(*_conv(a, b, norm, stride=2), *(Residual(b, norm) for _ in range(blocks))))
        deep = widths[-1] * grid[0] * grid[1]
        to_code = [nn.Flatten(), nn.Linear(deep, latent_dim)] if self.flat_code else \
            [nn.Conv2d(widths[-1], latent_channels, 1)]
        self.encoder = nn.Sequential(*stages, nn.Sequential(*to_code))
        from_code = [nn.Linear(latent_dim, deep), nn.ReLU(), nn.Unflatten(1, (widths[-1], *grid))] if self.flat_code \
            else [nn.Conv2d(latent_channels, widths[-1], 1), nn.ReLU()]
        up = [nn.Sequential(*(Residual(b, norm) for _ in range(blocks)), nn.Upsample(scale_factor=2, mode="nearest"),
                            *_conv(b, a, norm)) for a, b in zip(widths[::-1][1:], widths[::-1])]
        self.decoder = nn.Sequential(nn.Sequential(*from_code), *up,
                                     nn.Sequential(nn.Conv2d(width, c_in, 3, padding=1), nn.Sigmoid()))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for stage in self.encoder:
            x = stage(x)
            maps.append(x)
        return maps

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z.flatten(1))
