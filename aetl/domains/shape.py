"""Map a domain's images to the shared (channels, size, size) shape.

`resize` stretches an image to fill the frame. `frame` fits it into a box
`margin` pixels inside the frame and centres it, as MNIST frames its digits
(a 20x20 box in 28x28): tight crops such as the 8x8 UCI digits only look like
MNIST digits to an MNIST-trained model once they are framed this way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aetl.errors import AetlError

FITS = ("resize", "frame")


def fit_images(x: torch.Tensor, size: int, channels: int, fit: str, margin: int = 4) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N, channels, size, size) in [0, 1]."""
    if fit not in FITS:
        raise AetlError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}")
    if channels not in (1, 3):
        raise AetlError(f"data.channels must be 1 or 3, got {channels}")
    x = _to_channels(x, channels)
    inner = size - 2 * margin if fit == "frame" else size
    if inner < 1:
        raise AetlError(f"margin {margin} leaves no room in a {size}x{size} image; lower the margin")
    if x.shape[-2:] != (inner, inner):
        x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False, antialias=True)
    if fit == "frame":
        x = F.pad(x, (margin, margin, margin, margin))
    return x.clamp_(0, 1)


def _to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)  # ITU-R 601 luma
    return (x * weights).sum(1, keepdim=True)
