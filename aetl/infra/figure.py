"""The drawing kit the report's figures share (aetl/infra/plots.py): a figure's lines, each with
a colour and a short label of its own, the same in every panel; panels; axes that say their
scale; a line with its band of seed spread, or a lone point with its bar."""

from __future__ import annotations

import math
import textwrap
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

ORDER = ["scratch", "fixed_init", "concat", "finetune", "mixed", "auto", "drcn"]  # the lines' order
PALETTE = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9", "#393b79", "#637939", "#8c6d31", "#843c39",
           "#7b4173", "#3182bd", "#e6550d"]  # no grey: black is scratch's
PANEL_SIZE = (4.6, 3.6)
IDENTITY = ("strategy", "source_labels", "variant", "transfer_steps")  # what makes a line


def missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def line_key(row: dict, by_labels: bool = False) -> tuple:
    """A row's line; with by_labels, strategy=auto's label budget too (its model depends on it)."""
    labels = (row["labels_per_class"],) if by_labels and row["strategy"] == "auto" else ()
    return (*(row[k] for k in IDENTITY), *labels)


def line_order(key: tuple) -> tuple:
    strategy, source_labels, variant, steps, *labels = key
    return (ORDER.index(strategy) if strategy in ORDER else len(ORDER), strategy, not source_labels, variant,
            steps or 0, *labels)


class Lines:
    """The lines of one figure: each a colour and a short label, the same in every panel."""

    def __init__(self, rows: list[dict], by_labels: bool = False) -> None:
        self.by_labels = by_labels
        self.steps = Counter(r["transfer_steps"] for r in rows).most_common(1)[0][0]
        # overrides every line shares: said once under the title, so a label says what sets its line apart
        self.common = sorted(set.intersection(*(set(r["variant"].split()) for r in rows)))
        first = {}
        for r in rows:
            first.setdefault(line_key(r, by_labels), r)
        self.colours: dict[tuple, str] = {}
        palette = iter(PALETTE * (1 + len(first) // len(PALETTE)))
        for key in sorted(first, key=line_order):
            plain_scratch = key[0] == "scratch" and not key[2] and key[3] == self.steps and "black" not in \
                self.colours.values()
            self.colours[key] = "black" if plain_scratch else next(palette)
        self.labels: dict[tuple, str] = {}
        for k in self.colours:  # two lines whose short labels meet are numbered, never merged
            text = self.label(first[k])
            self.labels[k] = text if text not in self.labels.values() else f"{text} ({len(self.labels) + 1})"
        self.legend = {self.labels[k]: Line2D([], [], marker="o", markersize=4, **self.style(first[k]))
                       for k in self.colours}  # in the lines' order; notes on markers follow

    def style(self, row: dict) -> dict:
        """Colour: the line's own; dashed: Mf pretrained without source labels."""
        dashed = row["strategy"] != "scratch" and not row["source_labels"]
        return {"color": self.colours[line_key(row, self.by_labels)], "linestyle": "--" if dashed else "-"}

    def label(self, row: dict) -> str:
        parts = [row["strategy"]]
        if row["strategy"] != "scratch" and not row["source_labels"]:
            parts.append("Mf without source labels")
        parts += [short(o) for o in row["variant"].split() if o not in self.common]
        if row["transfer_steps"] != self.steps and row["transfer_steps"] is not None:
            parts.append(f"{row['transfer_steps']} steps")
        if self.by_labels and row["strategy"] == "auto":
            parts.append(f"{row['labels_per_class']} labels/class")
        text = ", ".join(parts)
        return text if len(text) <= 60 else text[:59] + "…"


def short(override: str) -> str:
    """An override as a legend shows it: the group prefix dropped, a path by its last name, at most 28 characters."""
    key, _, value = override.partition("=")
    for prefix in ("strategy.", "trainer.", "data.", "model.", "app."):
        key = key.removeprefix(prefix)
    if "/" in value:
        value = Path(value).name or value
    text = f"{key}={value}" if value else key
    return text if len(text) <= 28 else text[:27] + "…"


def panels(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        panels[tuple(row[k] for k in keys)].append(row)
    return dict(sorted(panels.items(), key=lambda item: tuple(str(x) for x in item[0])))


def grid(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def seeds_note(rows: list[dict], what: str = "bands and bars") -> str:
    counts = sorted({int(r["seeds"]) for r in rows})
    seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"{what}: ± 1 std over {seeds} seed{'s' if counts[-1] > 1 else ''}"


def finish(fig: plt.Figure, title: str, legend: dict[str, Line2D], below: bool = False,
            common: list[str] = ()) -> plt.Figure:
    """The title (with the settings every line shares), and the legend right of the panels (or
    below them), outside every panel."""
    width = int(fig.get_figwidth() * 11)  # characters of an 11-point title across the figure
    lines = textwrap.wrap(title, width) + textwrap.wrap("every line: " + ", ".join(map(short, common)), width)[:3] \
        if common else textwrap.wrap(title, width)
    fig.suptitle("\n".join(lines), fontsize=11)
    if below:
        fig.legend(list(legend.values()), list(legend), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=len(legend), fontsize=8, frameon=False)
    else:
        fig.legend(list(legend.values()), list(legend), loc="upper left", bbox_to_anchor=(1.0, 0.93), fontsize=8,
                   frameon=False)
    fig.tight_layout()
    return fig


def x_axis(ax: plt.Axes, values: list[float], label: str) -> None:
    """Ticks at the values; linear unless they span more than a factor of 20 over more than four values."""
    values = sorted(set(values))
    positive = [v for v in values if v > 0]
    log = len(values) > 4 and bool(positive) and positive[-1] / positive[0] > 20
    if log:
        ax.set_xscale("symlog" if values[0] <= 0 else "log", **({"linthresh": 1} if values[0] <= 0 else {}))
        ax.set_xlim(-0.5 if values[0] <= 0 else values[0] / 1.5, values[-1] * 1.5)
    else:
        pad = 0.08 * ((values[-1] - values[0]) or 1)
        ax.set_xlim(values[0] - pad, values[-1] + pad)
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(label + (" (log scale)" if log else ""))


def band(mean: float, std: float, bounds: tuple[float, float]) -> tuple[float, float]:
    return max(bounds[0], mean - std), min(bounds[1], mean + std)


def draw(ax: plt.Axes, points: list[tuple[float, float, float]], style: dict, bounds: tuple[float, float],
          marker: str = "o") -> None:
    """(x, mean, std) points: a line with its band, or a lone point with its bar."""
    x, mean, std = zip(*sorted(points))
    low, high = zip(*(band(m, s, bounds) for m, s in zip(mean, std)))
    if len(x) > 1:
        ax.plot(x, mean, marker=marker, markersize=4, linewidth=1.4, **style)
        ax.fill_between(x, low, high, color=style["color"], alpha=0.15, linewidth=0)
    else:
        ax.errorbar(x, mean, yerr=[[mean[0] - low[0]], [high[0] - mean[0]]], marker=marker,
                    markersize=10 if marker == "*" else 4, capsize=3, linestyle="none", color=style["color"])


def side_by_side(ax: plt.Axes, rows: list[dict], value, lines: Lines, bounds: tuple[float, float],
                  stars: bool = False) -> None:
    """One budget: each line's figure as a point with its bar, side by side (stars: 0 labels
    is Mf's own classifier)."""
    rows = sorted(rows, key=lambda r: line_order(line_key(r, lines.by_labels)))
    for i, r in enumerate(rows):
        style = lines.style(r)
        draw(ax, [(i, *value(r))], style, bounds, "*" if stars and r["labels_per_class"] == 0 else "o")
    ax.set_xticks([])  # the legend names the lines, in this order
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("the lines side by side, in the legend's order", fontsize=8)


def y_limits(ax: plt.Axes, bounds: tuple[float, float]) -> None:
    """The data's range with a margin, never past the quantity's bounds (accuracy: 0 to 100)."""
    low, high = ax.dataLim.intervaly
    pad = 0.05 * ((high - low) or abs(high) or 1)
    ax.set_ylim(max(bounds[0], low - pad), min(bounds[1], high + pad))
