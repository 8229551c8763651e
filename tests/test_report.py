"""aetl report on a hand-made sweep: means, stds, gains, steps-to-match, left-out runs."""

import csv
import math

import pytest
from conftest import make_job

from aetl.commands.report import main

CURVES = {0: [0.020, 0.010, 0.009, 0.006, 0.005, 0.004], 1: [0.022, 0.012, 0.007, 0.006, 0.005, 0.004]}


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for seed, (mse, acc, val) in enumerate([(0.004, 0.80, 0.004), (0.006, 0.90, 0.004)]):
        make_job(root, f"s{seed}", ["strategy=scratch", f"seed={seed}"],
                 {"strategy": "scratch", "seed": seed, "target_mse": mse, "target_acc": acc, "target_val_mse": val,
                  "pretrain_s": 0.0}, CURVES[seed])
    for seed, (mse, acc, val) in enumerate([(0.002, 0.90, 0.007), (0.003, 0.92, 0.008)]):
        make_job(root, f"f{seed}", ["strategy=finetune", f"seed={seed}"],
                 {"strategy": "finetune", "seed": seed, "target_mse": mse, "target_acc": acc, "target_val_mse": val})
    make_job(root, "c0", ["strategy=concat", "seed=0"],
             {"strategy": "concat", "seed": 0, "target_mse": 0.001, "target_acc": 0.5, "target_val_mse": 0.001})
    make_job(root, "bad", ["strategy=finetune", "data.target.labels_per_class=50"],
             log="[12:00:00][INFO] loading\n[12:00:01][ERROR] job failed: labels_per_class=50 is too many\n")
    make_job(root, "cut", ["strategy=mixed"], log="[12:00:00][INFO] pretraining\n")
    return root


def test_table_figures_by_hand(sweep, capsys):
    assert main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    assert printed == (sweep / "report.md").read_text()
    rows = {r["strategy"]: r for r in csv.DictReader(open(sweep / "report.csv"))}
    scratch, finetune, concat = rows["scratch"], rows["finetune"], rows["concat"]
    assert float(scratch["target_mse_mean"]) == pytest.approx(0.005)
    assert float(scratch["target_mse_std"]) == pytest.approx(math.sqrt(2 * 0.001 ** 2))
    assert float(finetune["target_acc_mean"]) == pytest.approx(0.91)
    assert float(finetune["mse_gain_pct"]) == pytest.approx(50.0)
    assert float(finetune["acc_gain_pts"]) == pytest.approx(6.0)
    assert float(concat["acc_gain_pts"]) == pytest.approx(-35.0)  # worse than scratch: shown, not hidden
    assert scratch["mse_gain_pct"] == "" and scratch["seeds"] == "2" and concat["seeds"] == "1"
    # scratch's mean validation curve first reaches finetune's 0.0075 at step 200, never concat's 0.001
    assert finetune["scratch_steps_to_match"] == "200" and concat["scratch_steps_to_match"] == ">300"
    assert "| mnist → digits | 100 | 10 | no | finetune | 300 | 2 | 0.00250 ± 0.00071 |" in printed
    assert "+50.0% | +6.0 | 200 |" in printed


def test_failed_and_incomplete_runs_are_listed(sweep, capsys):
    main([str(sweep)])
    printed = capsys.readouterr().out
    assert "Runs not in the table:" in printed
    assert "bad` (strategy=finetune data.target.labels_per_class=50): failed: job failed: labels_per_class=50" in printed
    assert "cut` (strategy=mixed): incomplete" in printed


def test_plots_are_written(sweep, tmp_path):
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out)]) == 0
    for name in ("acc_vs_labels.png", "mse_vs_labels.png", "val_mse_vs_steps.png", "report.md", "report.csv"):
        assert (out / name).stat().st_size > 1000 or name.endswith((".md", ".csv")), name


def test_bad_dirs(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err


def test_how_a_job_ran_is_not_a_variant(tmp_path, capsys):
    root = tmp_path / "sweep"
    summary = {"strategy": "scratch", "seed": 0, "target_mse": 0.004, "target_acc": 0.8, "target_val_mse": 0.004}
    make_job(root, "a", ["+experiment=mnist_digits", "trainer.threads=1", "trainer.progress=false", "seed=0"], summary)
    make_job(root, "b", ["+experiment=mnist_digits", "seed=1", "trainer.align.kind=coral"], {**summary, "seed": 1})
    main([str(root)])
    rows = list(csv.DictReader(open(root / "report.csv")))
    assert [(r["variant"], r["seeds"]) for r in rows] == [("", "1"), ("trainer.align.kind=coral", "1")]


def test_gain_is_against_the_scratch_with_every_other_setting_equal(tmp_path, capsys):
    """A sweep over two variants (root x fit): each gain compares with its own scratch, never the
    first scratch of the pair; a strategy's own settings are not part of the match; a variant with
    no scratch of its own gets no gain and a line saying why."""
    root = tmp_path / "sweep"
    mse = {("a", "resize"): 0.010, ("a", "frame"): 0.004, ("b", "resize"): 0.020, ("b", "frame"): 0.008}
    for (folder, fit), base in mse.items():
        variant = [f"data.target.root={folder}", f"data.target.fit={fit}"]
        for strategy, factor, acc in (("scratch", 1.0, 0.50), ("finetune", 0.5, 0.60)):
            make_job(root, f"{folder}-{fit}-{strategy}", [f"strategy={strategy}", *variant],
                     {"strategy": strategy, "seed": 0, "target_mse": base * factor, "target_acc": acc})
    make_job(root, "tuned", ["strategy=finetune", "strategy.encoder_lr_scale=0.1", "data.target.root=a",
                             "data.target.fit=frame"],
             {"strategy": "finetune", "seed": 0, "target_mse": 0.001, "target_acc": 0.7})
    make_job(root, "lonely", ["strategy=finetune", "data.target.root=c"],
             {"strategy": "finetune", "seed": 0, "target_mse": 0.001, "target_acc": 0.7})
    assert main([str(root)]) == 0
    printed = capsys.readouterr().out
    rows = {(r["strategy"], r["variant"]): r for r in csv.DictReader(open(root / "report.csv"))}
    for folder, fit in mse:
        row = rows[("finetune", f"data.target.fit={fit} data.target.root={folder}")]
        assert float(row["mse_gain_pct"]) == pytest.approx(50.0) and float(row["acc_gain_pts"]) == pytest.approx(10.0)
    tuned = rows[("finetune", "data.target.fit=frame data.target.root=a strategy.encoder_lr_scale=0.1")]
    assert float(tuned["mse_gain_pct"]) == pytest.approx(75.0)  # against scratch with root a, fit frame: 0.004
    lonely = rows[("finetune", "data.target.root=c")]
    assert lonely["mse_gain_pct"] == "" and lonely["no_gain_because"]
    assert "no `scratch` with every other setting equal" in printed
    assert "- mnist → digits, 100 images, 10 labels/class, finetune (data.target.root=c)" in printed


def test_every_job_failed_writes_the_list_and_no_empty_plot(tmp_path, capsys):
    root = tmp_path / "sweep"
    make_job(root, "0", ["strategy=scratch"], log="[12:00:01][ERROR] job failed: trainer.transfer.lr must be > 0\n")
    make_job(root, "1", ["strategy=finetune"], log="[12:00:01][ERROR] job failed: KeyError: 101\n")  # a crash
    assert main([str(root)]) == 0
    printed = capsys.readouterr().out
    assert "No run finished: there is nothing to tabulate or plot." in printed
    assert "(strategy=finetune): failed: job failed: KeyError: 101" in printed
    assert not list(root.glob("*.png"))


def test_damaged_and_partial_runs_are_listed_with_what_is_wrong(sweep, capsys):
    make_job(sweep, "badjson", ["strategy=scratch", "seed=7"])
    (sweep / "badjson" / "summary.json").write_text('{"strategy": "scratch", "target_mse": ')
    make_job(sweep, "list", ["strategy=scratch", "seed=8"])
    (sweep / "list" / "summary.json").write_text("[1, 2]")
    make_job(sweep, "short", ["strategy=scratch", "seed=9"])
    (sweep / "short" / "summary.json").write_text('{"strategy": "scratch", "target_mse": 0.1}')
    make_job(sweep, "text", ["strategy=scratch", "seed=10"], {"strategy": "scratch", "seed": 10, "target_mse": "abc"})
    make_job(sweep, "yaml", [], {"strategy": "scratch", "seed": 11, "target_mse": 0.1})
    (sweep / "yaml" / ".hydra" / "overrides.yaml").write_text("- a: [\n")
    make_job(sweep, "stopped", ["strategy=concat"])
    (sweep / "stopped" / "checkpoints").mkdir()
    (sweep / "stopped" / "checkpoints" / "last.pt").write_bytes(b"PK")
    with open(sweep / "s1" / "metrics.jsonl", "a") as f:
        f.write('{"phase": "transfer", "step": 350, "val_m')  # a kill in the middle of a line
    assert main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    assert "badjson` (strategy=scratch seed=7): damaged summary.json (Expecting value: line 1 column 39" in printed
    assert "list` (strategy=scratch seed=8): damaged summary.json (not a JSON object)" in printed
    assert "short` (strategy=scratch seed=9): damaged summary.json (no source, target, n_target_train, " in printed
    assert "text` (strategy=scratch seed=10): damaged summary.json (target_mse is 'abc', not a number)" in printed
    assert "yaml` (no overrides): damaged .hydra/overrides.yaml (while parsing a flow node" in printed
    assert (f"stopped` (strategy=concat): stopped before it finished (killed or interrupted); resume with: aetl train "
            f"resume={sweep / 'stopped'}") in printed
    assert f"Runs in the table with damaged files:\n\n- `{sweep / 's1'}`: metrics.jsonl: 1 damaged line(s) skipped " \
           "(line 7 first)" in printed
    rows = {r["strategy"]: r for r in csv.DictReader(open(sweep / "report.csv"))}
    assert rows["scratch"]["seeds"] == "2"  # s1 is still in the table: its summary is sound


def test_the_target_fit_chosen_is_shown_per_seed(tmp_path, capsys):
    """fit: auto may choose per run; the report says what each seed got (and nothing where the fit was fixed)."""
    root = tmp_path / "sweep"
    auto = {"target_fit_scores": {"resize": 0.3, "crop m4": 0.2}, "target_fit": "crop", "target_tone": "match"}
    for seed, margin in enumerate([4, 6, 6]):
        make_job(root, f"f{seed}", ["strategy=finetune", f"seed={seed}"], {
            "strategy": "finetune", "seed": seed, "target_mse": 0.1, **auto, "target_margin": margin})
    for seed in range(2):
        make_job(root, f"s{seed}", ["strategy=scratch", f"seed={seed}"], {
            "strategy": "scratch", "seed": seed, "target_mse": 0.1, **auto, "target_fit": "resize"})
    make_job(root, "c0", ["strategy=concat", "seed=0"], {
        "strategy": "concat", "seed": 0, "target_mse": 0.1, "target_fit": "frame", "target_margin": 4})
    assert main([str(root)]) == 0
    printed = capsys.readouterr().out
    assert "- mnist → digits, finetune: seed 0: crop m4 match; seed 1: crop m6 match; seed 2: crop m6 match" in printed
    assert "- mnist → digits, scratch: resize match (every seed)" in printed and "concat:" not in printed
