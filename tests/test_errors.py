"""The catalogue of bad inputs in docs/errors.md: each gives one line naming the problem and
the fix, a non-zero exit, and writes nothing. Entries tested elsewhere name their test
in docs/errors.md."""

import errno
import logging
import os
from pathlib import Path

import pytest
import torch

from aetl import cli
from aetl.domains import folder
from aetl.errors import AetlError, reports_errors, user_error
from aetl.loop import Objective
from aetl.resume import identity
from aetl.rundir import load_checkpoint
from aetl.train import train


def run_cli(tmp_path, monkeypatch, capsys, *args):
    """`aetl <args>` in this process, from tmp_path; returns (exit status, stderr lines)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        cli.main(list(args))
    lines = capsys.readouterr().err.strip().splitlines()
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run dir
    return stopped.value.code, lines


@pytest.mark.parametrize("override, message", [
    ("data=mnist_digit", "unknown data 'mnist_digit' (did you mean mnist_digits?); choose one of fashion_mnist, "
                         "mnist_digits, mnist_mnist_m, photos_textures, style, synthetic_pair"),
    ("data/target=fashion", "unknown data/target 'fashion' (did you mean fashion_mnist?); choose one of"),
    ("model=convv", "unknown model 'convv' (did you mean conv?); choose one of conv, fconv, mlp"),
    ("strategy=concatt", "unknown strategy 'concatt' (did you mean concat?); choose one of concat, finetune, "
                         "fixed_init, mixed, scratch"),
    ("app=style", "unknown app 'style' (did you mean style_transfer?); choose one of augment, none, style_transfer"),
    ("model.latnt_dim=3", "model.latnt_dim is not a config key (did you mean model.latent_dim?); `aetl train --cfg "
                          "job` shows the keys, and +model.latnt_dim=... adds a new one"),
    ("sed=1", "sed is not a config key (did you mean seed?)"),
    ("data/target=folder", "data.target.root needs a value (it is ??? in the config); add data.target.root=... to "
                           "the command"),
    ("strategy=scratch,concat", "strategy=scratch,concat is a sweep: add -m to run one job per value"),
    ("trainer.transfer.lr=interval(0.001,0.1)", "trainer.transfer.lr=interval(0.001,0.1) is a sweep: add -m"),
    ("trainer.lr=[", "cannot parse the overrides: no viable alternative at input '['"),
])
def test_unknown_names_and_keys_are_one_line_before_anything_runs(tmp_path, monkeypatch, capsys, override, message):
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", override)
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith(f"aetl train: {message}")


def test_a_value_left_out_is_one_line_in_process_too(make_cfg, tmp_path):
    with pytest.raises(AetlError, match=r"^data.target.root needs a value \(it is \?\?\? in the config\); add "):
        train(make_cfg("data/target=folder"), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_sweep_is_checked_with_its_first_value(tmp_path, monkeypatch, capsys):
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", "-m", "seed=0,1", "model=convv,mlp")
    assert status == 2 and lines == ["aetl train: unknown model 'convv' (did you mean conv?); "
                                     "choose one of conv, fconv, mlp"]


def test_resume_needs_a_run_dir(tmp_path, monkeypatch, capsys):
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", f"resume={tmp_path}")
    assert status != 0 and lines == [f"aetl train: resume={tmp_path} is not the dir of an aetl train run (it has "
                                     "no .hydra/overrides.yaml); pass the run dir an interrupted run wrote"]


@pytest.mark.parametrize("override, message", [
    ("trainer.transfer.lr=-0.001", "trainer.transfer.lr must be > 0, got -0.001"),
    ("trainer.pretrain.batch_size=0", "trainer.pretrain.batch_size must be >= 1, got 0"),
    ("trainer.eval_every=0", "trainer.eval_every must be >= 1, got 0"),
    ("model.latent_dim=0", "model.latent_dim must be >= 1, got 0; set it to the size of the code"),
    ("data.target.labels_per_class=11", "data.target.labels_per_class=11 but class 0 has only 10"),
])
def test_out_of_range_numbers_stop_before_training(make_cfg, tmp_path, override, message):
    with pytest.raises(Exception) as raised:  # noqa: PT011 - Hydra's instantiate may wrap the AetlError
        train(make_cfg(override), tmp_path)
    assert str(user_error(raised.value)).startswith(message)
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing trained


def test_an_unreadable_folder(tmp_path, monkeypatch):
    def denied(self):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(AetlError, match=f"cannot read image folder {tmp_path} \\(Permission denied\\); fix its"):
        folder.load(root=str(tmp_path), size=8)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path, monkeypatch):
    forward, calls = Objective.forward, []

    def poisoned(self, x, *rest):
        losses = forward(self, x, *rest)
        calls.append(1)
        if len(calls) > 13:  # from pretraining step 14 on
            losses["recon"] = losses["recon"] * float("nan")
        return losses

    monkeypatch.setattr(Objective, "forward", poisoned)
    with pytest.raises(AetlError, match="pretrain: the loss became nan by step 15; lower the learning rate"):
        train(make_cfg("cache_dir=null", "trainer.checkpoint_every=4"), tmp_path)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (last["phase"], last["step"]) == ("pretrain", 12)
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert not (tmp_path / "summary.json").exists()


def test_debug_flag_shows_the_traceback(monkeypatch, caplog):
    @reports_errors
    def task():
        raise AetlError("bad input; fix it")

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stopped:
        task()
    assert stopped.value.code == 2 and caplog.messages == ["bad input; fix it"]
    monkeypatch.setenv("AETL_DEBUG", "1")
    with pytest.raises(AetlError, match="bad input"):
        task()


def test_a_run_dir_started_with_another_config_is_refused_before_hydra_writes(make_cfg, tmp_path, monkeypatch,
                                                                              capsys):
    from conftest import TINY, TINY_MODEL

    run = tmp_path / "run dir"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("what Hydra wrote\n")
    torch.save({"model": {}, "identity": identity(make_cfg())}, run / "last.pt")
    (run / "checkpoints").mkdir()
    (run / "last.pt").rename(run / "checkpoints" / "last.pt")
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", *TINY, *TINY_MODEL, "seed=1",
                            "trainer.progress=true", f"hydra.run.dir='{run}'")
    assert status == 2 and lines == [f"aetl train: {run} was started with another config (it differs in seed); "
                                     f"resume it with `aetl train resume='{run}'` or choose a new run dir"]
    assert (run / ".hydra" / "config.yaml").read_text() == "what Hydra wrote\n"
    cli.check_run_dir([f"hydra.run.dir='{run}'"], make_cfg("seed=0", "trainer.checkpoint_every=1"))  # the same run
    (run / "summary.json").write_text("{}")
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", *TINY, *TINY_MODEL, f"hydra.run.dir='{run}'")
    assert status == 2 and lines == [f"aetl train: {run} already holds a finished run; leave hydra.run.dir out "
                                     "(or choose a new dir) to start another"]


def test_resume_is_for_one_run(tmp_path, monkeypatch, capsys):
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", "-m", f"resume={tmp_path}")
    assert status == 2 and lines == ["aetl train: resume= carries on one run; to resume a sweep, run it again with "
                                     "hydra.sweep.dir=<its dir>"]
