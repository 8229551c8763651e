"""How well `aetl rank`'s scores predict the measured gain of finetune over scratch.

    python scripts/rank_correlation.py REPORT_CSV RANK_JSON...

Joins the finetune rows of an `aetl report` CSV with the sources of `aetl rank` JSONs by
(source, target); prints each pair, then for each score the Spearman correlation with the
MSE gain and the accuracy gain, and how often its sign (helps / hurts) is right.
"""

from __future__ import annotations

import csv
import json
import sys

# score -> how to read it so that higher means "more helpful"
SCORES = {
    "logme_gain": lambda s: s["logme_gain"],
    "logme": lambda s: s["logme"],
    "zero_shot": lambda s: -s["zero_shot"],
}
DECISIVE = 2.0  # aetl.commands.rank's rule: helps / hurts only two standard errors from 0, else too close to call


def verdict(s: dict) -> int:
    """+1 helps, -1 hurts, 0 too close to call (as `aetl rank` says it)."""
    if s["logme_gain_se"] is None:  # too few labels per class for a standard error
        return 0
    if s["logme_gain"] > DECISIVE * s["logme_gain_se"]:
        return 1
    return -1 if s["logme_gain"] < -DECISIVE * s["logme_gain_se"] else 0


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            out[k] = (i + j) / 2  # ties share their mean rank
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def main(report: str, rank_files: list[str]) -> None:
    gains = {(r["source"], r["target"]): r for r in csv.DictReader(open(report))
             if r["strategy"] == "finetune" and r.get("mse_gain_pct")}
    pairs = []
    for path in rank_files:
        ranked = json.load(open(path))
        for s in ranked["sources"]:
            row = gains.get((s["source"], ranked["target"]))
            if row is not None:
                pairs.append(({**s, "target": ranked["target"]}, float(row["mse_gain_pct"]), float(row["acc_gain_pts"])))
    print("| source → target | finetune MSE gain | acc gain (pts) | zero-shot | LogME (Mf / PCA) | LogME gain ± s.e. | verdict |")
    print("|---|---|---|---|---|---|---|")
    words = {1: "helps", -1: "hurts", 0: "too close to call"}
    for s, mse, acc in sorted(pairs, key=lambda p: -p[1]):
        print(f"| {s['source']} → {s['target']} | {mse:+.1f}% | {acc:+.1f} | {s['zero_shot']:.3f} | "
              f"{s['logme']:.3f} / {s['logme_pca']:.3f} | {s['logme_gain']:+.4f} ± {float('nan') if s['logme_gain_se'] is None else s['logme_gain_se']:.4f} | "
              f"{words[verdict(s)]} |")
    print(f"\n{len(pairs)} pairs\n")
    mse, acc = [p[1] for p in pairs], [p[2] for p in pairs]
    print("| score | ρ with MSE gain | ρ with acc gain |")
    print("|---|---|---|")
    for name, read in SCORES.items():
        values = [read(s) for s, _, _ in pairs]
        print(f"| {name} | {spearman(values, mse):+.2f} | {spearman(values, acc):+.2f} |")
    called = [(verdict(s), m, a) for s, m, a in pairs if verdict(s)]
    print(f"\nverdicts: {len(called)} of {len(pairs)} pairs called helps or hurts, the rest too close to call; "
          f"right by MSE gain {sum((v > 0) == (m > 0) for v, m, _ in called)}/{len(called)}, by accuracy gain "
          f"{sum((v > 0) == (a > 0) for v, _, a in called)}/{len(called)}; the sign of the LogME gain alone: "
          f"{sum((s['logme_gain'] > 0) == (m > 0) for s, m, _ in pairs)}/{len(pairs)} by MSE, "
          f"{sum((s['logme_gain'] > 0) == (a > 0) for s, _, a in pairs)}/{len(pairs)} by accuracy")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
