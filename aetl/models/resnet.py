"""A residual convolutional autoencoder for 32-128 px colour images.

Encoder: a 3x3 stem at `channels[0]`, then one stage per entry of `channels`, each a stride-2
3x3 convolution to that many channels followed by `blocks` residual blocks (two 3x3
convolutions with GroupNorm or BatchNorm around an identity shortcut, He et al. 2016). The
decoder mirrors it, upsampling (nearest, then a 3x3 convolution: no checkerboard) instead of
striding. The code is flat (a linear map to `latent_dim`: every strategy, concat included)
or, when `latent_channels` is set, a feature map (a 1x1 convolution to `latent_channels` x
H/f x W/f with f = 2**len(channels): style transfer).

`features(x)` gives what a style app compares: the stem's and every stage's output,
then the code; `factor` is the stride f an image's size must be divisible by.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn

from aetl.errors import AetlError
from aetl.infra.schema import Depth, LatentDim, Width
from aetl.models import AutoEncoder, check_size

NORMS = ("group", "batch")


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

    def __init__(self, in_shape: tuple[int, int, int], latent_dim: LatentDim = 128,
                 channels: Sequence[Width] = (32, 64, 128), blocks: Depth = 1,
                 norm: Literal["group", "batch"] = "group", latent_channels: Width | None = None) -> None:
        c_in, h, w = in_shape
        if norm not in NORMS or not channels or min(channels) < 1 or blocks < 0 or (latent_channels or 1) < 1:
            raise AetlError(f"model=resnet needs norm in {NORMS}, at least one of model.channels, each >= 1, "
                            f"blocks >= 0 and latent_channels >= 1 (or null: a flat code); got norm={norm!r}, "
                            f"channels={list(channels)}, blocks={blocks}, latent_channels={latent_channels}")
        self.factor = 2 ** len(channels)
        check_size("resnet", h, w, self.factor, f"{len(channels)} stages", "the number of model.channels")
        grid = (h // self.factor, w // self.factor)
        widths = [channels[0], *channels]  # the stem's, then each stage's
        flat = latent_channels is None
        super().__init__(in_shape, latent_dim if flat else latent_channels * grid[0] * grid[1])
        self.flat_code = flat
        stages = [nn.Sequential(*_conv(c_in, widths[0], norm))]
        for a, b in zip(widths, widths[1:]):
            stages.append(nn.Sequential(*_conv(a, b, norm, stride=2), *(Residual(b, norm) for _ in range(blocks))))
        deep = widths[-1] * grid[0] * grid[1]
        to_code = [nn.Flatten(), nn.Linear(deep, latent_dim)] if flat else [nn.Conv2d(widths[-1], latent_channels, 1)]
        self.encoder = nn.Sequential(*stages, nn.Sequential(*to_code))
        from_code = [nn.Linear(latent_dim, deep), nn.ReLU(), nn.Unflatten(1, (widths[-1], *grid))] if flat \
            else [nn.Conv2d(latent_channels, widths[-1], 1), nn.ReLU()]
        up = [nn.Sequential(*(Residual(b, norm) for _ in range(blocks)), nn.Upsample(scale_factor=2, mode="nearest"),
                            *_conv(b, a, norm)) for a, b in zip(widths[::-1][1:], widths[::-1])]
        self.decoder = nn.Sequential(nn.Sequential(*from_code), *up,
                                     nn.Sequential(nn.Conv2d(widths[0], c_in, 3, padding=1), nn.Sigmoid()))

    @staticmethod
    def upgrade_config(cfg: dict) -> dict:
        """A model config written before `channels` replaced width and depth, and `latent_channels`
        (null: flat) replaced code: flat | map."""
        if "width" not in cfg:
            return cfg
        cfg = dict(cfg)
        width, depth, code = cfg.pop("width"), cfg.pop("depth", 3), cfg.pop("code", "flat")
        cfg["channels"] = [width * 2 ** k for k in range(depth)]
        cfg["latent_channels"] = cfg.get("latent_channels", 32) if code == "map" else None
        return cfg

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for stage in self.encoder:
            x = stage(x)
            maps.append(x)
        return maps

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z.flatten(1))
