"""Write scikit-learn's UCI digits (1,797 8x8 grey images) as a folder of PNGs, one
sub-folder per class: a stand-in for a user's own images in `data/target=folder`.

    python scripts/export_digits.py /tmp/digits            # white ink on black, as bundled
    python scripts/export_digits.py /tmp/digits_inv --invert   # dark ink on white paper
    # dark ink on white, each digit drawn 16x16 on a 40x40 sheet, up to 6 pixels off-centre:
    python scripts/export_digits.py /tmp/digits_sheet --invert --canvas 40 --digit 16 --shift 6
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def export(out: Path, invert: bool = False, canvas: int = 0, digit: int = 8, shift: int = 0, seed: int = 0) -> int:
    """Write every digit as a PNG; canvas > 0 places it, `digit` pixels wide, on a canvas x canvas
    sheet of the background, off-centre by up to `shift` pixels each way (drawn with `seed`)."""
    bunch = load_digits()
    pixels = np.round(bunch.images / 16.0 * 255).astype(np.uint8)  # the bundled values run 0..16
    if canvas:
        pixels = place(pixels, canvas, digit, shift, np.random.default_rng(seed))
    if invert:
        pixels = 255 - pixels
    for i, (image, label) in enumerate(zip(pixels, bunch.target)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return len(pixels)


def place(pixels: np.ndarray, canvas: int, digit: int, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image enlarged to digit x digit (bilinear) and pasted on a black canvas, its centre
    moved by a uniform draw in [-shift, shift] pixels on each axis."""
    if not 1 <= digit <= canvas or (canvas - digit) // 2 < shift:
        raise SystemExit(f"a {digit}px digit moved up to {shift}px does not fit a {canvas}px canvas")
    out = np.zeros((len(pixels), canvas, canvas), np.uint8)
    corner = (canvas - digit) // 2
    for image, sheet in zip(pixels, out):
        big = np.asarray(Image.fromarray(image).resize((digit, digit), Image.Resampling.BILINEAR))
        dy, dx = rng.integers(-shift, shift + 1, 2)
        sheet[corner + dy:corner + dy + digit, corner + dx:corner + dx + digit] = big
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (one sub-folder per digit)")
    parser.add_argument("--invert", action="store_true", help="dark digits on a white background")
    parser.add_argument("--canvas", type=int, default=0, help="place each digit on a sheet this many pixels wide")
    parser.add_argument("--digit", type=int, default=8, help="with --canvas: the digit's width in pixels")
    parser.add_argument("--shift", type=int, default=0, help="with --canvas: at most this far off-centre, each axis")
    parser.add_argument("--seed", type=int, default=0, help="with --shift: draws the offsets")
    args = parser.parse_args()
    n = export(args.out, args.invert, args.canvas, args.digit, args.shift, args.seed)
    print(f"wrote {n} images to {args.out}")


if __name__ == "__main__":
    main()
