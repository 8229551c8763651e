"""Regional style transfer, measured and shown: a 4000x3000 content restyled whole and in a box
(time, peak memory, checkerboard, speckle, seam), and a gallery of bundled photos with the box
`app.box=auto` finds, object and background variants.

    python scripts/style_regions.py --run RUN [--work DIR] [--docs docs/style]

RUN is a finished `aetl train +experiment=style` run. Each measurement is its own `aetl stylize`
process, so its peak memory is its own (the whole process: Python and torch included).
Writes docs/style/region_*.png and prints the markdown rows docs/style.md holds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

STYLE = "sklearn:flower.jpg"
PHOTOS = ("skimage:chelsea", "skimage:coffee", "skimage:astronaut")
CASES = {"whole image": "[0,0,1,1]", "quarter box (centre)": "[0.25,0.25,0.75,0.75]"}


def stylize(run: str, out: Path, *overrides: str) -> dict:
    """One `aetl stylize` process; its summary.json."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "aetl", "stylize", f"run={run}", f"hydra.run.dir={out}", "app.alphas=[1.0]",
                    f"style={STYLE}", *overrides], check=True, env=env, capture_output=True)
    return json.loads((out / "summary.json").read_text())


def big_content(work: Path) -> Path:
    """skimage:coffee scaled to 4000x3000 (a camera's size), as a PNG."""
    import skimage.data

    path = work / "coffee_4000x3000.png"
    if not path.exists():
        Image.fromarray(skimage.data.coffee()).resize((4000, 3000), Image.Resampling.LANCZOS).save(path)
    return path


def full_size(run: str, work: Path, docs: Path) -> list[str]:
    """Markdown rows: each case's time, peak memory and artefact measures at 4000x3000."""
    content = big_content(work)
    rows = ["| 4000x3000 content | seconds (stylise + paste) | peak memory (process, result made / after the "
            "measures) | checkerboard | speckle | seam (feathered) | seam (hard paste) |", "|---|---|---|---|---|---|---|"]
    for label, box in CASES.items():
        out = work / label.split()[0]
        s = stylize(run, out, f"content={content}", f"app.box={box}")
        r = s["style_results"][0]
        seam = f"{r['seam']:.2f}" if r["seam"] is not None else "(no edge inside)"
        hard = f"{r['seam_hard']:.2f}" if r["seam_hard"] is not None else "(no edge inside)"
        rows.append(f"| {label} | {r['seconds']:.2f} | {s['style_peak_memory_mb']:.0f} / {s['style_peak_memory_measured_mb']:.0f} MB | {r['checkerboard']:.2f} | "
                    f"{r['speckle']:.2f} | {seam} | {hard} |")
        if label.startswith("quarter"):  # a 1:1 crop across the box's left edge, at full resolution
            image = Image.open(out / "images" / "stylized_wct_alpha1.png")
            image.crop((1000 - 256, 1500 - 256, 1000 + 256, 1500 + 256)).save(docs / "region_fullres_crop.png")
    return rows


def gallery(run: str, work: Path, docs: Path) -> list[str]:
    """For each photo, region=object and region=background with app.box=auto: the grid aetl writes
    (the content with the found box drawn, the style, the result)."""
    rows = ["| photo | found box (pixels) | object | background |", "|---|---|---|---|"]
    for photo in PHOTOS:
        name = photo.partition(":")[2]
        cells = []
        for region in ("object", "background"):
            out = work / f"{name}_{region}"
            s = stylize(run, out, f"content={photo}", "app.box=auto", f"app.region={region}")
            shown = docs / f"region_{name}_{region}.png"
            grid = Image.open(out / "images" / "style_grid_wct.png").convert("RGB")
            grid.quantize(256, method=Image.Quantize.MEDIANCUT).save(shown, optimize=True)  # small PNGs for docs/
            cells.append(f"![{name} {region}](style/{shown.name})")
            box = s["style_boxes"][0]
        rows.append(f"| {name} | {box} | {cells[0]} | {cells[1]} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--work", type=Path, default=Path("outputs/style_regions"))
    parser.add_argument("--docs", type=Path, default=Path("docs/style"))
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-gallery", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.docs.mkdir(parents=True, exist_ok=True)
    if not args.skip_full:
        print("\n".join(full_size(args.run, args.work, args.docs)), "\n", flush=True)
    if not args.skip_gallery:
        print("\n".join(gallery(args.run, args.work, args.docs)))


if __name__ == "__main__":
    main()
