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
the image free of the high-frequency grid that pixel gradients through stride-2
convolutions write (the style loss can be lowered by such noise as well as by
texture). `gatys` is the method as published, the quality anchor: L-BFGS on the
pixels, from the content image, until the objective stops falling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from aetl.models import AutoEncoder


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


def _lbfgs(variable: torch.Tensor, render, loss: StyleLoss, style_weight: float, max_steps: int,
           tolerance: float) -> Optimised:
    """Minimise content + style_weight x style of render(variable) by L-BFGS."""
    started = time.perf_counter()
    variable = variable.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([variable], max_iter=max_steps, max_eval=max_steps, tolerance_change=tolerance,
                            line_search_fn="strong_wolfe")
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        opt.zero_grad()
        content, style = loss(render(variable))
        objective = content + style_weight * style
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
    return _lbfgs(code, model.decode, loss, style_weight, steps, tolerance=1e-9)


def gatys(content: torch.Tensor, loss: StyleLoss, style_weight: float, max_steps: int = 2000,
          tolerance: float = 1e-6) -> Optimised:
    """L-BFGS on the pixels from the content image until the objective changes by less than
    tolerance between steps (or max_steps evaluations)."""
    return _lbfgs(content, lambda x: x.clamp(0, 1), loss, style_weight, max_steps, tolerance)

