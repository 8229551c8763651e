"""The source/target pair: load both domains, map them to one shape, split them.

The test and validation splits of each domain are drawn with `data.split_seed`,
never with the run seed, so every seed and strategy is scored on the same images.
The target training images (`n_train`) and which of them carry labels
(`labels_per_class`) are drawn per class with the run seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from aetl.domains import Domain
from aetl.domains.shape import fit_images
from aetl.errors import AetlError

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Images (N, C, H, W) and labels (N,), -1 where unknown or withheld."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)

    def labelled(self) -> "Split":
        keep = self.y >= 0
        return Split(self.x[keep], self.y[keep])


@dataclass
class Pair:
    source_train: Split
    source_val: Split
    source_test: Split
    target_train: Split  # every target training image; y is -1 on the unlabelled ones
    target_val: Split
    target_test: Split
    classes: list[str]  # the target's
    shape: tuple[int, int, int]
    source_name: str
    target_name: str
    source_classes: list[str]


def load_pair(cfg: DictConfig, seed: int, device: torch.device) -> Pair:
    """Load, reshape and split both domains of `cfg` (the `data` config node)."""
    shape = (int(cfg.channels), int(cfg.image_size), int(cfg.image_size))
    source, xs = _load_domain(cfg.source, shape)
    target, xt = _load_domain(cfg.target, shape)
    s_test, s_val, s_rest = fixed_splits(source.labels, cfg.source.n_test, cfg.source.n_val, cfg.split_seed, "source")
    if cfg.source.n_train is not None:
        s_rest = s_rest[: int(cfg.source.n_train)]
    t_test, t_val, t_rest = fixed_splits(target.labels, cfg.target.n_test, cfg.target.n_val, cfg.split_seed, "target")
    rng = np.random.default_rng(seed)
    t_train = t_rest if cfg.target.n_train is None else sample_balanced(target.labels, t_rest, int(cfg.target.n_train), rng)
    y_train = withhold_labels(target.labels, t_train, int(cfg.target.labels_per_class), rng)

    def split(x: torch.Tensor, labels: np.ndarray, idx: np.ndarray) -> Split:
        return Split(on_device(x[idx], device), torch.as_tensor(labels[idx]).to(device))

    log.info("source %s: %d train / %d val / %d test; target %s: %d train (%d labelled) / %d val / %d test",
             source.name, len(s_rest), len(s_val), len(s_test), target.name, len(t_train),
             int((y_train >= 0).sum()), len(t_val), len(t_test))
    return Pair(
        split(xs, source.labels, s_rest), split(xs, source.labels, s_val), split(xs, source.labels, s_test),
        Split(on_device(xt[t_train], device), torch.as_tensor(y_train).to(device)),
        split(xt, target.labels, t_val), split(xt, target.labels, t_test),
        target.classes, shape, source.name, target.name, source.classes,
    )


def on_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images on the device once, channels_last on CUDA to match convolutional models there."""
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def _load_domain(cfg: DictConfig, shape: tuple[int, int, int]) -> tuple[Domain, torch.Tensor]:
    domain: Domain = instantiate(cfg.load)
    x = fit_images(torch.from_numpy(domain.images), shape[1], shape[0], cfg.fit, cfg.get("margin", 4))
    return domain, x


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation whose every prefix holds the classes as evenly as possible."""
    perm = rng.permutation(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = perm[labels[perm] == c]
        rank[members] = np.arange(len(members))
    return perm[np.argsort(rank[perm], kind="stable")]


def fixed_splits(labels: np.ndarray, n_test: int, n_val: int, split_seed: int, role: str):
    """(test, val, rest) indices: class-balanced, the same for every run seed."""
    if n_test < 1 or n_val < 0:
        raise AetlError(f"data.{role}.n_test must be >= 1 and n_val >= 0, got {n_test} and {n_val}")
    if n_test + n_val >= len(labels):
        raise AetlError(f"data.{role}: n_test + n_val = {n_test + n_val} leaves no training images out of "
                        f"{len(labels)}; lower them")
    order = stratified_order(labels, np.random.default_rng(split_seed))
    return order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]


def sample_balanced(labels: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices from pool, spread over the classes as evenly as the pool allows."""
    if not 1 <= n <= len(pool):
        raise AetlError(f"data.target.n_train={n} but {len(pool)} target images remain after the "
                        f"validation and test splits; choose 1..{len(pool)}")
    return pool[stratified_order(labels[pool], rng)[:n]]


def withhold_labels(labels: np.ndarray, idx: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Labels of idx with all but `per_class` images of each class set to -1."""
    out = np.full(len(idx), -1, dtype=np.int64)
    if per_class == 0:
        return out
    if per_class < 0:
        raise AetlError(f"data.target.labels_per_class must be >= 0, got {per_class}")
    sub = labels[idx]
    if (sub < 0).any():
        raise AetlError("the target domain has no labels; set data.target.labels_per_class=0")
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(sub == c)
        if len(members) < per_class:
            raise AetlError(f"data.target.labels_per_class={per_class} but class {c} has only {len(members)} "
                            f"of the {len(idx)} target training images; lower labels_per_class or raise data.target.n_train")
        chosen = rng.choice(members, per_class, replace=False)
        out[chosen] = c
    return out
