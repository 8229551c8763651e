"""Style transfer in the feature space of a transferred fully convolutional AE.

Feed-forward: encode the content and the style image, move the content's feature
statistics to the style's (AdaIN: per-channel mean and std, Huang & Belongie 2017;
WCT: the whole channel covariance, Li et al. 2017), blend with the content's features
by `alpha`, decode. Over several `levels` this is Li et al.'s cascade ("Universal style
transfer via feature transforms", 2017): first at the code, then, on the decoded
result, at ever shallower depths of the encoder (each pass transforms one depth,
encodes on to the code and decodes), coarse statistics first, fine ones last. Then,
optionally, `refine_steps` of L-BFGS on the result's code against the content loss
plus alpha x `style_weight` x the Gram style loss (aetl.apps.refine). With `box`, only
boxes of the content (or all but them) are restyled, at the content's own size
(aetl.apps.region).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from aetl.apps.checkerboard import checkerboard, speckle
from aetl.apps.refine import StyleLoss, refine
from aetl.apps.region import band_of, blend_outside, drawn, locate, padded, parse_boxes, paste, seam, shrunk
from aetl.errors import AetlError
from aetl.infra.schema import Count, Natural, NonNegative, Share
from aetl.models import AutoEncoder

log = logging.getLogger(__name__)

EPS = 1e-5


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """content's feature maps with each channel's mean and std set to style's."""
    cm, cs = content.mean((2, 3), keepdim=True), content.std((2, 3), keepdim=True) + EPS
    sm, ss = style.mean((2, 3), keepdim=True), style.std((2, 3), keepdim=True)
    return (content - cm) / cs * ss + sm


def wct(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """content's feature maps whitened, then coloured with style's mean and covariance."""
    out = []
    for c, s in zip(content.double(), style.double()):
        fc, fs = c.flatten(1), s.flatten(1)
        mc, ms = fc.mean(1, keepdim=True), fs.mean(1, keepdim=True)
        fc, fs = fc - mc, fs - ms
        eye = EPS * torch.eye(len(fc), dtype=fc.dtype, device=fc.device)
        vc, ec = torch.linalg.eigh(fc @ fc.T / max(fc.shape[1] - 1, 1) + eye)
        vs, es = torch.linalg.eigh(fs @ fs.T / max(fs.shape[1] - 1, 1) + eye)
        white = ec @ torch.diag(vc.clamp_min(EPS).rsqrt()) @ ec.T @ fc
        coloured = es @ torch.diag(vs.clamp_min(0).sqrt()) @ es.T @ white + ms
        out.append(coloured.reshape(c.shape))
    return torch.stack(out).to(content.dtype)


TRANSFORMS = {"adain": adain, "wct": wct}


def depths(model: AutoEncoder) -> int:
    """How many depths the cascade can visit: the code and every ReLU of the encoder."""
    return 1 + sum(isinstance(layer, nn.ReLU) for layer in model.encoder)


def encode_moved(model: AutoEncoder, x: torch.Tensor, depth: int, move) -> torch.Tensor:
    """x's code, its features at `depth` (0: the code, 1: the last ReLU, ...) replaced by move(features)."""
    target = depths(model) - 1 - depth  # counted from the shallowest ReLU
    seen = 0
    for layer in model.encoder:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            x = move(x) if seen == target else x
            seen += 1
    return move(x) if depth == 0 else x


def encoded_to(model: AutoEncoder, x: torch.Tensor, depth: int) -> torch.Tensor:
    """x's encoder features at depth (0: the code)."""
    found = []

    def keep(f: torch.Tensor) -> torch.Tensor:
        found.append(f)
        return f

    encode_moved(model, x, depth, keep)
    return found[0]


@torch.no_grad()
def stylize(model: AutoEncoder, content: torch.Tensor, style: torch.Tensor, method: str = "wct",
            alpha: float = 1.0, levels: int | None = None) -> torch.Tensor:
    """(1, C, H, W) content and style images -> the stylised image, (1, C, H, W) like content.
    levels: how many depths the cascade visits, deepest first (None: all of them)."""
    levels = depths(model) if levels is None else levels
    check(model, method, alpha, levels)
    h, w = content.shape[2:]
    factor = model.factor
    x, style = padded(content, factor), padded(style, factor)
    for depth in range(levels):
        target = encoded_to(model, style, depth)

        def move(f: torch.Tensor) -> torch.Tensor:
            return alpha * TRANSFORMS[method](f, target) + (1 - alpha) * f

        x = model.decode(encode_moved(model, x, depth, move))
    return x[:, :, :h, :w]


def check(model: AutoEncoder, method: str, alpha: float, levels: int) -> None:
    if model.flat_code:
        raise AetlError(f"style transfer needs a fully convolutional backbone (model=fconv), not {type(model).__name__}")
    if method not in TRANSFORMS:
        raise AetlError(f"unknown app.method {method!r}; choose {' or '.join(TRANSFORMS)}")
    if not 0 <= alpha <= 1:
        raise AetlError(f"app.alphas must lie in [0, 1] (0: the content's reconstruction, 1: full style), got {alpha}")
    if not 1 <= levels <= depths(model):
        raise AetlError(f"app.levels must be 1 to {depths(model)} for this backbone (the code and each of its "
                        f"encoder's depths), got {levels}")


def load_image(name: str, size: int | None, channels: int, device: torch.device) -> torch.Tensor:
    """A bundled image or file as (1, channels, H, W), its longest side scaled to size."""
    import numpy as np
    from PIL import Image

    from aetl.data.domains.crops import read_image
    from aetl.data.framing import to_channels

    array = read_image(name)
    if size:
        img = Image.fromarray((array * 255).round().astype(np.uint8))
        ratio = size / max(img.size)
        img = img.resize((max(1, round(img.width * ratio)), max(1, round(img.height * ratio))), Image.Resampling.LANCZOS)
        array = np.asarray(img, dtype=np.float32) / 255.0
    x = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]
    return to_channels(x, channels).to(device)


Boxes = Union[Sequence[NonNegative], Sequence[Sequence[NonNegative]], Literal["auto"], None]


@dataclass
class StyleTransfer:
    """The style_transfer app (its fields declare app.*): stylise `content` with `style` at each alpha;
    write the PNGs, the grid and the losses. With `box`, only the boxes (or, region=background,
    all but them) of the content at its own resolution (aetl.apps.region)."""

    content: str = "skimage:astronaut"
    style: str = "sklearn:flower.jpg"
    method: Literal["adain", "wct"] = "wct"
    alphas: Sequence[Share] = (0.25, 0.5, 1.0)
    levels: Natural | None = None
    size: Natural | None = 256
    refine_steps: Count = 0
    style_weight: NonNegative = 10.0
    box: Boxes = None
    region: Literal["object", "background"] = "object"
    feather: Share = 0.1
    max_side: Natural = 4096
    name: str = "style_transfer"

    def __call__(self, model: AutoEncoder, run, pair: object = None) -> dict:
        model.eval()
        if not self.alphas:
            raise AetlError("app.alphas is empty; give at least one, e.g. app.alphas=[0.5,1.0]")
        levels = depths(model) if self.levels is None else self.levels
        for alpha in self.alphas:  # every setting checked before anything is written
            check(model, self.method, alpha, levels)
        if self.box is not None:
            return self.regional(model, run, levels)
        device = next(model.parameters()).device
        x_content = load_image(self.content, self.size, model.in_shape[0], device)
        x_style = load_image(self.style, self.size, model.in_shape[0], device)
        loss = StyleLoss(model, padded(x_content, model.factor), padded(x_style, model.factor))
        results, fed, refined = [], [], []
        for alpha in self.alphas:
            if self.refine_steps > 0:  # (the one slow part: say what is going on)
                log.info("stylizing at alpha %g with %d L-BFGS refinement steps", alpha, self.refine_steps)
            record, first, out = self.one(model, (x_content, x_style), loss, alpha, levels)
            fed.append(first[0])
            if self.refine_steps > 0:
                refined.append(out[0])
            run.save_image(f"stylized_{self.method}_alpha{alpha:g}.png", out[0])
            run.log_metrics("stylize", **record)
            results.append(record)
        self.save_grid(run, [x_content[0], x_style], fed, refined)
        return {**self.summary(levels), "style_seconds_per_image": sum(r["seconds"] for r in results) / len(results),
                "style_results": results}

    def summary(self, levels: int) -> dict:
        return {"style_method": self.method, "style_levels": levels, "style_content": self.content,
                "style_image": self.style}

    def one(self, model: AutoEncoder, images: tuple[torch.Tensor, torch.Tensor], loss: StyleLoss, alpha: float,
            levels: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """One alpha: its record, the feed-forward result and the final (refined) one."""
        x_content, x_style = images
        h, w = x_content.shape[2:]
        factor = model.factor

        def measured(x: torch.Tensor, when: str) -> dict[str, float | None]:
            values = {**loss.values(padded(x, factor)), "checkerboard": checkerboard(x, x_content),
                      "speckle": speckle(x, x_content)}
            return {f"{k}_{when}": None if math.isnan(v) else v for k, v in values.items()}

        started = time.perf_counter()
        first = out = stylize(model, x_content, x_style, self.method, alpha, levels)
        record = {"alpha": alpha, "seconds": time.perf_counter() - started, **measured(out, "before")}
        if self.refine_steps > 0:
            polished = refine(model, padded(out, factor), loss, self.refine_steps, alpha * self.style_weight)
            out = polished.image[:, :, :h, :w]
            record["refine_seconds"] = polished.seconds
        record.update(measured(out, "after"))
        return record, first, out

    def regional(self, model: AutoEncoder, run, levels: int) -> dict:
        """The boxes (or all but them) restyled at the AE's working size, interpolated back into the
        content at its own resolution (up to max_side on the long side) with a feathered edge."""
        device = next(model.parameters()).device
        full = shrunk(load_image(self.content, None, model.in_shape[0], device), self.max_side)
        x_style = load_image(self.style, self.size, model.in_shape[0], device)
        working = shrunk(full, self.size)
        h, w = full.shape[2:]
        if self.box == "auto":
            boxes = parse_boxes(list(locate(model, working)), w, h)
        else:
            boxes = parse_boxes(self.box, w, h)
        band = min(band_of(b, self.feather) for b in boxes)
        results, shown, made_mb = [], [], 0.0
        for alpha in self.alphas:
            started = time.perf_counter()
            ys = self.restyled(model, (full, x_style), boxes, alpha, levels)
            out = self.blended(full, ys, boxes, band)
            seconds = time.perf_counter() - started
            made_mb = made_mb or peak_memory_mb()  # before any measure (theirs: full-size FFTs in float64)
            hard = self.blended(full, ys, boxes, 0)
            record = {"alpha": alpha, "seconds": seconds, "checkerboard": checkerboard(out, full),
                      "speckle": speckle(out, full), "seam": seam(out, full, boxes, band),
                      "seam_hard": seam(hard, full, boxes, band)}
            record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
            run.save_image(f"stylized_{self.method}_alpha{alpha:g}.png", out[0])
            run.log_metrics("stylize", **record)
            results.append(record)
            shown.append(shrunk(out, self.size)[0])
        scale = max(h, w) / max(working.shape[2:])
        self.save_grid(run, [drawn(working[0], boxes, scale), x_style], shown, [])
        return {**self.summary(levels), "style_boxes": [list(b) for b in boxes], "style_box_auto": self.box == "auto",
                "style_region": self.region, "style_feather_px": band, "style_output_size": [w, h],
                "style_seconds_per_image": sum(r["seconds"] for r in results) / len(results),
                "style_peak_memory_mb": made_mb, "style_peak_memory_measured_mb": peak_memory_mb(),
                "style_results": results}

    def restyled(self, model: AutoEncoder, images: tuple[torch.Tensor, torch.Tensor], boxes: list, alpha: float,
                 levels: int) -> list[torch.Tensor]:
        """ys at the working size: each box's (region=object) or the whole content's (background)."""
        full, x_style = images
        if self.region == "background":
            return [self.styled(model, shrunk(full, self.size), x_style, alpha, levels)]
        return [self.styled(model, shrunk(full[:, :, y0:y1, x0:x1], self.size), x_style, alpha, levels)
                for x0, y0, x1, y1 in boxes]

    def blended(self, full: torch.Tensor, ys: list[torch.Tensor], boxes: list, band: int) -> torch.Tensor:
        """The content with ys interpolated into the boxes (region=object) or around them (background)."""
        if self.region == "background":
            return blend_outside(full, ys[0], boxes, band)
        out = full
        for one, box in zip(ys, boxes):
            out = paste(out, one, box, band)
        return out

    def styled(self, model: AutoEncoder, content: torch.Tensor, x_style: torch.Tensor, alpha: float,
               levels: int) -> torch.Tensor:
        """ys: content stylised at the working size (and refined)."""
        out = stylize(model, content, x_style, self.method, alpha, levels)
        if self.refine_steps > 0:
            loss = StyleLoss(model, padded(content, model.factor), padded(x_style, model.factor))
            out = refine(model, padded(out, model.factor), loss, self.refine_steps, alpha * self.style_weight).image
        return out[:, :, :content.shape[2], :content.shape[3]]

    def save_grid(self, run, firsts: list[torch.Tensor], fed: list, refined: list) -> None:
        """The content (boxes drawn) and the style, then each alpha's result; refined ones below."""
        h, w = firsts[0].shape[1:]
        shown_style = F.interpolate(firsts[1], size=(h, w), mode="bilinear", antialias=True)[0]
        rows = [[firsts[0], shown_style, *fed]] + ([[firsts[0], shown_style, *refined]] if refined else [])
        run.save_grid(f"style_grid_{self.method}.png", rows,
                      ["feed-forward", f"+ {self.refine_steps} L-BFGS steps"] if refined else [],
                      ["content", "style", *(f"alpha {a:g}" for a in self.alphas)])


def peak_memory_mb() -> float:
    """This process's peak resident memory so far, in MB (all of it: Python, torch, the images)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run_app(model: AutoEncoder, run, pair: object = None, **settings: object) -> dict:
    """StyleTransfer(**settings) on model (what configs of runs made before StyleTransfer name)."""
    return StyleTransfer(**settings)(model, run, pair)
