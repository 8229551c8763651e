"""Loggers (logger=csv, tensorboard, several) hold the records of metrics.jsonl, also after a
crash and a resume; progress reaches the log when stderr is not a terminal."""

import csv
import logging
import re
import sys

import pytest
from conftest import read_metrics
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aetl.commands.train import train
from aetl.infra.rundir import Run

RESUMABLE = ["cache_dir=null", "trainer.checkpoint_every=7", "trainer.pretrain.steps=40", "trainer.transfer.steps=30"]


def crash_after(monkeypatch, at_phase, at_step):
    """Fail as a killed job would: after the loop logged (at_phase, at_step), before last.pt follows."""
    log_metrics = Run.log_metrics

    def log_and_crash(self, phase, epoch=None, step=None, **metrics):
        log_metrics(self, phase, epoch, step, **metrics)
        if (phase, step) == (at_phase, at_step):
            raise RuntimeError("killed")

    monkeypatch.setattr(Run, "log_metrics", log_and_crash)


def scalars(run):
    """{tag: [(step, value), ...]} read back with TensorBoard's own reader."""
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected_scalars(records):
    found = {}
    for r in records:
        for key, value in r.items():
            if key not in ("phase", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                found.setdefault(f"{r['phase']}/{key}", []).append((r["step"] or 0, value))
    return found


def test_tensorboard_and_csv_hold_the_steps_of_metrics_jsonl_after_a_crash_and_resume(make_cfg, tmp_path,
                                                                                     monkeypatch):
    cfg = make_cfg("logger=[jsonl,csv,tensorboard]", "strategy=fixed_init", *RESUMABLE)
    with monkeypatch.context() as patch:
        crash_after(patch, "transfer", 20)  # logged up to step 20, last.pt at step 14
        with pytest.raises(RuntimeError, match="killed"):
            train(cfg, tmp_path)
    before = scalars(tmp_path)["transfer/val_mse"]
    assert [step for step, _ in before][-2:] == [15, 20]

    train(cfg, tmp_path)  # resumes from last.pt: metrics.jsonl is cut back to step 10 and goes on
    records = read_metrics(tmp_path)
    got, want = scalars(tmp_path), expected_scalars(records)
    assert set(got) == set(want) and {"pretrain/cls", "transfer/feature", "eval/target_mse"} <= set(got)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag  # each step once, in order
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag
    assert [s for s, _ in got["transfer/val_mse"]] == [10, 15, 20, 25, 30]  # after transfer_frozen's 9 steps

    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["phase"], r["step"]) for r in rows] == [(r["phase"], str(r["step"] or "")) for r in records]
    assert float(rows[-1]["target_mse"]) == pytest.approx(records[-1]["target_mse"])
    assert {"cls", "feature", "val_mse", "time_s", "epoch"} <= set(rows[0])


def test_many_is_every_logger_and_jsonl_alone_writes_metrics_jsonl_only(make_cfg, tmp_path):
    assert set(make_cfg("logger=many").logger) == {"jsonl", "csv", "tensorboard"}
    train(make_cfg("strategy=scratch"), tmp_path)
    assert (tmp_path / "metrics.jsonl").is_file()
    assert not (tmp_path / "metrics.csv").exists() and not (tmp_path / "tensorboard").exists()


def test_progress_lines_reach_the_log_when_stderr_is_not_a_terminal(make_cfg, tmp_path, caplog):
    line = re.compile(r"^(pretrain|transfer) step (\d+)/(\d+)  loss \S+  val_mse \S+  \d+ img/s  ETA \d:\d\d:\d\d$")
    with caplog.at_level(logging.INFO, logger="aetl.training.loop"):
        train(make_cfg("trainer.progress=true"), tmp_path / "on")
    shown = [m.groups() for m in map(line.match, caplog.messages) if m]
    assert shown == [("pretrain", str(s), "20") for s in (5, 10, 15)] + [("transfer", "5", "10")]
    ended = [m for m in caplog.messages if re.match(r"^(pretrain|transfer): \d+ steps done in [\d.]+ s, loss \S+, "
                                                    r"val_mse \S+, \d+ img/s$", m)]
    assert [m.split(":")[0] for m in ended] == ["pretrain", "transfer"]  # how each phase ended
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="aetl.training.loop"):
        train(make_cfg("trainer.progress=false"), tmp_path / "off")
    assert not [m for m in caplog.messages if line.match(m)]


def test_on_a_terminal_the_bar_shows_progress_and_run_log_keeps_the_lines(make_cfg, tmp_path, monkeypatch):
    """tqdm's bar vanishes when a phase ends; run.log (a file handler, as Hydra sets one up)
    keeps the progress lines and each phase's last line."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    handler = logging.FileHandler(tmp_path / "run.log")
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        train(make_cfg("trainer.progress=true"), tmp_path / "run")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (tmp_path / "run.log").read_text()
    assert "pretrain step 5/20  loss" in text and "transfer step 5/10  loss" in text
    assert "pretrain: 20 steps done in" in text and "transfer: 10 steps done in" in text
