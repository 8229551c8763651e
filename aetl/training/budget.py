"""The memory a run will need, estimated from its config before anything heavy starts (no image
decoded, no weight allocated), against what the machine has (aetl.infra.resources).

- the model and its optimiser: the backbone built on PyTorch's meta device (shapes, no
  storage), its parameters x (weights, gradients, Adam's two moments), for the target model
  and Mf beside it;
- the activations of one training batch: the same meta model run forward on a meta batch of
  the larger of the two phases' batch sizes, every module's output counted, twice (what
  autograd keeps for the backward pass, and the gradients flowing back through it);
- the images in the frame: uint8, for the source and target pools (n_train + n_val + n_test;
  a pool whose n_train is null counts its validation and test splits only), held in memory
  when there is no image cache (cache_dir=null) or the device is a GPU; with an image cache
  on a CPU they are memory-mapped, paged in and out by the kernel, and not counted.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from aetl.errors import AetlError
from aetl.infra.resources import available_memory
from aetl.models import build_model

log = logging.getLogger(__name__)
OPTIMIZER_COPIES = 4  # weights, gradients, Adam's exp_avg and exp_avg_sq
MODELS = 2  # the target model and Mf beside it
BACKWARD = 2  # activations kept for backward, and their gradients
GiB = 2**30


@dataclass
class Estimate:
    model: int
    activations: int
    images: int
    batch: int
    shape: tuple[int, int, int]
    pools: int
    mapped: bool  # the images are memory-mapped from the image cache (not counted)

    @property
    def total(self) -> int:
        return self.model + self.activations + self.images

    def parts(self) -> str:
        c, h, w = self.shape
        images = "memory-mapped from the image cache" if self.mapped else _gib(self.images)
        return (f"activations of a batch of {self.batch} at {c}x{h}x{w}: {_gib(self.activations)}, model and "
                f"optimiser: {_gib(self.model)}, {self.pools} images in the frame: {images}")


def estimate(cfg: DictConfig, device: torch.device) -> Estimate:
    """The bytes a train config needs (`cfg`: the whole config)."""
    data = cfg.data
    shape = (int(data.channels), int(data.image_size), int(data.image_size))
    batch = max(int(cfg.trainer.pretrain.batch_size), int(cfg.trainer.transfer.batch_size))
    with torch.device("meta"):
        model = build_model(cfg.model, shape, 10)
        sizes: list[int] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(_numel(out)))
                 for m in model.modules() if not list(m.children())]
        model.decode(model.encode(torch.empty((batch, *shape))))
        for hook in hooks:
            hook.remove()
    params = sum(p.numel() for p in model.parameters())
    pools = sum(_pool(data[role]) for role in ("source", "target"))
    in_memory = cfg.get("cache_dir") is None or device.type == "cuda"
    return Estimate(params * 4 * OPTIMIZER_COPIES * MODELS, sum(sizes) * 4 * BACKWARD,
                    pools * math.prod(shape) if in_memory else 0, batch, shape, pools, not in_memory)


def check_memory(cfg: DictConfig, device: torch.device) -> Estimate | None:
    """The estimate, logged when it fits what the device has; an AetlError naming the figure and
    what to lower when it does not."""
    try:
        need = estimate(cfg, device)
    except AetlError:
        raise  # the model config's own one line (an image size the backbone cannot take), as it would come later
    except Exception as err:  # noqa: BLE001 - a model the meta device cannot run: the run goes on unestimated
        if isinstance(err.__cause__, AetlError):  # Hydra's instantiate wraps the model's own line
            raise err.__cause__ from None
        log.info("memory: not estimated (%s: %s)", type(err).__name__, err)
        return None
    have = available_memory(device.type)
    where = "GPU memory free" if device.type == "cuda" else "memory available"
    if have is not None and need.total > have:
        lower = sorted([(need.activations, "trainer.pretrain.batch_size and trainer.transfer.batch_size, or "
                                           "data.image_size"),
                        (need.model, "data.image_size or the model's size (model.latent_dim, its widths)"),
                        (need.images, "data.source.n_train and data.target.n_train, or set cache_dir")],
                       key=lambda part: -part[0])
        raise AetlError(f"this run needs about {_gib(need.total)} ({need.parts()}) but the machine has "
                        f"{_gib(have)} of {where}; lower {lower[0][1]}")
    log.info("memory: this run needs about %s (%s); %s %s", _gib(need.total), need.parts(),
             "unknown" if have is None else _gib(have), where)
    return need


def _pool(side: DictConfig) -> int:
    n_train = side.get("n_train")
    return int(n_train or 0) + int(side.get("n_val") or 0) + int(side.get("n_test") or 0)


def _numel(out: object) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel()
    if isinstance(out, (tuple, list)):
        return sum(_numel(o) for o in out)
    return 0


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"
