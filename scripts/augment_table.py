"""The augmentation table of docs/results.md: target accuracy by mode, label budget and pair.

    python scripts/augment_table.py multirun/augment        # every aetl augment run under the dir
    python scripts/augment_table.py --mix DIR                # runs with app.mix: none, all, the chosen share

Reads each `aetl augment` run's summary.json; `none` is the probe without new images
(with 0 labels: the source model's own classifier). Prints two Markdown tables, test
and validation accuracy (what tuning reads): mean ± std over seeds, and each mode's
gain over `none` in points.
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


def mix_table(roots: list[Path]) -> None:
    """Per pair, label budget and mode: test accuracy with no new image, with every one, and with the
    share chosen on validation (mean ± std over seeds, gain over none), and the shares chosen."""
    cells: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for root in roots:
        for path in sorted(root.rglob("summary.json")):
            s = json.loads(path.read_text())
            if "augment_mix" not in s:
                continue
            cell = cells[(f"{s['source']} → {s['target']}", s["labels_per_class"], s["augment_mode"])]
            tests = s["augment_mix_test_acc"]
            cell["none"].append(s["target_acc"])
            cell["all"].append(tests.get("1"))
            cell["chosen"].append(s["target_acc_augmented"])
            cell["shares"].append(f"{s['augment_mix']:g}")
            cell["seeds"].append(s["seed"])
    print("| pair | labels/class | mode | seeds | none | every new image (share 1) | share chosen on validation | "
          "shares chosen |")
    print("|---|---|---|---|---|---|---|---|")
    for (pair, labels, mode), cell in sorted(cells.items()):
        base = statistics.fmean(cell["none"])
        row = [pm(cell["none"])]
        for key in ("all", "chosen"):
            values = [v for v in cell[key] if v is not None]
            row.append(f"{pm(values)} ({100 * (statistics.fmean(values) - base):+.1f})" if values else "n/a")
        print(f"| {pair} | {labels} | {mode} | {len(cell['seeds'])} | " + " | ".join(row) +
              f" | {', '.join(cell['shares'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--mix", action="store_true", help="the table of the mix chosen on validation")
    args = parser.parse_args()
    if args.mix:
        mix_table(args.dirs)
        return
    table: dict = {}
    for root in args.dirs:
        table.update(collect(root))
    for split, title in (("test", "test accuracy %"), ("val", "validation accuracy % (what tuning read)")):
        print(f"\n{title}, mean ± std over seeds (gain over none in points)\n")
        print("| pair | labels/class | " + " | ".join(MODES) + " |")
        print("|---|---|" + "---|" * len(MODES))
        for (pair, labels), cell in sorted(table.items()):
            base = statistics.fmean(cell["none"][split]) if cell["none"][split] else None
            row = []
            for mode in MODES:
                values = cell[mode][split] if mode in cell else []
                gain = "" if mode == "none" or base is None or not values else \
                    f" ({100 * (statistics.fmean(values) - base):+.1f})"
                row.append(pm(values) + gain if values else "n/a")
            print(f"| {pair} | {labels} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
