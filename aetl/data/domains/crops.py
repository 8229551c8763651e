"""Random square crops of whole images: the `photos` and `textures` domains.

`images` names bundled images (`skimage:astronaut`, `sklearn:china.jpg`), image
files or folders of them (each image in a folder counts as one); each crop's label is
the index of the image it came from. The crops are
drawn with `seed`: a seed always gives the same crops. Licences of the bundled
images: docs/images.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from aetl.data.domains import Domain, to_uint8
from aetl.errors import AetlError
from aetl.infra.schema import Natural, OpenShare, Seed


def read_image(name: str) -> np.ndarray:
    """A bundled image (`skimage:NAME`, `sklearn:FILE`) or an image file -> float32 (H, W, 3) in [0, 1]."""
    kind, _, item = name.partition(":")
    try:
        if kind == "skimage" and item:
            import skimage.data

            array = getattr(skimage.data, item)()
        elif kind == "sklearn" and item:
            from sklearn.datasets import load_sample_image

            array = load_sample_image(item)
        else:
            with Image.open(Path(name).expanduser()) as img:
                array = np.asarray(img.convert("RGB"))
    except (AttributeError, OSError, ValueError) as err:
        raise AetlError(f"cannot read image {name!r} ({err}); give skimage:NAME, sklearn:FILE or an image path") from None
    array = array.astype(np.float32) / 255.0
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return array[..., :3]


def load(images: Sequence[str], n: Natural = 1000, size: Natural = 32, scale: OpenShare = 1.0, seed: Seed = 0,
         extra: Sequence[str] = ()) -> Domain:
    """n crops of size x size pixels, spread evenly over the images and the `extra` ones;
    `scale` < 1 shrinks each image first, so a crop covers more of the scene."""
    rng = np.random.default_rng(seed)
    images = expand_folders([*images, *extra])
    sources = []
    for image in images:
        img = to_uint8(read_image(image))
        if scale != 1.0:
            pil = Image.fromarray(img)
            shape = (round(pil.width * scale), round(pil.height * scale))
            img = np.asarray(pil.resize(shape, Image.Resampling.LANCZOS))
        if min(img.shape[:2]) < size:
            raise AetlError(f"image {image} is {img.shape[1]}x{img.shape[0]}, smaller than the {size}-pixel crops")
        sources.append(img)
    labels = np.arange(n) % len(sources)
    crops = random_crops(sources, labels, size, rng)
    classes = [Path(image.partition(":")[2] or image).stem for image in images]
    return Domain("crops", crops, labels.astype(np.int64), classes)  # named by its config: photos, textures


def expand_folders(images: Sequence[str]) -> list[str]:
    """images with each folder replaced by the image files in it, sorted by name."""
    from aetl.data.domains.folder import EXTENSIONS

    out = []
    for image in images:
        folder = Path(str(image)).expanduser()
        if not folder.is_dir():
            out.append(str(image))
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
        if not files:
            raise AetlError(f"no images in {folder} (looked for {', '.join(sorted(EXTENSIONS))}); add images or fix the path")
        out += [str(p) for p in files]
    return out


def random_crops(pool: list[np.ndarray], which: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """For each entry of `which` (an index into pool), a random size x size crop of that
    (H, W, 3) image, as (N, 3, size, size) of the pool's dtype."""
    out = np.empty((len(which), 3, size, size), dtype=pool[0].dtype)
    for k, img in enumerate(pool):
        idx = np.flatnonzero(which == k)
        ys = rng.integers(img.shape[0] - size + 1, size=len(idx))
        xs = rng.integers(img.shape[1] - size + 1, size=len(idx))
        windows = np.lib.stride_tricks.sliding_window_view(img, (size, size), axis=(0, 1))  # (Y, X, 3, s, s)
        out[idx] = windows[ys, xs]
    return out
