"""Transfer strategies: how the target AE is built from the source AE and which
phases train it. Each strategy is one module here plus one YAML in configs/strategy/."""

from __future__ import annotations

from typing import Callable

import torch
from omegaconf import DictConfig

from aetl.errors import AetlError
from aetl.loop import Phase
from aetl.models import AutoEncoder


class Strategy:
    """The base: subclasses override `build` and `phases`."""

    uses_source = True  # False: no source model is pretrained or loaded

    def __init__(self, name: str) -> None:
        self.name = name

    def build(self, new_model: Callable[[], AutoEncoder], source: AutoEncoder | None) -> AutoEncoder:
        """The target AE, ready for the first phase."""
        raise NotImplementedError

    def phases(self, model: AutoEncoder, trainer: DictConfig) -> list[Phase]:
        """The training phases on the target images, in order."""
        raise NotImplementedError


def load_weights(model: torch.nn.Module, state: dict, origin: str) -> None:
    """Copy `state` into model; any missing, unexpected or misshapen tensor is an AetlError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshapen:
        problems = [f"{label} {keys[:3]}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)) if keys]
        raise AetlError(f"the weights from {origin} do not fit the chosen model ({'; '.join(problems)}); "
                        "choose the model config they were trained with")
    model.load_state_dict(state)
