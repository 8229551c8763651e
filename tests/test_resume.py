"""Resume: a run stopped by a signal or killed outright carries on from checkpoints/last.pt
and ends with the figures and metrics.jsonl of a run that was never interrupted."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import FIGURES, TINY, TINY_MODEL, aetl, processes, read_metrics, signal_at, wait_for_step, without_time

import aetl.commands.train as pipeline
from aetl.commands.train import train
from aetl.errors import AetlError, Interrupted
from aetl.infra.checkpoint import load_checkpoint
from aetl.infra.rundir import Run

# Enough steps that a kill lands mid-phase; checkpoints between logging points, so that
# resuming also restores the loss sums of a half-filled logging window.
LONGER = ["cache_dir=null", "trainer.checkpoint_every=7", "trainer.pretrain.steps=40", "trainer.transfer.steps=30"]


@pytest.mark.parametrize("strategy, phase, step", [("finetune", "pretrain", 20), ("fixed_init", "transfer", 15),
                                                   ("auto", "scratch/transfer", 15), ("auto", "finetune/transfer", 20)])
def test_signal_checkpoints_stops_and_resumes_to_the_same_figures(make_cfg, tmp_path, monkeypatch, strategy,
                                                                  phase, step):
    cfg = make_cfg(f"strategy={strategy}", *LONGER)
    reference = train(cfg, tmp_path / "reference")

    with monkeypatch.context() as patch:
        signal_at(patch, phase, step)
        with pytest.raises(Interrupted, match=f"stopped by SIGTERM at {phase} step {step}; saved .*last.pt; "
                                              f"resume with: aetl train resume=.*stopped") as stopped:
            train(cfg, tmp_path / "stopped")
    assert stopped.value.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the run
    last = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert (last["loop"]["phase"], last["loop"]["first_step"] + last["loop"]["step"]) == (phase, step)
    assert not (tmp_path / "stopped" / "summary.json").exists()

    resumed = train(cfg, tmp_path / "stopped")
    assert [resumed[k] for k in FIGURES] == [reference[k] for k in FIGURES]
    assert (resumed["source_model"], resumed["source_cache"]) == (reference["source_model"], reference["source_cache"])
    assert resumed["total_s"] >= resumed["transfer_s"] > 0
    assert without_time(read_metrics(tmp_path / "stopped")) == without_time(read_metrics(tmp_path / "reference"))


def test_a_second_ctrl_c_stops_at_once(make_cfg, tmp_path, monkeypatch):
    def twice(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Run, "log_metrics", twice)
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("cache_dir=null"), tmp_path)


def test_resume_refuses_another_config_and_a_finished_run(make_cfg, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        signal_at(patch, "pretrain", 10)
        with pytest.raises(Interrupted):
            train(make_cfg("cache_dir=null"), tmp_path)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(AetlError, match=r"was started with another config \(it differs in seed, trainer.pretrain.lr\)"):
        train(make_cfg("cache_dir=null", "seed=1", "trainer.pretrain.lr=0.01"), tmp_path)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before
    train(make_cfg("cache_dir=null", "trainer.progress=true"), tmp_path)  # how it runs may change
    finished = (tmp_path / "summary.json").read_bytes()
    with pytest.raises(AetlError, match="already holds a finished run; leave hydra.run.dir out"):
        train(make_cfg("cache_dir=null"), tmp_path)
    assert (tmp_path / "summary.json").read_bytes() == finished


WRITER = """
import sys, torch
from aetl.infra.rundir import Run
run = Run(sys.argv[1])
for version in range(10 ** 6):
    run.save_checkpoint("last.pt", {"model": {"w": torch.full((200_000,), float(version))}, "version": version})
"""


@pytest.mark.slow
def test_a_kill_while_writing_leaves_the_previous_or_the_new_checkpoint(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "checkpoints" / "last.pt"
    for _ in range(3):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        while not path.exists():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.5))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        state = load_checkpoint(path)
        assert state["version"] >= 0 and torch.equal(state["model"]["w"], torch.full((200_000,), float(state["version"])))


@pytest.mark.slow
def test_kill_anywhere_and_resume_gives_the_uninterrupted_figures(tmp_path):
    """SIGKILL during pretraining, again during transfer, SIGTERM once more; every time
    the run carries on from last.pt, and ends as the run that never stopped."""
    rng = random.Random(1)
    args = [*TINY, *TINY_MODEL, "cache_dir=null", "trainer.checkpoint_every=7", "trainer.eval_every=3",
            "trainer.pretrain.steps=600", "trainer.transfer.steps=300", "strategy=fixed_init"]
    done = aetl("train", *args, "hydra.run.dir=reference", cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    def start(*extra):
        return subprocess.Popen([sys.executable, "-m", "aetl", "train", *extra], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    run = tmp_path / "run"
    first = start(*args, "hydra.run.dir=run")
    wait_for_step(run, "pretrain", rng.randrange(50, 500), first)
    first.kill()
    first.wait()
    second = start(*args, "hydra.run.dir=run")  # the same run dir resumes
    wait_for_step(run, "transfer", rng.randrange(100, 180), second)
    second.kill()
    second.wait()
    third = start("resume=run")  # the shortcut: the overrides the run started with
    wait_for_step(run, "transfer", rng.randrange(200, 250), third)
    third.send_signal(signal.SIGTERM)
    _, err = third.communicate(timeout=60)
    assert third.returncode == 143, err
    assert "stopped by SIGTERM at transfer step" in err and "resume with: aetl train resume=" in err
    assert "Traceback" not in err
    last = aetl("train", "resume=run", cwd=tmp_path)
    assert last.returncode == 0, last.stderr

    reference = json.loads((tmp_path / "reference" / "summary.json").read_text())
    resumed = json.loads((run / "summary.json").read_text())
    assert [resumed[k] for k in FIGURES] == [reference[k] for k in FIGURES]
    assert without_time(read_metrics(run)) == without_time(read_metrics(tmp_path / "reference"))
    assert (run / "run.log").read_text().count("resuming") == 3
    again = aetl("train", "resume=run", cwd=tmp_path)
    assert again.returncode != 0 and "already holds a finished run" in again.stderr
    assert json.loads((run / "summary.json").read_text()) == resumed


@pytest.mark.slow
def test_a_preempted_submitit_job_is_requeued_and_resumes(tmp_path):
    """SIGUSR2 is what SLURM (and submitit's local executor) send before a time limit or
    a preemption: the job checkpoints, submitit requeues it, and it resumes from last.pt."""
    args = [*TINY, *TINY_MODEL, "cache_dir=null", "trainer.threads=1", "trainer.checkpoint_every=7",
            "trainer.eval_every=3", "trainer.pretrain.steps=600", "trainer.transfer.steps=300"]
    done = aetl("train", *args, "hydra.run.dir=reference", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sweep = subprocess.Popen([sys.executable, "-m", "aetl", "train", "-m", "hydra/launcher=local", *args,
                              "hydra.sweep.dir=sweep"], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    job = tmp_path / "sweep" / "0"
    wait_for_step(job, "pretrain", 150, sweep)
    (task,) = [pid for pid, cmdline in processes() if f"submitit.core._submit\0{tmp_path}" in cmdline]
    os.kill(task, signal.SIGUSR2)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 0, err
    log = (job / "run.log").read_text()
    assert "stopped by SIGUSR2 at pretrain step" in log and log.count("resuming") == 1
    submitit_log = next((tmp_path / "sweep" / ".submitit").glob("*/*_0_log.err")).read_text()
    assert "Requeued job" in submitit_log
    reference = json.loads((tmp_path / "reference" / "summary.json").read_text())
    resumed = json.loads((job / "summary.json").read_text())
    assert [resumed[k] for k in FIGURES] == [reference[k] for k in FIGURES]


def test_a_sweep_run_again_keeps_its_finished_jobs(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg("cache_dir=null")
    summary = train(cfg, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr("aetl.commands.train.in_multirun", lambda: True)
    assert train(cfg, tmp_path) == json.loads(json.dumps(summary))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_crash_after_pretraining_resumes_with_the_source_as_first_obtained(make_cfg, tmp_path, monkeypatch):
    """last.pt at the end of pretraining, Mf in the cache by now: the resumed job still
    reports the pretraining it did (a miss), as the uninterrupted job does."""
    cfg = make_cfg("trainer.checkpoint_every=0")
    with monkeypatch.context() as patch:
        def crash(self, phase, *args, **kwargs):
            if phase == "transfer":
                raise RuntimeError("the node went down")

        patch.setattr(Run, "log_metrics", crash)
        with pytest.raises(RuntimeError):
            train(cfg, tmp_path / "crashed")
    assert load_checkpoint(tmp_path / "crashed" / "checkpoints" / "last.pt")["loop"]["phase"] == "pretrain"
    resumed = train(cfg, tmp_path / "crashed")
    reference = train(make_cfg("trainer.checkpoint_every=0", f"cache_dir={tmp_path / 'fresh'}"), tmp_path / "ref")
    assert [resumed[k] for k in FIGURES] == [reference[k] for k in FIGURES]
    assert (resumed["source_model"], resumed["source_cache"]) == ("pretrained", "miss") == \
           (reference["source_model"], reference["source_cache"])
    assert resumed["pretrain_s"] > 0


def test_a_signal_outside_the_loop_stops_at_once_and_the_run_resumes(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg("cache_dir=null")
    reference = train(cfg, tmp_path / "reference")
    with monkeypatch.context() as patch:
        evaluate_run = pipeline.evaluate_run

        def interrupted_evaluation(*args):
            os.kill(os.getpid(), signal.SIGINT)
            return evaluate_run(*args)

        patch.setattr(pipeline, "evaluate_run", interrupted_evaluation)
        with pytest.raises(Interrupted, match=f"^stopped by SIGINT; resume with: aetl train resume={tmp_path / 'run'}$"):
            train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()
    resumed = train(cfg, tmp_path / "run")
    assert [resumed[k] for k in FIGURES] == [reference[k] for k in FIGURES]
    assert without_time(read_metrics(tmp_path / "run")) == without_time(read_metrics(tmp_path / "reference"))
