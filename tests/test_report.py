"""aetl report on a hand-made sweep: means, stds, gains, steps-to-match, left-out runs."""

import csv
import json
import math
import os

import pytest
import yaml
from conftest import TINY, aetl, make_job
from omegaconf import OmegaConf

from aetl.commands.report import HOW, main
from aetl.infra.jobs import FIGURES, NEEDED, READ

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
    for name in ("acc_vs_labels.png", "mse_vs_images.png", "val_mse_vs_steps.png", "report.md", "report.csv",
                 "report_curves.csv"):
        assert (out / name).stat().st_size > 1000 or name.endswith((".md", ".csv")), name
    curves = list(csv.DictReader(open(out / "report_curves.csv")))
    scratch = [c for c in curves if c["strategy"] == "scratch"]
    assert [int(c["step"]) for c in scratch] == [50, 100, 150, 200, 250, 300]
    assert float(scratch[0]["val_mse_mean"]) == pytest.approx(0.021)  # seeds 0 and 1: 0.020 and 0.022
    assert float(scratch[0]["val_mse_std"]) == pytest.approx(math.sqrt(2 * 0.001 ** 2))


def test_bad_dirs(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err


RUN_SETTINGS = {"trainer.progress": "false", "trainer.threads": "1", "trainer.device": "cpu",
                "trainer.checkpoint_every": "50", "cache_dir": "null", "logger": "csv", "data.storage": "stream",
                "data.workers": "2", "data.memory_share": "0.25", "hydra/launcher": "joblib",
                "objective.key": "target_val_acc", "objective.direction": "maximize"}


def test_every_run_setting_is_a_key_of_the_train_config(make_cfg):
    """HOW names real keys (or groups), so a renamed key cannot silently become a variant again."""
    cfg = make_cfg()
    assert set(RUN_SETTINGS) == HOW
    for key in HOW - {"hydra/launcher", "logger"}:
        assert OmegaConf.select(cfg, key, default="absent") != "absent", key
    assert "logger" in cfg


@pytest.mark.parametrize("setting", sorted(RUN_SETTINGS))
def test_runs_that_differ_in_a_run_setting_are_one_group(tmp_path, capsys, setting):
    """A run setting (checkpoint interval, threads, logger, storage, ...) changes how a job runs,
    not what it computes: the runs stay one group, with two seeds, and keep their scratch baseline."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        make_job(root, f"s{seed}", ["strategy=scratch", f"seed={seed}"],
                 {"strategy": "scratch", "seed": seed, "target_mse": 0.004, "target_acc": 0.8})
    make_job(root, "f0", ["strategy=finetune", "seed=0"],
             {"strategy": "finetune", "seed": 0, "target_mse": 0.002, "target_acc": 0.9})
    make_job(root, "f1", ["strategy=finetune", "seed=1", f"{setting}={RUN_SETTINGS[setting]}"],
             {"strategy": "finetune", "seed": 1, "target_mse": 0.002, "target_acc": 0.9})
    make_job(root, "c0", ["strategy=concat", "seed=0", "trainer.align.kind=coral"],  # a real variant stays one
             {"strategy": "concat", "seed": 0, "target_mse": 0.002, "target_acc": 0.9})
    assert main([str(root)]) == 0
    rows = {(r["strategy"], r["variant"]): r for r in csv.DictReader(open(root / "report.csv"))}
    assert sorted(rows) == [("concat", "trainer.align.kind=coral"), ("finetune", ""), ("scratch", "")]
    finetune = rows["finetune", ""]
    assert finetune["seeds"] == "2" and float(finetune["mse_gain_pct"]) == pytest.approx(50.0)


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


def test_a_scratch_that_used_no_mf_shows_no_mf_setting_and_is_still_the_baseline(tmp_path, capsys):
    """The README's sweep `strategy=scratch,finetune seed=0,1,2 trainer.pretrain.seed=0`: scratch
    reads no Mf, so trainer.pretrain.seed is no variant of it, and finetune's gain is against it."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        for strategy, mse, acc, mf in (("scratch", 0.004, 0.80, None), ("finetune", 0.002, 0.90, "pretrained")):
            make_job(root, f"{strategy}{seed}", [f"strategy={strategy}", f"seed={seed}", "trainer.pretrain.seed=0"],
                     {"strategy": strategy, "seed": seed, "target_mse": mse, "target_acc": acc, "source_model": mf})
    assert main([str(root)]) == 0
    rows = {r["strategy"]: r for r in csv.DictReader(open(root / "report.csv"))}
    assert rows["scratch"]["variant"] == "" and rows["finetune"]["variant"] == "trainer.pretrain.seed=0"
    assert float(rows["finetune"]["mse_gain_pct"]) == pytest.approx(50.0)
    assert float(rows["finetune"]["acc_gain_pts"]) == pytest.approx(10.0)
    assert "scratch (trainer.pretrain.seed=0)" not in capsys.readouterr().out


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
    assert ('text` (strategy=scratch seed=10): unusable summary.json: target_mse is "abc", not a number in [0, 1] or '
            "null; it is not what aetl writes: run the job again") in printed
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


BAD_VALUES = [math.nan, math.inf, -math.inf, 1e308, -1.0, "10", [100], {"a": 1}, True, None]


def bad_cases():
    """(field, value, its spec's complaint) for every field the report reads and every bad value kind it rejects."""
    for name, spec in {**NEEDED, **READ, **FIGURES}.items():
        for value in BAD_VALUES:
            wrong = spec.problem(value)
            if wrong and not (value is None and name not in NEEDED):
                yield name, value, wrong


def test_every_field_the_report_reads_with_every_bad_value_kind_is_named_and_never_a_traceback(tmp_path, capsys):
    """One run per (field, bad value): each is listed with the field, the value as summary.json spells
    it and what it must be; the sound runs still make the table; the report is whole."""
    root = tmp_path / "sweep"
    good = {"strategy": "scratch", "target_mse": 0.004, "target_acc": 0.8, "target_val_mse": 0.004}
    for seed in (0, 1):
        make_job(root, f"good{seed}", ["strategy=scratch", f"seed={seed}"], {**good, "seed": seed})
    cases = list(bad_cases())
    assert {name for name, _, _ in cases} == set(NEEDED) | set(READ) | set(FIGURES)
    for i, (name, value, _) in enumerate(cases):
        make_job(root, f"bad{i:03d}", [f"seed={i}"], {**good, "seed": 5, name: value})
    assert main([str(root)]) == 0
    printed = capsys.readouterr().out
    assert printed == (root / "report.md").read_text()
    for i, (name, value, wrong) in enumerate(cases):
        spelled = json.dumps(value)  # NaN, Infinity, "10", [100], ...
        assert f"bad{i:03d}` (seed={i}): unusable summary.json: {name} is {spelled}, not {wrong};" in printed, name
    (row,) = csv.DictReader(open(root / "report.csv"))
    assert row["seeds"] == "2" and float(row["target_mse_mean"]) == pytest.approx(0.004)


def test_the_seeds_column_counts_distinct_seeds_and_each_seed_counts_once(tmp_path, capsys):
    root = tmp_path / "sweep"
    for i in range(5):  # the same job run five times
        make_job(root, f"same{i}", ["strategy=scratch"], {"strategy": "scratch", "seed": 0, "target_mse": 0.004})
    for name, seed, mse in (("a", 0, 0.002), ("b", 0, 0.004), ("c", 1, 0.005)):
        make_job(root, name, ["strategy=finetune"], {"strategy": "finetune", "seed": seed, "target_mse": mse})
    assert main([str(root)]) == 0
    printed = capsys.readouterr().out
    rows = {r["strategy"]: r for r in csv.DictReader(open(root / "report.csv"))}
    assert (rows["scratch"]["seeds"], rows["scratch"]["runs"]) == ("1", "5")
    assert float(rows["scratch"]["target_mse_std"]) == 0.0
    finetune = rows["finetune"]
    assert (finetune["seeds"], finetune["runs"]) == ("2", "3")
    assert float(finetune["target_mse_mean"]) == pytest.approx(0.004)  # seed 0: (0.002 + 0.004) / 2; seed 1: 0.005
    assert float(finetune["target_mse_std"]) == pytest.approx(math.sqrt(2 * 0.001 ** 2))
    assert "| scratch | 300 | 1 (5 runs) |" in printed and "| finetune | 300 | 2 (3 runs) |" in printed


def as_command(job, command):
    """What Hydra records of the command that made a run dir."""
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"name": command,
                                                                               "config_name": command}}}))


def test_runs_of_every_aetl_command_are_told_apart(tmp_path, capsys):
    """An outputs tree of train, augment, rank and stylize runs, finished and not, with and without
    .hydra/hydra.yaml: train and augment runs are averaged, the others listed as what they are."""
    root = tmp_path / "outputs"
    train = {"strategy": "finetune", "seed": 0, "target_mse": 0.002, "target_acc": 0.9}
    for name, hydra in (("train", True), ("train_bare", False)):
        make_job(root, name, ["strategy=finetune"], {**train, "seed": int(hydra)})
        if hydra:
            as_command(root / name, "train")
    for name, hydra in (("augment", True), ("augment_bare", False)):
        make_job(root, name, ["run=outputs/train", "app.mode=noise"],
                 {**train, "seed": int(hydra), "augment_mode": "noise", "target_acc_augmented": 0.95})
        if hydra:
            as_command(root / name, "augment")
    for name, hydra in (("rank", True), ("rank_bare", False)):
        make_job(root, name, ["sources=[mnist]"])
        (root / name / "rank.json").write_text('{"sources": [], "recommendation": "use mnist"}')
        if hydra:
            as_command(root / name, "rank")
    make_job(root, "rank_failed", ["sources=[mnsit]"], log="[12:00:01][ERROR] unknown source 'mnsit' in sources\n")
    as_command(root / "rank_failed", "rank")
    make_job(root, "rank_killed", ["sources=[mnist]"])
    as_command(root / "rank_killed", "rank")
    for name, hydra in (("stylize", True), ("stylize_bare", False)):
        make_job(root, name, ["run=outputs/train"])
        (root / name / "summary.json").write_text('{"run": "outputs/train", "style_method": "wct", "style_results": []}')
        if hydra:
            as_command(root / name, "stylize")
    assert main([str(root)]) == 0
    printed = capsys.readouterr().out
    rows = {(r["strategy"], r["variant"]): r for r in csv.DictReader(open(root / "report.csv"))}
    assert rows["finetune", ""]["seeds"] == "2" and rows["finetune", "augment=noise"]["seeds"] == "2"
    others = printed.split("Runs of other aetl commands (nothing to average):\n\n")[1].splitlines()
    finished = "finished ({}); not a training result, so not in the table"
    assert others == [
        f"- `{root / 'rank'}` (sources=[mnist]): aetl rank run, " + finished.format("rank.json"),
        f"- `{root / 'rank_bare'}` (sources=[mnist]): aetl rank run, " + finished.format("rank.json"),
        f"- `{root / 'rank_failed'}` (sources=[mnsit]): aetl rank run, failed: unknown source 'mnsit' in sources",
        f"- `{root / 'rank_killed'}` (sources=[mnist]): aetl rank run, incomplete: no rank.json, and no process "
        "holds its run dir (killed before its rank.json)",
        f"- `{root / 'stylize'}` (run=outputs/train): aetl stylize run, " + finished.format("summary.json"),
        f"- `{root / 'stylize_bare'}` (run=outputs/train): aetl stylize run, " + finished.format("summary.json")]
    assert "Runs not in the table" not in printed and "killed before its first checkpoint" not in printed


def test_a_report_is_written_whole_or_not_at_all(sweep, tmp_path, capsys, monkeypatch):
    """A write that fails half way (a full disk) leaves the earlier report as it was, every file of
    it, and no temporary file; the report says so in one line, exit status 2."""
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    make_job(sweep, "more", ["strategy=scratch", "seed=9"], {"strategy": "scratch", "seed": 9, "target_mse": 0.1})
    calls = []

    def full_disk(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    capsys.readouterr()
    assert main([str(sweep), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "nothing of the report was written" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_figure_with_nothing_left_to_draw_is_removed_with_its_old_table(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out)]) == 0
    (out / "mse_vs_labels.png").write_bytes(b"an older report's figure")
    for job in sweep.iterdir():
        if (job / "summary.json").is_file():
            (job / "summary.json").unlink()
    assert main([str(sweep), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "report.md", "report_curves.csv"]


@pytest.mark.slow
def test_a_report_over_real_runs_of_every_command(tmp_path):
    """aetl train (two seeds, and a third run with another checkpoint interval), rank, stylize and
    augment into one outputs tree, then aetl report over it."""
    from PIL import Image

    Image.new("RGB", (21, 17), (200, 120, 40)).save(tmp_path / "content.png")
    Image.new("RGB", (24, 24), (20, 90, 200)).save(tmp_path / "style.png")
    fconv = ["model=fconv", "model.channels=[4,8]", "model.latent_channels=4"]
    for name, extra in (("s0", ["seed=0"]), ("s1", ["seed=1"]), ("s1ck", ["seed=1", "trainer.checkpoint_every=5"])):
        out = aetl("train", *TINY, *fconv, *extra, f"hydra.run.dir=outputs/{name}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    out = aetl("rank", *TINY[:2], *fconv, "sources=[]", "models=[outputs/s0/checkpoints/source.pt]",
               "hydra.run.dir=outputs/rank", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "run dir: " in out.stderr and "rank.json" in out.stderr
    out = aetl("stylize", "run=outputs/s0", "content=content.png", "style=style.png", "app.size=null",
               "app.method=adain", "app.alphas=[1.0]", "app.levels=1", "app.refine_steps=0",
               "hydra.run.dir=outputs/sty", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = aetl("augment", "run=outputs/s0", "app.mode=noise", "hydra.run.dir=outputs/aug", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = aetl("report", "outputs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["variant"]: r for r in csv.DictReader(open(tmp_path / "outputs" / "report.csv"))}
    trained = next(r for v, r in rows.items() if "augment" not in v)
    assert (trained["seeds"], trained["runs"]) == ("2", "3")  # checkpoint_every is no variant
    assert rows["augment=noise"]["seeds"] == "1"
    assert "outputs/rank` (" in out.stdout and "aetl rank run, finished (rank.json)" in out.stdout
    assert "outputs/sty` (" in out.stdout and "aetl stylize run, finished (summary.json)" in out.stdout
    assert "Runs not in the table" not in out.stdout


def test_metrics_lines_with_values_no_mse_can_take_are_skipped_and_listed(sweep, capsys):
    with open(sweep / "s0" / "metrics.jsonl", "a") as f:
        for line in ('{"phase": "transfer", "step": 350, "val_mse": NaN}', '{"phase": "transfer", "step": true}',
                     '{"phase": "transfer", "step": 400, "val_mse": 1e308}', '{"phase": "transfer", "step": -5}'):
            f.write(line + "\n")
    make_job(sweep, "dir", ["strategy=scratch", "seed=3"])
    (sweep / "dir" / "summary.json").mkdir()
    make_job(sweep, "numbers", ["strategy=scratch", "seed=4"], {"strategy": "scratch", "seed": 4, "target_mse": 0.1})
    (sweep / "numbers" / ".hydra" / "overrides.yaml").write_text("- 3\n- {a: 1}\n")
    assert main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    assert f"- `{sweep / 's0'}`: metrics.jsonl: 4 damaged line(s) skipped (line 7 first)" in printed
    assert "dir` (strategy=scratch seed=3): summary.json is not a file" in printed
    assert "numbers` (no overrides): damaged .hydra/overrides.yaml (not a list of overrides)" in printed
    curves = list(csv.DictReader(open(sweep / "report_curves.csv")))
    assert max(int(c["step"]) for c in curves) == 300  # the skipped lines drew nothing


def test_a_tree_of_rank_runs_only_says_there_is_no_training_run(tmp_path, capsys):
    make_job(tmp_path / "out", "rank", ["sources=[mnist]"])
    (tmp_path / "out" / "rank" / "rank.json").write_text("{}")
    as_command(tmp_path / "out" / "rank", "rank")
    assert main([str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "No aetl train or aetl augment run here: there is nothing to tabulate or plot." in printed
    assert "aetl rank run, finished (rank.json)" in printed and not list((tmp_path / "out").glob("*.png"))


def test_runs_with_no_target_labels_are_rows_of_their_own(tmp_path, capsys):
    root = tmp_path / "zero"
    for seed, acc in enumerate([0.70, 0.74]):
        make_job(root, f"d{seed}", ["strategy=drcn", "data.target.labels_per_class=0", f"seed={seed}"],
                 {"strategy": "drcn", "seed": seed, "labels_per_class": 0, "target_mse": 0.006, "target_acc": acc,
                  "target_val_mse": 0.006, "source_labels": True})
    make_job(root, "f0", ["strategy=finetune", "data.target.labels_per_class=0", "seed=0"],
             {"strategy": "finetune", "seed": 0, "labels_per_class": 0, "target_mse": 0.0015, "target_acc": 0.62,
              "target_val_mse": 0.0015, "source_labels": True})
    assert main([str(root)]) == 0
    printed = capsys.readouterr().out
    assert "| mnist → digits | 100 | 0 | yes | drcn | 300 | 2 | 0.00600 ± 0.00000 |" in printed
    assert "| 72.0 ± 2.8 |" in printed and "| 62.0 ± 0.0 |" in printed
