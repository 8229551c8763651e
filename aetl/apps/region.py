"""Regional style transfer at the content's own resolution: the seed's steps 4 and 5.

`app.box` names where the style goes: `[x0, y0, x1, y1]` in pixels (x1, y1 excluded) or, when
every value lies in [0, 1] ([0, 0, 1, 1]: the whole image), as shares of the content's width
and height; a list of such boxes; or `auto`, the box `locate` finds. Each box is cut out of the full-resolution content, shrunk
to the AE's working size (`app.size` on its long side), stylised there (ys), interpolated back
to the box's own size and blended into the content with a feathered edge: a ramp
`app.feather` x the box's shorter side wide, inside the box (`region=object`) or outside it
(`region=background`, where ys is the whole image's). Pixels the ramp does not reach are
the content's own, bit for bit.

`locate` finds the main object with no labels, from the AE's own features: the encoder's
feature maps at every depth, each position's distance (in units of each channel's spread)
from the features along the image's border (what a photo's background is most likely to
be), averaged over the depths, smoothed (3x3), its top 1% clipped, thresholded at Otsu's
level, and the bounding box of the connected blob with the most salience above that level.
It assumes the object does not fill the border. scripts/region_bench.py measures it.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from aetl.errors import AetlError
from aetl.models import AutoEncoder

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1 and y1 excluded
BORDER = 0.1  # locate: the share of each side whose features stand for the background
MIN_SIDE = 8  # locate: the working image's shortest side it needs


def parse_boxes(spec: object, width: int, height: int) -> list[Box]:
    """app.box's value (not auto) -> pixel boxes inside a width x height image."""
    items = list(spec) if isinstance(spec, Sequence) and not isinstance(spec, str) else None
    if not items:
        raise AetlError(f"app.box must be [x0, y0, x1, y1], a list of them or auto, got {spec!r}")
    boxes = items if all(isinstance(b, Sequence) and not isinstance(b, str) for b in items) else [items]
    return [_one_box(list(b), width, height) for b in boxes]


def _one_box(box: list, width: int, height: int) -> Box:
    if len(box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box) \
            or not all(math.isfinite(v) for v in box):
        raise AetlError(f"app.box must be [x0, y0, x1, y1] (pixels, or shares in [0, 1]), got {box}")
    given = box
    if all(0 <= v <= 1 for v in box):
        box = [box[0] * width, box[1] * height, box[2] * width, box[3] * height]
    x0, y0 = max(0, round(box[0])), max(0, round(box[1]))
    x1, y1 = min(width, round(box[2])), min(height, round(box[3]))
    if x1 <= x0 or y1 <= y0:
        raise AetlError(f"app.box {given} holds no pixel of the {width}x{height} content: give x0 < x1 and y0 < y1 "
                        "inside it (pixels, or shares in [0, 1])")
    return x0, y0, x1, y1


def padded(x: torch.Tensor, factor: int) -> torch.Tensor:
    """x reflected out at the bottom and right to a multiple of factor (a backbone's stride); a side
    too short to reflect (a 1-pixel strip) is repeated instead."""
    h, w = x.shape[2:]
    ph, pw = (-h) % factor, (-w) % factor
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


def shrunk(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """x with its long side scaled down to size (never up; None: as it is), each side at least 1 pixel."""
    h, w = x.shape[2:]
    if not size or max(h, w) <= size:
        return x
    ratio = size / max(h, w)
    return F.interpolate(x, size=(max(1, round(h * ratio)), max(1, round(w * ratio))), mode="bilinear",
                         antialias=True).clamp(0, 1)


def inward(box: Box, shape: tuple[int, int], band: int) -> torch.Tensor:
    """(y1 - y0, x1 - x0) weights of ys in the box: 1, falling to 0 over band pixels towards its
    edges (none at an edge on the image's border, shape (H, W))."""
    h, w = shape
    x0, y0, x1, y1 = box
    if not band:
        return torch.ones(y1 - y0, x1 - x0)
    xs, ys = torch.arange(x0, x1) + 0.5, torch.arange(y0, y1) + 0.5
    dx, dy = torch.full_like(xs, float("inf")), torch.full_like(ys, float("inf"))
    dx = torch.minimum(dx, xs - x0) if x0 > 0 else dx
    dx = torch.minimum(dx, x1 - xs) if x1 < w else dx
    dy = torch.minimum(dy, ys - y0) if y0 > 0 else dy
    dy = torch.minimum(dy, y1 - ys) if y1 < h else dy
    return (torch.minimum(dx[None, :], dy[:, None]) / band).clamp(0, 1)


def outward(box: Box, shape: tuple[int, int], band: int) -> torch.Tensor:
    """(H, W) weights of ys over the image: 0 in the box, rising to 1 over band pixels away from it."""
    h, w = shape
    x0, y0, x1, y1 = box
    xs, ys = torch.arange(w) + 0.5, torch.arange(h) + 0.5
    dx = (x0 - xs).clamp_min(0) + (xs - x1).clamp_min(0)
    dy = (y0 - ys).clamp_min(0) + (ys - y1).clamp_min(0)
    away = (dx[None, :].square() + dy[:, None].square()).sqrt()
    return (away / band).clamp(0, 1) if band else (away > 0).float()


def band_of(box: Box, feather: float) -> int:
    """The blend band, in pixels: feather x the box's shorter side."""
    return round(feather * min(box[2] - box[0], box[3] - box[1]))


def paste(content: torch.Tensor, ys: torch.Tensor, box: Box, band: int) -> torch.Tensor:
    """content with ys, interpolated to the box's size, blended into the box (the ramp inside its edges);
    every pixel outside the box is content's own."""
    x0, y0, x1, y1 = box
    out = content.clone()
    inner = content[:, :, y0:y1, x0:x1]
    up = F.interpolate(ys, size=inner.shape[2:], mode="bilinear", align_corners=False).clamp_(0, 1)
    out[:, :, y0:y1, x0:x1] = torch.lerp(inner, up, inward(box, content.shape[2:], band).to(content))
    return out


def blend_outside(content: torch.Tensor, ys: torch.Tensor, boxes: list[Box], band: int) -> torch.Tensor:
    """content with ys (the whole image's, interpolated to its size) everywhere but the boxes,
    ramped to nothing over band pixels towards them."""
    h, w = content.shape[2:]
    up = F.interpolate(ys, size=(h, w), mode="bilinear", align_corners=False).clamp_(0, 1)
    weight = torch.stack([outward(b, (h, w), band) for b in boxes]).amin(0).to(content)
    return torch.lerp(content, up, weight)


@torch.no_grad()
def saliency(model: AutoEncoder, image: torch.Tensor) -> torch.Tensor:
    """(H', W') map at the shallowest feature map's resolution: how unlike the border's features
    each position's are, averaged over the encoder's depths (each map scaled to its 99th percentile)."""
    h, w = image.shape[2:]
    x = padded(image, model.factor)
    maps = model.features(x)
    size = None
    total = 0
    for f in maps:
        f = f[0, :, : math.ceil(h * f.shape[2] / x.shape[2]), : math.ceil(w * f.shape[3] / x.shape[3])].double()
        size = size or f.shape[1:]
        border = _border(f)
        mean, std = border.mean(1, keepdim=True), border.std(1, keepdim=True).clamp_min(1e-3)
        score = ((f.flatten(1) - mean) / std).square().mean(0).sqrt().reshape(f.shape[1:])
        score = score / torch.quantile(score.flatten(), 0.99).clamp_min(1e-12)
        total = total + F.interpolate(score[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    return total / len(maps)


def _border(f: torch.Tensor) -> torch.Tensor:
    """(C, n) the features within BORDER of the map's edges."""
    c, h, w = f.shape
    by, bx = max(1, round(BORDER * h)), max(1, round(BORDER * w))
    keep = torch.zeros(h, w, dtype=torch.bool)
    keep[:by], keep[-by:], keep[:, :bx], keep[:, -bx:] = True, True, True, True
    return f[:, keep]


def otsu(values: torch.Tensor, bins: int = 64) -> float:
    """The threshold that best splits values into two classes (Otsu 1979)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return hi
    hist = torch.histc(values.float(), bins, lo, hi).double()
    centres = lo + (torch.arange(bins, dtype=torch.float64) + 0.5) * (hi - lo) / bins
    weight = hist.cumsum(0)
    mass = (hist * centres).cumsum(0)
    w0, w1 = weight, weight[-1] - weight
    between = (mass[-1] * w0 - mass * weight[-1]).square() / (w0 * w1).clamp_min(1e-12)
    return float(centres[int(between[:-1].argmax())] + 0.5 * (hi - lo) / bins)


def locate(model: AutoEncoder, image: torch.Tensor) -> tuple[float, float, float, float]:
    """The main object's box in image (1, C, H, W, at the working size), as shares (x0, y0, x1, y1)."""
    import numpy as np
    from scipy import ndimage

    h, w = image.shape[2:]
    if min(h, w) < MIN_SIDE:
        raise AetlError(f"app.box=auto needs a content at least {MIN_SIDE} pixels on each side at app.size, got "
                        f"{w}x{h}; give app.box=[x0,y0,x1,y1] instead")
    score = saliency(model, image)
    score = F.avg_pool2d(score[None, None], 3, 1, 1, count_include_pad=False)[0, 0]
    score = score.clamp(max=float(torch.quantile(score.flatten(), 0.99)))  # a few hot spots must not set the level
    level = otsu(score)
    labels, n = ndimage.label((score > level).numpy())
    if n == 0:
        return 0.0, 0.0, 1.0, 1.0
    mass = ndimage.sum((score - level).numpy(), labels, range(1, n + 1))  # salience above the level, per blob
    rows, cols = np.nonzero(labels == 1 + int(np.argmax(mass)))
    mh, mw = score.shape
    return cols.min() / mw, rows.min() / mh, (cols.max() + 1) / mw, (rows.max() + 1) / mh


def seam(out: torch.Tensor, content: torch.Tensor, boxes: list[Box], band: int) -> float:
    """How much a box's edge shows: the mean gradient magnitude across the edge (the difference
    between neighbours across it, averaged along it) on the line where out's is highest, within
    max(band, 2) pixels either side of the edge, over the same for the content (its highest line
    in that strip); the mean over the boxes' edges inside the image. 1: no more change at the edge
    than the photo has there; a hard paste's jump shows on one line, a feathered one is spread
    over the band. NaN when no edge lies inside the image."""
    h, w = content.shape[2:]
    reach = max(band, 2)
    ratios = []
    for x0, y0, x1, y1 in boxes:
        for edge, across in ((x0, True), (x1, True), (y0, False), (y1, False)):
            side = w if across else h
            if not 0 < edge < side:
                continue
            lo, hi = max(0, edge - reach - 1), min(side, edge + reach + 1)
            dim, mean_over = (3, (0, 1, 2)) if across else (2, (0, 1, 3))
            cut = (slice(None), slice(None), slice(y0, y1), slice(lo, hi)) if across else \
                (slice(None), slice(None), slice(lo, hi), slice(x0, x1))
            line_out = out[cut].diff(dim=dim).abs().mean(mean_over)
            line_content = content[cut].diff(dim=dim).abs().mean(mean_over)
            ratios.append(float(line_out.max() / line_content.max().clamp_min(1e-6)))
    return sum(ratios) / len(ratios) if ratios else float("nan")


def drawn(image: torch.Tensor, boxes: list[Box], scale: float) -> torch.Tensor:
    """(C, H, W) image with the boxes (in pixels of an image `scale` times larger) outlined in red
    (white on a grey image), 2 pixels wide."""
    out = image.clone()
    colour = torch.tensor([1.0, 0.1, 0.1] if len(out) == 3 else [1.0] * len(out))[:, None, None]
    h, w = out.shape[1:]
    for box in boxes:
        x0, y0, x1, y1 = (round(v / scale) for v in box)
        x0, y0, x1, y1 = min(x0, w - 1), min(y0, h - 1), max(x1, x0 + 1), max(y1, y0 + 1)
        for ys, xs in ((slice(y0, y0 + 2), slice(x0, x1)), (slice(max(y0, y1 - 2), y1), slice(x0, x1)),
                       (slice(y0, y1), slice(x0, x0 + 2)), (slice(y0, y1), slice(max(x0, x1 - 2), x1))):
            out[:, ys, xs] = colour
    return out
