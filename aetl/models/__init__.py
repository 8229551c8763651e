"""Autoencoder backbones behind one small interface.

Every backbone is an `AutoEncoder` with an `encoder` and a `decoder` module, so
code that moves weights between models (the strategies) never special-cases one. A
convolutional backbone also tells an app what it needs: `factor`, the stride its
input's sides must be divisible by, and `features(x)`, its encoder's feature maps
shallow to deep (the last is the code).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from aetl.errors import AetlError


class AEOutput(NamedTuple):
    recon: torch.Tensor
    z: torch.Tensor


class AutoEncoder(nn.Module):
    """encode: images -> codes (N, latent_dim); decode: codes -> images in [0, 1];
    logits: codes -> class scores, once a classifier head is added."""

    encoder: nn.Module
    decoder: nn.Module
    spatial = False  # True: the encoder sees (C, H, W) maps; False: a flat vector
    flat_code = True  # False: encode returns feature maps (N, C, h, w), read flattened by probes
    factor = 1  # an input's height and width must be divisible by this (a convolutional encoder's stride)

    def __init__(self, in_shape: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise AetlError(f"model.latent_dim must be >= 1, got {latent_dim}; set it to the size of the code")
        self.in_shape = tuple(in_shape)
        self.latent_dim = latent_dim
        self.head: nn.Module | None = None

    def add_head(self, n_classes: int) -> None:
        """A linear classifier on the code, trained with source labels."""
        self.head = nn.Linear(self.latent_dim, n_classes)

    @property
    def has_head(self) -> bool:
        return self.head is not None

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> AEOutput:
        z = self.encode(x)
        return AEOutput(self.decode(z), z)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps after every ReLU, then the code, shallow to deep."""
        maps = []
        for layer in self.encoder:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                maps.append(x)
        return [*maps, x]


def check_size(backbone: str, h: int, w: int, factor: int, why: str, knob: str) -> None:
    """An AetlError naming image sizes that work when factor (the backbone's stride, from
    `why`) does not divide h and w."""
    if h % factor or w % factor:
        side = max(h, w)
        below, above = max(factor, side // factor * factor), (side // factor + 1) * factor
        raise AetlError(f"model={backbone} with {why} needs an image size divisible by {factor}, got {h}x{w}; set "
                        f"data.image_size to a multiple of {factor} (e.g. {below} or {above}) or change {knob}")


def build_model(cfg: DictConfig, in_shape: tuple[int, ...], n_classes: int = 0) -> AutoEncoder:
    """Instantiate the `model` config for inputs of in_shape, with a classifier head when n_classes > 0."""
    model = instantiate(cfg, in_shape=in_shape)
    if n_classes:
        model.add_head(n_classes)
    return model


def place(model: AutoEncoder, device: torch.device) -> AutoEncoder:
    """model on device; convolutional ones in channels_last on CUDA (faster convolutions there)."""
    model = model.to(device)
    if device.type == "cuda" and model.spatial:
        model = model.to(memory_format=torch.channels_last)
    return model
