"""The source-model cache: Mf is pretrained once per key, not once per job.

The key is a hash of everything that determines Mf: the source data and its
mapping and splits, the backbone, the pretraining settings, the optimiser, the seed
and aetl's version. An entry is `<dir>/<key>/source.pt` plus `spec.json` (what the
key stands for), sealed by checksum.json (aetl.infra.integrity: verified on every open; an
entry that fails, or one without a checksum, is pretrained again with a warning). A job holds
an exclusive lock on `<dir>/<key>.lock` (filelock: flock
on POSIX, msvcrt on Windows) while it looks up and, on a miss, trains and stores the
entry, so concurrent jobs (joblib, submitit, SLURM arrays on a shared file system with
working locks) never train the same entry twice or read a half-written one; jobs with
other keys do not wait. A cache folder aetl cannot write to is refused before any
pretraining; an entry that cannot be stored (a full disk) is a warning, and the job goes on.

The same mechanism keeps two more kinds of entry, each keyed by the config that can change it
and nothing else (no run setting such as trainer.checkpoint_every, progress or the logger):
`<dir>/targets/<key>/target.pt`, a transferred model (TargetCache: a label-budget sweep trains
each model once) and `<dir>/fits/<key>/fit.json`, the target's `fit: auto` choice (FitCache).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock

from aetl.errors import AetlError
from aetl.infra.checkpoint import load_checkpoint
from aetl.infra.integrity import NO_CHECKSUM, seal, verify
from aetl.infra.lock import cannot_write, writable
from aetl.infra.runconfig import as_released
from aetl.infra.rundir import atomic_write

log = logging.getLogger(__name__)


def cache_key(spec: dict) -> str:
    """The hash of spec, spelt as aetl 0.1 spelt its module paths (entries it wrote keep hitting)."""
    return hashlib.sha256(json.dumps(as_released(spec), sort_keys=True, default=str).encode()).hexdigest()[:16]


class SourceCache:
    """Mf: `<dir>/<key>/source.pt`."""

    NAME, KIND = "source.pt", ""
    WHAT, AGAIN = "source model", "pretraining again"
    CHECKPOINT = "source"  # the kind of checkpoint an entry holds

    @property
    def files(self) -> tuple[str, str]:
        """What an entry holds, all of it sealed (aetl.infra.integrity)."""
        return self.NAME, "spec.json"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser() / self.KIND if self.KIND else Path(root).expanduser()
        fix = "set cache_dir to a writable folder (or cache_dir=null: no cache)"
        writable(self.root, fix)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AetlError(cannot_write(self.root, err, fix)) from None

    def entry(self, key: str) -> Path:
        return self.root / key / self.NAME

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        with FileLock(self.root / f"{key}.lock"):  # waits while another job trains this key
            yield

    def load(self, key: str) -> dict | None:
        """The entry, verified (aetl.infra.integrity), or None: there is none, or it fails its
        check (a warning naming it; the caller builds it again)."""
        path = self.entry(key)
        if not self.verified(path):
            return None
        try:
            return self._read(path)
        except AetlError as err:
            log.warning("ignoring the unreadable cache entry %s (%s); %s", path, err, self.AGAIN)
            return None

    def _read(self, path: Path) -> dict | None:
        """The verified entry's content (an AetlError when it cannot be read)."""
        return load_checkpoint(path, self.CHECKPOINT)

    def verified(self, path: Path) -> bool:
        """Whether the entry at path is there and passes its check (a warning when it fails)."""
        if not path.is_file():
            return False
        problem = verify(path.parent, self.files)
        if problem:
            log.warning("the %s cache entry %s %s: %s; %s", self.WHAT, path.parent,
                        "is stale" if problem == NO_CHECKSUM else "is damaged", problem, self.AGAIN)
        return problem is None

    def store(self, key: str, state: dict, spec: dict) -> Path | None:
        """Write and seal the entry; when it cannot be written (a full disk), warn and return None."""
        import torch

        return self._store(key, spec, lambda f: torch.save(state, f))

    def _store(self, key: str, spec: dict, write: Callable[[Any], Any]) -> Path | None:
        path = self.entry(key)
        try:
            atomic_write(path.parent / "spec.json", lambda f: f.write(json.dumps(spec, indent=2, default=str).encode()))
            atomic_write(path, write)
            seal(path.parent, self.files)
        except OSError as err:
            log.warning("%s not cached: cannot seal %s (%s)", self.WHAT, path.parent, err.strerror or err)
            return None
        except AetlError as err:
            log.warning("%s not cached: %s", self.WHAT, err)
            return None
        return path


class TargetCache(SourceCache):
    """Transferred models: `<dir>/targets/<key>/target.pt`, with what the run that trained it logged."""

    NAME, KIND = "target.pt", "targets"
    WHAT, AGAIN = "target model", "training again"
    CHECKPOINT = "candidate"


class FitCache(SourceCache):
    """The target's fit, chosen label-free with Mf: `<dir>/fits/<key>/fit.json`."""

    NAME, KIND = "fit.json", "fits"
    WHAT, AGAIN = "fit choice", "choosing again"

    def _read(self, path: Path) -> dict | None:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise AetlError(str(err)) from None
        return record if isinstance(record, dict) else None

    def store(self, key: str, state: dict, spec: dict) -> Path | None:
        return self._store(key, spec, lambda f: f.write(json.dumps(state, indent=2).encode()))
