"""Style transfer, measured: the checkerboard before and after the resize decoder, refinement
against Gatys et al.'s optimisation, and a gallery. Writes docs/style.md and docs/style/*.png.

    python scripts/style_bench.py              # trains both AEs first (the source cache helps)
    python scripts/style_bench.py --before RUN --after RUN --quick

`after` is `aetl train +experiment=style` (resize-then-convolve decoder); `before` is the
same with `model.upsample=transpose` (the stride-2 transposed convolutions it replaced).
The checkerboard is aetl.apps.checkerboard's measure (the share of the grey output's
spectral power at periods 2 and 4, over the content image's) at 256x256; the losses are
aetl.apps.refine's (relative: 0 is the content's code / the style's Gram matrices).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from aetl.api import trained_model
from aetl.apps.checkerboard import checkerboard, speckle
from aetl.apps.refine import StyleLoss, gatys, refine
from aetl.apps.style import load_image, stylize
from aetl.infra.grid import labelled_grid, png_info

SIZE = 256
RECIPES = {"transpose (before)": " model.upsample=transpose", "resize (after)": ""}  # the docs name the recipe, not a path
ALPHAS = (0.0, 0.25, 0.5, 1.0)
CONTENTS = ("skimage:astronaut", "skimage:chelsea", "skimage:coffee")
STYLES = ("sklearn:flower.jpg", "skimage:immunohistochemistry")
SETTINGS = {"AdaIN at the code (the old default)": ("adain", 1), "WCT cascade, every depth (the new default)": ("wct", None)}


def trained(work: Path, name: str, overrides: list[str]) -> Path:
    """A finished `aetl train +experiment=style` run dir under work/name, trained if missing."""
    out = work / name
    if not (out / "summary.json").is_file():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aetl", "train", "+experiment=style", "app=none", "trainer.progress=false",
                        f"hydra.run.dir={out}", *overrides], check=True)
        print(f"trained {name} in {time.perf_counter() - started:.0f} s")
    return out


def short(name: str) -> str:
    """skimage:astronaut -> astronaut, sklearn:flower.jpg -> flower"""
    return Path(name.partition(":")[2]).stem


def picture(name: str) -> torch.Tensor:
    """A bundled image scaled so its shorter side is SIZE, the middle SIZE x SIZE square."""
    x = load_image(name, None, 3, torch.device("cpu"))
    h, w = x.shape[2:]
    scale = SIZE / min(h, w)
    x = F.interpolate(x, size=(max(SIZE, round(h * scale)), max(SIZE, round(w * scale))), mode="bilinear",
                      antialias=True).clamp(0, 1)
    top, left = (x.shape[2] - SIZE) // 2, (x.shape[3] - SIZE) // 2
    return x[:, :, top:top + SIZE, left:left + SIZE]


def checkerboard_table(models: dict, steps: int) -> list[str]:
    """Markdown rows: the checkerboard at every alpha, per decoder and stylisation, and after refinement."""
    content, style = picture(CONTENTS[0]), picture(STYLES[0])
    rows = ["| decoder | stylisation | " + " | ".join(f"alpha {a:g}" for a in ALPHAS) + " |",
            "|---|---|" + "---|" * len(ALPHAS)]
    for decoder, model in models.items():
        loss = StyleLoss(model, content, style)
        for label, (method, levels) in SETTINGS.items():
            outs = [stylize(model, content, style, method, a, levels) for a in ALPHAS]
            rows.append(f"| {decoder} | {label} | " + " | ".join(f"{checkerboard(o, content):.2f}" for o in outs) + " |")
        refined = [refine(model, stylize(model, content, style, "wct", a), loss, steps, 10.0 * a).image for a in ALPHAS]
        rows.append(f"| {decoder} | WCT cascade + {steps} L-BFGS steps | "
                    + " | ".join(f"{checkerboard(o, content):.2f}" for o in refined) + " |")
    return rows


def grid_everywhere(model, steps: int) -> list[str]:
    """Markdown rows: the checkerboard, then the speckle, of every content with every style,
    feed-forward and refined (style weight 10 x alpha, as the app sets it), at every alpha above 0."""
    alphas = ALPHAS[1:]
    head = ["| content x style | " + " | ".join(f"alpha {a:g}: FF / refined" for a in alphas) + " |",
            "|---|" + "---|" * len(alphas)]
    grid_rows, speckle_rows = list(head), list(head)
    for c in CONTENTS:
        for s in STYLES:
            content, style = picture(c), picture(s)
            loss = StyleLoss(model, content, style)
            grid_cells, speckle_cells = [], []
            for a in alphas:
                fed = stylize(model, content, style, "wct", a)
                polished = refine(model, fed, loss, steps, 10.0 * a).image
                grid_cells.append(f"{checkerboard(fed, content):.2f} / {checkerboard(polished, content):.2f}")
                speckle_cells.append(f"{speckle(fed, content):.2f} / {speckle(polished, content):.2f}")
            grid_rows.append(f"| {short(c)} x {short(s)} | " + " | ".join(grid_cells) + " |")
            speckle_rows.append(f"| {short(c)} x {short(s)} | " + " | ".join(speckle_cells) + " |")
    return grid_rows + ["", "Speckle (aetl.apps.checkerboard.speckle: the share of power at every period under 4 "
                            "pixels, in every direction, over the content's), the same images:", ""] + speckle_rows


def compare(model, content_name: str, style_name: str, steps: int, max_steps: int, weight: float) -> dict:
    """Feed-forward, feed-forward + refinement and Gatys for one pair: losses, seconds, images."""
    content, style = picture(content_name), picture(style_name)
    loss = StyleLoss(model, content, style)
    started = time.perf_counter()
    fed = stylize(model, content, style, "wct", 1.0)
    fed_s = time.perf_counter() - started
    polished = refine(model, fed, loss, steps, weight)
    anchor = gatys(content, loss, weight, max_steps=max_steps)
    return {"content": content, "style": style, "start": loss.values(content), "fed": loss.values(fed),
            "fed_s": fed_s, "refined": loss.values(polished.image), "refined_s": fed_s + polished.seconds,
            "gatys": loss.values(anchor.image), "gatys_s": anchor.seconds, "gatys_steps": anchor.steps,
            "images": (fed, polished.image, anchor.image)}


def compare_rows(results: dict, steps: int, weight: float) -> list[str]:
    rows = [f"| content | style | content loss (FF / FF+{steps} / Gatys) | style loss (content image / FF / FF+{steps} / "
            "Gatys) | seconds (FF / FF+refine / Gatys, its L-BFGS evaluations) | share of Gatys' style-loss drop "
            "reached (FF / FF+refine) | time vs Gatys |", "|---|---|---|---|---|---|---|"]
    for (c, s), r in results.items():
        start = r["start"]["style_loss"]
        drop = start - r["gatys"]["style_loss"]
        share = [(start - r[k]["style_loss"]) / drop for k in ("fed", "refined")]
        rows.append(
            f"| {short(c)} | {short(s)} | {r['fed']['content_loss']:.3f} / "
            f"{r['refined']['content_loss']:.3f} / {r['gatys']['content_loss']:.3f} | {start:.3f} / "
            f"{r['fed']['style_loss']:.4f} / {r['refined']['style_loss']:.4f} / {r['gatys']['style_loss']:.4f} | "
            f"{r['fed_s']:.2f} / {r['refined_s']:.1f} / {r['gatys_s']:.0f} ({r['gatys_steps']}) | "
            f"{share[0]:.0%} / {share[1]:.0%} | {r['refined_s'] / r['gatys_s']:.1%} |")
    return rows


def save(path: Path, rows: list[list[torch.Tensor]], row_labels: list[str], col_labels: list[str], tile: int) -> None:
    """A labelled grid with tiles scaled to `tile` pixels, quantised to 256 colours (small PNGs for docs/)."""
    small = [[F.interpolate(t[None], size=(tile, tile), mode="area")[0] if t.shape[-1] != tile else t for t in row]
             for row in rows]
    grid = labelled_grid(small, row_labels, col_labels)
    grid.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True, pnginfo=png_info(row_labels, col_labels))


def gallery(model, steps: int, weight: float) -> tuple[list, list[str]]:
    rows, labels = [], []
    for c in CONTENTS:
        for s in STYLES:
            content, style = picture(c), picture(s)
            outs = [stylize(model, content, style, "wct", a) for a in ALPHAS[1:]]
            polished = refine(model, outs[-1], StyleLoss(model, content, style), steps, weight).image
            rows.append([content[0], style[0], *(o[0] for o in outs), polished[0]])
            labels.append(f"{short(c)} x {short(s)}")
    return rows, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a finished run with model.upsample=transpose (default: train one)")
    parser.add_argument("--after", help="a finished aetl train +experiment=style run (default: train one)")
    parser.add_argument("--work", default="outputs/style_bench", help="where the two runs are trained")
    parser.add_argument("--out", default="docs", help="writes OUT/style.md and OUT/style/*.png")
    parser.add_argument("--steps", type=int, default=30, help="refinement steps (L-BFGS evaluations)")
    parser.add_argument("--gatys-steps", type=int, default=1000, help="the most L-BFGS evaluations for Gatys")
    parser.add_argument("--weight", type=float, default=10.0, help="the style weight (app.style_weight at alpha 1)")
    args = parser.parse_args()
    torch.manual_seed(0)
    work, out = Path(args.work), Path(args.out)
    runs = {"transpose (before)": Path(args.before) if args.before else trained(work, "before", ["model.upsample=transpose"]),
            "resize (after)": Path(args.after) if args.after else trained(work, "after", [])}
    models = {k: trained_model(v, torch.device("cpu"))[0] for k, v in runs.items()}
    load_start, started = os.getloadavg()[0], time.perf_counter()
    cb = checkerboard_table(models, args.steps)
    everywhere = grid_everywhere(models["resize (after)"], args.steps)
    after = models["resize (after)"]
    pairs = [(CONTENTS[0], STYLES[0]), (CONTENTS[1], STYLES[1])]
    results = {p: compare(after, *p, args.steps, args.gatys_steps, args.weight) for p in pairs}
    rows, labels = gallery(after, args.steps, args.weight)
    (out / "style").mkdir(parents=True, exist_ok=True)
    content, style = picture(CONTENTS[0]), picture(STYLES[0])
    before_after = [content[0], stylize(models["transpose (before)"], content, style, "adain", 1.0, 1)[0],
                    stylize(after, content, style, "adain", 1.0, 1)[0], rows[0][4], rows[0][5]]
    face = [t[:, 16:144, 64:192] for t in before_after]  # 128x128 at full resolution: the grid shows
    save(out / "style" / "before_after.png", [face], [],
         ["content", "transpose, AdaIN", "resize, AdaIN", "resize, WCT cascade", f"+ {args.steps} L-BFGS"], 128)
    save(out / "style" / "gallery.png", rows, labels,
         ["content", "style", *(f"alpha {a:g}" for a in ALPHAS[1:]), f"alpha 1 + {args.steps} L-BFGS"], 104)
    save(out / "style" / "gatys.png", [[r["content"][0], r["style"][0], *(i[0] for i in r["images"])] for r in results.values()],
         [f"{short(c)} x {short(s)}" for c, s in results], ["content", "style", "feed-forward", f"+ {args.steps} L-BFGS",
                                                             "Gatys"], 104)
    write_report(out / "style.md", runs, cb + ["", *everywhere], compare_rows(results, args.steps, args.weight), args,
                 (load_start, os.getloadavg()[0], time.perf_counter() - started))
    print((out / "style.md").read_text())


def write_report(path: Path, runs: dict, cb: list[str], table: list[str], args, load: tuple) -> None:
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch "
               f"{torch.__version__}; load average {load[0]:.1f} at the start and {load[1]:.1f} at the end "
               f"(a shared machine: seconds are noisy, ratios measured in the same run less so); {load[2]:.0f} s in all")
    text = TEMPLATE.format(runs="\n".join(f"- {k}: a run of `aetl train +experiment=style{RECIPES[k]}`" for k in runs), machine=machine,
                           cb="\n".join(cb), table="\n".join(table), steps=args.steps, weight=args.weight,
                           gatys_steps=args.gatys_steps)
    path.write_text(text)


TEMPLATE = """# Style transfer, measured

Written by `python scripts/style_bench.py` (do not edit by hand). Machine: {machine}.

Models (`aetl train +experiment=style`; `before` adds `model.upsample=transpose`):
{runs}

## The seed's six steps in aetl

| step of the seed's recipe | what aetl does | where |
|---|---|---|
| 1. AEs for the source and target images give codes zs and zt | one AE does both: the run's fully convolutional AE, pretrained on photo crops (the source, Mf) and fine-tuned on texture crops (the target); it encodes the style image (zs: its features at every encoder depth) and the content image (zt) | `aetl train +experiment=style`; `FullyConvAE.features` |
| 2. a generator G decodes them, so that ys carries the source's style | the content's features get the style's statistics (WCT: channel covariance, or AdaIN: mean and std), blended with its own by alpha; the AE's **decoder** plays G; Li et al.'s cascade repeats this at every depth, deepest first; ys is made at the AE's working size (`app.size` on the long side) | `aetl/apps/style.py` (`stylize`) |
| 3. ys, the stylised image | the decoded result at the working size: the whole content, or with `app.box` each box's crop of the full-resolution content, shrunk to the working size | `StyleTransfer.restyled` |
| 4. ys is interpolated to the target's size | ys is resized (bilinear) to the box's own size in the full-resolution content (the content's size for the whole image or `region=background`) | `aetl/apps/region.py` (`paste`, `blend_outside`) |
| 5. a bounding-box localisation gives a ys that matches the target image | `app.box`: boxes in pixels or shares, or `auto`: the main object found with no labels from the AE's own features (each position's distance from the border's features, thresholded at Otsu's level, the most salient blob's box); ys is blended in with a feathered edge (`app.feather`), every pixel the ramp does not reach is the content's own; `region=background` restyles all but the box | `region.locate`, `region.paste` |
| 6. L-BFGS optimises | `app.refine_steps` > 0: L-BFGS on ys's **code** (the output is its decoding) against the content loss (code distance to the content's) + alpha x `app.style_weight` x the Gram style loss at every encoder depth + a charge for grid power above the content's; it runs at the working size, before step 4 | `aetl/apps/refine.py` |

Regions, the auto box's benchmark, full-resolution results (4000x3000: time, memory,
checkerboard, speckle, seam) and a regional gallery: [style_regions.md](style_regions.md).

## Checkerboard

The share of the grey 256x256 output's spectral power at periods 2 and 4, divided by the
same share in the content image (astronaut, style: flower); 1 is as clean as the photo.
The goal was at most 3 at every alpha. The second table: the resize decoder with every
bundled content and style (refinement pays for grid power above the content's, see
aetl/apps/refine.py; without that term 10 of these 18 refined images were above 3x, up to 9.9x).

{cb}

![before and after](style/before_after.png)

## Refinement against Gatys et al.

Content loss: the output's code against the content image's, relative (0 is the content).
Style loss: the mean relative distance of the Gram matrices at every encoder depth to the
style image's (the content image's own value is the first number). FF: the WCT cascade at
alpha 1; refinement: {steps} L-BFGS evaluations on the code with style weight {weight};
Gatys: L-BFGS on the pixels from the content image with the same losses and weight until
the objective stops changing (at most {gatys_steps} evaluations).

{table}

![feed-forward, refined and Gatys](style/gatys.png)

## Gallery

Every content with every style: the WCT cascade at three alphas, and alpha 1 refined.

![gallery](style/gallery.png)
"""


if __name__ == "__main__":
    main()
