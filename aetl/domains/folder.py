"""A user's own images: one sub-folder per class, or a single folder of unlabelled images.

Files are decoded on every core (aetl.domains.decode) straight into the array `alloc`
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

from aetl.domains import Domain
from aetl.domains.decode import decode_into
from aetl.errors import AetlError

log = logging.getLogger(__name__)
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
COPY_CHUNK = 4096  # images per copy when compacting: bounded memory for any folder
Alloc = Callable[[tuple[int, ...]], np.ndarray]  # shape -> an uint8 array to fill


def load(root: str, size: int, skip_bad: bool = True, alloc: Alloc = lambda shape: np.empty(shape, np.uint8)) -> Domain:
    """Every image under root, resized to size x size; unreadable and oversized files are
    skipped and counted (skip_bad=false: refused)."""
    folder, classes, files = listing(root)
    paths = [path for _, path, _ in files]
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
    digest = hashlib.sha256(str(folder).encode())
    for label, path, stat in files:
        digest.update(f"\n{label}\t{path.relative_to(folder)}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def listing(root: str) -> tuple[Path, list[str], list[tuple[int, Path, os.stat_result]]]:
    """The folder, its classes (sub-folders holding images; none: unlabelled) and its image
    files in order: (label, path, stat)."""
    folder = Path(str(root)).expanduser()
    if not folder.is_dir():
        raise AetlError(f"image folder {folder} does not exist; set data.<source|target>.root to a folder of images")
    try:
        subfolders = sorted(e.name for e in os.scandir(folder) if e.is_dir())
        groups = [(i, _images_in(folder / name)) for i, name in enumerate(subfolders)]
        groups = [(label, found) for label, found in groups if found]
        classes = [subfolders[label] for label, _ in groups]
        groups = [(k, found) for k, (_, found) in enumerate(groups)] if groups else [(-1, _images_in(folder))]
    except OSError as err:
        raise AetlError(f"cannot read image folder {folder} ({err.strerror or err}); fix its permissions") from None
    files = [(label, path, stat) for label, found in groups for path, stat in found]
    if not files:
        raise AetlError(f"no images in {folder} (looked for {', '.join(sorted(EXTENSIONS))}); add images or fix the path")
    return folder, classes, files


def _images_in(folder: Path) -> list[tuple[Path, os.stat_result]]:
    with os.scandir(folder) as entries:
        found = [(folder / e.name, e.stat()) for e in entries
                 if e.is_file() and os.path.splitext(e.name)[1].lower() in EXTENSIONS]
    return sorted(found, key=lambda item: item[0])
