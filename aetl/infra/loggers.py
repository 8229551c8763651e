"""Where a run's metrics go besides metrics.jsonl: the `logger` config group.

metrics.jsonl is the run's own record and always written (a resume cuts it back to the
length last.pt recorded; `aetl report` reads it). The loggers chosen in `logger`
(`tensorboard`, `csv`, several with `logger=[csv,tensorboard]` or `logger=many`) get
every record with the same keys. Each starts from what metrics.jsonl holds when the job
starts, so after a resume it holds exactly the kept records, none twice.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Protocol

from omegaconf import DictConfig

from aetl.errors import AetlError
from aetl.infra.rundir import Run, atomic_write


class Logger(Protocol):
    def start(self, kept: list[dict]) -> None: ...
    def log(self, record: dict) -> None: ...
    def close(self) -> None: ...


def open_loggers(cfg: DictConfig, run: Run) -> list[Logger]:
    """The loggers cfg names (entries without a _target_, like jsonl, add none), started
    from the records metrics.jsonl holds now."""
    from hydra.utils import instantiate

    if not run.enabled:
        return []
    loggers = [instantiate(entry, root=run.root) for entry in cfg.values() if entry and entry.get("_target_")]
    kept = [json.loads(line) for line in run.metrics_path.read_text().splitlines()] if run.metrics_bytes() else []
    for logger in loggers:
        logger.start(kept)
    return loggers


class CsvLogger:
    """One row per record, one column per key; the file is rewritten when a key first comes
    (pretraining and transfer log different loss terms)."""

    def __init__(self, root: Path, filename: str = "metrics.csv") -> None:
        self.path = Path(root) / filename
        self.rows: list[dict] = []
        self.columns: list[str] = []

    def start(self, kept: list[dict]) -> None:
        self.rows = list(kept)
        self.columns = list(dict.fromkeys(k for row in kept for k in row))
        self.path.unlink(missing_ok=True)  # rows of an earlier attempt that metrics.jsonl no longer holds
        if kept:
            self._rewrite()

    def log(self, record: dict) -> None:
        self.rows.append(record)
        new = [k for k in record if k not in self.columns]
        if new or not self.path.is_file():
            self.columns += new
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(record)

    def _rewrite(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path, lambda f: f.write(text.getvalue().encode()))

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Event files for TensorBoard (`tensorboard --logdir <run dir>`): every number of a
    record as the scalar `<phase>/<key>` at the record's step (records without a step,
    like eval, at step 0). Flushed at every record, as metrics.jsonl is written."""

    def __init__(self, root: Path, subdir: str = "tensorboard") -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise AetlError('logger=tensorboard needs the tensorboard package: pip install "aetl[tensorboard]"') from None
        self.dir = Path(root) / subdir
        self._writer_class = SummaryWriter
        self.writer = None

    def start(self, kept: list[dict]) -> None:
        # Written anew from what metrics.jsonl kept: steps after the resumed checkpoint go, none is doubled.
        for old in self.dir.glob("events.out.tfevents.*"):
            old.unlink()
        self.writer = self._writer_class(str(self.dir))
        for record in kept:
            self._add(record)
        self.writer.flush()

    def log(self, record: dict) -> None:
        self._add(record)
        self.writer.flush()

    def _add(self, record: dict) -> None:
        step = record.get("step") or 0
        for key, value in record.items():
            if key not in ("phase", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{record['phase']}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
