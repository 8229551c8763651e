"""Decoding image files into uint8 arrays at the pair's size, on every core.

One file becomes an (H, W) grey or (H, W, 3) colour uint8 array:
- turned upright by its EXIF orientation (as photo viewers show it);
- transparent pixels composited onto white (as image viewers and browsers show them);
- high-depth grey modes scaled by their real range, not clipped at 255: 16-bit images
  (I;16) by 65535, 32-bit integer images (I) by the bit depth their file declares (16
  when it declares none), float images (F) kept when they lie in [0, 1], else stretched
  from their own minimum to maximum;
- resized to size x size (bilinear, as PIL resizes: antialiased when shrinking).
An unreadable file, or one with more pixels than PIL's decompression-bomb limit
(`Image.MAX_IMAGE_PIXELS`), is reported with the reason instead of decoded.

`decode_into` decodes many files into one (N, 3, size, size) array with a thread pool:
PIL decodes and resizes outside the GIL, so threads use every core without copying
images between processes.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
CHUNK = 256  # files per task: few enough tasks to keep the pool's overhead small
ORIENTATION = 0x0112  # the EXIF tag
FAILURES = (OSError, ValueError, SyntaxError, EOFError)


class BadImage(Exception):
    """A file that is skipped (or, with skip_bad=false, refused): why, in a few words."""


def read(path: Path, size: int) -> np.ndarray:
    """One file as uint8 (size, size) grey or (size, size, 3) colour; BadImage if it cannot be."""
    try:
        with Image.open(path) as img:
            if Image.MAX_IMAGE_PIXELS and img.width * img.height > Image.MAX_IMAGE_PIXELS:
                raise BadImage(f"oversized: {img.width}x{img.height} pixels, over the decompression-bomb limit "
                               f"of {Image.MAX_IMAGE_PIXELS:,}")
            img.load()
            upright = _upright(img)
            grey = upright.mode in GREY_MODES or (upright.mode == "P" and _grey_palette(upright))
            flat = _flatten(upright, "L" if grey else "RGB")
            return np.asarray(flat.resize((size, size), Image.Resampling.BILINEAR))
    except Image.DecompressionBombError as err:  # twice the limit: PIL refuses it before we can look
        raise BadImage(f"oversized: {err}") from None
    except UnidentifiedImageError:
        raise BadImage("unreadable: not an image file Pillow can identify") from None
    except FAILURES as err:
        raise BadImage(f"unreadable: {err}") from None


def decode_into(paths: list[Path], size: int, out: np.ndarray, workers: int | None = None) -> tuple[dict[int, str], bool]:
    """Decode paths[i] into out[i] (N, 3, size, size) uint8, grey images into all three
    channels. Returns the reasons of the files that failed (by index) and whether any image
    is in colour."""
    workers = workers or usable_cores()
    chunks = [range(i, min(i + CHUNK, len(paths))) for i in range(0, len(paths), CHUNK)]

    def decode(chunk: range) -> tuple[dict[int, str], bool]:
        bad, colour = {}, False
        for i in chunk:
            try:
                array = read(paths[i], size)
            except BadImage as err:
                bad[i] = str(err)
                continue
            if array.ndim == 3:
                colour = True
                out[i] = array.transpose(2, 0, 1)
            else:
                out[i] = array
        return bad, colour

    with warnings.catch_warnings():  # the limit is checked by read(); PIL's own warning would repeat it
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pool = ThreadPoolExecutor(workers)
        try:
            results = list(pool.map(decode, chunks))
        finally:  # stopped (Ctrl-C, SIGTERM): only the chunks under way finish, not the whole folder
            pool.shutdown(cancel_futures=True)
    bad = {i: why for chunk_bad, _ in results for i, why in chunk_bad.items()}
    return bad, any(colour for _, colour in results)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under SLURM), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _upright(img: Image.Image) -> Image.Image:
    """img turned as its EXIF orientation says (a copy only when it says to turn it)."""
    try:
        orientation = img.getexif().get(ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError):  # a corrupt EXIF block: keep the pixels as stored
        return img
    return ImageOps.exif_transpose(img) if orientation in range(2, 9) else img


def _grey_palette(img: Image.Image) -> bool:
    palette = np.frombuffer(img.palette.tobytes(), np.uint8) if img.palette and img.palette.mode == "RGB" else None
    if palette is None or len(palette) % 3:
        return False
    rgb = palette.reshape(-1, 3)
    return bool((rgb == rgb[:, :1]).all())


def _flatten(img: Image.Image, mode: str) -> Image.Image:
    """img in mode L or RGB: high-depth values scaled by their range, transparency onto white."""
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(_scaled(img), "L")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert(mode)
    return img.convert(mode)


def _scaled(img: Image.Image) -> np.ndarray:
    """A high-depth grey image as uint8 0..255, by its real range (see the module's docstring)."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        low, high = (0.0, 1.0) if values.min() >= 0 and values.max() <= 1 else (values.min(), values.max())
    elif img.mode == "I":
        bits = _declared_bits(img) or 16
        low, high = 0.0, float(2 ** bits - 1)
    else:
        low, high = 0.0, 65535.0
    span = high - low if high > low else 1.0
    return np.clip(np.rint((values - low) / span * 255), 0, 255).astype(np.uint8)


def _declared_bits(img: Image.Image) -> int | None:
    """The bits per sample a TIFF declares (other formats say nothing Pillow keeps)."""
    tags = getattr(img, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None  # BitsPerSample
    if isinstance(bits, tuple):
        bits = bits[0]
    return int(bits) if bits else None
