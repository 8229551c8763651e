"""The report's PNG plots, drawn from the table's rows (mean ± std over seeds).

- acc_vs_labels.png, mse_vs_labels.png: target test accuracy and MSE against labelled
  images per class, one panel per pair and target image budget. With 0 labels the
  accuracy is Mf's own classifier applied to T (no probe): its own marker, not joined to
  the linear-probe points.
- val_mse_vs_steps.png: target validation MSE against target steps, one panel per pair,
  image budget and step budget (a long run gets its own axis).
- acc_augmented.png: accuracy without and with augmentation, per augmentation mode.

A figure with nothing to draw is not written.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

ORDER = ["scratch", "fixed_init", "concat", "finetune", "mixed"]  # colour order: the same in every figure
PANEL_SIZE = (4.6, 3.6)


def plot_all(table: list[dict], curves: list[dict[int, float]], out: Path) -> list[Path]:
    """Write every figure that has something to draw; curves[i] is table[i]'s validation
    curve (step -> mean val MSE). Returns the files written."""
    augmented = [not _missing(r.get("target_acc_augmented_mean")) for r in table]
    plain = [r for r, a in zip(table, augmented) if not a]
    written = [_against_labels(plain, "target_acc", "target test accuracy (%)", out / "acc_vs_labels.png"),
               _against_labels(plain, "target_mse", "target test MSE", out / "mse_vs_labels.png"),
               _curves([(r, c) for r, c, a in zip(table, curves, augmented) if c and not a],
                       out / "val_mse_vs_steps.png"),
               _augmentation([r for r, a in zip(table, augmented) if a], out / "acc_augmented.png")]
    return [path for path in written if path is not None]


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _colour(strategy: str) -> str:
    if strategy == "scratch":
        return "black"
    index = ORDER.index(strategy) if strategy in ORDER else len(ORDER) + hash(strategy) % 4
    return f"C{index}"


def _line_name(row: dict, steps: int | None = None) -> str:
    """strategy, how Mf was pretrained, the variant, and the steps where they differ from the panel's."""
    name = row["strategy"]
    if row["strategy"] != "scratch":
        name += ", Mf with source labels" if row["source_labels"] else ", Mf without source labels"
    if row["variant"]:
        name += f" [{row['variant']}]"
    if steps is not None and row["transfer_steps"] != steps:
        name += f", {row['transfer_steps']} steps"
    return name


def _line_order(row: dict) -> tuple:
    return ORDER.index(row["strategy"]) if row["strategy"] in ORDER else len(ORDER), not row["source_labels"], \
        row["variant"], row["transfer_steps"] or 0


def _style(row: dict, steps: int | None = None) -> dict:
    """Colour: the strategy; dashed: Mf without source labels; dotted: other steps than the panel's."""
    dashed = not row["source_labels"] and row["strategy"] != "scratch"
    other_steps = steps is not None and row["transfer_steps"] != steps
    return {"color": _colour(row["strategy"]), "linestyle": ":" if other_steps else "--" if dashed else "-"}


def _panels(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        panels[tuple(row[k] for k in keys)].append(row)
    return dict(sorted(panels.items(), key=lambda item: tuple(str(x) for x in item[0])))


def _grid(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _seeds_note(rows: list[dict]) -> str:
    counts = sorted({int(r["seeds"]) for r in rows})
    seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"error bars: ± 1 std over {seeds} seeds"


def _save(fig: plt.Figure, path: Path, title: str, legend: dict[str, Line2D], below: bool = False) -> Path:
    """With the legend right of the panels (or below them), outside every panel."""
    fig.suptitle(title, fontsize=11)
    if below:
        fig.legend(list(legend.values()), list(legend), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=len(legend), fontsize=8, frameon=False)
    else:
        fig.legend(list(legend.values()), list(legend), loc="upper left", bbox_to_anchor=(1.0, 0.93), fontsize=8,
                   frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _against_labels(rows: list[dict], name: str, label: str, path: Path) -> Path | None:
    rows = [r for r in rows if not _missing(r[f"{name}_mean"])]
    if not rows:
        return None
    scale = 100 if name == "target_acc" else 1
    panels = _panels(rows, "source", "target", "n_target_train")
    fig, axes = _grid(len(panels))
    legend: dict[str, Line2D] = {}
    for ax, ((src, tgt, n), panel) in zip(axes, panels.items()):
        steps = Counter(r["transfer_steps"] for r in panel).most_common(1)[0][0]
        lines: dict[str, list[dict]] = defaultdict(list)
        for r in sorted(panel, key=_line_order):
            lines[_line_name(r, steps)].append(r)
        for k, (line, points) in enumerate(lines.items()):
            shift = (k - (len(lines) - 1) / 2) * 0.02  # decades: keeps error bars at one budget apart
            points = sorted(points, key=lambda r: r["labels_per_class"])
            xy = [(_dodge(r["labels_per_class"], shift), r[f"{name}_mean"] * scale, r[f"{name}_std"] * scale)
                  for r in points]
            probe = [p for p, r in zip(xy, points) if r["labels_per_class"] > 0 or name != "target_acc"]
            head = [p for p, r in zip(xy, points) if r["labels_per_class"] == 0 and name == "target_acc"]
            style = _style(points[0], steps)
            marker = "o" if points[0]["transfer_steps"] == steps else "s"
            if probe:
                x, y, err = zip(*probe)
                ax.errorbar(x, y, yerr=err, marker=marker, markersize=4, capsize=3, linewidth=1.3, **style)
            if head:  # Mf's own classifier: no probe, so not on the probe's line
                x, y, err = zip(*head)
                ax.errorbar(x, y, yerr=err, marker="*", markersize=10, capsize=3, linestyle="none",
                            color=style["color"])
            legend.setdefault(line, Line2D([], [], marker=marker, markersize=4, **style))
        budgets = sorted({r["labels_per_class"] for r in panel})
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlim(-0.5 if 0 in budgets else budgets[0] / 1.6, budgets[-1] * 1.6)
        ax.set(title=f"{src} → {tgt}, {n} target images", xlabel="labelled target images per class", ylabel=label)
        ax.grid(alpha=0.3)
        if name == "target_acc" and 0 in budgets:
            legend.setdefault("0 labels: Mf's own classifier on T (no probe)",
                              Line2D([], [], marker="*", markersize=10, linestyle="none", color="grey"))
    return _save(fig, path, f"{label} against the label budget ({_seeds_note(rows)})", legend)


def _dodge(x: float, shift: float) -> float:
    """x moved by `shift` decades on the symlog axis (linearly below 1, where it is linear)."""
    return x * 10 ** shift if x >= 1 else x + shift * 2


def _curves(rows: list[tuple[dict, dict[int, float]]], path: Path) -> Path | None:
    if not rows:
        return None
    panels = _panels([{**r, "curve": c} for r, c in rows], "source", "target", "n_target_train", "transfer_steps")
    fig, axes = _grid(len(panels))
    legend: dict[str, Line2D] = {}
    same_data: dict[tuple, list[plt.Axes]] = defaultdict(list)  # panels of one pair and budget share a y range
    for ax, ((src, tgt, n, steps), panel) in zip(axes, panels.items()):
        same_data[src, tgt, n].append(ax)
        drawn = set()
        for r in sorted(panel, key=_line_order):
            line = _line_name(r)
            if line in drawn:
                continue  # the AE's curve does not depend on the label budget: one per line
            drawn.add(line)
            (handle,) = ax.plot(list(r["curve"]), list(r["curve"].values()), linewidth=1.3, **_style(r))
            legend.setdefault(line, handle)
        ax.set(title=f"{src} → {tgt}, {n} images, {steps} steps", xlabel="target training steps",
               ylabel="target validation MSE", yscale="log", xlim=(0, steps))
        ax.grid(alpha=0.3, which="both")
    for shared in same_data.values():
        low, high = zip(*(ax.get_ylim() for ax in shared))
        for ax in shared:
            ax.set_ylim(min(low), max(high))
    return _save(fig, path, "target validation MSE during transfer (mean over seeds)", legend)


MADE_FROM = {"image": "pixels", "source": "source images"}  # every other mode moves codes


def _mode_label(variant: str) -> str:
    """'app.amount=1 augment=source' -> the mode, what it works on, then its other settings."""
    words = variant.split()
    mode = next((w.removeprefix("augment=") for w in words if w.startswith("augment=")), variant)
    rest = [w.removeprefix("app.") for w in words if not w.startswith("augment=")]
    return "\n".join([mode, f"({MADE_FROM.get(mode, 'codes')})", *rest])


def _augmentation(rows: list[dict], path: Path) -> Path | None:
    if not rows:
        return None
    panels = _panels(rows, "source", "target", "n_target_train", "labels_per_class", "strategy")
    fig, axes = _grid(len(panels))
    legend: dict[str, Line2D] = {}
    for ax, ((src, tgt, n, lpc, strategy), panel) in zip(axes, panels.items()):
        panel = sorted(panel, key=lambda r: r["variant"])
        x = range(len(panel))
        for offset, key, label, colour in ((-0.2, "target_acc", "without augmentation", "0.65"),
                                           (0.2, "target_acc_augmented", "with augmentation", "C3")):
            bars = ax.bar([i + offset for i in x], [r[f"{key}_mean"] * 100 for r in panel], width=0.4,
                          yerr=[r[f"{key}_std"] * 100 for r in panel], capsize=3, color=colour, label=label)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
            legend.setdefault(label, bars.patches[0])
        ax.set_xticks(list(x), [_mode_label(r["variant"]) for r in panel], fontsize=8)
        ax.set(title=f"{src} → {tgt}, {strategy}\n{n} target images, {lpc} labels/class",
               xlabel="augmentation mode", ylabel="target test accuracy (%)", ylim=(0, 105))
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path, f"accuracy without and with augmentation\n({_seeds_note(rows)})", legend, below=True)
