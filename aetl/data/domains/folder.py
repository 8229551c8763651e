"""A user's own images: one sub-folder per class, or a single folder of unlabelled images.

Files are decoded on every core (aetl.data.domains.decode) straight into the array `alloc`
gives (a memory-mapped file of the image cache, or memory). `fingerprint` names the
files with their sizes and modification times: the image cache decodes a folder again
when it changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from aetl.data.domains import Domain
from aetl.data.domains.decode import decode_into
from aetl.errors import AetlError
from aetl.infra.schema import Natural

log = logging.getLogger(__name__)
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
COPY_CHUNK = 4096  # images per copy when compacting: bounded memory for any folder
Alloc = Callable[[tuple[int, ...]], np.ndarray]  # shape -> an uint8 array to fill


def load(root: str, size: Natural, skip_bad: bool = True, alloc: Alloc = lambda shape: np.empty(shape, np.uint8)) -> Domain:
    """Every image under root, resized to size x size; unreadable and oversized files are
    skipped and counted (skip_bad=false: refused)."""
    folder, classes, files = listing(root)
    paths = [folder / name for _, name, _ in files]
    decoded = alloc((len(files), 3, size, size))
    bad, colour = decode_into(paths, size, decoded)
    notes = []
    if bad:
        first = min(bad)
        what = f"{len(bad)} unreadable or oversized image(s) in {folder}, first {paths[first]} ({bad[first]})"
        if not skip_bad:
            raise AetlError(f"{what}; remove them or set skip_bad=true")
        notes.append(f"skipped {what}")
        log.warning("%s", notes[-1])
    keep = np.array([i for i in range(len(files)) if i not in bad], dtype=np.int64)
    if not len(keep):
        raise AetlError(f"none of the {len(files)} images in {folder} could be read; check the files")
    images = decoded
    if len(keep) < len(files) or not colour:  # drop the failed rows; grey folders keep one channel
        images = alloc((len(keep), 3 if colour else 1, size, size))
        for at in range(0, len(keep), COPY_CHUNK):
            images[at:at + COPY_CHUNK] = decoded[keep[at:at + COPY_CHUNK], : images.shape[1]]
    labels = np.array([files[i][0] for i in keep], dtype=np.int64)
    return Domain("folder", images, labels, classes, notes)


def fingerprint(root: str, **_: object) -> str:
    """A hash of every image file's path, size and modification time under root."""
    folder, _, files = listing(root)
    lines = "\n".join(f"{label}\t{name}\t{size}\t{mtime}" for label, name, (size, mtime) in files)
    return hashlib.sha256(f"{folder}\n{lines}".encode()).hexdigest()[:16]


def listing(root: str) -> tuple[Path, list[str], list[tuple[int, str, tuple[int, int]]]]:
    """The folder, its classes (sub-folders holding images; none: unlabelled) and its image
    files in order: (label, path relative to the folder, (size, modification time in ns)).
    Plain strings, not Paths: a folder of 100,000 files is listed in a fraction of a second."""
    folder = Path(str(root)).expanduser()
    if not folder.is_dir():
        raise AetlError(f"image folder {folder} does not exist; set data.<source|target>.root to a folder of images")
    try:
        subfolders = sorted(e.name for e in os.scandir(folder) if e.is_dir())
        groups = [(sub, _images_in(folder, sub)) for sub in subfolders]
        groups = [(sub, found) for sub, found in groups if found]
        classes = [sub for sub, _ in groups]
        groups = [(k, found) for k, (_, found) in enumerate(groups)] if groups else [(-1, _images_in(folder, ""))]
    except OSError as err:
        raise AetlError(f"cannot read image folder {folder} ({err.strerror or err}); fix its permissions") from None
    files = [(label, name, stat) for label, found in groups for name, stat in found]
    if not files:
        raise AetlError(f"no images in {folder} (looked for {', '.join(sorted(EXTENSIONS))}); "
                        "add images or fix the path")
    return folder, classes, files


def _images_in(folder: Path, sub: str) -> list[tuple[str, tuple[int, int]]]:
    found, prefix = [], f"{sub}/" if sub else ""
    with os.scandir(folder / sub) as entries:
        for e in entries:
            if e.name[e.name.rfind("."):].lower() in EXTENSIONS and e.is_file():
                stat = e.stat()
                found.append((prefix + e.name, (stat.st_size, stat.st_mtime_ns)))
    return sorted(found)
