"""The decoded-image cache: a domain is decoded once, then memory-mapped by every later
run and by every job of a sweep.

Entries live in `<cache_dir>/images/<key>/` (images.npy: uint8 N x C x H x W, labels.npy,
entry.json, sealed by checksum.json: aetl.infra.integrity verifies every open, and an entry
that fails, or one without a checksum, is built again with a warning), of two kinds:
- a domain as loaded (`load`): keyed by its load config (a folder's root, size and
  skip_bad; a bundled domain's settings) and aetl's version. A folder's fingerprint (its
  files, their sizes and modification times) is stored with it and checked on every
  lookup: a changed, added or removed file decodes the folder again, in place.
- a domain mapped into a pair's frame (`mapped`): keyed by the domain's key, the fit and
  the frame's shape, with the domain's fingerprint. A fit that changes nothing (resize to
  the size it has, same channels, tone kept) needs no entry: the domain's arrays are used.
A job holds a lock on `<key>.lock` (filelock, as the source-model cache) while it looks
up and, on a miss, builds the entry in a staging dir renamed into place when complete;
so concurrent jobs decode once and never read a half-written entry. A replaced entry's
files stay readable by runs that have them mapped (POSIX keeps an unlinked file's data).
With cache_dir=null everything is decoded into memory.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from filelock import FileLock
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

import aetl
from aetl.data.domains import Domain
from aetl.errors import AetlError
from aetl.infra.cache import cache_key
from aetl.infra.integrity import NO_CHECKSUM, array_promise, seal, verify

log = logging.getLogger(__name__)
FORMAT = 1  # bump when what an entry holds changes
Alloc = Callable[[tuple[int, ...]], np.ndarray]


def in_memory(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.uint8)


class ImageCache:
    def __init__(self, cache_dir: str | Path | None) -> None:
        self.root = Path(str(cache_dir)).expanduser() / "images" if cache_dir else None
        self.misses = 0  # entries this instance built
        if self.root is not None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise self._unwritable(err) from None

    def load(self, load: DictConfig, role: str) -> tuple[Domain, dict, str]:
        """The domain a `load` config gives (a Hydra _target_ and its arguments), with its key
        spec and fingerprint (for `mapped`)."""
        loader = get_method(load._target_)
        args = {k: v for k, v in OmegaConf.to_container(load, resolve=True).items() if k != "_target_"}
        started = time.perf_counter()  # the folder's listing counts in the time a load takes
        fingerprint_of = getattr(sys.modules[loader.__module__], "fingerprint", None)
        fingerprint = fingerprint_of(**args) if fingerprint_of else ""
        spec = {"kind": "domain", "load": {"_target_": load._target_, **args}, "aetl": aetl.__version__,
                "format": FORMAT}
        takes_alloc = "alloc" in inspect.signature(loader).parameters  # it can decode into a memory-mapped file

        def build(alloc: Alloc) -> Domain:
            return loader(**args, alloc=alloc) if takes_alloc else loader(**args)

        return self._entry(spec, fingerprint, build, role, started), spec, fingerprint

    def mapped(self, spec: dict, fingerprint: str, build: Callable[[Alloc], Domain], role: str) -> Domain:
        """A domain's images mapped into the pair's frame; spec: the domain's key spec plus the
        fit and shape."""
        return self._entry({**spec, "kind": "mapped"}, fingerprint, build, role, time.perf_counter())

    def _entry(self, spec: dict, fingerprint: str, build: Callable[[Alloc], Domain], role: str,
               started: float) -> Domain:
        made = "decoded" if spec["kind"] == "domain" else f"mapped ({spec['fit']['geometry']})"
        if self.root is None:
            built = build(in_memory)
            _log(role, built, f"{made} into memory (cache_dir=null)", started)
            return built
        key = cache_key(spec)
        entry = self.root / key
        with FileLock(self.root / f"{key}.lock"):  # waits while another job builds this entry
            domain = self._read(entry, fingerprint)
            if domain is not None:
                for note in domain.notes:
                    log.warning("%s (when it was decoded)", note)
                _log(role, domain, f"memory-mapped from the image cache {entry}", started)
                return domain
            self.misses += 1
            with self._writing(key) as staging:
                built = build(_alloc_in(staging))
                _write(staging, built, spec, fingerprint)
                if entry.exists():  # stale: the folder changed since it was decoded
                    stale = self.root / f"{key}.stale"
                    entry.replace(stale)
                    shutil.rmtree(stale, ignore_errors=True)
                staging.replace(entry)
            _log(role, built, f"{made} into the image cache {entry}", started)
            opened = _opened(entry)
            if isinstance(opened, str):  # a disk that does not keep what was just written
                raise AetlError(f"the image cache entry {entry} fails its check right after it was built ({opened}); "
                                "check the disk under cache_dir, or set cache_dir=null to decode into memory")
            return opened

    def _read(self, entry: Path, fingerprint: str) -> Domain | None:
        """The entry, verified (aetl.infra.integrity); None when there is none, it is out of date, or
        it fails its check (a warning naming it: the caller builds it again)."""
        if not entry.is_dir():
            return None
        opened = _opened(entry)
        if isinstance(opened, str):
            stale = opened == NO_CHECKSUM
            log.warning("the image cache entry %s %s: %s; building it again", entry,
                        "is stale" if stale else "is damaged", opened)
            return None
        if _fingerprint(entry) != fingerprint:
            log.info("the image cache entry %s is out of date (its files changed): decoding again", entry)
            return None
        return opened

    @contextlib.contextmanager
    def _writing(self, key: str) -> Iterator[Path]:
        staging = self.root / f"{key}.staging"
        shutil.rmtree(staging, ignore_errors=True)  # a killed job's (we hold the lock)
        try:
            staging.mkdir()
            yield staging
        except OSError as err:
            raise self._unwritable(err) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _unwritable(self, err: OSError) -> AetlError:
        return AetlError(f"cannot write the image cache at {self.root} ({err.strerror or err}); free space there, "
                         "set cache_dir to a writable folder, or cache_dir=null to decode into memory")


def _log(role: str, domain: Domain, how: str, started: float) -> None:
    """'source folder: 20000 images 3x64x64 memory-mapped from the image cache <dir> in 0.21 s'."""
    log.info("%s %s: %d images %s %s in %.2f s", role, domain.name, len(domain.images),
             "x".join(map(str, domain.images.shape[1:])), how, time.perf_counter() - started)


def _alloc_in(staging: Path) -> Alloc:
    """Arrays as memory-mapped .npy files in the staging dir: a folder larger than memory decodes."""
    count = iter(range(sys.maxsize))

    def alloc(shape: tuple[int, ...]) -> np.ndarray:
        return np.lib.format.open_memmap(staging / f"part{next(count)}.npy", mode="w+", dtype=np.uint8, shape=shape)

    return alloc


ENTRY_FILES = ("images.npy", "labels.npy", "entry.json")


def _opened(entry: Path) -> Domain | str:
    """The verified entry, or what is wrong with it (one line)."""
    problem = verify(entry, ENTRY_FILES)
    if problem:
        return problem
    try:
        meta = json.loads((entry / "entry.json").read_text())
        images = np.load(entry / "images.npy", mmap_mode="r")
        labels = np.load(entry / "labels.npy")
    except (OSError, ValueError) as err:
        return f"it cannot be read ({type(err).__name__})"
    problem = _meta_problem(meta, images, labels)
    return problem or Domain(meta["name"], images, labels, meta["classes"], meta["notes"])


def _meta_problem(meta: object, images: np.ndarray, labels: np.ndarray) -> str | None:
    """entry.json against the arrays (sealed together, checked once more before use)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not isinstance(meta.get("fingerprint"),
                                                                                             str):
        return "its entry.json is not an image cache entry's"
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (meta.get("classes"),
                                                                                   meta.get("notes"))):
        return "its entry.json lists no classes or notes"
    if images.dtype != np.uint8 or images.ndim != 4:
        return f"images.npy holds {images.dtype} {list(images.shape)}, not uint8 images (N, C, H, W)"
    if labels.dtype.kind not in "iu" or labels.shape != images.shape[:1]:
        return f"labels.npy holds {labels.dtype} {list(labels.shape)}, not {len(images)} integer labels"
    if meta.get("shape") != list(images.shape):
        return f"its entry.json says shape {meta.get('shape')} where images.npy holds {list(images.shape)}"
    if labels.size and (labels.min() < -1 or labels.max() >= max(1, len(meta["classes"]))):
        return f"labels.npy holds labels outside [-1, {len(meta['classes'])})"
    return None


def _fingerprint(entry: Path) -> str:
    return json.loads((entry / "entry.json").read_text())["fingerprint"]


def _write(staging: Path, domain: Domain, spec: dict, fingerprint: str) -> None:
    images = domain.images
    if isinstance(images, np.memmap) and Path(images.filename).parent == staging:
        images.flush()
        Path(images.filename).replace(staging / "images.npy")
    else:
        np.save(staging / "images.npy", images)
    np.save(staging / "labels.npy", domain.labels)
    for part in staging.glob("part*.npy"):  # what the loader allocated and did not keep
        part.unlink()
    meta = {"fingerprint": fingerprint, "name": domain.name, "classes": list(domain.classes), "notes": domain.notes,
            "shape": list(images.shape), "spec": spec}
    (staging / "entry.json").write_text(json.dumps(meta, indent=2, default=str))
    labels = np.asarray(domain.labels)
    seal(staging, ENTRY_FILES, {"images.npy": array_promise(np.asarray(images)),
                                "labels.npy": array_promise(labels, (-1, max(1, len(domain.classes))))})
