"""Choosing, without labels, how a target domain is mapped into the pair's frame (`fit: auto`).

Every candidate (geometry, margin and tone, as far as the domain's config leaves them
open: see aetl.data.framing) maps the target's *training* images into the frame; the
source model Mf reconstructs them; the reconstructions are mapped back to the images'
own size, place and tone (`unfit_images`) and compared with the images as they were. A
candidate's score is the fraction of the images' variance left unexplained (FVU): that
squared error over the images' squared deviation from their mean pixel value.

Scoring in the images' own space is what makes candidates comparable. Scored in the
frame, framing wins by itself: the flat border it adds is easy to reconstruct, and
shrinking drops the detail Mf would have to reproduce (natural photos, stretched or
framed, came out "best" framed). Mapped back, the border is gone and lost detail counts
as error.

The lowest score wins, except that candidates within two standard errors of it (paired
over the images) or within 5% of it are a tie, and a tie goes to the simplest: keep before
invert before match, resize before frame before crop, the middle margin (MNIST's 4 of 28)
first. So a domain that already looks like the source is left as it is, and a choice is
only made for a difference that matters (the ones that do are 30% to 30x apart). The winner's score is also
`aetl rank`'s label-free measure of how well a source suits the target.

A mapping is applied only where Mf, under it, explains at least half of the images'
variance (a score of at most 0.5). Where no candidate does, Mf does not see the target
as its own kind of image however it is mapped; the lowest score then marks the mapping
that distorts the images into something Mf can copy (MNIST -> MNIST-M: cropped and
contrast-stretched until the photo backgrounds clip, 0.78 against 1.98 as they are, and 10
points of validation accuracy lost), not the one that keeps what transfer needs, so the
images are kept as they are (the simplest candidate). The mappings that helped scored
0.25 (the digits as a folder, upright and inverted, both against about 1 and 4 as they were).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from aetl.data.framing import GEOMETRIES, TONES, Fit, Levels, fit_images, to_channels, tone, unfit_images
from aetl.errors import AetlError
from aetl.models import AutoEncoder

log = logging.getLogger(__name__)

MAX_IMAGES = 512  # training images scored per candidate: enough to separate candidates 5-30x apart
MARGIN_SHARES = (1 / 7, 1 / 14, 3 / 14)  # of the frame's side, the preferred first: 4, 2 and 6 pixels at 28
TIE = 2.0  # standard errors within which two candidates count as equal ...
TIE_SHARE = 0.05  # ... as do candidates within 5% of the best score: a difference too small to matter
MAPPED_AT_MOST = 0.5  # the best score must be this low (Mf explains half the variance) for a mapping to apply


@dataclass
class FitChoice:
    fit: Fit
    scores: dict[str, float]  # each candidate's label -> its FVU (empty when nothing was left to choose)

    def summary(self, role: str) -> dict:
        """The keys summary.json records for a role (source or target)."""
        f = self.fit
        return {f"{role}_fit": f.geometry, f"{role}_margin": f.margin, f"{role}_tone": f.tone,
                f"{role}_invert": f.inverted, f"{role}_tone_map": [f.scale, f.shift],
                f"{role}_fit_scores": self.scores or None}

    @classmethod
    def from_summary(cls, summary: dict, role: str) -> "FitChoice":
        """The fit a finished run recorded (so the apps map its data as it did)."""
        scale, shift = summary.get(f"{role}_tone_map") or (1.0, 0.0)
        return cls(Fit(summary[f"{role}_fit"], summary.get(f"{role}_margin", 0), summary.get(f"{role}_tone", "keep"),
                       scale, shift), summary.get(f"{role}_fit_scores") or {})


def is_open(spec: DictConfig) -> bool:
    """Whether a domain's config leaves its fit to be chosen (and so needs Mf)."""
    return spec.fit == "auto" or spec.get("tone", "keep") == "auto"


def source_fit(spec: DictConfig) -> Fit:
    """The source's fit. The source defines the pair's frame, so `auto` keeps its images as
    they are (resize, keep), and `match` (a target's levels onto the source's) is refused."""
    _check(spec)
    geometry = "resize" if spec.fit == "auto" else str(spec.fit)
    name = "keep" if spec.get("tone", "keep") == "auto" else str(spec.get("tone", "keep"))
    if name == "match":
        raise AetlError("data.source.tone=match maps a target's levels onto the source's; use keep or invert "
                        "for the source (or auto, which keeps it)")
    return Fit(geometry, int(spec.get("margin", 0)) if geometry != "resize" else 0, name, *tone(name))


def target_fit(images: torch.Tensor, spec: DictConfig, size: int, channels: int, mf: AutoEncoder | None,
               reference: Levels) -> FitChoice:
    """The target's fit: the config's own, or (where it leaves some of it auto) the candidate
    under which Mf best reconstructs these training images."""
    _check(spec)
    x = images[:MAX_IMAGES]
    options = candidates(spec, size, Levels.of(to_channels(x.float(), channels)), reference)
    if len(options) == 1:
        return FitChoice(options[0], {})
    if mf is None:
        raise AetlError("fit auto needs the source model Mf to choose with")  # the pipeline always passes it
    errors = {fit: image_errors(mf, x, size, channels, fit) for fit in options}
    total = spread(x, channels)
    scores = {fit: e.sum().item() / total for fit, e in errors.items()}
    best = min(options, key=scores.__getitem__)
    chosen = min((f for f in options if _tied(errors[f], errors[best])), key=options.index)
    why = "unexplained variance under Mf, lowest first"
    if scores[best] > MAPPED_AT_MOST:
        chosen = options[0]
        why = (f"no candidate lets Mf explain half the images' variance (best {scores[best]:.2f} > "
               f"{MAPPED_AT_MOST}), so the simplest is kept; {why}")
    log.info("fit auto: %s (%s: %s)", chosen.label(), why,
             ", ".join(f"{f.label()} {v:.3f}" for f, v in sorted(scores.items(), key=lambda kv: kv[1])))
    return FitChoice(chosen, {f.label(): round(v, 4) for f, v in scores.items()})


def candidates(spec: DictConfig, size: int, own: Levels, reference: Levels) -> list[Fit]:
    """Every fit the config leaves open, simplest first."""
    if spec.fit == "auto":
        margins = [m for m in dict.fromkeys(max(1, round(size * share)) for share in MARGIN_SHARES)
                   if size - 2 * m >= 1]  # a tiny frame has room for no margin: resize alone
        places = [("resize", 0)] + [(g, m) for g in ("frame", "crop") for m in margins]
    else:
        places = [(str(spec.fit), int(spec.get("margin", 0)) if spec.fit != "resize" else 0)]
    tones = TONES if spec.get("tone", "keep") == "auto" else (str(spec.get("tone", "keep")),)
    return [Fit(g, m, t, *tone(t, own, reference)) for t in tones for g, m in places]


@torch.no_grad()
def image_errors(model: AutoEncoder, x: torch.Tensor, size: int, channels: int, fit: Fit,
                 batch_size: int = 256) -> torch.Tensor:
    """Per image, the squared error of Mf's reconstruction of x under fit, in x's own space: (N,)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    errors = []
    for xb in x.split(batch_size):
        recon = model(fit_images(xb, size, channels, fit).to(device)).recon.float().cpu()
        errors.append(own_space_errors(recon, xb, fit))
    model.train(was_training)
    return torch.cat(errors)


def own_space_errors(recon: torch.Tensor, x: torch.Tensor, fit: Fit) -> torch.Tensor:
    """Per image, the squared error of reconstructions in the frame (of x under fit) mapped back
    to x's own size, place and tone, against x in the frame's channels: (N,) float64."""
    back = unfit_images(recon, x, fit)
    return (back.double() - to_channels(x.double(), recon.shape[1])).square().flatten(1).sum(1)


def spread(x: torch.Tensor, channels: int) -> float:
    """The images' squared deviation from their mean pixel value, in the frame's channels
    (what a score's unexplained share is a share of)."""
    own = to_channels(x.double(), channels)
    return (own - own.mean()).square().sum().clamp_min(1e-12).item()


def _tied(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a's total error is within TIE standard errors of b's (paired over images), or
    within TIE_SHARE of it."""
    diff = a - b
    noise = diff.std().nan_to_num(0).item() / len(diff) ** 0.5  # (one image: no spread to go by)
    return diff.mean().item() <= max(TIE * noise, TIE_SHARE * b.mean().item())


def _check(spec: DictConfig) -> None:
    if spec.fit not in (*GEOMETRIES, "auto"):
        raise AetlError(f"unknown fit {spec.fit!r} for {spec.name}; choose auto, {', '.join(GEOMETRIES)}")
    if spec.get("tone", "keep") not in (*TONES, "auto"):
        raise AetlError(f"unknown tone {spec.tone!r} for {spec.name}; choose auto, {', '.join(TONES)}")
