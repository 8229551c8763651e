"""The report's figures, each for one question: accuracy against the label budget, MSE against
the target images (never against labels), validation MSE against steps; every line a colour
and a short label of its own, the seed spread as bands, axes that say their scale, accuracy in
[0, 100], no one-point panels, and no figure (nor traceback) when there is nothing to draw."""

import math

import matplotlib.pyplot as plt
import pytest
from conftest import make_job
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex

from aetl.commands.report import main
from aetl.infra.plots import figures


@pytest.fixture(autouse=True)
def _closed():
    yield
    plt.close("all")


def row(strategy, n=100, lpc=10, steps=300, labels=True, variant="", acc=0.9, mse=0.002, augmented=math.nan, seeds=3,
        std=0.01):
    return {"source": "mnist", "target": "digits", "n_target_train": n, "labels_per_class": lpc,
            "source_labels": labels and strategy != "scratch", "strategy": strategy, "variant": variant,
            "transfer_steps": steps, "seeds": seeds, "target_acc_mean": acc, "target_acc_std": std,
            "target_mse_mean": mse, "target_mse_std": 0.0001, "target_acc_augmented_mean": augmented,
            "target_acc_augmented_std": 0.0 if math.isnan(augmented) else 0.01}


def curve(r, points):
    keys = ("source", "target", "n_target_train", "labels_per_class", "source_labels", "strategy", "variant",
            "transfer_steps", "seeds")
    return {**{k: r[k] for k in keys}, "points": points}


def panels(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def legend(fig):
    return [t.get_text() for t in fig.legends[0].get_texts()]


def drawn_lines(ax):
    """The lines joining points (not error bars, not reference lines)."""
    return [line for line in ax.get_lines() if line.get_linestyle() not in ("None", ":") and len(line.get_xdata()) > 1]


BENCHMARK = [row(s, lpc=lpc, acc=0.6 + lpc / 100 + (s != "scratch") * 0.05, mse=0.003 if s == "scratch" else 0.0015)
             for s in ("scratch", "finetune") for lpc in (1, 10)]
BENCHMARK += [row("finetune", lpc=0, acc=0.62), row("finetune", n=500, lpc=50, acc=0.96, mse=0.0009),
              row("scratch", n=500, lpc=50, acc=0.95, mse=0.0019), row("scratch", lpc=10, steps=3000, acc=0.91)]


def test_accuracy_is_drawn_against_the_label_budget_on_a_linear_axis_with_the_0_label_point_alone():
    figs = figures(BENCHMARK, [])
    assert list(figs) == ["acc_vs_labels.png", "mse_vs_images.png"]
    acc = panels(figs["acc_vs_labels.png"])
    assert [ax.get_title() for ax in acc] == ["mnist → digits, 100 target images",
                                              "mnist → digits, 500 target images\n50 labels/class (one budget)"]
    assert [t.get_text() for t in acc[0].get_xticklabels()] == ["0", "1", "10"]  # the budgets, as integers
    assert acc[0].get_xscale() == "linear" and "log" not in acc[0].get_xlabel()  # three budgets: linear
    joined = drawn_lines(acc[0])
    assert joined and all(min(line.get_xdata()) >= 1 for line in joined)  # no line reaches the 0-label point
    assert all(len(set(line.get_xdata()) - {1, 10}) == 0 for line in joined)  # at the budgets: nothing nudged sideways
    stars = [line for line in acc[0].get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_ydata()[0] == pytest.approx(62)
    assert len([c for c in acc[0].collections if isinstance(c, PolyCollection)]) == len(joined)  # a band per line
    assert "scratch, 3000 steps" in legend(figs["acc_vs_labels.png"])
    assert "± 1 std over 3 seeds" in figs["acc_vs_labels.png"].texts[0].get_text()


def test_a_panel_with_one_budget_shows_its_lines_side_by_side_not_one_point_each():
    one = panels(figures(BENCHMARK, [])["acc_vs_labels.png"])[1]
    assert not one.get_xticks().size and not drawn_lines(one)  # points side by side, no axis of budgets
    points = [line for line in one.get_lines() if line.get_marker() == "o"]
    assert sorted((line.get_xdata()[0], round(line.get_ydata()[0])) for line in points) == [(0, 95), (1, 96)]


def test_a_wide_span_of_budgets_gets_a_log_axis_that_says_so():
    table = [row("finetune", lpc=lpc, acc=0.5 + lpc / 400) for lpc in (1, 2, 5, 10, 50, 100)]
    (ax,) = panels(figures(table, [])["acc_vs_labels.png"])
    assert ax.get_xscale() == "log" and ax.get_xlabel().endswith("(log scale)")


def test_accuracy_stays_within_0_and_100():
    table = [row("finetune", lpc=lpc, acc=0.99, std=0.05) for lpc in (1, 10)] + \
            [row("scratch", lpc=lpc, acc=0.02, std=0.05) for lpc in (1, 10)]
    (ax,) = panels(figures(table, [])["acc_vs_labels.png"])
    low, high = ax.get_ylim()
    assert low >= 0 and high == 100
    band = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert all(0 <= y <= 100 for c in band for path in c.get_paths() for _, y in path.vertices)


def test_every_variant_has_its_own_colour_and_a_short_label():
    """100-, 150- and 300-step finetune runs and a folder variant: four colours, labels without the folder's path."""
    folder = "data.target.root=/home/someone/datasets/digit_scans_2026/cleaned"
    table = [row("finetune", lpc=lpc, steps=steps) for lpc in (1, 10) for steps in (100, 150, 300)]
    table += [row("finetune", lpc=lpc, variant=folder) for lpc in (1, 10)] + [row("scratch", lpc=lpc) for lpc in (1, 10)]
    fig = figures(table, [])["acc_vs_labels.png"]
    (ax,) = panels(fig)
    colours = {to_hex(line.get_color()) for line in drawn_lines(ax)}
    assert len(drawn_lines(ax)) == 5 and len(colours) == 5
    assert legend(fig) == ["scratch", "finetune, 100 steps", "finetune, 150 steps", "finetune",
                           "finetune, target.root=cleaned"]
    assert all(len(label) <= 60 and "/" not in label for label in legend(fig))


def test_settings_every_line_shares_are_said_once_not_in_every_label():
    table = [row(s, lpc=lpc, variant="model.latent_dim=16 trainer.transfer.lr=0.001") for s in ("scratch", "finetune")
             for lpc in (1, 10)]
    fig = figures(table, [])["acc_vs_labels.png"]
    assert legend(fig) == ["scratch", "finetune"]
    assert "every line: latent_dim=16, transfer.lr=0.001" in fig.texts[0].get_text()


def test_mse_is_drawn_against_the_target_images_once_per_line_never_against_labels():
    fig = figures(BENCHMARK, [])["mse_vs_images.png"]
    (ax,) = panels(fig)
    assert ax.get_xlabel() == "target training images" and [t.get_text() for t in ax.get_xticklabels()] == ["100", "500"]
    joined = drawn_lines(ax)  # scratch and finetune at 100 and 500 images: the label budgets are one point
    assert sorted(list(line.get_xdata()) for line in joined) == [[100, 500], [100, 500]]
    assert sorted(round(line.get_ydata()[0], 4) for line in joined) == [0.0015, 0.003]
    assert "the AE never sees labels" in fig.texts[0].get_text()


def test_validation_curves_start_where_the_data_starts_say_their_scale_and_show_the_seed_spread():
    table = BENCHMARK
    short = {50: (0.02, 0.002), 100: (0.008, 0.001), 300: (0.005, 0.0005)}
    curves = [curve(r, {step: (0.01 * 300 / step, 0.001) for step in range(300, 3001, 300)}
                    if r["transfer_steps"] == 3000 else dict(short)) for r in table if r["labels_per_class"] > 0]
    curves.append(curve(row("finetune", steps=150), {50: (0.02, 0.001), 150: (0.006, 0.001)}))
    fig = figures(table, curves)["val_mse_vs_steps.png"]
    steps = panels(fig)
    assert [ax.get_title() for ax in steps] == ["mnist → digits, 100 images, up to 300 steps",
                                                "mnist → digits, 100 images, up to 3000 steps",
                                                "mnist → digits, 500 images, up to 300 steps"]
    assert steps[0].get_xlim() == (50, 300) and steps[1].get_xlim() == (300, 3000)
    assert all(ax.get_yscale() == "log" and ax.get_ylabel().endswith("(log scale)") for ax in steps)
    assert len(drawn_lines(steps[0])) == 3  # scratch, finetune, finetune at 150 steps: one axis (within 4x)
    assert len([c for c in steps[0].collections if isinstance(c, PolyCollection)]) == 3  # bands
    assert steps[0].get_ylim() == steps[1].get_ylim()  # one pair and budget: one y range
    ends = [line.get_ydata()[0] for line in steps[1].get_lines() if line.get_linestyle() == ":"]
    assert sorted(ends) == pytest.approx([0.005, 0.005, 0.006])  # where the shorter runs ended


def test_augmentation_is_drawn_as_bars_with_and_without_within_0_and_100():
    table = [row("finetune", variant=f"augment={mode}", acc=0.92, augmented=a)
             for mode, a in (("noise", 0.995), ("image", 0.90))]
    figs = figures(table, [])
    assert list(figs) == ["acc_augmented.png"]
    (ax,) = panels(figs["acc_augmented.png"])
    heights = [round(p.get_height(), 1) for p in ax.patches]
    assert heights == [92.0, 92.0, 90.0, 99.5]  # without (image, noise), then with (image, noise)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["image\n(pixels)", "noise\n(codes)"]
    assert ax.get_ylim() == (0, 100)


def test_a_report_of_failed_jobs_only_draws_nothing(tmp_path, capsys):
    for i in range(2):
        make_job(tmp_path / "sweep", str(i), [f"seed={i}"], log="[12:00:01][ERROR] job failed: out of memory\n")
    assert figures([], []) == {}
    assert main([str(tmp_path / "sweep")]) == 0
    assert "job failed: out of memory" in capsys.readouterr().out
    assert not list((tmp_path / "sweep").glob("*.png"))
