"""MNIST-M: MNIST digits blended with random crops of natural photos, built as
Ganin & Lempitsky (2015) built it: each pixel is |photo crop - digit|, per colour
channel. The photos are those bundled with scikit-image; the crops are drawn with
`seed`, so a seed always gives the same images."""

from __future__ import annotations

import numpy as np

from aetl.data.domains import Domain
from aetl.data.domains.crops import random_crops
from aetl.data.domains.mnist import (
    Provider,
    fingerprint,  # noqa: F401  (its digits' files, for the image cache)
)
from aetl.data.domains.mnist import load as load_mnist
from aetl.infra.schema import Seed

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field", "immunohistochemistry")


def load(root: str | None = None, provider: Provider = "auto", seed: Seed = 0) -> Domain:
    digits = load_mnist(root, provider)
    images = blend(digits.images, photos(), np.random.default_rng(seed))
    return Domain("mnist_m", images, digits.labels, digits.classes)


def photos() -> list[np.ndarray]:
    """The bundled colour photos as uint8 (H, W, 3) arrays."""
    import skimage.data

    return [np.ascontiguousarray(getattr(skimage.data, name)()[..., :3], dtype=np.uint8) for name in PHOTOS]


def blend(digits: np.ndarray, pool: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(N, 1, S, S) uint8 digits -> (N, 3, S, S) uint8: |random photo crop - digit|."""
    which = rng.integers(len(pool), size=len(digits))
    crops = random_crops(pool, which, digits.shape[-1], rng)
    return np.abs(crops.astype(np.int16) - digits).astype(np.uint8)
