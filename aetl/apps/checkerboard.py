"""How much of a decoded image's detail is the decoder's grid, not the picture's.

A decoder that doubles the resolution twice can leave a pattern that repeats every 2
and 4 pixels. Such a pattern holds all its power at the spatial frequencies that are
multiples of 1/4 cycle per pixel on both axes: 15 of the H x W bins of the image's
2-D spectrum. `periodic_share` is the share of the (mean-removed) grey image's power
in those bins; `checkerboard` divides the output's share by the content image's, so
1 means no more grid than the photo had, and 40 a grid anyone sees.

The grid measure looks at 15 bins only, so pixel-level noise of no fixed period (the speckle
an optimiser can write) passes it as clean. `speckle` sees it: the share of power at every
frequency above 1/4 cycle per pixel (all periods under 4 pixels, in every direction), over
the content's.

Images smaller than PERIOD on a side have no spectrum to measure: both measures give NaN.
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
    if not g.numel():  # a side under PERIOD: no grid to see, none to penalise
        return image.sum() * 0
    power = torch.fft.fft2(g - g.mean()).abs().square()
    h, w = g.shape
    ky = torch.arange(h, device=g.device)[:, None] % (h // PERIOD) == 0
    kx = torch.arange(w, device=g.device)[None, :] % (w // PERIOD) == 0
    return power[ky & kx].sum() / power.sum().clamp_min(1e-30)


def periodic_share(image: torch.Tensor) -> float:
    """grid_share of the image, measured (float64, on the CPU); NaN for a side under PERIOD."""
    if min(image.shape[-2:]) < PERIOD:
        return float("nan")
    return float(grid_share(image.detach().double().cpu()))


def checkerboard(output: torch.Tensor, content: torch.Tensor) -> float:
    """periodic_share of output over that of content (same size): 1 is as clean as the content."""
    return periodic_share(output) / max(periodic_share(content), 1e-12)


SPECKLE_CUTOFF = 0.25  # cycles per pixel: the speckle measure's band holds every period under 4 pixels


def high_share(image: torch.Tensor) -> float:
    """The share of the grey image's spectral power (the mean excluded) at spatial frequencies
    above SPECKLE_CUTOFF, in every direction: all periods shorter than 4 pixels, not only the
    decoder's 2 and 4. Refinement's pixel-level speckle lands there; the grid measure misses it."""
    if min(image.shape[-2:]) < PERIOD:
        return float("nan")
    g = grey(image.detach().double().cpu())
    power = torch.fft.fft2(g - g.mean()).abs().square()
    h, w = g.shape
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    high = (fy.square() + fx.square()).sqrt() > SPECKLE_CUTOFF
    return float(power[high].sum() / power.sum().clamp_min(1e-30))


def speckle(output: torch.Tensor, content: torch.Tensor) -> float:
    """high_share of output over that of content (same size): 1 has no more fine-grained power than the content."""
    return high_share(output) / max(high_share(content), 1e-12)
