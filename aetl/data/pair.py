"""The source/target pair: load both domains, map them into one frame, split them.

The source is mapped by its own fit. The target's fit may be chosen with the source
model Mf (`fit: auto`, aetl.data.fit), so the target is loaded and split first
(`load_target`) and mapped once Mf is there (`map_target`).

Domains are decoded once into the image cache (aetl.data.imagecache) and memory-mapped from
it; a domain is mapped into the frame as a whole, cached too, and its splits are rows of
that array, kept on the device or streamed from host memory (aetl.data.storage).

The test and validation splits of each domain are drawn with `data.split_seed`,
never with the run seed, so every seed and strategy is scored on the same images.
The target training images (`n_train`) and which of them carry labels
(`labels_per_class`) are drawn per class with the run seed. The target's fit is chosen
from its pool outside the test and validation splits (`Unmapped.unlabelled_images`), in
split_seed's order, so every seed maps the target the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from aetl.data.domains import Domain, unit
from aetl.data.fit import MAX_IMAGES, FitChoice, source_fit, target_fit
from aetl.data.framing import Levels, changes_nothing, fit_array
from aetl.data.imagecache import ImageCache
from aetl.data.storage import Split, Storage, upload
from aetl.errors import AetlError
from aetl.infra.schema import Count, ImageSize, Natural, OpenShare, Seed, Target
from aetl.models import AutoEncoder

log = logging.getLogger(__name__)
LEVEL_IMAGES = 4096  # source images behind its background and foreground levels ...
LEVEL_VALUES = 2 ** 22  # ... or fewer, for large colour images (4096 28x28 digits are 3.2M values)


@dataclass
class DomainSettings:
    """data.source and data.target: a domain (configs/domain/) and its splits. Its other keys
    are its loader's arguments (`load`), declared by the loader."""

    OTHER_KEYS = "load"

    name: str
    fit: Literal["auto", "resize", "frame", "crop"]
    margin: Count  # frame and crop: pixels around the content
    tone: Literal["auto", "keep", "invert", "match"]
    load: Target
    n_train: Natural | None  # training images (null: all that remain after the test and validation splits)
    n_val: Count
    n_test: Natural
    labels_per_class: Count  # the target's: how many training images of each class are labelled


@dataclass
class DataSettings:
    """The `data` config: the pair, the frame both are mapped into, and where images live."""

    image_size: ImageSize
    channels: Literal[1, 3]
    split_seed: Seed  # draws the test and validation splits: the same for every seed and strategy
    storage: Literal["auto", "device", "stream"]
    memory_share: OpenShare
    workers: Count | None
    source: DomainSettings
    target: DomainSettings


@dataclass
class Side:
    """One domain of the pair, mapped into the pair's frame and split."""

    name: str
    classes: list[str]
    train: Split  # the target's: y is -1 on the images whose labels are withheld
    val: Split
    test: Split
    fit: FitChoice

    def levels(self) -> Levels:
        """The background and foreground levels of the training images (what a `match` tone moves onto)."""
        per_image = max(1, int(np.prod(self.train.images.shape[1:])))
        return Levels.of(self.train.batch(slice(0, min(LEVEL_IMAGES, max(1, LEVEL_VALUES // per_image)))).cpu())


@dataclass
class Pair:
    source: Side
    target: Side
    shape: tuple[int, int, int]

    def head_classes(self) -> torch.Tensor | None:
        """For each target class, the index of the source class of the same name (so that Mf's
        source classifier can be scored on T), or None when some target class has no match."""
        found = shared_classes(self.source.classes, self.target.classes)
        return None if found is None else torch.tensor(found, device=self.target.test.device)


@dataclass
class Unmapped:
    """A domain loaded at its own size and split, before it is mapped into the pair's frame
    (the target waits for Mf when its fit is chosen)."""

    domain: Domain
    train: np.ndarray  # indices
    val: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray  # the training images' labels, -1 where withheld
    role: str = "target"
    key: dict = field(default_factory=dict)  # the domain's image cache key and fingerprint, under which
    fingerprint: str = ""                     # its images mapped into a frame are cached too
    pool: np.ndarray | None = None  # indices outside the test and validation splits, in split_seed's order

    def train_images(self, limit: int | None = None, rows: np.ndarray | None = None) -> torch.Tensor:
        """The training images at their own size, float32 in [0, 1]: the first `limit`, or
        those at positions `rows` of the training split (all of them when neither is given)."""
        idx = self.train[rows] if rows is not None else self.train if limit is None else self.train[:limit]
        return unit(torch.from_numpy(self.domain.images[idx]))

    def unlabelled_images(self, limit: int) -> torch.Tensor:
        """The first `limit` images of the pool outside the test and validation splits (of the
        training split where no pool was kept), at their own size, float32 in [0, 1]: the
        same images for every run seed, and no label read."""
        pool = self.train if self.pool is None else self.pool
        return unit(torch.from_numpy(self.domain.images[pool[:limit]]))

    def mapped(self, shape: tuple[int, int, int], fit: FitChoice, storage: Storage) -> Side:
        d = self.domain
        if d.images.shape[1] == 3 and shape[0] == 1:
            log.warning("%s %s: colour images, turned grey to fit the pair's frame (data.channels=1); set "
                        "data.channels=3 to keep their colour (a grey %s is then repeated over three channels)",
                        self.role, d.name, "source" if self.role == "target" else "target")
        images = self.framed(shape, fit, storage)
        n = len(self.train) + len(self.val) + len(self.test)
        stream = storage.streams(n * int(np.prod(shape)), f"{self.role} {d.name}")

        def split(idx: np.ndarray, labels: np.ndarray, train: bool = False) -> Split:
            y = torch.as_tensor(labels).to(storage.device)
            if stream or storage.device.type == "cpu":  # host memory: rows of the (memory-mapped) array
                return Split(images, y, idx, stream and train, storage.n_workers())
            return Split(upload(images, idx, storage.device), y)

        return Side(d.name, d.classes, split(self.train, self.train_labels, train=True),
                    split(self.val, d.labels[self.val]), split(self.test, d.labels[self.test]), fit)

    def framed(self, shape: tuple[int, int, int], fit: FitChoice, storage: Storage) -> np.ndarray:
        """The whole domain mapped into the frame by fit: from the image cache, or as it is
        when the fit changes nothing."""
        c, size = shape[0], shape[1]
        images = self.domain.images
        if changes_nothing(fit.fit, images.shape, size, c):
            return images

        def build(alloc) -> Domain:
            out = fit_array(images, size, c, fit.fit, alloc((len(images), *shape)))
            return Domain(self.domain.name, out, self.domain.labels, self.domain.classes)

        spec = {**self.key, "fit": fit.fit.record(), "shape": list(shape)}
        return storage.cache.mapped(spec, self.fingerprint, build, self.role).images


def frame_shape(cfg: DictConfig) -> tuple[int, int, int]:
    return int(cfg.channels), int(cfg.image_size), int(cfg.image_size)


def load_source(cfg: DictConfig, device: torch.device, cache_dir: str | None = None) -> Side:
    """The source domain of `cfg` (the `data` node), mapped by its own fit and split."""
    storage = Storage.of(cfg, device, cache_dir)
    domain, key, fingerprint = storage.cache.load(cfg.source.load, "source")
    domain = replace(domain, name=cfg.source.name)  # a loader may serve several domains (crops: photos, textures)
    test, val, rest = fixed_splits(domain.labels, cfg.source.n_test, cfg.source.n_val, cfg.split_seed, "source",
                                   domain.classes)
    if cfg.source.n_train is not None:
        rest = rest[: int(cfg.source.n_train)]
    side = Unmapped(domain, rest, val, test, domain.labels[rest], "source", key, fingerprint)
    log.info("source %s: %d train / %d val / %d test", domain.name, len(rest), len(val), len(test))
    return side.mapped(frame_shape(cfg), FitChoice(source_fit(cfg.source), {}), storage)


def load_target(cfg: DictConfig, seed: int, cache_dir: str | None = None) -> Unmapped:
    """The target domain: fixed test and validation splits, and the run seed's training
    images (`n_train`) with all but `labels_per_class` of each class's labels withheld."""
    domain, key, fingerprint = ImageCache(cache_dir).load(cfg.target.load, "target")
    domain = replace(domain, name=cfg.target.name)
    test, val, rest = fixed_splits(domain.labels, cfg.target.n_test, cfg.target.n_val, cfg.split_seed, "target",
                                   domain.classes)
    rng = np.random.default_rng(seed)
    train = rest if cfg.target.n_train is None else sample_balanced(domain.labels, rest, int(cfg.target.n_train), rng)
    labels = withhold_labels(domain.labels, train, int(cfg.target.labels_per_class), rng, domain.classes)
    log.info("target %s: %d train (%d labelled) / %d val / %d test", domain.name, len(train),
             int((labels >= 0).sum()), len(val), len(test))
    return Unmapped(domain, train, val, test, labels, "target", key, fingerprint, pool=rest)


def map_target(target: Unmapped, cfg: DictConfig, source: Side, mf: AutoEncoder | None, storage: Storage,
               fit: FitChoice | None = None) -> Side:
    """The target mapped into the pair's frame (kept as `storage` says) by `fit`, else by its
    config's (chosen with Mf where it is auto, from the unlabelled images every seed shares)."""
    shape = frame_shape(cfg)
    if fit is None:
        fit = target_fit(target.unlabelled_images(MAX_IMAGES), cfg.target, shape[1], shape[0], mf, source.levels())
    return target.mapped(shape, fit, storage)


def load_pair(cfg: DictConfig, seed: int, device: torch.device, mf: AutoEncoder | None = None,
              fit: FitChoice | None = None, cache_dir: str | None = None) -> Pair:
    """Both domains of `cfg`, mapped and split: the target by `fit` when given (a finished run's),
    else by its config's, chosen with mf where it is auto."""
    source = load_source(cfg, device, cache_dir)
    target = map_target(load_target(cfg, seed, cache_dir), cfg, source, mf, Storage.of(cfg, device, cache_dir), fit)
    return Pair(source, target, frame_shape(cfg))


def shared_classes(source: Sequence[str], target: Sequence[str]) -> list[int] | None:
    """For each target class, the index of the source class of the same name, or None when
    some target class has none (or the target has no classes)."""
    index = {_class_key(c): i for i, c in enumerate(source)}
    found = [index.get(_class_key(c)) for c in target]
    return None if not found or None in found else found


def _class_key(name: str) -> str:
    """Class names compare without case, spaces or punctuation, and numbers without leading
    zeros: '07' is '7', 'T-Shirt' is 'tshirt'."""
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    return key.lstrip("0") or key[-1:] if key.isdigit() else key


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation whose every prefix holds the classes as evenly as possible."""
    perm = rng.permutation(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = perm[labels[perm] == c]
        rank[members] = np.arange(len(members))
    return perm[np.argsort(rank[perm], kind="stable")]


def fixed_splits(labels: np.ndarray, n_test: int, n_val: int, split_seed: int, role: str,
                 classes: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(test, val, rest) indices: class-balanced, the same for every run seed. Sizes that would
    leave under a fifth of a (small) domain to train on are scaled down to fit (fitted_sizes);
    classes too small to reach the test split or the training images are named."""
    if n_test < 1 or n_val < 0:
        raise AetlError(f"data.{role}.n_test must be >= 1 and n_val >= 0, got {n_test} and {n_val}")
    n_test, n_val = fitted_sizes(len(labels), n_test, n_val, role)
    order = stratified_order(labels, np.random.default_rng(split_seed))
    test, val, rest = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    for where, idx in (("test split", test), ("training images", rest)):
        missing = [str(classes[c]) if c < len(classes) else str(c)
                   for c in np.unique(labels[labels >= 0]) if not (labels[idx] == c).any()]
        if missing:
            log.warning("data.%s: %d class(es) with too few images to reach the %s: %s (%d images in all); add "
                        "images of them or remove them", role, len(missing), where, ", ".join(missing[:10]),
                        len(labels))
    return test, val, rest


HELD_OUT = 0.3  # the share of a small domain that scaled test and validation splits take


def fitted_sizes(n: int, n_test: int, n_val: int, role: str) -> tuple[int, int]:
    """n_test and n_val as configured, or, where they would leave under a fifth of the n images
    to train on (a small folder under a pair's sizes), scaled to HELD_OUT of them in the same
    proportion, with a warning giving the numbers."""
    if n_test + n_val <= 0.8 * n:
        return n_test, n_val
    if n < 3:
        raise AetlError(f"data.{role}: {n} image(s) cannot be split into test, validation and training images; "
                        "add images (at least a few per class)")
    test = max(1, round(n * HELD_OUT * n_test / (n_test + n_val)))
    val = max(1 if n_val else 0, round(n * HELD_OUT) - test)
    log.warning("data.%s: %d images cannot hold n_test=%d + n_val=%d; split %d test / %d validation / %d "
                "training images instead (%.0f%% held out, in the same proportion); set data.%s.n_test and "
                "n_val to choose", role, n, n_test, n_val, test, val, n - test - val, 100 * HELD_OUT, role)
    return test, val


def sample_balanced(labels: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices from pool, spread over the classes as evenly as the pool allows."""
    if not 1 <= n <= len(pool):
        raise AetlError(f"data.target.n_train={n} but {len(pool)} target images remain after the "
                        f"validation and test splits; choose 1..{len(pool)}")
    return pool[stratified_order(labels[pool], rng)[:n]]


def withhold_labels(labels: np.ndarray, idx: np.ndarray, per_class: int, rng: np.random.Generator,
                    classes: Sequence[str] = ()) -> np.ndarray:
    """Labels of idx with all but `per_class` images of each class (named by `classes`) set to -1."""
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
            name = str(classes[c]) if c < len(classes) else str(int(c))
            raise AetlError(f"data.target.labels_per_class={per_class} but class {name!r} has only {len(members)} "
                            f"of the {len(idx)} target training images; lower labels_per_class or raise data.target.n_train")
        chosen = rng.choice(members, per_class, replace=False)
        out[chosen] = c
    return out
