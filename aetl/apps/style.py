"""Style transfer in the feature space of a transferred fully convolutional AE.

Feed-forward: encode the content and the style image, move the content's code
statistics to the style's (AdaIN: per-channel mean and std, Huang & Belongie 2017;
WCT: the whole channel covariance, Li et al. 2017), blend with the content code by
`alpha`, decode. Optional refinement: L-BFGS on the output pixels, minimising a
content loss on the code plus a style loss (Gram matrices of encoder features at
every depth, Gatys et al. 2016), starting from the feed-forward result.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from aetl.errors import AetlError
from aetl.models import AutoEncoder

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


def features(model: AutoEncoder, x: torch.Tensor) -> list[torch.Tensor]:
    """The encoder's feature maps after every ReLU, and its code, shallow to deep."""
    maps = []
    for layer in model.encoder:
        x = layer(x)
        if isinstance(layer, torch.nn.ReLU):
            maps.append(x)
    return [*maps, x]


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(model: AutoEncoder, x: torch.Tensor, style_grams: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.mse_loss(gram(f), g, reduction="sum") for f, g in zip(features(model, x), style_grams))


def _padded(x: torch.Tensor, factor: int) -> torch.Tensor:
    h, w = x.shape[2:]
    ph, pw = (-h) % factor, (-w) % factor
    return F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x


def stylize(model: AutoEncoder, content: torch.Tensor, style: torch.Tensor, method: str = "adain",
            alpha: float = 1.0) -> torch.Tensor:
    """(1, C, H, W) content and style images -> the stylised image, (1, C, H, W) like content."""
    if model.flat_code:
        raise AetlError(f"style transfer needs a fully convolutional backbone (model=fconv), not {type(model).__name__}")
    if method not in TRANSFORMS:
        raise AetlError(f"unknown style method {method!r}; choose {' or '.join(TRANSFORMS)}")
    if not 0 <= alpha <= 1:
        raise AetlError(f"alpha must be in [0, 1], got {alpha}")
    h, w = content.shape[2:]
    factor = getattr(model, "factor", 1)
    with torch.no_grad():
        zc = model.encode(_padded(content, factor))
        zs = model.encode(_padded(style, factor))
        z = alpha * TRANSFORMS[method](zc, zs) + (1 - alpha) * zc
        return model.decode(z)[:, :, :h, :w]


def refine(model: AutoEncoder, start: torch.Tensor, content: torch.Tensor, style: torch.Tensor, steps: int,
           style_weight: float = 1.0) -> torch.Tensor:
    """L-BFGS on the pixels of start: content loss on the code + style_weight x Gram style loss."""
    factor = getattr(model, "factor", 1)
    with torch.no_grad():
        target_code = model.encode(_padded(content, factor))
        grams = [gram(f) for f in features(model, _padded(style, factor))]
    image = start.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([image], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        x = _padded(image.clamp(0, 1), factor)
        loss = F.mse_loss(model.encode(x), target_code) + style_weight * style_loss(model, x, grams)
        loss.backward()
        return loss

    model.requires_grad_(False)
    opt.step(closure)
    return image.detach().clamp(0, 1)


@torch.no_grad()
def losses(model: AutoEncoder, x: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> dict[str, float]:
    """The content loss (code MSE) and the style loss (Gram distance) of an output image."""
    factor = getattr(model, "factor", 1)
    grams = [gram(f) for f in features(model, _padded(style, factor))]
    x = _padded(x, factor)
    return {"content_loss": F.mse_loss(model.encode(x), model.encode(_padded(content, factor))).item(),
            "style_loss": style_loss(model, x, grams).item()}


def timed(fn, *args, **kwargs) -> tuple[torch.Tensor, float]:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def load_image(name: str, size: int | None, channels: int, device: torch.device) -> torch.Tensor:
    """A bundled image or file as (1, channels, H, W), its longest side scaled to size."""
    import numpy as np
    from PIL import Image

    from aetl.domains.crops import read_image
    from aetl.domains.shape import to_channels

    array = read_image(name)
    if size:
        img = Image.fromarray((array * 255).round().astype(np.uint8))
        ratio = size / max(img.size)
        img = img.resize((max(1, round(img.width * ratio)), max(1, round(img.height * ratio))), Image.Resampling.LANCZOS)
        array = np.asarray(img, dtype=np.float32) / 255.0
    x = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]
    return to_channels(x, channels).to(device)


def run_app(model: AutoEncoder, run, content: str, style: str, method: str = "adain",
            alphas: tuple[float, ...] = (0.5, 1.0), size: int | None = 256, refine_steps: int = 0,
            style_weight: float = 1.0, **_: object) -> dict:
    """Stylise content with style at each alpha; write the PNGs and the grid into run.images."""
    model.eval()
    device = next(model.parameters()).device
    channels = model.in_shape[0]
    x_content = load_image(content, size, channels, device)
    x_style = load_image(style, size, channels, device)
    results, panels = [], [x_content, F.interpolate(x_style, size=x_content.shape[2:], mode="bilinear")]
    for alpha in alphas:
        out, seconds = timed(stylize, model, x_content, x_style, method, alpha)
        record = {"alpha": alpha, "seconds": seconds, **{f"{k}_before": v for k, v in
                                                         losses(model, out, x_content, x_style).items()}}
        if refine_steps > 0:
            out, record["refine_seconds"] = timed(refine, model, out, x_content, x_style, refine_steps, style_weight)
        record.update({f"{k}_after": v for k, v in losses(model, out, x_content, x_style).items()})
        run.save_image(f"stylized_{method}_alpha{alpha:g}.png", out[0])
        run.log_metrics("stylize", **record)
        results.append(record)
        panels.append(out)
    run.save_image(f"style_grid_{method}.png", torch.cat(panels, dim=3)[0])
    return {"style_method": method, "style_content": content, "style_image": style,
            "style_seconds_per_image": sum(r["seconds"] for r in results) / len(results),
            "style_results": results}
