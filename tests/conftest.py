"""Shared fixtures and helpers: configs composed with Hydra's compose API on tiny synthetic
data, the command run in this process or in a subprocess, and small files tests write.
Test modules import helpers from here, never from each other."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from PIL import Image

from aetl.commands import cli
from aetl.infra.rundir import Run

# Small, fast settings every in-process test starts from.
TINY = [
    "data=synthetic_pair",
    "trainer.device=cpu",
    "trainer.progress=false",
    "trainer.pretrain.steps=20",
    "trainer.pretrain.batch_size=16",
    "trainer.transfer.steps=10",
    "trainer.transfer.batch_size=8",
    "trainer.eval_every=5",
]
TINY_MODEL = ["model=mlp", "model.hidden=[32]", "model.latent_dim=4"]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group: str, configs: Path = CONFIGS) -> str:
    """A config group's options as aetl lists them ("concat, finetune, ..."), read from the
    config folder, so that a new option (one YAML file) needs no test edited."""
    return ", ".join(sorted(p.stem for p in (configs / group).glob("*.yaml")))


@pytest.fixture
def make_cfg():
    """make_cfg(*overrides) -> the composed `train` config with TINY (and TINY_MODEL,
    unless the overrides choose a model) applied first."""

    def make(*overrides: str) -> DictConfig:
        model = [] if any(o.startswith("model=") for o in overrides) else TINY_MODEL
        with initialize_config_module("aetl.configs", version_base="1.3"):
            return compose("train", overrides=[*TINY, *model, *overrides])

    return make


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Seeded, with a source cache of its own (cache_dir reads AETL_CACHE_DIR)."""
    torch.manual_seed(0)
    monkeypatch.setenv("AETL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


# What every run's summary.json holds, and the figures two runs that should agree must share.
SUMMARY_KEYS = {"strategy", "source", "target", "seed", "labels_per_class", "n_target_train", "target_mse",
                "target_psnr", "target_acc", "source_mse", "pretrain_s", "transfer_s", "total_s", "device"}

FIGURES = ["target_mse", "target_psnr", "target_acc", "source_mse", "target_val_mse"]


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def without_time(records):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


# The installed command, for tests that run it as a user does (in a subprocess: mark them slow).
AETL = shutil.which("aetl", path=str(Path(sys.executable).parent)) or shutil.which("aetl")


def aetl(*args, cwd, env=None):
    assert AETL, "the aetl command is not installed: pip install -e '.[test]'"
    return subprocess.run([AETL, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def run_cli(tmp_path, monkeypatch, capsys, *args):
    """`aetl <args>` in this process, from tmp_path; returns (exit status, stderr lines)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        cli.main(list(args))
    lines = capsys.readouterr().err.strip().splitlines()
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run dir
    return stopped.value.code, lines


def signal_at(monkeypatch, at_phase, at_step, signum=signal.SIGTERM):
    """Send signum to this process when the loop logs (at_phase, at_step), as SLURM or Ctrl-C would."""
    log_metrics = Run.log_metrics

    def log_and_signal(self, phase, epoch=None, step=None, **metrics):
        log_metrics(self, phase, epoch, step, **metrics)
        if (phase, step) == (at_phase, at_step):
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(Run, "log_metrics", log_and_signal)


def wait_for_step(run: Path, phase: str, step: int, proc: subprocess.Popen) -> None:
    """Return once metrics.jsonl shows phase at step or later."""
    metrics = run / "metrics.jsonl"
    while proc.poll() is None:
        if metrics.exists():
            for line in metrics.read_text().splitlines():
                record = json.loads(line) if line.endswith("}") else {}
                if record.get("phase") == phase and record["step"] >= step:
                    return
        time.sleep(0.005)
    raise AssertionError(f"the run ended before {phase} step {step}: {proc.stderr.read()}")


def processes():
    """(pid, command line with NUL between the arguments) of the processes running now."""
    for proc in Path("/proc").iterdir():
        try:
            yield int(proc.name), (proc / "cmdline").read_text(errors="replace")
        except (ValueError, OSError):  # not a process, or one that has just ended
            continue


def make_job(root, name, overrides, summary=None, curve=None, log=""):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "run.log").write_text(log)
    if curve:
        lines = [{"phase": "transfer", "epoch": 0, "step": 50 * (i + 1), "time_s": 1.0, "val_mse": v}
                 for i, v in enumerate(curve)]
        (job / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if summary:
        base = {"source": "mnist", "target": "digits", "n_target_train": 100, "labels_per_class": 10,
                "source_labels": False, "transfer_steps": 300, "pretrain_s": 10.0, "transfer_s": 2.0,
                "total_s": 15.0, "target_psnr": 25.0}
        (job / "summary.json").write_text(json.dumps({**base, **summary}))


def write_idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def make_folder(root, n=12, colour=True, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        shape = (10, 12, 3) if colour else (10, 12)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / f"class{i % 2}" / f"{i:03d}.png")
    return root
