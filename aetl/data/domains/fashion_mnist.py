"""Fashion-MNIST from IDX files (Debian's dataset-fashion-mnist puts them in the default root)."""

from __future__ import annotations

from aetl.data.domains import Domain
from aetl.data.domains.idx import idx_fingerprint, load_idx_folder

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def load(root: str = "/usr/share/datasets/fashion-mnist") -> Domain:
    images, labels = load_idx_folder(root, "fashion_mnist")
    return Domain("fashion_mnist", images, labels, CLASSES)


def fingerprint(root: str = "/usr/share/datasets/fashion-mnist", **_: object) -> str:
    """What the image cache checks besides the config: the IDX files."""
    return idx_fingerprint(root)
