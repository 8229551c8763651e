"""Fashion-MNIST from IDX files (Debian's dataset-fashion-mnist puts them in the default root)."""

from __future__ import annotations

from aetl.domains import Domain
from aetl.domains.idx import load_idx_folder

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def load(root: str = "/usr/share/datasets/fashion-mnist") -> Domain:
    images, labels = load_idx_folder(root, "fashion_mnist")
    return Domain("fashion_mnist", images, labels, CLASSES)
