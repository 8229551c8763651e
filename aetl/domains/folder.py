"""A user's own images: one sub-folder per class, or a single folder of unlabelled images."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from aetl.domains import Domain
from aetl.errors import AetlError

log = logging.getLogger(__name__)
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load(root: str, size: int, skip_bad: bool = True) -> Domain:
    """Every image under root, resized to size x size; unreadable files are skipped and counted."""
    folder = Path(str(root)).expanduser()
    if not folder.is_dir():
        raise AetlError(f"image folder {folder} does not exist; set data.<source|target>.root to a folder of images")
    try:
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and _images_in(p))
        groups = [(i, _images_in(folder / c)) for i, c in enumerate(classes)] if classes else [(-1, _images_in(folder))]
    except OSError as err:
        raise AetlError(f"cannot read image folder {folder} ({err.strerror or err}); fix its permissions") from None
    files = [(label, path) for label, paths in groups for path in paths]
    if not files:
        raise AetlError(f"no images in {folder} (looked for {', '.join(sorted(EXTENSIONS))}); add images or fix the path")
    decoded = [(label, _read(path, size)) for label, path in files]
    bad = [str(path) for (label, path), (_, img) in zip(files, decoded) if img is None]
    if bad and not skip_bad:
        raise AetlError(f"{len(bad)} unreadable image(s) in {folder}, first {bad[0]}; remove them or set skip_bad=true")
    if bad:
        log.warning("skipped %d unreadable image(s) in %s, first: %s", len(bad), folder, bad[0])
    good = [(label, img) for label, img in decoded if img is not None]
    if not good:
        raise AetlError(f"none of the {len(files)} images in {folder} could be read; check the files")
    colour = any(img.mode == "RGB" for _, img in good)
    arrays = [np.asarray(img.convert("RGB" if colour else "L"), dtype=np.float32) / 255.0 for _, img in good]
    images = np.stack(arrays)
    images = images.transpose(0, 3, 1, 2) if colour else images[:, None]
    labels = np.array([label for label, _ in good], dtype=np.int64)
    return Domain("folder", images, labels, classes)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def _read(path: Path, size: int) -> Image.Image | None:
    try:
        with Image.open(path) as img:
            img.load()
            mode = "RGB" if img.mode not in ("L", "1", "I", "I;16", "F") else "L"
            return img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
