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
    """encode: images -> codes (N, latent_dim); decode: codes -> images in [0, 1];
    logits: codes -> class scores, once a classifier head is added."""

    encoder: nn.Module
    decoder: nn.Module
    spatial = False  # True: the encoder sees (C, H, W) maps; False: a flat vector
    flat_code = True  # False: encode returns feature maps (N, C, h, w), read flattened by probes

    def __init__(self, in_shape: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        from aetl.errors import AetlError

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
