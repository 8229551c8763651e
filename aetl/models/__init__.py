"""Autoencoder backbones behind one small interface.

Every backbone is an `AutoEncoder` with an `encoder` and a `decoder` module, so
code that moves weights between models (the strategies) never special-cases one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn


class AEOutput(NamedTuple):
    recon: torch.Tensor
    z: torch.Tensor


class AutoEncoder(nn.Module):
    """encode: images -> latent codes (N, latent_dim); decode: codes -> images in [0, 1]."""

    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, in_shape: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        from aetl.errors import AetlError

        if latent_dim < 1:
            raise AetlError(f"model.latent_dim must be >= 1, got {latent_dim}")
        self.in_shape = tuple(in_shape)
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> AEOutput:
        z = self.encode(x)
        return AEOutput(self.decode(z), z)


def build_model(cfg: DictConfig, in_shape: tuple[int, int, int]) -> AutoEncoder:
    """Instantiate the `model` config for images of in_shape (C, H, W)."""
    return instantiate(cfg, in_shape=in_shape)
