"""The report's PNG figures, each drawn for one question, from the table's rows (mean ± std
over seeds) and the groups' validation curves.

- acc_vs_labels.png: how much accuracy does each strategy reach for a label budget? Target
  test accuracy against labelled images per class, a panel per pair and target image budget.
  With 0 labels the accuracy is Mf's own classifier applied to T (no probe): a star of its
  own, not joined to the probe's points.
- mse_vs_images.png: how well does each strategy reconstruct the target, for the images it
  has? Target test MSE against target training images, a panel per pair. Labels are no axis
  here: the AE never sees them, so every label budget holds the same MSE (strategy=auto
  aside: it keeps its model by validation accuracy, so it gets a line per label budget).
- val_mse_vs_steps.png: how fast does each strategy get there? Target validation MSE
  against target steps from the first logged step, a panel per pair and image budget (a run
  more than four times longer than the others gets a panel of its own, marking where the
  shorter runs ended).
- acc_augmented.png: accuracy without and with augmentation, per augmentation mode.

The drawing rules every figure follows are in aetl/infra/figure.py: every line (strategy, Mf
with or without source labels, variant, steps) has a colour of its own and a short label; the
seed spread is a band of ± 1 std around a line (a bar on a lone point); an axis is linear
unless its values span more than a factor of 20 over more than four values, and a log axis
says so; accuracy stays in [0, 100]; a panel in which nothing varies along its axis (one
budget) shows its lines side by side. A figure with nothing to draw is not made.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from aetl.infra import figure as kit  # noqa: E402
from aetl.infra.rundir import atomic_write  # noqa: E402

FIGURES = ("acc_vs_labels.png", "mse_vs_images.png", "val_mse_vs_steps.png", "acc_augmented.png")
RETIRED = ("mse_vs_labels.png",)  # an older report's figure: test MSE against labels, flat by construction


def plot_all(table: list[dict], curves: list[dict], out: Path) -> list[Path]:
    """Write every figure that has something to draw (each atomically); returns the files written."""
    written = []
    for name, data in render(table, curves).items():
        atomic_write(out / name, lambda f, data=data: f.write(data))
        written.append(out / name)
    return written


def render(table: list[dict], curves: list[dict]) -> dict[str, bytes]:
    """{file name: PNG bytes} of every figure that has something to draw."""
    return {name: png(fig) for name, fig in figures(table, curves).items()}


def figures(table: list[dict], curves: list[dict]) -> dict[str, plt.Figure]:
    """The figures for the table's rows and the curves (each a group's identity, its seeds and
    `points`: {step: (mean, std)} of the validation MSE)."""
    augmented = [r for r in table if not kit.missing(r.get("target_acc_augmented_mean"))]
    plain = [r for r in table if kit.missing(r.get("target_acc_augmented_mean"))]
    made = {"acc_vs_labels.png": _accuracy(plain), "mse_vs_images.png": _mse(plain),
            "val_mse_vs_steps.png": _curves([c for c in curves if len(c["points"]) > 1]),
            "acc_augmented.png": _augmentation(augmented)}
    return {name: fig for name, fig in made.items() if fig is not None}


def png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _accuracy(rows: list[dict]) -> plt.Figure | None:
    rows = [r for r in rows if not kit.missing(r["target_acc_mean"])]
    if not rows:
        return None
    lines, bounds = kit.Lines(rows), (0.0, 100.0)

    def accuracy(r: dict) -> tuple[float, float]:
        return r["target_acc_mean"] * 100, r["target_acc_std"] * 100

    panels = kit.panels(rows, "source", "target", "n_target_train")
    fig, axes = kit.grid(len(panels))
    for ax, ((src, tgt, n), panel) in zip(axes, panels.items()):
        budgets = sorted({r["labels_per_class"] for r in panel})
        if len(budgets) == 1:
            kit.side_by_side(ax, panel, accuracy, lines, bounds, stars=True)
            ax.set_title(f"{src} → {tgt}, {n} target images\n{budgets[0]} labels/class (one budget)", fontsize=10)
        else:
            by_line: dict[tuple, list[dict]] = defaultdict(list)
            for r in panel:
                by_line[kit.line_key(r)].append(r)
            for key in sorted(by_line, key=kit.line_order):
                style = lines.style(by_line[key][0])
                probe = [(r["labels_per_class"], *accuracy(r)) for r in by_line[key] if r["labels_per_class"] > 0]
                head = [(0, *accuracy(r)) for r in by_line[key] if r["labels_per_class"] == 0]
                if probe:
                    kit.draw(ax, probe, style, bounds)
                if head:  # Mf's own classifier: no probe, so not on the probe's line
                    kit.draw(ax, head, style, bounds, marker="*")
            kit.x_axis(ax, budgets, "labelled target images per class")
            ax.set_title(f"{src} → {tgt}, {n} target images", fontsize=10)
        if 0 in budgets:
            lines.legend.setdefault("★ 0 labels: Mf's own classifier on T (no probe)",
                                    Line2D([], [], marker="*", markersize=10, linestyle="none", color="grey"))
        ax.set_ylabel("target test accuracy (%)")
        kit.y_limits(ax, bounds)
        ax.grid(alpha=0.3)
    return kit.finish(fig, f"Target test accuracy against the label budget ({kit.seeds_note(rows)})", lines.legend,
                   common=lines.common)


def _mse(rows: list[dict]) -> plt.Figure | None:
    rows = [r for r in rows if not kit.missing(r["target_mse_mean"])]
    if not rows:
        return None
    # One row per line and image budget: every label budget holds the same AEs; the row with the most seeds.
    kept: dict[tuple, dict] = {}
    for r in sorted(rows, key=lambda r: (int(r["seeds"]), r["labels_per_class"])):
        kept[(r["source"], r["target"], r["n_target_train"], kit.line_key(r, by_labels=True))] = r
    rows = list(kept.values())
    lines, bounds = kit.Lines(rows, by_labels=True), (0.0, math.inf)

    def mse(r: dict) -> tuple[float, float]:
        return r["target_mse_mean"], r["target_mse_std"]

    panels = kit.panels(rows, "source", "target")
    fig, axes = kit.grid(len(panels))
    for ax, ((src, tgt), panel) in zip(axes, panels.items()):
        images = sorted({r["n_target_train"] for r in panel})
        if len(images) == 1:
            kit.side_by_side(ax, panel, mse, lines, bounds)
            ax.set_title(f"{src} → {tgt}, {images[0]} target images\n(one image budget)", fontsize=10)
        else:
            by_line: dict[tuple, list[dict]] = defaultdict(list)
            for r in panel:
                by_line[kit.line_key(r, by_labels=True)].append(r)
            for key in sorted(by_line, key=kit.line_order):
                kit.draw(ax, [(r["n_target_train"], *mse(r)) for r in by_line[key]], lines.style(by_line[key][0]), bounds)
            kit.x_axis(ax, images, "target training images")
            ax.set_title(f"{src} → {tgt}", fontsize=10)
        ax.set_ylabel("target test MSE")
        kit.y_limits(ax, bounds)
        ax.grid(alpha=0.3)
    title = f"Target test MSE against the target images (any label budget: the AE never sees labels; " \
            f"{kit.seeds_note(rows)})"
    return kit.finish(fig, title, lines.legend, common=lines.common)


SAME_AXIS = 4  # step budgets within this factor of a panel's longest share its axis


def _step_axes(curves: list[dict]) -> dict[tuple, list[dict]]:
    """Panels of one pair and image budget: runs whose step budgets are within SAME_AXIS of the
    longest share a panel; a much longer run gets one of its own (its axis would squeeze the rest)."""
    budgets: dict[tuple, set] = defaultdict(set)
    for c in curves:
        budgets[c["source"], c["target"], c["n_target_train"]].add(c["transfer_steps"] or max(c["points"]))
    longest = {}
    for data, steps in budgets.items():
        top = None
        for s in sorted(steps, reverse=True):
            top = s if top is None or s * SAME_AXIS < top else top
            longest[(*data, s)] = top
    return kit.panels([{**c, "axis": longest[c["source"], c["target"], c["n_target_train"],
                                          c["transfer_steps"] or max(c["points"])]} for c in curves],
                   "source", "target", "n_target_train", "axis")


def _curves(curves: list[dict]) -> plt.Figure | None:
    if not curves:
        return None
    lines = kit.Lines(curves, by_labels=True)
    kept: dict[tuple, dict] = {}  # one curve per line: the AE's curve does not depend on the label budget
    for c in sorted(curves, key=lambda c: int(c["seeds"])):
        kept[(c["source"], c["target"], c["n_target_train"], kit.line_key(c, by_labels=True))] = c
    panels = _step_axes(list(kept.values()))
    fig, axes = kit.grid(len(panels))
    same_data: dict[tuple, list[plt.Axes]] = defaultdict(list)  # panels of one pair and budget share a y range
    for ax, ((src, tgt, n, steps), panel) in zip(axes, panels.items()):
        same_data[src, tgt, n].append(ax)
        for c in sorted(panel, key=lambda c: kit.line_order(kit.line_key(c, by_labels=True))):
            points = [(step, mean, std) for step, (mean, std) in c["points"].items()]
            floor = min(m for _, m, _ in points) / 10  # a band reaching 0 would leave the log axis
            kit.draw(ax, points, lines.style(c), (floor, math.inf), marker="")
        shorter = [c for (s, t, m, axis), other in panels.items() if (s, t, m) == (src, tgt, n) and axis < steps
                   for c in other]
        for c in shorter:  # runs on a shorter axis: where they ended, for the longer runs to reach
            ax.axhline(c["points"][max(c["points"])][0], color=lines.style(c)["color"], linestyle=":", linewidth=1)
            lines.legend.setdefault("dotted: where a shorter run (other panel) ended",
                                    Line2D([], [], color="grey", linestyle=":", linewidth=1))
        first = min(min(c["points"]) for c in panel)
        ax.set(title=f"{src} → {tgt}, {n} images, up to {steps} steps", xlabel="target training steps",
               ylabel="target validation MSE (log scale)", yscale="log", xlim=(first, steps))
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3, which="both")
    for shared in same_data.values():
        low, high = zip(*(ax.get_ylim() for ax in shared))
        for ax in shared:
            ax.set_ylim(min(low), max(high))
    title = f"Target validation MSE during transfer (mean over seeds; {kit.seeds_note(curves, 'bands')})"
    return kit.finish(fig, title, lines.legend, common=lines.common)


MADE_FROM = {"image": "pixels", "source": "source images"}  # every other mode moves codes


def _mode_label(variant: str) -> str:
    """'app.amount=1 augment=source' -> the mode, what it works on, then its other settings."""
    words = variant.split()
    mode = next((w.removeprefix("augment=") for w in words if w.startswith("augment=")), variant)
    rest = [kit.short(w) for w in words if not w.startswith("augment=")]
    return "\n".join([mode, f"({MADE_FROM.get(mode, 'codes')})", *rest])


def _augmentation(rows: list[dict]) -> plt.Figure | None:
    if not rows:
        return None
    panels = kit.panels(rows, "source", "target", "n_target_train", "labels_per_class", "strategy")
    fig, axes = kit.grid(len(panels))
    legend: dict[str, Line2D] = {}
    for ax, ((src, tgt, n, lpc, strategy), panel) in zip(axes, panels.items()):
        panel = sorted(panel, key=lambda r: r["variant"])
        x = range(len(panel))
        for offset, key, label, colour in ((-0.2, "target_acc", "without augmentation", "0.65"),
                                           (0.2, "target_acc_augmented", "with augmentation", "C3")):
            means = [r[f"{key}_mean"] * 100 for r in panel]
            spread = [[m - kit.band(m, r[f"{key}_std"] * 100, (0, 100))[0] for m, r in zip(means, panel)],
                      [kit.band(m, r[f"{key}_std"] * 100, (0, 100))[1] - m for m, r in zip(means, panel)]]
            bars = ax.bar([i + offset for i in x], means, width=0.4, yerr=spread, capsize=3, color=colour, label=label)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, label_type="center", color="black" if colour == "0.65" else
                         "white")
            legend.setdefault(label, bars.patches[0])
        ax.set_xticks(list(x), [_mode_label(r["variant"]) for r in panel], fontsize=8)
        pad = max(0.0, (3 - len(panel)) / 2)  # a panel of one mode keeps its bars as narrow as a panel of three
        ax.set_xlim(-0.6 - pad, len(panel) - 0.4 + pad)
        ax.set(title=f"{src} → {tgt}, {strategy}\n{n} target images, {lpc} labels/class",
               xlabel="augmentation mode", ylabel="target test accuracy (%)", ylim=(0, 100))
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3, axis="y")
    return kit.finish(fig, f"Accuracy without and with augmentation\n({kit.seeds_note(rows, 'error bars')})", legend,
                   below=True)
