"""Write scikit-learn's UCI digits (1,797 8x8 grey images) as a folder of PNGs, one
sub-folder per class: a stand-in for a user's own images in `data/target=folder`.

    python scripts/export_digits.py /tmp/digits            # white ink on black, as bundled
    python scripts/export_digits.py /tmp/digits_inv --invert   # dark ink on white paper
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def export(out: Path, invert: bool = False) -> int:
    bunch = load_digits()
    pixels = np.round(bunch.images / 16.0 * 255).astype(np.uint8)  # the bundled values run 0..16
    if invert:
        pixels = 255 - pixels
    for i, (image, label) in enumerate(zip(pixels, bunch.target)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return len(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (one sub-folder per digit)")
    parser.add_argument("--invert", action="store_true", help="dark digits on a white background")
    args = parser.parse_args()
    print(f"wrote {export(args.out, args.invert)} images to {args.out}")


if __name__ == "__main__":
    main()
