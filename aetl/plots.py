"""The report's PNG plots: target accuracy and MSE against the label budget, and
validation MSE against target steps, one panel per pair."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_all(table: list[dict], groups: list, out: Path) -> None:
    for name, label in (("target_acc", "target test accuracy"), ("target_mse", "target test MSE")):
        _against_budget(table, name, label, out / f"{name.split('_')[1]}_vs_labels.png")
    _curves(groups, out / "val_mse_vs_steps.png")


def _line_name(row: dict) -> str:
    extra = " +src labels" if row["source_labels"] else ""
    return row["strategy"] + extra + (f" ({row['variant']})" if row["variant"] else "")


def _against_budget(table: list[dict], name: str, label: str, path: Path) -> None:
    pairs = sorted({(r["source"], r["target"]) for r in table})
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        lines: dict[str, list[tuple]] = defaultdict(list)
        for r in table:
            if (r["source"], r["target"]) == pair and not math.isnan(r[f"{name}_mean"]):
                lines[_line_name(r)].append((r["labels_per_class"], r[f"{name}_mean"], r[f"{name}_std"]))
        for line, points in sorted(lines.items()):
            x, y, err = zip(*sorted(points))
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=line)
        ax.set(title=f"{pair[0]} → {pair[1]}", xlabel="labelled target images per class", ylabel=label)
        ax.set_xscale("symlog", linthresh=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(groups: list, path: Path) -> None:
    from aetl.report import val_curve

    panels = sorted({g.key[:3] for g in groups}, key=str)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        seen = set()
        for g in groups:
            name = g.key[5] + (" +src labels" if g.key[4] else "") + (f" ({' '.join(g.key[7])})" if g.key[7] else "")
            if g.key[:3] != panel or (name, g.key[6]) in seen:
                continue  # the AE's curve does not depend on the label budget: one per strategy
            seen.add((name, g.key[6]))
            curve = val_curve(g)
            if curve:
                ax.plot(list(curve), list(curve.values()), label=f"{name}, {g.key[6]} steps")
        ax.set(title=f"{panel[0]} → {panel[1]}, {panel[2]} target images", xlabel="target training steps",
               ylabel="target validation MSE", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
