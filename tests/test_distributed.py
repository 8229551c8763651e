"""DDP under torchrun: two gloo ranks on the CPU match one process with the same global batch."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, TINY_MODEL, processes, signal_at, wait_for_step

from aetl.commands.train import train

pytestmark = pytest.mark.slow
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def test_two_ranks_write_one_run_dir_and_match_a_single_process(make_cfg, tmp_path):
    overrides = [*TINY, *TINY_MODEL, "cache_dir=null"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "aetl", "train", *overrides,
                          "trainer.progress=true", "hydra.run.dir=ddp"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("pretrain step 5/20  loss") == 1  # progress from rank 0 only
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]  # one run dir, written by rank 0 only
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    single = train(make_cfg("cache_dir=null"), tmp_path / "single")
    # Same global batches, gradients averaged over the two halves: equal up to float summation order.
    for key in ("target_mse", "target_val_mse", "source_mse", "target_acc"):
        assert ddp[key] == pytest.approx(single[key], rel=1e-4, abs=1e-6), key
    steps = [json.loads(line)["step"] for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20, 5, 10, None]  # pretrain, transfer, eval: logged once, not once per rank


def test_two_ranks_resume_a_run_a_signal_stopped(make_cfg, tmp_path, monkeypatch):
    """Rank 0 reads last.pt and source.pt and hands them to the other rank."""
    from aetl.errors import Interrupted

    cfg = make_cfg("cache_dir=null", "strategy=fixed_init", "trainer.checkpoint_every=3")
    with monkeypatch.context() as patch:
        signal_at(patch, "transfer", 5)
        with pytest.raises(Interrupted):
            train(cfg, tmp_path / "run")
    overrides = [*TINY, *TINY_MODEL, "cache_dir=null", "strategy=fixed_init", "trainer.checkpoint_every=3"]
    out = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "aetl", "train", *overrides,
                          "hydra.run.dir=run"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming" in (tmp_path / "run" / "run.log").read_text()
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())
    single = train(cfg, tmp_path / "single")
    assert resumed["source_cache"] == single["source_cache"] == "off"
    # fixed_init's feature loss under DDP alone already differs from one process by up to
    # 4e-4 (relative) in source_mse here: float summation order, amplified by Adam.
    for key in ("target_mse", "target_val_mse", "source_mse", "target_acc"):
        assert resumed[key] == pytest.approx(single[key], rel=1e-3, abs=1e-6), key


def test_a_signal_to_one_rank_stops_every_rank_with_a_checkpoint(tmp_path):
    """Only rank 1 gets SIGTERM; rank 0 learns of it at the next logging point, saves
    last.pt and both stop after the same step. torchrun then resumes the run."""

    overrides = [*TINY, *TINY_MODEL, "cache_dir=null", "trainer.pretrain.steps=700", "trainer.eval_every=10"]
    command = [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "aetl", "train", *overrides, "hydra.run.dir=run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(tmp_path / "run", "pretrain", 150, first)
    (rank1,) = [pid for pid, cmdline in processes() if "aetl\0train\0" in cmdline and "\0RANK=1\0" in
                "\0" + Path(f"/proc/{pid}/environ").read_text(errors="replace")]
    os.kill(rank1, signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode != 0
    log = (tmp_path / "run" / "run.log").read_text()
    stopped = [line for line in log.splitlines() if "stopped by SIGTERM at pretrain step" in line]
    assert len(stopped) == 1, err[-2000:]  # rank 0 reports it (rank 1 writes no run dir)
    step = int(stopped[0].split("pretrain step ")[1].split(";")[0])
    assert step % 10 == 0  # a logging point, where the ranks agree
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps[:70] == list(range(10, 701, 10)) and (tmp_path / "run" / "summary.json").is_file()
