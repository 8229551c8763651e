"""Redraw the report's plots from a committed report.csv (the table's rows), without the
run dirs: `python scripts/replot.py docs/results docs/results/augment`.

The validation-MSE curves need each job's metrics.jsonl, so val_mse_vs_steps.png is
only redrawn by `aetl report` on the run dirs (scripts/benchmark.sh)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from aetl.infra.plots import plot_all

INTEGERS = ("n_target_train", "labels_per_class", "transfer_steps", "seeds")


def read_table(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key in INTEGERS:
                row[key] = int(value) if value else None
            elif key == "source_labels":
                row[key] = value == "True"
            elif key.endswith(("_mean", "_std")):
                row[key] = float(value) if value else float("nan")
    return rows


if __name__ == "__main__":
    for folder in map(Path, sys.argv[1:]):
        table = read_table(folder / "report.csv")
        for written in plot_all(table, [{} for _ in table], folder):
            print(written)
