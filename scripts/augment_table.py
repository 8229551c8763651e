"""The augmentation table of docs/results.md: target accuracy by mode, label budget and pair.

    python scripts/augment_table.py multirun/augment        # every aetl augment run under the dir

Reads each `aetl augment` run's summary.json; `none` is the probe without new images
(with 0 labels: the source model's own classifier). Prints a Markdown table of mean ±
std over seeds of the test accuracy, with the validation accuracy (what tuning reads)
beside it, and the gain of each mode over `none` in points.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

MODES = ["none", "noise", "interpolate", "extrapolate", "image", "source"]


def pm(values: list[float]) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def collect(root: Path) -> dict[tuple, dict[str, dict[str, list[float]]]]:
    """(pair, labels per class) -> mode -> {"test": [...], "val": [...], "seeds": [...]}."""
    table: dict[tuple, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in sorted(root.rglob("summary.json")):
        s = json.loads(path.read_text())
        if "augment_mode" not in s:
            continue
        cell = table[(f"{s['source']} → {s['target']}", s["labels_per_class"])]
        if s["seed"] not in cell["none"]["seeds"] and s["target_acc"] is not None:
            cell["none"]["seeds"].append(s["seed"])
            cell["none"]["test"].append(s["target_acc"])
            cell["none"]["val"].append(s["target_val_acc"])
        mode = cell[s["augment_mode"]]
        mode["seeds"].append(s["seed"])
        mode["test"].append(s["target_acc_augmented"])
        mode["val"].append(s["target_val_acc_augmented"])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args()
    table: dict = {}
    for root in args.dirs:
        table.update(collect(root))
    print("| pair | labels/class | mode | test accuracy % | gain (pts) | validation accuracy % | seeds |")
    print("|---|---|---|---|---|---|---|")
    for (pair, labels), cell in sorted(table.items()):
        base = statistics.fmean(cell["none"]["test"]) if cell["none"]["test"] else None
        for mode in MODES:
            if mode not in cell or not cell[mode]["test"]:
                continue
            test = cell[mode]["test"]
            gain = "" if mode == "none" or base is None else f"{100 * (statistics.fmean(test) - base):+.1f}"
            print(f"| {pair} | {labels} | {mode} | {pm(test)} | {gain} | {pm(cell[mode]['val'])} | {len(test)} |")


if __name__ == "__main__":
    main()
