"""Weights into a model, by one of two rules.

`load_weights`: a checkpoint's weights into the model they were trained in (Mf from the
cache or `pretrained=`, a run's target model): every tensor must fit, or it is an error.

`transfer_weights`: Mf's weights into a target model that may be larger. Every tensor of Mf is copied into the tensor of the same name in the target: whole
when the shapes agree, as the leading block when they differ in size. What Mf does
not provide is initialised by a fixed rule:
- extra *input* columns or channels of a copied weight start at zero, so the target
  starts out computing exactly what Mf computed and learns to use its new inputs;
- extra *output* units, and tensors Mf lacks, keep the target's default PyTorch
  initialisation (drawn with the run seed); extra bias entries start at zero;
- a tensor whose kernel size differs is not copied at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from aetl.errors import AetlError
from aetl.models import AutoEncoder

log = logging.getLogger(__name__)


@dataclass
class TransferReport:
    copied: list[str] = field(default_factory=list)     # same shape: copied whole
    partial: list[str] = field(default_factory=list)    # leading block copied
    new: list[str] = field(default_factory=list)        # not in Mf (or kernel differs): default init
    unused: list[str] = field(default_factory=list)     # in Mf, not in the target

    def line(self) -> str:
        return (f"{len(self.copied)} tensors copied, {len(self.partial)} copied in part, "
                f"{len(self.new)} new, {len(self.unused)} of Mf's unused")


@torch.no_grad()
def transfer_weights(target: nn.Module, source_state: dict[str, torch.Tensor]) -> TransferReport:
    """Copy source_state into target by the rule above and report what went where."""
    report = TransferReport(unused=sorted(set(source_state) - set(target.state_dict())))
    modules = dict(target.named_modules())
    for name, tensor in target.state_dict().items():
        src = source_state.get(name)
        if src is None or src.dim() != tensor.dim() or src.shape[2:] != tensor.shape[2:]:
            report.new.append(name)
            continue
        if src.shape == tensor.shape:
            tensor.copy_(src)
            report.copied.append(name)
            continue
        owner = modules.get(name.rpartition(".")[0])
        if name.endswith("weight") and tensor.dim() >= 2:
            in_dim = 0 if isinstance(owner, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d) else 1
            extra_inputs = [slice(None)] * tensor.dim()
            extra_inputs[in_dim] = slice(src.shape[in_dim], None)
            tensor[tuple(extra_inputs)] = 0
        elif name.endswith("bias"):
            tensor.zero_()
        block = tuple(slice(0, min(a, b)) for a, b in zip(tensor.shape, src.shape))
        tensor[block] = src[block].to(tensor.dtype)
        report.partial.append(name)
    return report


def load_weights(model: AutoEncoder, state: dict, origin: str) -> None:
    """Copy `state` into model; any missing, unexpected or misshapen tensor is an AetlError."""
    state = model.upgrade_state_dict(state)
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
