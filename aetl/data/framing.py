"""Map a domain's images into the pair's (channels, size, size) frame.

A `Fit` says how: a geometry and a tone.
- `resize` stretches an image to fill the frame. `frame` shrinks it into a box
  `margin` pixels inside the frame, as MNIST frames its digits (a 20x20 box in
  28x28). `crop` first cuts each image down to the square around its content (the
  pixels that differ from its border), then frames that: it centres content that
  sits off-centre or in a wide empty canvas. The added border takes each image's own
  background level (the median of its border pixels), so framing never draws a
  dark box around a light image.
- The tone is an affine map of the pixel values, `clamp(scale * x + shift)`:
  `keep` (1, 0), `invert` (-1, 1), or `match`: the domain's background and
  foreground levels moved onto the source's (see `Levels`).
Which fit suits a target is chosen label-free in `aetl.data.fit`.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from aetl.data.domains import quantize, unit
from aetl.errors import AetlError

GEOMETRIES = ("resize", "frame", "crop")
TONES = ("keep", "invert", "match")
CONTENT_SHARE = 0.2  # a pixel is content when it is this share of the image's largest deviation from its border
MAP_CHUNK = 1024  # images mapped at a time by fit_array: bounded memory for any domain


@dataclass(frozen=True)
class Fit:
    geometry: str = "resize"
    margin: int = 0  # frame and crop: pixels between the frame's edge and the content
    tone: str = "keep"
    scale: float = 1.0  # the tone as x -> clamp(scale * x + shift, 0, 1)
    shift: float = 0.0

    @property
    def inverted(self) -> bool:
        return self.scale < 0

    def label(self) -> str:
        """A short name, as logged with each candidate's score: 'frame m4 invert'."""
        where = f"{self.geometry} m{self.margin}" if self.geometry != "resize" else "resize"
        return where if self.tone == "keep" else f"{where} {self.tone}"

    def record(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Levels:
    """A domain's background level (the median of its images' border pixels) and its
    foreground level (the background plus the 99th percentile of the pixels' signed
    deviation from it: below the background for dark ink on light paper)."""

    background: float
    foreground: float

    @classmethod
    def of(cls, x: torch.Tensor) -> "Levels":
        bg = border(x).flatten().median()
        dev = (x - bg).flatten()
        if dev.numel() > 4_000_000:  # quantile's limit; a strided sample keeps the estimate
            dev = dev[:: dev.numel() // 4_000_000 + 1]
        reach = dev.abs().quantile(0.99)
        sign = 1.0 if dev[dev.abs() >= reach].mean() >= 0 else -1.0
        return cls(bg.item(), (bg + sign * reach).item())


def tone(name: str, own: Levels | None = None, reference: Levels | None = None) -> tuple[float, float]:
    """(scale, shift) of a tone; `match` maps own's levels onto reference's."""
    if name == "keep":
        return 1.0, 0.0
    if name == "invert":
        return -1.0, 1.0
    if name != "match":
        raise AetlError(f"unknown tone {name!r}; choose one of {', '.join(TONES)} (or auto)")
    span = own.foreground - own.background
    if abs(span) < 1e-3:  # a flat domain: nothing to stretch
        return 1.0, reference.background - own.background
    scale = (reference.foreground - reference.background) / span
    return scale, reference.background - scale * own.background


def fit_images(x: torch.Tensor, size: int, channels: int, fit: Fit) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] (or uint8) -> (N, channels, size, size) in [0, 1]."""
    if fit.geometry not in GEOMETRIES:
        raise AetlError(f"unknown fit {fit.geometry!r}; choose one of {', '.join(GEOMETRIES)} or auto")
    if channels not in (1, 3):
        raise AetlError(f"data.channels must be 1 or 3, got {channels}")
    x = to_channels(unit(x).float(), channels)
    if (fit.scale, fit.shift) != (1.0, 0.0):
        x = (x * fit.scale + fit.shift).clamp_(0, 1)
    if fit.geometry == "resize":
        return _resize(x, (size, size)).clamp_(0, 1)
    inner = size - 2 * fit.margin
    if inner < 1 or fit.margin < 0:
        raise AetlError(f"margin {fit.margin} leaves no room in a {size}x{size} image; set "
                        f"data.<source|target>.margin to 0..{(size - 1) // 2}")
    background = _background(x)
    if fit.geometry == "crop":  # every image has a square of its own size: one at a time
        x = torch.cat([_resize(_square(img, background[i], box), (inner, inner))
                       for i, (img, box) in enumerate(zip(x, _content_boxes(x)))])
    else:
        x = _resize(x, (inner, inner))
    return (F.pad(x - background, (fit.margin,) * 4) + background).clamp_(0, 1)


def changes_nothing(fit: Fit, shape: tuple[int, ...], size: int, channels: int) -> bool:
    """Whether fit_images leaves images of this (N, C, H, W) shape as they are."""
    return (fit.geometry == "resize" and (fit.scale, fit.shift) == (1.0, 0.0)
            and tuple(shape[1:]) == (channels, size, size))


def fit_array(images: np.ndarray, size: int, channels: int, fit: Fit, out: np.ndarray) -> np.ndarray:
    """fit_images over uint8 (N, C, H, W) images a chunk at a time, into uint8 out
    (N, channels, size, size): a memory-mapped domain is mapped without loading it whole."""
    for at in range(0, len(images), MAP_CHUNK):
        chunk = torch.from_numpy(np.array(images[at:at + MAP_CHUNK]))  # a copy: the cache maps read-only
        out[at:at + MAP_CHUNK] = quantize(fit_images(chunk, size, channels, fit)).numpy()
    return out


def unfit_images(y: torch.Tensor, original: torch.Tensor, fit: Fit) -> torch.Tensor:
    """Images in the frame (fit_images of `original`, or a model's reconstructions of them)
    mapped back to the original images' size, place and tone, to compare with the originals
    (converted to the frame's channels) pixel for pixel.

    The resampling is undone by its least-squares inverse (the pseudo-inverse of the
    resampling matrix): exact where fit_images enlarged an image, and where it shrank one
    the detail it dropped stays lost, so a comparison with the original counts it."""
    size = y.shape[-1]
    original = to_channels(unit(original).float(), y.shape[1])
    h, w = original.shape[-2:]
    if fit.geometry != "resize":
        y = y[..., fit.margin:size - fit.margin, fit.margin:size - fit.margin]
    if fit.geometry == "crop":
        toned = (original * fit.scale + fit.shift).clamp(0, 1)
        background = _background(toned)
        y = torch.cat([_unsquare(img, background[i], box, (h, w))
                       for i, (img, box) in enumerate(zip(y, _content_boxes(toned)))])
    else:
        y = _unresize(y, (h, w))
    return (y - fit.shift) / fit.scale


def border(x: torch.Tensor) -> torch.Tensor:
    """Every image's border pixels, (N, C, 2H + 2W)."""
    return torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1)


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)


def _unresize(y: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """The least-squares inverse of _resize from hw to y's size, about each image's mean
    (the minimum-norm inverse alone would pull what was lost towards 0, not the background)."""
    rows, cols = _inverse(hw[0], y.shape[-2]), _inverse(hw[1], y.shape[-1])
    mean = y.mean((-2, -1), keepdim=True)
    return rows.to(y.dtype) @ (y - mean) @ cols.to(y.dtype).T + mean


@functools.lru_cache(maxsize=64)
def _inverse(n: int, m: int) -> torch.Tensor:
    """(n, m): the pseudo-inverse of _resize's (separable) matrix from n to m pixels."""
    if n == m:
        return torch.eye(n, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64).view(n, 1, 1, n)
    forward = F.interpolate(eye, size=(1, m), mode="bilinear", align_corners=False, antialias=True)
    return torch.linalg.pinv(forward.view(n, m).T)


def _background(x: torch.Tensor) -> torch.Tensor:
    """Each image's background level per channel: the median of its border, (N, C, 1, 1)."""
    return border(x).median(-1).values[..., None, None]


def _content_boxes(x: torch.Tensor) -> list[tuple[int, int, int] | None]:
    """For each image, the square (top, left, side) around its content: the pixels that
    differ from its background by CONTENT_SHARE of its largest difference (None: nothing
    stands out, so the whole image is the content)."""
    deviation = (x - _background(x)).abs().amax(1)  # (N, H, W)
    boxes: list[tuple[int, int, int] | None] = []
    for dev in deviation:
        ys, xs = torch.nonzero(dev > CONTENT_SHARE * dev.max(), as_tuple=True)
        if dev.max() <= 0 or len(ys) == 0:
            boxes.append(None)
            continue
        top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        side = max(bottom - top, right - left)
        boxes.append(((top + bottom - side) // 2, (left + right - side) // 2, side))
    return boxes


def _square(img: torch.Tensor, background: torch.Tensor, box: tuple[int, int, int] | None) -> torch.Tensor:
    """(1, C, s, s): the content square of one image, its background where it reaches past the image."""
    if box is None:
        return _resize(img[None], (max(img.shape[-2:]),) * 2)
    top, left, side = box
    padded = F.pad(img[None] - background, (side,) * 4) + background  # room for any square around the content
    return padded[..., top + side:top + 2 * side, left + side:left + 2 * side]


def _unsquare(inner: torch.Tensor, background: torch.Tensor, box: tuple[int, int, int] | None,
              hw: tuple[int, int]) -> torch.Tensor:
    """The inverse of _square: (1, C, h, w) with the square put back, background elsewhere."""
    if box is None:
        return _unresize(inner[None], hw)
    top, left, side = box
    h, w = hw
    canvas = background.expand(-1, h + 2 * side, w + 2 * side).clone()
    canvas[:, top + side:top + 2 * side, left + side:left + 2 * side] = _unresize(inner[None], (side, side))[0]
    return canvas[None, :, side:side + h, side:side + w]


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)  # ITU-R 601 luma
    return (x * weights).sum(1, keepdim=True)
