"""Redraw the report's plots from a report's CSV files, without the run dirs:
`python scripts/replot.py docs/results docs/results/augment`.

report.csv holds the table's rows (the accuracy, MSE and augmentation figures);
report_curves.csv, when the folder has one, the validation curves (val_mse_vs_steps.png)."""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from aetl.commands.report import IDENTITY  # a row's identity, as report wrote it
from aetl.infra.plots import plot_all

INTEGERS = ("n_target_train", "labels_per_class", "transfer_steps", "seeds", "runs", "step")


def read_rows(path: Path) -> list[dict]:
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


def read_curves(path: Path) -> list[dict]:
    """report_curves.csv's lines gathered into one curve per row identity."""
    if not path.is_file():
        return []
    curves: dict[tuple, dict] = defaultdict(lambda: {"points": {}})
    for line in read_rows(path):
        curve = curves[tuple(line[k] for k in IDENTITY)]
        curve.update({k: line[k] for k in (*IDENTITY, "seeds")})
        curve["points"][line["step"]] = (line["val_mse_mean"], line["val_mse_std"])
    return list(curves.values())


if __name__ == "__main__":
    for folder in map(Path, sys.argv[1:]):
        for written in plot_all(read_rows(folder / "report.csv"), read_curves(folder / "report_curves.csv"), folder):
            print(written)
