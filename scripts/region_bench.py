"""How well `app.box=auto` finds an object: generated scenes with a known box.

    python scripts/region_bench.py --run RUN [--scenes 60] [--out DIR]

Each scene is a background texture (a bundled image, cropped at random and scaled to the
scene's size) with one object pasted at a random scale (a quarter to a half of the scene's
shorter side) and place: a photo cut out by a silhouette (the bundled horse filled with the
cat, a disc of the coffee photo), the bundled logo (its own alpha), or a glyph (a letter
drawn in a colour). The known box is the bounding box of the pasted object's mask. For each
scene `aetl.apps.region.locate` runs on the scene at its working size with the run's AE; the
script prints the median IoU of the found box against the known one, over the backgrounds
that served to tune `locate` and over three that never did, and the time per image.
`--out` also writes a sheet of the first scenes with the known (green) and the found (red) box.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from aetl.api import trained_model
from aetl.apps.region import locate
from aetl.data.domains.crops import read_image

TUNING = ("skimage:brick", "skimage:grass", "skimage:gravel")  # looked at while choosing locate's steps
HELD_OUT = ("skimage:moon", "sklearn:china.jpg", "skimage:retina")  # never looked at before the final run
OBJECTS = ("horse", "disc", "logo", "glyph")
SIZE = (192, 256)  # scene height, width: locate works at the style app's default size


def background(name: str, rng: np.random.Generator) -> np.ndarray:
    """A random crop (half to all of the shorter side) of a bundled image, scaled to SIZE, (H, W, 3) in [0, 1]."""
    image = read_image(name)
    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    ch, cw = side, min(w, int(side * SIZE[1] / SIZE[0]))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = Image.fromarray((image[top:top + ch, left:left + cw] * 255).astype(np.uint8))
    return np.asarray(crop.resize(SIZE[::-1], Image.Resampling.LANCZOS), dtype=np.float32) / 255


def cutout(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An object: its pixels (h, w, 3) and its mask (h, w) in [0, 1]."""
    import skimage.data

    if kind == "horse":
        mask = (~skimage.data.horse()).astype(np.float32)
        cat = Image.fromarray(skimage.data.chelsea()).resize(mask.shape[::-1])
        return np.asarray(cat, dtype=np.float32) / 255, mask
    if kind == "disc":
        coffee = skimage.data.coffee()[40:360, 140:460].astype(np.float32) / 255
        yy, xx = np.mgrid[:320, :320]
        return coffee, ((yy - 160) ** 2 + (xx - 160) ** 2 < 155 ** 2).astype(np.float32)
    if kind == "logo":
        logo = skimage.data.logo().astype(np.float32) / 255
        return logo[..., :3], logo[..., 3]
    letter = "AEKMRSWX"[rng.integers(8)]
    canvas = Image.new("L", (200, 200))
    ImageDraw.Draw(canvas).text((100, 100), letter, fill=255, anchor="mm", font=ImageFont.load_default(size=190))
    mask = np.asarray(canvas, dtype=np.float32) / 255
    colour = rng.uniform(0, 1, 3).astype(np.float32)
    return np.broadcast_to(colour, mask.shape + (3,)).copy(), mask


def scene(name: str, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A background with the object pasted at a random scale and place, and the object's box (x0, y0, x1, y1)."""
    back = background(name, rng)
    pixels, mask = cutout(kind, rng)
    rows, cols = np.nonzero(mask > 0.5)
    pixels, mask = pixels[rows.min():rows.max() + 1, cols.min():cols.max() + 1], mask[rows.min():rows.max() + 1,
                                                                                     cols.min():cols.max() + 1]
    scale = rng.uniform(0.25, 0.5) * min(SIZE) / max(mask.shape)
    oh, ow = max(4, round(mask.shape[0] * scale)), max(4, round(mask.shape[1] * scale))
    pixels = np.asarray(Image.fromarray((pixels * 255).astype(np.uint8)).resize((ow, oh), Image.Resampling.LANCZOS),
                        dtype=np.float32) / 255
    mask = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize((ow, oh), Image.Resampling.LANCZOS),
                      dtype=np.float32)[..., None] / 255
    top, left = rng.integers(0, SIZE[0] - oh + 1), rng.integers(0, SIZE[1] - ow + 1)
    region = back[top:top + oh, left:left + ow]
    back[top:top + oh, left:left + ow] = mask * pixels + (1 - mask) * region
    rows, cols = np.nonzero(mask[..., 0] > 0.5)
    return back, (left + cols.min(), top + rows.min(), left + cols.max() + 1, top + rows.max() + 1)


def short(name: str) -> str:
    """skimage:moon -> moon"""
    return Path(name.partition(":")[2]).stem


def iou(a: tuple, b: tuple) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0


def sheet(shown: list[tuple[np.ndarray, tuple, tuple]], path: Path) -> None:
    """The scenes in rows of 5, the known box in green and the found one in red."""
    tiles = []
    for image, known, found in shown:
        tile = Image.fromarray((image * 255).astype(np.uint8))
        draw = ImageDraw.Draw(tile)
        draw.rectangle([known[0], known[1], known[2] - 1, known[3] - 1], outline=(0, 255, 0), width=2)
        draw.rectangle([found[0], found[1], found[2] - 1, found[3] - 1], outline=(255, 0, 0), width=2)
        tiles.append(tile)
    cols = 5
    out = Image.new("RGB", (cols * (SIZE[1] + 4), -(-len(tiles) // cols) * (SIZE[0] + 4)), "white")
    for k, tile in enumerate(tiles):
        out.paste(tile, ((k % cols) * (SIZE[1] + 4), (k // cols) * (SIZE[0] + 4)))
    out.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)  # small PNGs for docs/


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished aetl train run with model=fconv (+experiment=style)")
    parser.add_argument("--scenes", type=int, default=60, help="scenes in all, spread over the 6 backgrounds")
    parser.add_argument("--out", type=Path, help="a folder for the sheet of found boxes")
    parser.add_argument("--held-out", action="store_true", help="also the 3 backgrounds kept out of tuning")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = trained_model(args.run, torch.device("cpu"))
    model.eval()
    rng = np.random.default_rng(0)
    names = TUNING + (HELD_OUT if args.held_out else ())
    scores: dict[str, list[float]] = {n: [] for n in names}
    seconds, shown = [], []
    for k in range(args.scenes):
        name, kind = names[k % len(names)], OBJECTS[(k // len(names)) % len(OBJECTS)]
        image, known = scene(name, kind, rng)
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        started = time.perf_counter()
        box = locate(model, x)
        seconds.append(time.perf_counter() - started)
        found = tuple(round(v * s) for v, s in zip(box, (SIZE[1], SIZE[0], SIZE[1], SIZE[0])))
        scores[name].append(iou(known, found))
        if len(shown) < 20:
            shown.append((image, known, found))
    for group, members in (("tuning", TUNING), ("held out", HELD_OUT if args.held_out else ())):
        values = [v for n in members for v in scores[n]]
        if values:
            each = ", ".join(f"{short(n)} {statistics.median(scores[n]):.2f}" for n in members)
            print(f"{group}: median IoU {statistics.median(values):.3f} over {len(values)} scenes ({each})")
    every = [v for n in names for v in scores[n]]
    print(f"all: median IoU {statistics.median(every):.3f}, IoU >= 0.5 in {np.mean(np.array(every) >= 0.5):.0%} of "
          f"{len(every)} scenes; {statistics.median(seconds) * 1000:.0f} ms per {SIZE[1]}x{SIZE[0]} image (median)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        sheet(shown, args.out / "region_bench.png")


if __name__ == "__main__":
    main()
