"""End to end: the installed `aetl` command in a subprocess, as a user runs it."""

import json
import os
import subprocess
from datetime import datetime, timedelta

import numpy as np
import pytest
from conftest import AETL, SUMMARY_KEYS, TINY, TINY_MODEL, aetl, options

from aetl import __version__ as aetl_version

pytestmark = pytest.mark.slow
def test_help_lists_the_commands(tmp_path):
    out = aetl("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("train", "stylize", "augment", "report", "rank"):
        assert f"\n  {command}" in out.stdout
    bad = aetl("trian", cwd=tmp_path)
    assert bad.returncode != 0 and "unknown command 'trian'" in bad.stderr
    # `aetl --help | head -1`: the reader has gone before aetl writes; no traceback
    piped = subprocess.Popen([AETL, "--help"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    piped.stdout.close()
    assert piped.wait(timeout=60) == 1 and piped.stderr.read() == b""


def test_hydra_flags_work_on_train(tmp_path):
    cfg = aetl("train", "--cfg", "job", "strategy=scratch", cwd=tmp_path)
    assert cfg.returncode == 0 and "name: scratch" in cfg.stdout and "labels_per_class: 10" in cfg.stdout
    assert not (tmp_path / "outputs").exists()  # printing the config runs nothing
    helped = aetl("train", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and f"strategy: {options('strategy')}" in helped.stdout
    for spelling in ("experiment=fashion_mnist", "+experiment=fashion_mnist"):  # the template's and the appending one
        bundled = aetl("train", spelling, "--cfg", "job", cwd=tmp_path)
        assert bundled.returncode == 0 and "name: fashion_mnist" in bundled.stdout, bundled.stderr
    for flag in ("--version", "-V"):
        version = aetl(flag, cwd=tmp_path)
        assert version.returncode == 0 and version.stdout == f"aetl {aetl_version}\n"


def test_train_end_to_end(tmp_path):
    out = aetl("train", *TINY, *TINY_MODEL, "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    for name in (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "run.log", "metrics.jsonl",
                 "summary.json", "checkpoints/source.pt", "checkpoints/target.pt", "checkpoints/last.pt",
                 "images/recon_source.png", "images/recon_target.png"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["strategy"] == "finetune"
    assert "target_mse" in (run / "run.log").read_text()


def test_multirun_over_every_strategy_pretrains_once(tmp_path):
    env = {**os.environ, "AETL_CACHE_DIR": str(tmp_path / "cache")}
    out = aetl("train", "-m", *TINY, *TINY_MODEL, "strategy=scratch,fixed_init,concat,finetune,mixed",
               "hydra.sweep.dir=sweep", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    jobs = [tmp_path / "sweep" / str(i) for i in range(5)]
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert [s["strategy"] for s in summaries] == ["scratch", "fixed_init", "concat", "finetune", "mixed"]
    assert [s["source_cache"] for s in summaries] == [None, "miss", "hit", "hit", "hit"]
    assert all(s["transfer_steps"] == 10 for s in summaries)
    assert "source model: cache hit" in (jobs[2] / "run.log").read_text()
    assert sum("pretraining" in (job / "run.log").read_text() for job in jobs) == 1


def test_bad_input_gives_one_clear_line_and_spares_earlier_runs(tmp_path):
    earlier = tmp_path / "outputs" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text("{}")
    out = aetl("train", *TINY, *TINY_MODEL, "data.target.labels_per_class=50", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith(
        "data.target.labels_per_class=50 but class 'class0' has only 10 of the 40 target training images; "
        "lower labels_per_class or raise data.target.n_train")
    assert (earlier / "summary.json").read_text() == "{}"
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["earlier"]  # the failed run left no empty dir
    unknown = aetl("train", "strategy=nope", cwd=tmp_path)
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert unknown.stderr.splitlines() == [f"aetl train: unknown strategy 'nope'; choose one of {options('strategy')}"]


def test_home_in_a_path_override_is_expanded(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    out = aetl("train", *TINY, *TINY_MODEL, "data/target=folder", "data.target.root=~/my_images", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert f"image folder {tmp_path}/my_images does not exist" in out.stderr
    assert not (tmp_path / "outputs").exists()  # nothing left of the run that failed before its first output


def test_applications_end_to_end(tmp_path):
    from PIL import Image

    Image.new("RGB", (21, 17), (200, 120, 40)).save(tmp_path / "content.png")
    Image.fromarray((np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / "style.png")
    fconv = ["model=fconv", "model.channels=[4,8]", "model.latent_channels=4"]
    images = ["app.content=content.png", "app.style=style.png", "app.size=null"]
    out = aetl("train", *TINY, *fconv, "app=style_transfer", *images, "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["style_method"] == "wct" and summary["style_levels"] == 3 and len(summary["style_results"]) == 3
    with Image.open(tmp_path / "run" / "images" / "style_grid_wct.png") as grid:
        assert json.loads(grid.text["columns"]) == ["content", "style", "alpha 0.25", "alpha 0.5", "alpha 1"]

    out = aetl("stylize", "run=run", "content=content.png", "style=style.png", "app.size=null", "app.method=adain",
               "app.alphas=[1.0]", "app.levels=1", "app.refine_steps=3", "hydra.run.dir=sty", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    with Image.open(tmp_path / "sty" / "images" / "stylized_adain_alpha1.png") as img:
        assert img.size == (21, 17)
    (record,) = json.loads((tmp_path / "sty" / "summary.json").read_text())["style_results"]
    assert {"content_loss_before", "style_loss_before", "style_loss_after", "checkerboard_after", "seconds",
            "refine_seconds"} <= set(record)

    out = aetl("stylize", "run=run", "content=content.png", "style=style.png", "app.box=[[0,0,10,8],[0.5,0.5,1,1]]",
               "app.alphas=[1.0]", "hydra.run.dir=box", cwd=tmp_path)  # a list of boxes, at the content's own size
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "box" / "summary.json").read_text())["style_boxes"] == [[0, 0, 10, 8], [10, 8, 21, 17]]
    with Image.open(tmp_path / "box" / "images" / "stylized_wct_alpha1.png") as img:
        assert img.size == (21, 17)

    out = aetl("augment", "run=run", "app.mode=noise", "app.amount=2", "hydra.run.dir=aug", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "aug" / "summary.json").read_text())
    assert summary["n_augmented"] == 40 and summary["target_acc_augmented"] is not None
    assert (tmp_path / "aug" / "augmented.npz").is_file()

    bad = aetl("augment", f"run={tmp_path / 'sty'}", cwd=tmp_path)
    assert bad.returncode == 2 and "is not a finished aetl train run" in bad.stderr and "Traceback" not in bad.stderr
    bad = aetl("stylize", "run=run", "app.levels=4", "hydra.run.dir=sty4", cwd=tmp_path)
    assert bad.returncode == 2 and "app.levels must be 1 to 3 for this backbone" in bad.stderr
    assert not (tmp_path / "sty4" / "images").exists()


def test_two_job_sweep_through_the_submitit_local_executor(tmp_path):
    out = aetl("train", "-m", "hydra/launcher=local", *TINY, *TINY_MODEL, "strategy=scratch,finetune",
               "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for i, strategy in enumerate(["scratch", "finetune"]):
        job = tmp_path / "sweep" / str(i)
        assert json.loads((job / "summary.json").read_text())["strategy"] == strategy
        assert (job / ".hydra" / "config.yaml").is_file()
    assert (tmp_path / "sweep" / ".submitit").is_dir()  # submitit ran the jobs, not the basic launcher


def test_sweeps_started_in_the_same_second_get_their_own_dirs(tmp_path):
    """The collision is forced: every timestamped sweep dir of the next minutes is taken
    beforehand, so both sweeps (the second through submitit, whose jobs resolve the sweep dir
    again in their own processes) must step aside to HH-MM-SS_1 (or _2: the same second)."""
    now = datetime.now()
    taken = {(now + timedelta(seconds=s)).strftime("%Y-%m-%d/%H-%M-%S") for s in range(-2, 240)}
    for stamp in taken:
        (tmp_path / "multirun" / stamp).mkdir(parents=True)
    args = [AETL, "train", "-m", *TINY, "model=mlp", "model.hidden=[8]", "model.latent_dim=2", "cache_dir=null",
            "trainer.pretrain.steps=5", "trainer.transfer.steps=5", "seed=0,1"]
    sweeps = [subprocess.Popen([*args, *launcher], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for launcher in ([], ["hydra/launcher=local"])]
    assert [p.wait(timeout=300) for p in sweeps] == [0, 0]
    dirs = sorted(p.parent for p in tmp_path.glob("multirun/*/*/multirun.yaml"))
    assert len(dirs) == 2
    for sweep in dirs:
        base, _, n = sweep.name.partition("_")
        assert f"{sweep.parent.name}/{base}" in taken and n in ("1", "2"), sweep
        assert [json.loads((sweep / str(i) / "summary.json").read_text())["seed"] for i in (0, 1)] == [0, 1]
    assert not [p for p in tmp_path.glob("multirun/*/*") if f"{p.parent.name}/{p.name}" in taken and any(p.iterdir())]

