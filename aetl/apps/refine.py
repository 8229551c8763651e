"""Optimisation-based style transfer in a trained AE's feature space (Gatys et al., "Image
style transfer using convolutional neural networks", 2016), with the AE's encoder in
the place of VGG.

Both losses are relative, so one `style_weight` means the same on every backbone:
- content loss: ||E(x) - E(c)||² / ||E(c)||², the code of the output against the
  content image's;
- style loss: the mean over the encoder's depths (after every ReLU, and the code) of
  ||G(x) - G(s)||² / ||G(s)||², G a depth's Gram matrix (channel correlations over
  positions): how far the output's textures are from the style image's.

`refine` polishes a feed-forward result: L-BFGS on its *code*, the output being the
decoder's image of that code. Searching the decoder's outputs, not free pixels, keeps
the image free of the high-frequency noise that pixel gradients write; but a code pushed
off the ones the decoder was trained on makes it print its own grid at the periods of
its strides (measured: up to 9x the content photo's share of power there after 30
steps). So refinement also pays for grid power above the content's
(`aetl.apps.checkerboard.grid_share`, weight GRID_WEIGHT): on the six bundled
content/style pairs that kept the grid at the photo's level (at most 1.05x) and changed
the style and content losses by a few percent. `gatys` is the method as published, the quality anchor: L-BFGS on the
pixels, from the content image, until the objective stops falling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from aetl.apps.checkerboard import grey, grid_share
from aetl.models import AutoEncoder

GRID_WEIGHT = 0.1  # refinement's cost per unit of grid share above the content image's


def gram(f: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) channel correlations, averaged over positions."""
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)


class StyleLoss:
    """The content and style losses of images against one content and one style image."""

    def __init__(self, model: AutoEncoder, content: torch.Tensor, style: torch.Tensor) -> None:
        self.model = model
        with torch.no_grad():
            self.code = model.encode(content)
            self.grams = [gram(f) for f in model.features(style)]
            self.content_grid = grid_share(content)
            # at least a hundredth of white noise's share (15 of the spectrum's H x W bins), so that a
            # flat content image, with no grid power at all, does not make any output's grid infinite
            # (the bundled photos hold 10-20 times that floor: for them the penalty is unchanged)
            h, w = grey(content).shape
            self.grid_floor = max(self.content_grid.item(), 0.01 * 15 / (h * w))

    def grid(self, x: torch.Tensor) -> torch.Tensor:
        """How far x's grid share (periods 2 and 4) rises above the content image's, relative to
        the larger of that share and white noise's; 0 below it."""
        return torch.relu(grid_share(x) - self.content_grid) / self.grid_floor

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.model.features(x)
        content = (maps[-1] - self.code).square().sum() / self.code.square().sum().clamp_min(1e-12)
        style = sum((gram(f) - g).square().sum() / g.square().sum().clamp_min(1e-12)
                    for f, g in zip(maps, self.grams))
        return content, style / len(maps)

    @torch.no_grad()
    def values(self, x: torch.Tensor) -> dict[str, float]:
        content, style = self(x)
        return {"content_loss": content.item(), "style_loss": style.item()}


@dataclass
class Optimised:
    image: torch.Tensor
    steps: int      # objective evaluations L-BFGS made
    seconds: float


@dataclass(frozen=True)
class Search:
    """What L-BFGS minimises and when it stops: content + style_weight x style (+ grid_weight x the
    grid above the content's), at most max_steps evaluations, until it changes by under tolerance."""

    style_weight: float
    max_steps: int
    tolerance: float
    grid_weight: float = 0.0


def _lbfgs(variable: torch.Tensor, render, loss: StyleLoss, search: Search) -> Optimised:
    """Minimise search's objective of render(variable) by L-BFGS."""
    started = time.perf_counter()
    variable = variable.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([variable], max_iter=search.max_steps, max_eval=search.max_steps,
                            tolerance_change=search.tolerance,
                            line_search_fn="strong_wolfe")
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        opt.zero_grad()
        image = render(variable)
        content, style = loss(image)
        objective = content + search.style_weight * style
        if search.grid_weight:
            objective = objective + search.grid_weight * loss.grid(image)
        objective.backward()
        return objective

    frozen = [p for p in loss.model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        opt.step(closure)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    with torch.no_grad():
        image = render(variable).clamp(0, 1)
    return Optimised(image, calls, time.perf_counter() - started)


def refine(model: AutoEncoder, start: torch.Tensor, loss: StyleLoss, steps: int,
           style_weight: float) -> Optimised:
    """L-BFGS on the code of start (a feed-forward result): at most `steps` evaluations."""
    with torch.no_grad():
        code = model.encode(start)
    return _lbfgs(code, model.decode, loss, Search(style_weight, steps, tolerance=1e-9, grid_weight=GRID_WEIGHT))


def gatys(content: torch.Tensor, loss: StyleLoss, style_weight: float, max_steps: int = 2000,
          tolerance: float = 1e-6) -> Optimised:
    """L-BFGS on the pixels from the content image until the objective changes by less than
    tolerance between steps (or max_steps evaluations)."""
    return _lbfgs(content, lambda x: x.clamp(0, 1), loss, Search(style_weight, max_steps, tolerance))

