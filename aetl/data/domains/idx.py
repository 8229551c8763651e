"""Reader for the IDX files that MNIST and Fashion-MNIST ship as."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from aetl.data.domains import to_uint8
from aetl.errors import AetlError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SPLITS = ("train", "t10k")


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (plain or .gz) into an array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise AetlError(f"cannot read IDX file {path}: {err}; re-download or replace it") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise AetlError(f"{path} is not an IDX file (bad magic number); point data.*.root at MNIST-style IDX files")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, _DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise AetlError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def find_idx(root: Path, split: str, kind: str) -> Path | None:
    """The `{split}-{kind}-idx?-ubyte(.gz)` file under root or torchvision's <root>/*/raw/."""
    pattern = f"{split}-{kind}-idx?-ubyte"
    for folder in [root, *sorted(root.glob("*/raw"))]:
        for name in (pattern, pattern + ".gz"):
            hits = sorted(folder.glob(name))
            if hits:
                return hits[0]
    return None


def idx_fingerprint(root: str | None) -> str:
    """The IDX files under root with their sizes and modification times ("" without a root):
    the image cache reads them again when they change."""
    if not root or not Path(root).expanduser().is_dir():
        return ""
    folder = Path(root).expanduser()
    found = [find_idx(folder, split, kind) for split in SPLITS for kind in ("images", "labels")]
    return ";".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in found if p)


def load_idx_folder(root: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 1, H, W) and labels of every split found under root."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise AetlError(f"{dataset}: data folder {folder} does not exist; set data.<source|target>.root to a folder of IDX files")
    images, labels = [], []
    for split in SPLITS:
        img_path, lab_path = find_idx(folder, split, "images"), find_idx(folder, split, "labels")
        if img_path and lab_path:
            x, y = read_idx(img_path), read_idx(lab_path)
            if len(x) != len(y):
                raise AetlError(f"{img_path} has {len(x)} images but {lab_path} has {len(y)} labels")
            images.append(x)
            labels.append(y)
    if not images:
        raise AetlError(
            f"{dataset}: no IDX files in {folder} (expected train-images-idx3-ubyte(.gz) and "
            f"train-labels-idx1-ubyte(.gz)); point data.<source|target>.root at the folder that holds them"
        )
    x = np.concatenate(images)[:, None]
    if x.dtype != np.uint8:  # another IDX value type: read, as before, on the 0..255 scale
        x = to_uint8(x / 255.0)
    return x, np.concatenate(labels).astype(np.int64)
