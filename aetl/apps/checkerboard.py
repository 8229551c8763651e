"""How much of a decoded image's detail is the decoder's grid, not the picture's.

A decoder that doubles the resolution twice can leave a pattern that repeats every 2
and 4 pixels. Such a pattern holds all its power at the spatial frequencies that are
multiples of 1/4 cycle per pixel on both axes: 15 of the H x W bins of the image's
2-D spectrum. `periodic_share` is the share of the (mean-removed) grey image's power
in those bins; `checkerboard` divides the output's share by the content image's, so
1 means no more grid than the photo had, and 40 a grid anyone sees.
"""

from __future__ import annotations

import torch

from aetl.data.framing import to_channels

PERIOD = 4  # the decoder's largest stride that the measure looks at (periods 2 and 4)


def grey(image: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) or (C, H, W) in [0, 1] -> (H, W) luma, cropped to multiples of PERIOD
    (differentiable: refinement penalises the grid with it)."""
    image = to_channels(image.reshape(1, -1, *image.shape[-2:]), 1)[0, 0]  # luma, as the data's grey
    h, w = image.shape
    return image[: h - h % PERIOD, : w - w % PERIOD]


def grid_share(image: torch.Tensor) -> torch.Tensor:
    """The share of the grey image's spectral power at periods 2 and 4 (the mean excluded),
    as a differentiable scalar tensor."""
    g = grey(image)
    power = torch.fft.fft2(g - g.mean()).abs().square()
    h, w = g.shape
    ky = torch.arange(h, device=g.device)[:, None] % (h // PERIOD) == 0
    kx = torch.arange(w, device=g.device)[None, :] % (w // PERIOD) == 0
    return power[ky & kx].sum() / power.sum().clamp_min(1e-30)


def periodic_share(image: torch.Tensor) -> float:
    """grid_share of the image, measured (float64, on the CPU)."""
    return float(grid_share(image.detach().double().cpu()))


def checkerboard(output: torch.Tensor, content: torch.Tensor) -> float:
    """periodic_share of output over that of content (same size): 1 is as clean as the content."""
    return periodic_share(output) / max(periodic_share(content), 1e-12)
