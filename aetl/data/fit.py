"""Choosing, without labels, how a target domain is mapped into the pair's frame (`fit: auto`).

Every candidate (geometry, margin and tone, as far as the domain's config leaves them
open: see aetl.data.framing) maps a sample of the target's *unlabelled* images into the
frame; the source model Mf reconstructs them; the reconstructions are mapped back to the
images' own size, place and tone (`unfit_images`) and compared with the images as they
were. A candidate's score is the fraction of the images' variance left unexplained (FVU):
that squared error over the images' squared deviation from their mean pixel value.

The sample is the target's pool outside its test and validation splits, in the order
`data.split_seed` drew (aetl.data.pair), up to MAX_IMAGES: the same images for every run
seed, and never a test image. (Each seed's own 100 training images, scored by one Mf, chose
a crop on one seed and a resize, 16 points less accurate, on two: docs/results.md.) The Mf
that scores them is one seed's too (aetl.strategies.pretrain.settle_fit: trainer.pretrain.seed,
else data.split_seed), whatever the run's seed: each seed's own Mf disagreed about margins
where candidates were close (crop m4 / m6 / m6 on digits on a larger sheet). The choice is kept
in the fit cache, so a sweep makes it once.

Scoring in the images' own space is what makes candidates comparable. Scored in the
frame, framing wins by itself: the flat border it adds is easy to reconstruct, and
shrinking drops the detail Mf would have to reproduce (natural photos, stretched or
framed, came out "best" framed). Mapped back, the border is gone and lost detail counts
as error.

Candidates are compared pair by pair on the same images: one *clearly beats* another when
its per-image errors are lower on average by more than TIE standard errors of the paired
difference plus TIE_SHARE of the score. The choice is the simplest candidate no other
clearly beats (keep before invert before match, resize before frame before crop, the
middle margin, MNIST's 4 of 28, first): simplicity only settles what the evidence cannot,
and the lowest score is never beaten, so some candidate always stands. The winner's score
is also `aetl rank`'s label-free measure of how well a source suits the target.

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
import math
import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from aetl.data.framing import GEOMETRIES, TONES, Fit, Levels, fit_images, to_channels, tone, unfit_images
from aetl.errors import AetlError
from aetl.models import AutoEncoder

log = logging.getLogger(__name__)

# Unlabelled images scored per candidate: a paired difference's standard error is then about
# 1% of the score (digits on a sheet: 0.8-1.2%), so a gap of 6% (resize against crop there,
# 16 points of accuracy) is told apart; all 21 candidates cost about 4 s of one CPU thread
# for 28x28 grey images, 7 s for colour (512 images: half, and decided the same but one margin).
MAX_IMAGES = 1024
MARGIN_SHARES = (1 / 7, 1 / 14, 3 / 14)  # of the frame's side, the preferred first: 4, 2 and 6 pixels at 28
TIE = 2.0  # standard errors of the paired difference a candidate must clear to beat another ...
# ... plus this share of the better score: a difference too small to change the images for.
# Matching the levels of digits already the right way round scores 1% lower (at 100 standard
# errors); the smallest gap that went with an accuracy gap was 6%.
TIE_SHARE = 0.02
MAPPED_AT_MOST = 0.5  # the best score must be this low (Mf explains half the variance) for a mapping to apply


@dataclass
class FitChoice:
    fit: Fit
    scores: dict[str, float]  # each candidate's label -> its FVU (empty when nothing was left to choose)
    images: int = 0  # how many unlabelled target images the scores come from

    def summary(self, role: str) -> dict:
        """The keys summary.json records for a role (source or target)."""
        f = self.fit
        return {f"{role}_fit": f.geometry, f"{role}_margin": f.margin, f"{role}_tone": f.tone,
                f"{role}_invert": f.inverted, f"{role}_tone_map": [f.scale, f.shift],
                f"{role}_fit_scores": self.scores or None, f"{role}_fit_images": self.images or None}

    @classmethod
    def from_summary(cls, summary: dict, role: str) -> "FitChoice":
        """The fit a finished run recorded (so the apps map its data as it did), or the fit cache
        holds; every field checked first (an AetlError names the first that is wrong)."""
        _check_record(summary, role)
        scale, shift = summary.get(f"{role}_tone_map") or (1.0, 0.0)
        return cls(Fit(summary[f"{role}_fit"], summary.get(f"{role}_margin", 0), summary.get(f"{role}_tone", "keep"),
                       scale, shift), summary.get(f"{role}_fit_scores") or {}, summary.get(f"{role}_fit_images") or 0)


def _check_record(summary: dict, role: str) -> None:
    """A recorded fit's fields by type and range (they size and place every image mapped with it)."""
    def number(x: object) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    margin, tone_map = summary.get(f"{role}_margin", 0), summary.get(f"{role}_tone_map")
    problems = [
        (summary.get(f"{role}_fit") not in GEOMETRIES, f"{role}_fit must be one of {', '.join(GEOMETRIES)}"),
        (not (isinstance(margin, int) and not isinstance(margin, bool) and 0 <= margin <= 4096),
         f"{role}_margin must be an integer in [0, 4096]"),
        (summary.get(f"{role}_tone", "keep") not in TONES, f"{role}_tone must be one of {', '.join(TONES)}"),
        (tone_map is not None and not (isinstance(tone_map, list) and len(tone_map) == 2
                                       and all(number(x) for x in tone_map)),
         f"{role}_tone_map must be two finite numbers"),
        (not isinstance(summary.get(f"{role}_fit_scores") or {}, dict), f"{role}_fit_scores must be a mapping")]
    for bad, need in problems:
        if bad:
            raise AetlError(f"the recorded fit is damaged: {need}")


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
    """The target's fit: the config's own, or (where it leaves some of it auto) the simplest
    candidate no other clearly beats at Mf's reconstruction of these unlabelled images."""
    _check(spec)
    x = images[:MAX_IMAGES]
    options = candidates(spec, size, Levels.of(to_channels(x.float(), channels)), reference)
    if len(options) == 1:
        return FitChoice(options[0], {})
    if mf is None:
        raise AetlError("fit auto needs the source model Mf to choose with")  # the pipeline always passes it
    started = time.perf_counter()
    errors = torch.stack([image_errors(mf, x, size, channels, fit) for fit in options])  # (candidates, images)
    scores = dict(zip(options, (errors.sum(1) / spread(x, channels)).tolist()))
    best = min(options, key=scores.__getitem__)
    unbeaten = [options[i] for i in unbeaten_by_evidence(errors)]
    chosen = unbeaten[0]
    why = (f"no other clearly beats it on these {len(x)} images" if len(unbeaten) == 1 else
           f"the simplest of {', '.join(f.label() for f in unbeaten)}, which the {len(x)} images cannot tell apart")
    if scores[best] > MAPPED_AT_MOST:
        chosen = options[0]
        why = (f"no candidate lets Mf explain half the images' variance (best {scores[best]:.2f} > "
               f"{MAPPED_AT_MOST}), so the simplest is kept")
    log.info("fit auto: %s (%s; %d candidates scored in %.1f s; unexplained variance under Mf, lowest first: %s)",
             chosen.label(), why, len(options), time.perf_counter() - started,
             ", ".join(f"{f.label()} {v:.3f}" for f, v in sorted(scores.items(), key=lambda kv: kv[1])))
    return FitChoice(chosen, {f.label(): round(v, 4) for f, v in scores.items()}, len(x))


def unbeaten_by_evidence(errors: torch.Tensor) -> list[int]:
    """The rows of errors (candidates, simplest first, by their per-image errors on the same
    images) that no other row clearly beats: row j beats row i when i's errors exceed j's on
    average by more than TIE standard errors of the paired difference plus TIE_SHARE of j's
    mean error. The lowest mean is never beaten, so the list is never empty."""
    e = errors.double()
    diff = e[:, None, :] - e[None, :, :]  # [i, j, image]: how much worse i did than j on each image
    n = e.shape[1]
    noise = diff.std(-1) / n ** 0.5 if n > 1 else torch.zeros_like(diff[..., 0])  # (one image: no spread to go by)
    beaten = diff.mean(-1) > TIE * noise + TIE_SHARE * e.mean(1)[None, :]
    return torch.nonzero(~beaten.any(1)).flatten().tolist()


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


def _check(spec: DictConfig) -> None:
    if spec.fit not in (*GEOMETRIES, "auto"):
        raise AetlError(f"unknown fit {spec.fit!r} for {spec.name}; choose auto, {', '.join(GEOMETRIES)}")
    if spec.get("tone", "keep") not in (*TONES, "auto"):
        raise AetlError(f"unknown tone {spec.tone!r} for {spec.name}; choose auto, {', '.join(TONES)}")
