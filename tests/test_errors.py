"""The catalogue of bad inputs in docs/errors.md: each gives one line naming the problem and
the fix, a non-zero exit, and writes nothing. Entries tested elsewhere name their test
in docs/errors.md."""

import errno
import logging
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, TINY_MODEL, options, run_cli
from omegaconf import OmegaConf

from aetl.commands import cli
from aetl.commands.train import train
from aetl.data.domains import folder
from aetl.errors import AetlError, reports_errors, user_error
from aetl.infra.checkpoint import load_checkpoint, pack
from aetl.infra.runconfig import identity
from aetl.training.loop import Objective


@pytest.mark.parametrize("override, message", [
    ("data=mnist_digit", f"unknown data 'mnist_digit' (did you mean mnist_digits?); choose one of {options('data')}"),
    ("data/target=fashion", "unknown data/target 'fashion' (did you mean fashion_mnist?); choose one of"),
    ("model=convv", f"unknown model 'convv' (did you mean conv?); choose one of {options('model')}"),
    ("strategy=concatt", f"unknown strategy 'concatt' (did you mean concat?); choose one of {options('strategy')}"),
    ("app=style", f"unknown app 'style' (did you mean style_transfer?); choose one of {options('app')}"),
    ("model.latnt_dim=3", "model.latnt_dim is not a config key (did you mean model.latent_dim?); `aetl train --cfg "
                          "job` shows the keys, and +model.latnt_dim=... adds a new one"),
    ("sed=1", "sed is not a config key (did you mean seed?)"),
    ("data/target=folder", "data.target.root needs a value (it is ??? in the config); add data.target.root=... to "
                           "the command"),
    ("strategy=scratch,concat", "strategy=scratch,concat is a sweep: add -m to run one job per value"),
    ("trainer.transfer.lr=interval(0.001,0.1)", "trainer.transfer.lr=interval(0.001,0.1) is a sweep: add -m"),
    ("trainer.lr=[", "cannot parse the overrides: no viable alternative at input '['"),
    ("+seed=1", "Could not append to config. An item is already at 'seed'. Either remove + prefix: 'seed=1' Or add "
                "a second + to add or override 'seed': '++seed=1'"),  # Hydra's hint kept on the one line
    ("experiment=mnist_digit", "unknown experiment 'mnist_digit' (did you mean mnist_digits?); choose one of"),
    ("objective.key=target_acc", "objective.key=target_acc is not a validation figure; sweeps optimise one of "
                                 "target_val_mse, target_val_acc"),
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
                                     f"choose one of {options('model')}"]


def test_resume_needs_a_run_dir(tmp_path, monkeypatch, capsys):
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", f"resume={tmp_path}")
    assert status != 0 and lines == [f"aetl train: resume={tmp_path} is not the dir of an aetl train run (it has "
                                     "no .hydra/overrides.yaml); pass the run dir an interrupted run wrote"]


@pytest.mark.parametrize("override, message", [
    ("trainer.transfer.lr=-0.001", "trainer.transfer.lr must be > 0, got -0.001"),
    ("trainer.pretrain.batch_size=0", "trainer.pretrain.batch_size must be >= 1, got 0"),
    ("trainer.eval_every=0", "trainer.eval_every must be >= 1, got 0"),
    ("model.latent_dim=0", "model.latent_dim must be in [1, 65536], got 0; set it to the size of the code"),
    ("data.target.labels_per_class=11", "data.target.labels_per_class=11 but class 'class0' has only 10"),
])
def test_out_of_range_numbers_stop_before_training(make_cfg, tmp_path, override, message):
    with pytest.raises(Exception) as raised:  # noqa: PT011 - Hydra's instantiate may wrap the AetlError
        train(make_cfg(override), tmp_path)
    assert str(user_error(raised.value)).startswith(message)
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing trained


def test_an_unreadable_folder(tmp_path, monkeypatch):
    def denied(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(os, "scandir", denied)  # as root, chmod would not deny it
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
    assert (last["loop"]["phase"], last["loop"]["step"]) == ("pretrain", 12)
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
    run = tmp_path / "run dir"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("what Hydra wrote\n")
    torch.save(pack("last", {}, None, identity=identity(make_cfg())), run / "last.pt")
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


def test_a_missing_optional_package_names_its_extra(make_cfg, tmp_path, monkeypatch, caplog):
    for module in ("skimage", "skimage.data"):
        monkeypatch.setitem(sys.modules, module, None)  # as if scikit-image were not installed
    cfg = make_cfg("strategy=scratch", "data/target=mnist_m", "data.channels=3", "data.image_size=28",
                   "data.target.n_train=40", "data.target.labels_per_class=1")
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stopped:
        reports_errors(train)(cfg, tmp_path / "run")
    assert stopped.value.code == 2
    assert caplog.messages == ["the photos, textures and mnist_m domains and style transfer's sample images need "
                               'scikit-image: pip install "aetl[photos]"']
    caplog.clear()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit):
        reports_errors(train)(make_cfg("logger=tensorboard"), tmp_path / "tb")
    assert caplog.messages == ['logger=tensorboard needs the tensorboard package: pip install "aetl[tensorboard]"']


def test_an_unavailable_device_is_one_line(make_cfg, tmp_path):
    if torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    with pytest.raises(AetlError, match=r"^trainer.device=mps but PyTorch's MPS backend is not available here"):
        train(make_cfg("trainer.device=mps"), tmp_path)
    with pytest.raises(AetlError, match=r"^trainer.device must be auto, cpu, cuda or mps, got 'tpu'; fix it in the "):
        train(make_cfg("trainer.device=tpu"), tmp_path)


def poisoned(path: Path, to: Path) -> Path:
    """A copy of the checkpoint at path with one weight nan (what a diverged run leaves)."""
    state = torch.load(path, weights_only=True)
    first = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][first] = state["model"][first].clone().fill_(float("nan"))
    torch.save(state, to)
    return to


def test_non_finite_weights_are_refused_from_pretrained_run_and_the_cache(make_cfg, tmp_path, caplog):
    from aetl.api import trained_model
    from aetl.infra.cache import SourceCache

    cfg = make_cfg("cache_dir=null", "trainer.pretrain.steps=4", "trainer.transfer.steps=2")
    train(cfg, tmp_path / "run")
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")  # what Hydra writes beside it
    source = poisoned(tmp_path / "run" / "checkpoints" / "source.pt", tmp_path / "diverged.pt")
    with pytest.raises(AetlError, match=f"^checkpoint {source} holds weights that are nan or inf"):
        train(make_cfg(f"pretrained={source}"), tmp_path / "from_pretrained")  # not "the loss became nan"
    assert not (tmp_path / "from_pretrained" / "metrics.jsonl").exists()
    target = tmp_path / "run" / "checkpoints" / "target.pt"
    poisoned(target, target)
    with pytest.raises(AetlError, match=f"^checkpoint {target} holds weights that are nan or inf"):
        trained_model(tmp_path / "run", torch.device("cpu"))  # aetl stylize / augment run=
    cache = SourceCache(tmp_path / "cache")
    cache.store("k", torch.load(source, weights_only=True), {})
    with caplog.at_level(logging.WARNING):
        assert cache.load("k") is None  # so the job pretrains again and replaces the entry
    assert "holds weights that are nan or inf" in caplog.text and "pretraining again" in caplog.text


def test_a_failed_job_of_a_sweep_is_one_line_in_its_log(make_cfg, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("aetl.errors.in_multirun", lambda: True)
    with caplog.at_level(logging.ERROR):
        assert reports_errors(train)(make_cfg("trainer.transfer.lr=abc"), tmp_path / "job") is None  # the sweep goes on
    assert caplog.messages == ["job failed: trainer.transfer.lr must be a number > 0, got 'abc'; fix it in the "
                               "override or config"]


def test_a_crash_leaves_its_line_in_the_log(caplog):
    """A bug is not an AetlError: its traceback is Hydra's to show, and run.log keeps one line
    that `aetl report` lists the crashed run with."""
    @reports_errors
    def task():
        return {}[101]

    with caplog.at_level(logging.ERROR), pytest.raises(KeyError):
        task()
    assert caplog.messages == ["job failed: KeyError: 101"]


# Messages that give a concrete fix: the bad override, a pattern that reads the fix off the
# message, and the override it makes. Following the advice must clear the error.
ADVICE = [  # (the overrides, the last of them bad; what reads the fix; the override it makes)
    (["data.target.fit=frame", "data.target.margin=20"], r"choose a margin in \[0, (\d+)\]", "data.target.margin={}"),
    (["model.latnt_dim=16"], r"did you mean (model\.latent_dim)\?", "{}=16"),
    (["strategy=concatt"], r"did you mean (\w+)\?", "strategy={}"),
    (["objective.direction=maximize"], r"set (objective\.direction=\w+)$", "{}"),
    (["hydra/launcher=paralel"], r"did you mean (\w+)\?", "hydra/launcher={}"),
    (["data/target=folder", "data.target.root=5"], r"quote it to pass it as a string: \"(.*)\"$", "{}"),
]


@pytest.mark.parametrize("bad, advice, fix", ADVICE)
def test_the_fix_a_command_line_message_gives_works_when_followed(tmp_path, monkeypatch, capsys, bad, advice, fix):
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", *TINY, *TINY_MODEL, *bad)
    found = re.search(advice, lines[0]) if status == 2 and len(lines) == 1 else None
    assert found, lines
    followed = [*bad[:-1], fix.format(*found.groups())]
    cli.check_overrides("train", [*TINY, *TINY_MODEL, *followed])  # no SystemExit: it passes


@pytest.mark.parametrize("bad, advice, fix", [
    (["model=conv", "model.channels=[4,8]", "data.image_size=18"], r"e\.g\. (\d+) or", "data.image_size={}"),
    (["data.target.n_train=500"], r"choose 1\.\.(\d+)", "data.target.n_train={}"),
])
def test_the_fix_a_job_message_gives_works_when_followed(make_cfg, tmp_path, bad, advice, fix):
    with pytest.raises(Exception) as raised:  # (Hydra wraps an error of a model it builds)
        train(make_cfg(*bad, "cache_dir=null"), tmp_path / "bad")
    found = re.search(advice, str(user_error(raised.value)))
    assert found, str(raised.value)
    followed = [*bad[:-1], fix.format(*found.groups())]
    assert train(make_cfg(*followed, "cache_dir=null"), tmp_path / "followed")["target_mse"] > 0


def test_a_frame_too_small_for_any_margin_leaves_fit_auto_to_resize(make_cfg, tmp_path):
    """At data.image_size=2 fit auto tried margins that leave no room, and its advice (margin
    0..0) did not help; it now tries only what fits."""
    summary = train(make_cfg("data.image_size=2", "data.target.fit=auto", "cache_dir=null"), tmp_path)
    assert summary["target_fit"] == "resize"
