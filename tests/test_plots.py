"""The report's plots: a panel per target budget, integer label ticks, the 0-label point on
its own, one step axis per step budget, augmentation as with/without bars, labelled error
bars, and no figure (nor traceback) when there is nothing to draw."""

import math

import pytest
from conftest import make_job
from matplotlib.figure import Figure

from aetl.commands.report import main
from aetl.infra.plots import plot_all


def row(strategy, n=100, lpc=10, steps=300, labels=True, variant="", acc=0.9, mse=0.002, augmented=math.nan, seeds=3):
    return {"source": "mnist", "target": "digits", "n_target_train": n, "labels_per_class": lpc,
            "source_labels": labels and strategy != "scratch", "strategy": strategy, "variant": variant,
            "transfer_steps": steps, "seeds": seeds, "target_acc_mean": acc, "target_acc_std": 0.01,
            "target_mse_mean": mse, "target_mse_std": 0.0001, "target_acc_augmented_mean": augmented,
            "target_acc_augmented_std": 0.0 if math.isnan(augmented) else 0.01}


@pytest.fixture
def figures(monkeypatch):
    """{file name: the Figure saved to it}."""
    saved = {}
    savefig = Figure.savefig

    def keep(self, path, *args, **kwargs):
        saved[path.name] = self
        savefig(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def panels(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_budgets_get_their_own_panels_and_the_source_head_point_stands_alone(figures, tmp_path):
    table = [row(s, lpc=lpc, acc=0.6 + lpc / 100) for s in ("scratch", "finetune") for lpc in (1, 10)]
    table += [row("finetune", lpc=0, acc=0.62), row("finetune", n=500, lpc=50, acc=0.96),
              row("scratch", n=500, lpc=50, acc=0.95), row("scratch", lpc=10, steps=3000, acc=0.91)]
    curve = {50: 0.01, 100: 0.008, 300: 0.005}
    curves = [{300: 0.009, 3000: 0.004} if r["transfer_steps"] == 3000 else curve for r in table]
    written = plot_all(table, curves, tmp_path)
    assert [p.name for p in written] == ["acc_vs_labels.png", "mse_vs_labels.png", "val_mse_vs_steps.png"]

    acc = panels(figures["acc_vs_labels.png"])
    assert [ax.get_title() for ax in acc] == ["mnist → digits, 100 target images", "mnist → digits, 500 target images"]
    assert [t.get_text() for t in acc[0].get_xticklabels()] == ["0", "1", "10"]  # the budgets, as integers
    assert [t.get_text() for t in acc[1].get_xticklabels()] == ["50"]
    joined = [line for line in acc[0].get_lines() if line.get_linestyle() != "None" and len(line.get_xdata()) > 1]
    assert joined and all(min(line.get_xdata()) > 0.5 for line in joined)  # no line reaches the 0-label point
    stars = [line for line in acc[0].get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_ydata()[0] == pytest.approx(62)
    legend = [t.get_text() for t in figures["acc_vs_labels.png"].legends[0].get_texts()]
    assert "scratch, 3000 steps" in legend and "0 labels: Mf's own classifier on T (no probe)" in legend
    assert "± 1 std over 3 seeds" in figures["acc_vs_labels.png"].get_suptitle()

    steps = panels(figures["val_mse_vs_steps.png"])
    assert [ax.get_title() for ax in steps] == ["mnist → digits, 100 images, 300 steps",
                                                "mnist → digits, 100 images, 3000 steps",
                                                "mnist → digits, 500 images, 300 steps"]
    assert steps[0].get_xlim() == (0, 300)  # the 3,000-step curve has an axis of its own
    assert steps[0].get_ylim() == steps[1].get_ylim()  # one pair and budget: one y range


def test_augmentation_is_drawn_as_bars_with_and_without(figures, tmp_path):
    table = [row("finetune", variant=f"augment={mode}", acc=0.92, augmented=a)
             for mode, a in (("noise", 0.93), ("image", 0.90))]
    assert [p.name for p in plot_all(table, [{}, {}], tmp_path)] == ["acc_augmented.png"]
    (ax,) = panels(figures["acc_augmented.png"])
    heights = [round(p.get_height(), 1) for p in ax.patches]
    assert heights == [92.0, 92.0, 90.0, 93.0]  # without (image, noise), then with (image, noise)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["image\n(pixels)", "noise\n(codes)"]


def test_a_report_of_failed_jobs_only_draws_nothing(tmp_path, capsys):
    for i in range(2):
        make_job(tmp_path / "sweep", str(i), [f"seed={i}"], log="[12:00:01][ERROR] job failed: out of memory\n")
    assert plot_all([], [], tmp_path) == []
    assert main([str(tmp_path / "sweep")]) == 0
    assert "job failed: out of memory" in capsys.readouterr().out
    assert not list((tmp_path / "sweep").glob("*.png"))
