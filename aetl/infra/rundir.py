"""Everything a run writes: metrics.jsonl, summary.json, checkpoints/, images/.

Files are written to a temporary name and moved into place with os.replace, so
a kill at any moment leaves either the previous file or the new one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from aetl.errors import AetlError, in_multirun
from aetl.infra.grid import labelled_grid, png_info, to_pil

log = logging.getLogger(__name__)


class Run:
    """The output directory of one job."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        """enabled=False: a run that writes nothing (the ranks other than 0 under torchrun)."""
        self.root = Path(root)
        self.enabled = enabled
        if enabled:
            self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.root / "checkpoints"  # made by atomic_write when first used
        self.images = self.root / "images"
        self.metrics_path = self.root / "metrics.jsonl"
        self.loggers: list = []  # aetl.infra.loggers: where every record goes besides metrics.jsonl
        self.started = time.perf_counter()

    def log_metrics(self, phase: str, epoch: int | None = None, step: int | None = None, **metrics: Any) -> None:
        if not self.enabled:
            return
        record = {"phase": phase, "epoch": epoch, "step": step,
                  "time_s": round(self.elapsed(), 3), **metrics}
        try:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(_jsonable(record)) + "\n")
        except OSError as err:  # a resume cuts a half-written line off again
            raise AetlError(f"could not write {self.metrics_path} ({err.strerror or err}); free some space "
                            f"and {resume_hint(self.root)}") from None
        for logger in self.loggers:
            logger.log(_jsonable(record))

    def close(self) -> None:
        """Close the loggers (their files are flushed at every record already)."""
        for logger in self.loggers:
            logger.close()
        self.loggers = []

    def elapsed(self) -> float:
        """Seconds this run has been going, across resumes."""
        return time.perf_counter() - self.started

    def metrics_bytes(self) -> int:
        return self.metrics_path.stat().st_size if self.enabled and self.metrics_path.is_file() else 0

    def metrics_since(self, size: int) -> list[str]:
        """The lines metrics.jsonl gained after it was `size` bytes long."""
        if not self.enabled or not self.metrics_path.is_file():
            return []
        with open(self.metrics_path, "rb") as f:
            f.seek(size)
            return f.read().decode().splitlines()

    def replay_metrics(self, lines: Sequence[str]) -> None:
        """Lines another job logged (a cached model's training), appended as they were, to the
        loggers too."""
        if not self.enabled or not lines:
            return
        with open(self.metrics_path, "a") as f:
            f.write("".join(line + "\n" for line in lines))
        for logger in self.loggers:
            for line in lines:
                logger.log(json.loads(line))

    def truncate_metrics(self, size: int) -> None:
        """Drop what metrics.jsonl gained after a checkpoint that recorded its size."""
        if self.enabled and self.metrics_path.is_file() and self.metrics_path.stat().st_size > size:
            os.truncate(self.metrics_path, size)

    def save_checkpoint(self, name: str, state: dict) -> Path:
        path = self.checkpoints / name
        if self.enabled:
            atomic_write(path, lambda f: torch.save(state, f))
        return path

    def save_bytes(self, name: str, data: bytes) -> Path:
        path = self.root / name
        if self.enabled:
            atomic_write(path, lambda f: f.write(data))
        return path

    def write_summary(self, summary: dict) -> None:
        if not self.enabled:
            return
        text = json.dumps(_jsonable(summary), indent=2) + "\n"
        atomic_write(self.root / "summary.json", lambda f: f.write(text.encode()))

    def save_recon_grid(self, name: str, inputs: torch.Tensor, recons: torch.Tensor) -> None:
        """A labelled grid: the inputs on the row "input", their reconstructions below, drawn 2x."""
        self.save_grid(name, [list(inputs), list(recons)], ["input", "reconstruction"], zoom=2)

    def save_grid(self, name: str, rows: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str] = (),
                  col_labels: Sequence[str] = (), zoom: int = 1) -> None:
        """Rows of (C, H, W) images as one padded, labelled PNG under images/ (aetl.infra.grid)."""
        if self.enabled:
            img = labelled_grid(rows, row_labels, col_labels, zoom=zoom)
            info = png_info(row_labels, col_labels)
            atomic_write(self.images / name, lambda f: img.save(f, format="PNG", pnginfo=info))

    def announce(self, figures: str) -> None:
        """A command's last lines, on the console and in run.log: its key figures, then what it
        wrote and where."""
        if not self.enabled:
            return
        log.info("%s", figures)
        log.info("wrote %s: %s", self.root, ", ".join(self.contents()))

    def contents(self) -> list[str]:
        """What the run dir holds, a folder's files in brackets: the command's own outputs."""
        shown = []
        for entry in sorted(self.root.iterdir(), key=lambda p: (p.is_dir(), p.name)):
            if entry.name.startswith("."):
                continue  # Hydra's .hydra/, the lock
            if entry.is_dir():
                names = sorted(p.name for p in entry.iterdir() if not p.name.startswith("."))
                more = f", {len(names) - 8} more" if len(names) > 8 else ""
                shown.append(f"{entry.name}/ ({', '.join(names[:8])}{more})")
            else:
                shown.append(entry.name)
        return shown

    def save_image(self, name: str, image: torch.Tensor, zoom: int = 1) -> None:
        """One (C, H, W) image in [0, 1] as a PNG under images/."""
        if self.enabled:
            img = to_pil(image, zoom)
            atomic_write(self.images / name, lambda f: img.save(f, format="PNG"))


def figure(value: float | None, digits: int = 3) -> str:
    """A figure for a log line: n/a where the run has none."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def log_config(cfg: Any, command: str, overrides: Sequence[str]) -> None:
    """The start of a command: its overrides on the console, the whole composed config in run.log
    (as .hydra/config.yaml keeps it)."""
    from omegaconf import OmegaConf

    log.info("aetl %s %s", command, " ".join(overrides) or "(the defaults)")
    log_to_files(log, "config:\n" + OmegaConf.to_yaml(cfg, resolve=False).rstrip())


def log_to_files(logger: logging.Logger, message: str, level: int = logging.INFO) -> None:
    """A log line for the log files only (run.log): what the console shows otherwise (a
    progress bar) or does not need in full (the composed config)."""
    record = logger.makeRecord(logger.name, level, "", 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """Write through `write(file)` to a temp file beside path, fsync, then os.replace.
    A failed write (a full disk, say) is an AetlError and leaves the previous file."""
    try:
        tmp = stage(path, write)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as err:
        raise AetlError(f"could not write {path} ({err.strerror or err}); free some space or fix the "
                        f"permissions and run again (any earlier {path.name} is kept)") from None


def stage(path: Path, write: Callable[[Any], Any]) -> Path:
    """A temp file beside path, written through `write(file)`, fsynced, with the umask's
    permissions, for the caller to move into place (os.replace); on any failure it is removed
    and the error raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, file_mode())  # mkstemp makes it 0600: the file gets what open() would give it
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def file_mode() -> int:
    """The permissions a new file gets from open() under this process's umask (0644 under 022,
    0664 under 002): what aetl's files get too, so a team can share run dirs and caches."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux), else
    set and put back at once (os.umask has no read-only form). Read at every write: a program
    that imports aetl may change its umask."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def resume_hint(root: Path) -> str:
    """How to carry a stopped run on: its run dir, or its sweep run again."""
    if in_multirun():
        return f"resume the sweep by running it again with hydra.sweep.dir={shlex.quote(str(root.parent))}"
    return f"resume with: aetl train resume={shlex.quote(str(root))}"


def unique_dir(base: str) -> str:
    """`base`, or `base_1`, `base_2`, ... : the first that this process could create.

    Registered as the `aetl.unique` resolver for hydra.run.dir, so two jobs started
    in the same second get two directories. Memoised so one process always
    resolves the same base to the same directory.
    """
    if base not in _CLAIMED:
        for n in range(10_000):
            candidate = base if n == 0 else f"{base}_{n}"
            try:
                os.makedirs(candidate)
            except FileExistsError:
                continue
            _CLAIMED[base] = candidate
            break
        else:
            raise AetlError(f"could not create a fresh run directory next to {base}")
    return _CLAIMED[base]


_CLAIMED: dict[str, str] = {}


def _jsonable(obj: Any) -> Any:
    """NaN and inf become null: JSON has no spelling for them."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def register_resolvers() -> None:
    """`${aetl.unique:path}` for collision-safe run dirs (see unique_dir)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("aetl.unique"):
        OmegaConf.register_new_resolver("aetl.unique", unique_dir, use_cache=True)
