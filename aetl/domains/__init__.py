"""Image domains. Each module's `load(...)` returns a Domain at its native size;
`aetl.domains.shape` maps every domain to the shape the config chooses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Domain:
    """Images in [0, 1] as float32 (N, C, H, W); labels int64 (N,), -1 where unknown."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        assert self.images.ndim == 4 and len(self.images) == len(self.labels)

    @property
    def labelled(self) -> bool:
        return bool((self.labels >= 0).all()) and len(self.classes) > 1


def digit_classes() -> list[str]:
    return [str(d) for d in range(10)]
