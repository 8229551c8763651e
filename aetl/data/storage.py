"""Where a domain's images live while a run trains, and how batches reach the device.

Images stay uint8 until a batch is on the device, where it becomes float32 in [0, 1].
`data.storage` chooses, per domain:
- `device`: the images sit on the device (a GPU's memory; on a CPU, host memory, where a
  memory-mapped image cache entry is read in place) and each batch is gathered there;
- `stream`: they stay in host memory, memory-mapped from the image cache, and a PyTorch
  DataLoader's worker processes gather each batch (pinned for a GPU, several prefetched)
  while the device trains on the last one;
- `auto`: `device` when the domain's images fit in `data.memory_share` of the device's
  free memory (host memory available, on a CPU), else `stream`.
Either way the loop draws the shuffle (aetl.training.loop): the same torch.Generator and the same
permutation, so both give the same batches, the same figures, and the same exact resume
from last.pt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Sampler

from aetl.data.domains import unit
from aetl.data.domains.decode import usable_cores
from aetl.data.imagecache import ImageCache
from aetl.errors import AetlError
from aetl.infra.distributed import SINGLE, World
from aetl.infra.resources import available_memory

log = logging.getLogger(__name__)
MODES = ("auto", "device", "stream")
PREFETCH = 4  # batches each worker prepares ahead
UPLOAD_CHUNK = 8192  # images copied to the device at a time


@dataclass
class Split:
    """Images and labels (N,), -1 where unknown or withheld.

    `images` is uint8 (N, C, H, W) on the device (float in [0, 1] is accepted too); or a
    host array, memory-mapped from the image cache, of which `rows` are this split's: then
    batches are gathered from it (by DataLoader workers when `streamed`) and moved to the
    labels' device. Either way a batch reaches the model as float32 in [0, 1]."""

    images: torch.Tensor | np.ndarray
    y: torch.Tensor
    rows: np.ndarray | None = None
    streamed: bool = False
    workers: int = 0  # streamed: DataLoader worker processes

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        return self.y.device

    def pixels(self, idx: torch.Tensor | slice | None = None) -> torch.Tensor:
        """The images idx (all when None) as stored (uint8), on the device."""
        if self.rows is None:
            return self.images if idx is None else self.images[idx]
        rows = self.rows if idx is None else self.rows[idx.cpu().numpy() if torch.is_tensor(idx) else idx]
        return to_device(torch.from_numpy(np.ascontiguousarray(self.images[rows])), self.device)

    def batch(self, idx: torch.Tensor | slice | None = None) -> torch.Tensor:
        """The images idx (all when None) as float32 in [0, 1], on the device."""
        return unit(self.pixels(idx))

    @property
    def x(self) -> torch.Tensor:
        """Every image as float32 in [0, 1] on the device: for small splits (a training
        split is read a batch at a time)."""
        return self.batch()

    def labelled(self) -> Split:
        keep = torch.nonzero(self.y >= 0).squeeze(1)
        return Split(self.pixels(keep), self.y[keep])


@dataclass
class Storage:
    """How a run keeps its images: the compute device, data.storage's settings, the image cache."""

    device: torch.device
    mode: str = "auto"
    share: float = 0.5  # of the device's free memory that `auto` lets a domain's images take
    workers: int | None = None  # stream: DataLoader workers (None: chosen for the device)
    cache: ImageCache = ImageCache(None)

    @classmethod
    def of(cls, cfg: DictConfig, device: torch.device, cache_dir: str | None = None) -> "Storage":
        """From the `data` node (older run configs without these keys get the defaults)."""
        mode, share, workers = cfg.get("storage", "auto"), cfg.get("memory_share", 0.5), cfg.get("workers", None)
        if mode not in MODES:
            raise AetlError(f"data.storage must be auto, device or stream, got {mode!r}")
        if not 0 < share <= 1:
            raise AetlError(f"data.memory_share must be in (0, 1], got {share}")
        if workers is not None and workers < 0:
            raise AetlError(f"data.workers must be >= 0 (or null: chosen for the device), got {workers}")
        return cls(device, mode, float(share), workers, ImageCache(cache_dir))

    def streams(self, nbytes: int, role: str) -> bool:
        """Whether a domain whose images take nbytes (uint8) streams; logs where they go."""
        free = free_memory(self.device)
        fits = free is None or nbytes <= self.share * free
        stream = self.mode == "stream" or (self.mode == "auto" and not fits)
        room = "" if free is None else f" in {self.share:.0%} of the {free / 2**30:.1f} GiB free"
        why = {"auto": f"{'fits' if fits else 'does not fit'}{room}", "device": "data.storage=device",
               "stream": "data.storage=stream"}[self.mode]
        log.info("%s images: %.1f MiB as uint8, %s (%s)", role, nbytes / 2**20,
                 f"streamed by {self.n_workers()} DataLoader worker(s)" if stream else f"on {self.device.type}", why)
        return stream

    def n_workers(self) -> int:
        if self.workers is not None:
            return int(self.workers)
        cores = usable_cores()  # a GPU wants its batches ready; on a CPU the workers share the cores that train
        return min(8, max(1, cores - 1)) if self.device.type == "cuda" else min(4, max(1, cores // 2))


def free_memory(device: torch.device) -> int | None:
    """Bytes free on the device: a GPU's free memory, else the host's available memory (within a
    cgroup's limit)."""
    return available_memory(device.type)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images onto the device (without waiting, from pinned memory), channels_last on CUDA
    to match convolutional models there."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" and x.dim() == 4 else x


def upload(images: np.ndarray, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """images[rows] as one uint8 tensor on the device, copied a chunk at a time (a host copy
    of the whole split is never made)."""
    out = torch.empty((len(rows), *images.shape[1:]), dtype=torch.uint8, device=device)
    for at in range(0, len(rows), UPLOAD_CHUNK):
        chunk = np.ascontiguousarray(images[rows[at:at + UPLOAD_CHUNK]])
        out[at:at + UPLOAD_CHUNK] = torch.from_numpy(chunk).to(device)
    return out.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else out


class Feed:
    """A phase's training batches, an epoch at a time, in the loop's shuffled order: gathered
    on the device, or (a streamed split) by DataLoader workers from the memory-mapped array."""

    def __init__(self, split: Split, batch_size: int, world: World = SINGLE) -> None:
        self.split, self.batch_size, self.world = split, batch_size, world
        self.sampler = _Batches()
        self.loader = None
        if split.streamed:
            workers = split.workers
            self.loader = DataLoader(_Rows(split.images), sampler=self.sampler, batch_size=None,
                                     num_workers=workers, pin_memory=split.device.type == "cuda",
                                     persistent_workers=workers > 0, prefetch_factor=PREFETCH if workers else None)

    def epoch(self, perm: torch.Tensor, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images as float on the device, labels) for the batches start, start + 1, ... of perm."""
        bs = self.batch_size
        picks = [self.world.shard(perm[i * bs:(i + 1) * bs]) for i in range(start, len(perm) // bs)]
        if self.loader is None:
            return ((self.split.batch(idx), self.split.y[idx]) for idx in picks)
        on_host = perm.cpu()  # once an epoch: the workers index the host array
        self.sampler.batches = [self.split.rows[self.world.shard(on_host[i * bs:(i + 1) * bs]).numpy()]
                                for i in range(start, len(perm) // bs)]
        device = self.split.device
        return ((unit(to_device(xb, device)), self.split.y[idx]) for xb, idx in zip(self.loader, picks))


class _Batches(Sampler):
    """The row indices of each batch of the current epoch (set before each pass)."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Rows(Dataset):
    """Rows of a host array, a batch per item. A memory-mapped array travels to worker
    processes as its file name and is mapped again there, never copied."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __getitem__(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.array[rows]))

    def __len__(self) -> int:
        return len(self.array)

    def __getstate__(self) -> dict:
        a = self.array  # a whole .npy file as np.load(mmap_mode=...) maps it
        if isinstance(a, np.memmap) and a.filename:
            return {"file": str(a.filename), "offset": a.offset, "dtype": a.dtype.str, "shape": a.shape}
        return {"array": a}

    def __setstate__(self, state: dict) -> None:
        if "array" in state:
            self.array = state["array"]
        else:
            self.array = np.memmap(state["file"], np.dtype(state["dtype"]), "r", state["offset"], state["shape"])
