"""Autoencoder backbones behind one small interface.

Every backbone is an `AutoEncoder` with an `encoder` and a `decoder` module, so
code that moves weights between models (the strategies) never special-cases one. Every
model also tells an app what it needs: `factor`, the stride its input's sides must be
divisible by (1 for a flat encoder), `flat_code`, whether its codes are vectors or
feature maps, and `features(x)`, its encoder's feature maps shallow to deep (the last is
the code). `build_model` records how it built a model (`recipe`), so a checkpoint can
carry it and `rebuild` makes the same model again without the run's config.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from aetl.errors import AetlError


class AEOutput(NamedTuple):
    recon: torch.Tensor
    z: torch.Tensor


class AutoEncoder(nn.Module):
    """encode: images (N, C, H, W) -> codes; decode: codes -> images in [0, 1]; logits:
    codes -> class scores, once a classifier head is added. Codes are vectors (N, latent_dim)
    when `flat_code`, else feature maps (N, c, h, w) with c * h * w == latent_dim (fconv, and
    resnet with code=map), which probes and heads read flattened."""

    encoder: nn.Module
    decoder: nn.Module
    spatial = False  # True: the encoder sees (C, H, W) maps; False: a flat vector
    flat_code = True  # False: encode returns feature maps (N, c, h, w)
    factor = 1  # an input's height and width must be divisible by this (a convolutional encoder's stride)
    recipe: dict | None = None  # how build_model made it (see rebuild); None for a model made by hand

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

    def upgrade_state_dict(self, state: dict) -> dict:
        """A state dict an older aetl wrote, under this model's names (none changed here)."""
        return state

    @staticmethod
    def upgrade_config(cfg: dict) -> dict:
        """A model config an older aetl wrote (a checkpoint's recipe), in this model's keys (none changed here)."""
        return cfg

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
        sizes = f"{below} or {above}" if below != above else f"{below}"
        raise AetlError(f"model={backbone} with {why} needs an image size divisible by {factor}, got {h}x{w}; set "
                        f"data.image_size to a multiple of {factor} (e.g. {sizes}) or change {knob}")


def build_model(cfg: DictConfig, in_shape: tuple[int, ...], n_classes: int = 0) -> AutoEncoder:
    """Instantiate the `model` config for inputs of in_shape, with a classifier head when n_classes > 0."""
    model = instantiate(cfg, in_shape=in_shape)
    if n_classes:
        model.add_head(n_classes)
    model.recipe = {"model_cfg": OmegaConf.to_container(cfg, resolve=True), "in_shape": list(in_shape),
                    "n_classes": n_classes}
    return model


def rebuild(recipe: dict) -> AutoEncoder:
    """A fresh model made as `recipe` (a model's `recipe`, kept in a checkpoint) says. A
    composite model (`class` names it) rebuilds itself from its parts' recipes. Only
    AutoEncoder classes in aetl are built: a checkpoint names no other code to run."""
    if "class" in recipe:
        return _autoencoder_class(recipe["class"]).from_recipe(recipe)
    found = _autoencoder_class(str(recipe["model_cfg"].get("_target_")))
    cfg = OmegaConf.create(found.upgrade_config(recipe["model_cfg"]))
    try:
        return build_model(cfg, tuple(recipe["in_shape"]), recipe["n_classes"])
    except InstantiationException as err:  # a key the model does not take (load_checkpoint checked the values)
        cause = str(err.__cause__ or err).strip().splitlines()[-1]
        raise AetlError(f"the checkpoint's recipe does not build a {found.__name__} ({cause}); the file is damaged "
                        "or not a checkpoint aetl wrote") from None


def _autoencoder_class(path: str) -> type[AutoEncoder]:
    found = get_object(path) if path.startswith("aetl.") else None
    if not (isinstance(found, type) and issubclass(found, AutoEncoder)):
        raise AetlError(f"the checkpoint's model is {path!r}, not one of aetl's autoencoders; aetl rebuilds only its "
                        "own (rebuild other models from their config)")
    return found


def place(model: AutoEncoder, device: torch.device) -> AutoEncoder:
    """model on device; convolutional ones in channels_last on CUDA (faster convolutions there)."""
    model = model.to(device)
    if device.type == "cuda" and model.spatial:
        model = model.to(memory_format=torch.channels_last)
    return model
