"""The sweep objective: `aetl train` returns a validation figure as a float, failed jobs the
worst value, and a real Optuna search (hparams_search=optuna) runs on it."""

import math
import re

import pytest
import yaml
from conftest import TINY, TINY_MODEL, aetl
from omegaconf import OmegaConf

from aetl.commands.train import train
from aetl.errors import AetlError
from aetl.infra.objective import check_objective, objective_value


def objective(key="target_val_mse", direction="minimize"):
    return OmegaConf.create({"key": key, "direction": direction})


def test_the_objective_is_the_summary_figure_and_failures_are_the_worst_value():
    assert objective_value({"target_val_mse": 0.25}, objective()) == 0.25
    assert objective_value(None, objective()) == math.inf  # a failed job in a multirun
    assert objective_value({}, objective("target_val_acc", "maximize")) == -math.inf  # a rank other than 0
    assert objective_value({"target_val_acc": None}, objective("target_val_acc", "maximize")) == -math.inf


@pytest.mark.parametrize("key, direction, message", [
    ("target_acc", "minimize", "objective.key=target_acc is not a validation figure; sweeps optimise one of "
                               "target_val_mse, target_val_acc (the test split is only for the final report)"),
    ("target_val_mse", "down", "objective.direction must be minimize or maximize, got 'down'"),
    ("target_val_mse", "maximize", "objective.key=target_val_mse is better lower, so objective.direction=maximize "
                                   "would search for the worst model; set objective.direction=minimize"),
    ("target_val_acc", "minimize", "objective.key=target_val_acc is better higher, so objective.direction=minimize "
                                   "would search for the worst model; set objective.direction=maximize"),
])
def test_a_test_split_objective_is_refused_before_anything_trains(make_cfg, tmp_path, key, direction, message):
    with pytest.raises(AetlError, match=f"^{re.escape(message)}$"):
        check_objective(objective(key, direction))
    with pytest.raises(AetlError, match="is not a validation figure|must be minimize|the worst model"):
        train(make_cfg(f"objective.key={key}", f"objective.direction={direction}"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_three_trial_optuna_search_over_the_transfer_lr(tmp_path):
    # Values given on the command line are fixed: only trainer.transfer.lr is searched.
    out = aetl("train", "hparams_search=optuna", *TINY, *TINY_MODEL, "trainer.pretrain.lr=2e-3",
               "hydra.sweeper.n_trials=3", "hydra.sweep.dir=search", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = [tmp_path / "search" / str(i) for i in range(3)]
    values = [yaml.safe_load((job / "summary.json").read_text())["target_val_mse"] for job in jobs]
    lrs = [next(float(o.split("=")[1]) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
                if o.startswith("trainer.transfer.lr=")) for job in jobs]
    assert len(set(lrs)) == 3 and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    results = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    best = values.index(min(values))
    assert results["best_value"] == pytest.approx(values[best])
    assert results["best_params"] == {"trainer.transfer.lr": pytest.approx(lrs[best])}
    assert f"Best value: {results['best_value']}" in out.stdout
    print(f"best target_val_mse {results['best_value']:.5f} at trainer.transfer.lr={lrs[best]:.2e} "
          f"(trials: {', '.join(f'{lr:.2e} -> {v:.5f}' for lr, v in zip(lrs, values))})")


@pytest.mark.slow
def test_a_sweep_with_a_failed_job_ends_non_zero_naming_its_log(tmp_path):
    out = aetl("train", "-m", *TINY, *TINY_MODEL, "strategy=scratch", "data.target.labels_per_class=1,50",
               "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == "aetl train: 1 of 2 jobs failed; their logs: sweep/1/run.log (aetl report " \
                                          "sweep lists why)"
    log = (tmp_path / "sweep" / "1" / "run.log").read_text()
    assert [line.split("] ", 2)[-1] for line in log.splitlines() if "[ERROR]" in line] == [
        "job failed: data.target.labels_per_class=50 but class 'class0' has only 10 of the 40 target training images; "
        "lower labels_per_class or raise data.target.n_train"]
    assert "Traceback" not in log and (tmp_path / "sweep" / "0" / "summary.json").is_file()


def test_a_search_whose_every_trial_failed_names_no_best_trial(tmp_path, capsys):
    """The Optuna sweeper names a best trial even when every trial failed (all at the worst
    value); the sweep's end says there is none."""
    from aetl.infra.callbacks import SweepEnd

    sweep = tmp_path / "search"
    for job in ("0", "1"):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "config.yaml").write_text("{}")
    (sweep / "optimization_results.yaml").write_text("name: optuna\nbest_params:\n  trainer.transfer.lr: 0.001\n"
                                                     "best_value: .inf\n")
    with pytest.raises(SystemExit):
        SweepEnd().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_params"] is None and results["best_value"] is None and "every trial failed" in results["note"]
    assert "2 of 2 jobs failed" in capsys.readouterr().err


def test_a_sweep_ends_naming_its_dir_and_the_report_command(tmp_path, capsys):
    from aetl.infra.callbacks import SweepEnd

    sweep = tmp_path / "sweep"
    for job in ("0", "1"):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "config.yaml").write_text("{}")
        (sweep / job / "summary.json").write_text("{}")
    SweepEnd().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        f": 2 jobs finished in {sweep} (aetl report {sweep} makes their table)")
