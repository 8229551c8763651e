"""Mean ± std of each strategy's summary.json figures over the run dirs under DIR.

    python scripts/summarize.py multirun/2026-11-28/10-00-00

A stop-gap until `aetl report` lands: it prints a Markdown table and nothing else.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

FIGURES = ["target_mse", "target_psnr", "target_acc", "source_mse", "pretrain_s", "transfer_s", "total_s"]


def main(dirs: list[str]) -> None:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for d in dirs:
        for path in sorted(Path(d).rglob("summary.json")):
            s = json.loads(path.read_text())
            groups[(s["source"], s["target"], s["labels_per_class"], s["strategy"])].append(s)
    print("| source -> target | labels/class | strategy | seeds | " + " | ".join(FIGURES) + " |")
    print("|---" * (4 + len(FIGURES)) + "|")
    for (src, tgt, lpc, strategy), runs in sorted(groups.items()):
        cells = []
        for key in FIGURES:
            values = [r[key] for r in runs if r.get(key) is not None]
            mean = statistics.fmean(values) if values else float("nan")
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{mean:.4g} ± {std:.2g}")
        print(f"| {src} -> {tgt} | {lpc} | {strategy} | {len(runs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
