"""Data augmentation with the transferred AE, and what it does to few-label accuracy.

Modes on the labelled target images (DeVries & Taylor, "Dataset augmentation in
feature space", 2017): `noise` adds Gaussian noise scaled by each code dimension's
spread; `interpolate` moves a code towards its nearest labelled neighbour of the same
class, `extrapolate` away from it, by a random share up to `strength` (a class with
one labelled image takes the nearest image of another class as its neighbour and
moves at most half as far, so the new code stays on its own side of the midpoint);
`image` is the classic baseline in pixel space (random shifts of up to 2 pixels and
Gaussian pixel noise).

`source` is the method's own recipe: labelled *source* images, given random shifts
(and `strength` x pixel noise), are encoded by the AE transferred to T, their codes'
per-dimension mean and std moved to those of T's training images' codes (labelled or
not: AdaIN between the domains, where style transfer does it between images), and
decoded, so they take on T's look; they join the labelled set with their source
labels (the classes must be the target's). It works with no target labels at all.

The linear probe is then fitted with and without the new images on the same labelled split
and scored on the same validation and test splits. How much augmented data enters it is
chosen per run on the validation split: each share in `mix` (0: none; 1: every new image)
puts that share of new images in the probe's training set, and the share whose probe
scores best on validation (ties: the smaller) gives `target_acc_augmented`, so that
augmentation that would hurt is left out, as 4,250 restyled source images beside 100
labelled targets would (mnist -> digits, 10 labels per class).
"""

from __future__ import annotations

import io
import logging
import typing
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from aetl.data.pair import Pair
from aetl.data.storage import Split
from aetl.errors import AetlError
from aetl.evaluation.metrics import accuracy, fit_probe, target_predictor
from aetl.infra.schema import Natural, NonNegative, Seed, Share
from aetl.models import AutoEncoder

TARGET_IMAGES = 4096  # mode=source: target training images whose codes' mean and std the source codes take

Mode = Literal["noise", "interpolate", "extrapolate", "image", "source"]
MODES = typing.get_args(Mode)

log = logging.getLogger(__name__)


def neighbours(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each code, the index of its nearest other code of the same class, or of any
    class when its class has no other; and whether that neighbour is of another class."""
    if len(z) < 2:
        raise AetlError("interpolate and extrapolate need at least 2 labelled images; "
                        "raise data.target.labels_per_class or use app.mode=noise or source")
    flat = z.flatten(1)
    dist = torch.cdist(flat, flat)
    dist.fill_diagonal_(float("inf"))
    same = torch.where(y[:, None] == y[None, :], dist, torch.full_like(dist, float("inf")))
    alone = torch.isinf(same.min(1).values)
    return torch.where(alone, dist.argmin(1), same.argmin(1)), alone


def move_codes(z: torch.Tensor, y: torch.Tensor, mode: str, amount: int, strength: float,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`amount` new codes per code, with the labels of the codes they came from."""
    z_rep, y_rep = z.repeat(amount, *[1] * (z.dim() - 1)), y.repeat(amount)
    if mode == "noise":
        spread = z.std(0, unbiased=False, keepdim=True) if len(z) > 1 else z.abs().mean().expand_as(z[:1])
        return z_rep + strength * spread * torch.randn(z_rep.shape, generator=gen, device=z.device), y_rep
    index, alone = neighbours(z, y)
    other = z[index].repeat(amount, *[1] * (z.dim() - 1))
    reach = torch.where(alone, 0.5, 1.0).repeat(amount).view(-1, *[1] * (z.dim() - 1))
    share = strength * reach * torch.rand((len(z_rep),) + (1,) * (z.dim() - 1), generator=gen, device=z.device)
    step = other - z_rep if mode == "interpolate" else z_rep - other
    return z_rep + share * step, y_rep


def move_pixels(x: torch.Tensor, y: torch.Tensor, amount: int, strength: float,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The image-space augmentation: `amount` copies of each image, each shifted by its own
    random offset of up to 2 pixels (edges repeated), plus Gaussian pixel noise."""
    x_rep = x.repeat(amount, 1, 1, 1)
    h, w = x.shape[2:]
    padded = F.pad(x_rep, (2, 2, 2, 2), mode="replicate")
    offsets = torch.randint(0, 5, (len(x_rep), 2), generator=gen, device=x.device)
    out = torch.empty_like(x_rep)
    for dy in range(5):  # 25 offsets: one slice each, not one per image
        for dx in range(5):
            pick = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            out[pick] = padded[pick, :, dy:dy + h, dx:dx + w]
    noise = strength * 0.1 * torch.randn(out.shape, generator=gen, device=x.device)
    return (out + noise).clamp(0, 1), y.repeat(amount)


@torch.no_grad()
def augment(model: AutoEncoder, x: torch.Tensor, y: torch.Tensor, how: "Augment",
            target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """New labelled images made from (x, y) by how.mode; for `source`, x are source images and
    target the target's training images, whose code statistics the new images take."""
    mode, amount, strength = how.mode, how.amount, how.strength
    if mode not in MODES:
        raise AetlError(f"unknown augment mode {mode!r}; choose one of {', '.join(MODES)}")
    if amount < 1 or strength < 0:
        raise AetlError(f"augment needs amount >= 1 and strength >= 0, got {amount} and {strength}")
    gen = torch.Generator(device=x.device).manual_seed(how.seed)
    model.eval()
    if mode == "image":
        return move_pixels(x, y, amount, strength, gen)
    if mode == "source":
        if target is None or not len(target):
            raise AetlError("app.mode=source needs the target's training images")
        moved, new_y = move_pixels(x, y, amount, strength, gen)
        z = restyled(encoded(model, moved), encoded(model, target))
        return decoded(model, z), new_y
    z, z_y = move_codes(model.encode(x), y, mode, amount, strength, gen)
    return decoded(model, z), z_y


def encoded(model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.encode(chunk) for chunk in x.split(1024)])


def decoded(model: AutoEncoder, z: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.decode(chunk) for chunk in z.split(1024)])


def restyled(z: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """z with each code dimension's mean and std over the batch set to reference's."""
    mean, std = z.mean(0, keepdim=True), z.std(0, unbiased=False, keepdim=True).clamp_min(1e-6)
    return (z - mean) / std * reference.std(0, unbiased=False, keepdim=True) + reference.mean(0, keepdim=True)


def source_sample(pair: Pair, per_class: int | None, seed: int) -> Split:
    """per_class labelled source training images of each target class (None: all), drawn with
    seed and labelled with the target's class index (the classes are matched by name, as for
    the source head: mnist -> digits, 0-9)."""
    head = pair.head_classes()
    if head is None:
        raise AetlError(f"app.mode=source needs a source whose classes are the target's: {pair.source.name} "
                        f"has {_names(pair.source.classes)}, {pair.target.name} has {_names(pair.target.classes)}; "
                        "use another augment mode")
    if per_class is not None and per_class < 1:
        raise AetlError(f"app.source_per_class must be >= 1 (or null: every source image), got {per_class}")
    y = pair.source.train.y.cpu()
    gen = torch.Generator().manual_seed(seed)
    picks = [torch.nonzero(y == s).flatten()[torch.randperm(int((y == s).sum()), generator=gen)[:per_class]]
             for s in head.tolist()]
    index = torch.cat(picks)
    labels = torch.cat([torch.full((len(p),), c) for c, p in enumerate(picks)]).to(pair.source.train.device)
    return Split(pair.source.train.pixels(index.to(pair.source.train.device)), labels)


def _names(classes: list[str]) -> str:
    return f"{len(classes)} classes ({', '.join(classes[:4])}{', ...' if len(classes) > 4 else ''})"


@dataclass
class Augment:
    """The augment app (its fields declare app.*): augment, write the .npz and a grid, score the
    probe with and without the new images."""

    mode: Mode = "interpolate"
    amount: Natural = 5
    strength: NonNegative = 0.5
    source_per_class: Natural | None = None
    seed: Seed = 0
    probe_l2: NonNegative = 1e-3
    mix: Sequence[Share] = (0.0, 0.25, 0.5, 0.75, 1.0)
    name: str = "augment"

    def __call__(self, model: AutoEncoder, run, pair: Pair | None = None) -> dict:
        if pair is None:
            raise AetlError("augmentation needs the run's target data")
        mode = self.mode
        labelled = pair.target.train.labelled()
        if mode == "source":
            base = source_sample(pair, self.source_per_class, self.seed)
        elif not len(labelled):
            raise AetlError("augmentation needs labelled target images; set data.target.labels_per_class >= 1 "
                            "or use app.mode=source")
        else:
            base = labelled
        target = pair.target.train.batch(slice(0, TARGET_IMAGES)) if mode == "source" else None
        log.info("augment %s: making new images from %d and fitting the probe with each share of them in %s "
                 "(on a CPU, about a minute)", mode, len(base.x), sorted(set(self.mix)))
        new_x, new_y = augment(model, base.x, base.y, self, target=target)
        without = target_predictor(model, pair, self.probe_l2)  # as aetl train scores the run
        share, with_aug, tried = self.chosen(model, pair, (new_x, new_y), without)
        images = (new_x.clamp(0, 1) * 255).round().byte().cpu().numpy()
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=images, labels=new_y.cpu().numpy())
        run.save_bytes("augmented.npz", buffer.getvalue())
        save_grid(run, mode, base, new_x, self.amount, pair.target.classes)
        result = {"augment_mode": mode, "augment_amount": self.amount, "augment_strength": self.strength,
                  "n_augmented": len(new_x), "augment_mix": share,
                  "augment_mix_val_acc": tried["val"], "augment_mix_test_acc": tried["test"],
                  "n_augmented_used": used(share, len(labelled), len(new_x)),
                  "target_acc": accuracy(without, pair.target.test),
                  "target_acc_augmented": accuracy(with_aug, pair.target.test),
                  "target_val_acc": accuracy(without, pair.target.val),
                  "target_val_acc_augmented": accuracy(with_aug, pair.target.val)}
        if mode == "source":
            result["augment_source_per_class"] = self.source_per_class
        run.log_metrics("augment", **result)
        return result


    def chosen(self, model: AutoEncoder, pair: Pair, new: tuple[torch.Tensor, torch.Tensor],
               without) -> tuple[float, object, dict[str, dict[str, float | None]]]:
        """The mix share (of `mix`) whose probe scores best on the validation split (ties: the smaller
        share), its predictor, and every share's validation and test accuracy (the test one only to
        report what each share would have given: the choice never sees it). Share s puts the new images at
        s of the probe's training set (0: none, the run's own probe; 1: every one of them)."""
        if not self.mix:
            raise AetlError("app.mix is empty; give the shares to choose from, e.g. app.mix=[0,0.5,1]")
        labelled = pair.target.train.labelled()
        gen = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(new[0]), generator=gen).to(new[0].device)
        best, tried = None, {"val": {}, "test": {}}
        for share in sorted(set(self.mix)):
            if share == 0:
                predict = without
            else:
                keep = order[:used(share, len(labelled), len(new[0]))]
                predict = fit_probe(model, torch.cat([labelled.x, new[0][keep]]), torch.cat([labelled.y, new[1][keep]]),
                                    len(pair.target.classes), self.probe_l2)
            val = accuracy(predict, pair.target.val)
            tried["val"][f"{share:g}"], tried["test"][f"{share:g}"] = val, accuracy(predict, pair.target.test)
            if best is None or (val is not None and (best[2] is None or val > best[2])):
                best = (share, predict, val)
        return best[0], best[1], tried


def used(share: float, real: int, new: int) -> int:
    """How many of `new` augmented images make them `share` of a probe's training set beside `real` images
    (all of them at share 1, or with no real image)."""
    if share <= 0:
        return 0
    if share >= 1 or real == 0:
        return new
    return min(new, round(share / (1 - share) * real))


def run_app(model: AutoEncoder, run, pair: Pair | None = None, **settings: object) -> dict:
    """Augment(**settings) on model (what configs of runs made before Augment name)."""
    return Augment(**settings)(model, run, pair)


def save_grid(run, mode: str, base: Split, new_x: torch.Tensor, amount: int, classes: list[str]) -> None:
    """images/augment_<mode>.png: up to 8 originals (one of each class first), one column each,
    over up to 3 of their new images (new_x holds `amount` copies of base, copy after copy)."""
    y = base.y.tolist()
    firsts = [y.index(c) for c in dict.fromkeys(y)]
    show = (firsts + [i for i in range(len(y)) if i not in firsts])[:8]
    copies = min(3, amount)
    rows = [[base.x[i] for i in show]] + [[new_x[k * len(base) + i] for i in show] for k in range(copies)]
    made = "decoded by T's AE" if mode == "source" else "new"
    labels = ["source" if mode == "source" else "original"] + [made if copies == 1 else f"{made} {k + 1}"
                                                               for k in range(copies)]
    run.save_grid(f"augment_{mode}.png", rows, labels, [f"class {classes[y[i]]}" for i in show], zoom=2)
