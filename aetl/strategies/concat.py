"""concat (feature concatenation): a frozen Mf encodes each image, and its code is
concatenated with the target AE's input (`at: input`: as extra constant channels for
convolutional backbones, extra entries of the flat input otherwise) or with the
target AE's own code at the bottleneck (`at: latent`). The target AE may be a
different, larger backbone (`target_model`): a small Mf feeds a bigger model.
Mf stays frozen throughout. The code the probe sees is [target code, Mf code].

`inner` (set by `mixed`) is another strategy that initialises and schedules the
target AE; without it the target AE starts fresh and trains in one phase.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from omegaconf import DictConfig
from torch import nn

from aetl.errors import AetlError
from aetl.models import AutoEncoder, place, rebuild
from aetl.strategies import Context, Strategy, all_params
from aetl.training.loop import Phase

PLACES = ("input", "latent")


class ConcatAE(AutoEncoder):
    """A target encoder/decoder pair fed with the codes of a frozen source model `mf`."""

    def __init__(self, mf: AutoEncoder, encoder_model: AutoEncoder, decoder_model: AutoEncoder, at: str) -> None:
        super().__init__(mf.in_shape, encoder_model.latent_dim + mf.latent_dim)
        self.mf = mf
        self.encoder = encoder_model.encoder
        self.decoder = decoder_model.decoder
        self.at = at
        self.own_dim = encoder_model.latent_dim
        self.spatial = encoder_model.spatial
        self.factor = encoder_model.factor
        if mf.recipe and encoder_model.recipe and decoder_model.recipe:
            self.recipe = {"class": f"{__name__}.ConcatAE", "at": at, "mf": mf.recipe,
                           "encoder_model": encoder_model.recipe, "decoder_model": decoder_model.recipe}

    @classmethod
    def from_recipe(cls, recipe: dict) -> "ConcatAE":
        mf = rebuild(recipe["mf"]).eval().requires_grad_(False)
        return cls(mf, rebuild(recipe["encoder_model"]), rebuild(recipe["decoder_model"]), recipe["at"])

    def upgrade_state_dict(self, state: dict) -> dict:
        """Before aetl 0.1.0's refactor the frozen Mf was `source`: its tensors were source.*."""
        return {("mf." + k[len("source."):] if k.startswith("source.") else k): v for k, v in state.items()}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        zs = self.mf.encode(x)
        if self.at == "input":
            if self.spatial:
                x = torch.cat([x, zs[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
            else:
                x = torch.cat([x.flatten(1), zs], 1)
        return torch.cat([self.encoder(x), zs], 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.at == "latent":
            return self.decoder(z)
        out = self.decoder(z[:, : self.own_dim])  # the input-sized output: keep the image part
        c, h, w = self.in_shape
        return out[:, :c] if self.spatial else out[:, : c * h * w].reshape(-1, c, h, w)

    @property
    def has_head(self) -> bool:
        return self.mf.has_head

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.mf.logits(z[:, self.own_dim:])  # Mf's head on Mf's code


class Concat(Strategy):
    reads_target_labels = False  # trains on the target images alone: one model for every label budget
    def __init__(self, name: str, at: Literal["input", "latent"] = "latent", inner: Strategy | None = None,
                 **common) -> None:
        super().__init__(name, **common)
        if at not in PLACES:
            raise AetlError(f"strategy.at must be input or latent, got {at!r}")
        self.at = at
        self.inner = inner

    def build(self, ctx: Context) -> AutoEncoder:
        if not ctx.mf.flat_code:
            raise AetlError(f"strategy=concat needs a source model with a flat code (model=conv or mlp), "
                            f"not {type(ctx.mf).__name__}")
        mf = copy.deepcopy(ctx.mf).eval().requires_grad_(False)
        own = ctx.new_model(self.target_model)
        extra = mf.latent_dim
        if self.at == "input":
            c, h, w = ctx.shape
            in_shape = (c + extra, h, w) if own.spatial else (c * h * w + extra,)
            encoder_model = decoder_model = ctx.new_model(self.target_model, in_shape=in_shape)
        else:
            encoder_model = own
            decoder_model = ctx.new_model(self.target_model, latent_dim=own.latent_dim + extra)
        model = place(ConcatAE(mf, encoder_model, decoder_model, self.at), ctx.device)
        if self.inner is not None:
            self.inner.initialise(_Parts(model), ctx)
        return model

    def phases(self, model: AutoEncoder, trainer: DictConfig, ctx: Context) -> list[Phase]:
        if self.inner is not None:
            phases = self.inner.phases(model, trainer, ctx)
        else:
            t = trainer.transfer
            phases = [Phase("transfer", t.steps, t.batch_size, all_params(model, t.lr))]
        for phase in phases:
            phase.frozen = [*phase.frozen, model.mf]
        return phases


class _Parts(nn.Module):
    """The target encoder and decoder of a ConcatAE under Mf's parameter names."""

    def __init__(self, model: ConcatAE) -> None:
        super().__init__()
        self.encoder, self.decoder = model.encoder, model.decoder
