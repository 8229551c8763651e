"""Image domains. Each module's `load(...)` returns a Domain at its native size;
`aetl.data.framing` maps every domain to the shape the config chooses.

Images are stored as uint8 from decoding to the device (a quarter of float32's bytes);
`unit` turns a batch into float32 in [0, 1] where it is computed on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Domain:
    """Images uint8 (N, C, H, W), possibly memory-mapped from the image cache (a loader may
    give floats in [0, 1]: they are stored as uint8); labels int64 (N,), -1 where unknown."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    notes: list[str] = field(default_factory=list)  # warnings from decoding it, repeated when the cache serves it

    def __post_init__(self) -> None:
        assert self.images.ndim == 4 and len(self.images) == len(self.labels)
        if self.images.dtype != np.uint8:
            self.images = to_uint8(self.images)

    @property
    def labelled(self) -> bool:
        return bool((self.labels >= 0).all()) and len(self.classes) > 1


def digit_classes() -> list[str]:
    return [str(d) for d in range(10)]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 0..255, rounded to the nearest level."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 255), 0, 255).astype(np.uint8)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """A float tensor in [0, 1] -> uint8 0..255, rounded to the nearest level."""
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]; images already in floating point pass unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x
