"""Tiny generated images for tests: one smooth random pattern per class plus noise."""

from __future__ import annotations

from typing import Literal

import numpy as np

from aetl.data.domains import Domain, to_uint8
from aetl.infra.schema import Natural, Seed


def load(n: Natural = 200, n_classes: Natural = 4, size: Natural = 16, channels: Literal[1, 3] = 1,
         seed: Seed = 0) -> Domain:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    prototypes = []
    for _ in range(n_classes):
        fx, fy, phase = rng.uniform(1, 4, size=3)
        base = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
        prototypes.append(np.stack([np.roll(base, k, axis=1) for k in range(channels)]))
    labels = np.arange(n) % n_classes
    images = np.stack([prototypes[c] for c in labels])
    images = images + rng.normal(0, 0.1, images.shape)
    images = to_uint8(images)
    return Domain("synthetic", images, labels.astype(np.int64), [f"class{c}" for c in range(n_classes)])
