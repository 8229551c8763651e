"""How fast is aetl? One process, one run; prints a JSON object and a short table.

    python scripts/bench.py            # everything (about 8 minutes on a 2-core CPU)
    python scripts/bench.py --quick    # only the training step and `aetl --help`

1. images/s of aetl's training step (Loop.run) against a minimal hand-written PyTorch
   loop: same model, data, batch, optimiser and device; the two alternate for several
   rounds and the medians are compared (target: aetl >= 0.95 x the minimal loop);
2. wall time of `aetl --help`;
3. wall time of the default `aetl train` (pretraining included);
4. wall time of a 5-strategy multirun (one shared source cache) against five single
   runs with the cache off: what the cache saves.
Runs on CUDA when it is there (trainer.device=auto), else on the CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module

from aetl.data.storage import Split
from aetl.infra.rundir import Run
from aetl.models import build_model, place
from aetl.training.loop import Loop, Phase

STRATEGIES = ["scratch", "fixed_init", "concat", "finetune", "mixed"]


def step_speed(device: torch.device, rounds: int, steps: int, batch: int) -> dict:
    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose("train")
    torch.manual_seed(0)
    x = torch.rand(4096, 1, 28, 28, device=device)
    split = Split(x, torch.zeros(len(x), dtype=torch.long, device=device))
    loop = Loop.from_config(cfg.trainer, device)
    loop.eval_every = 10 ** 9  # one log line per call, at its end

    def aetl_round(model, tmp) -> None:
        phase = Phase("bench", steps, batch, [{"params": list(model.parameters()), "lr": 1e-3}])
        loop.out = Run(tmp)  # the log line goes to a run dir, as in a run
        loop.run(model, phase, split, x[:0], seed=0)

    def minimal_round(model, _) -> None:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator(device=device).manual_seed(0)
        per_epoch = len(x) // batch
        model.train()
        for step in range(steps):
            if step % per_epoch == 0:
                perm = torch.randperm(len(x), device=device, generator=gen)
            xb = x[perm[(step % per_epoch) * batch:(step % per_epoch + 1) * batch]]
            with torch.autocast(device.type, torch.bfloat16, enabled=loop.precision == "bf16"):
                loss = F.mse_loss(model(xb).recon, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()

    speeds: dict[str, list[float]] = {"aetl": [], "minimal": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds + 1):  # round 0 warms up both
            for name, fn in (("aetl", aetl_round), ("minimal", minimal_round))[:: 1 if r % 2 else -1]:
                model = place(build_model(cfg.model, (1, 28, 28)), device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                fn(model, tmp)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if r:
                    speeds[name].append(steps * batch / (time.perf_counter() - started))
    aetl, minimal = statistics.median(speeds["aetl"]), statistics.median(speeds["minimal"])
    return {"step_images_per_s_aetl": aetl, "step_images_per_s_minimal": minimal, "step_ratio": aetl / minimal,
            "step_rounds": rounds, "step_steps_per_round": steps, "step_batch": batch, "precision": loop.precision}


def wall(args: list[str], cwd: Path, env: dict | None = None) -> float:
    started = time.perf_counter()
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"bench: {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - started


def command_times(quick: bool) -> dict:
    import os

    aetl = shutil.which("aetl") or sys.exit("bench: the aetl command is not installed")
    result = {"help_s": statistics.median(wall([aetl, "--help"], Path.cwd()) for _ in range(5))}
    if quick:
        return result
    quiet = ["trainer.progress=false"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "AETL_CACHE_DIR": str(tmp / "cache-default")}
        result["default_train_s"] = wall([aetl, "train", *quiet, "hydra.run.dir=default"], tmp, env)
        env["AETL_CACHE_DIR"] = str(tmp / "cache-sweep")
        result["multirun_5_strategies_s"] = wall(
            [aetl, "train", "-m", f"strategy={','.join(STRATEGIES)}", *quiet, "hydra.sweep.dir=sweep"], tmp, env)
        result["five_single_runs_no_cache_s"] = sum(
            wall([aetl, "train", f"strategy={s}", "cache_dir=null", *quiet, f"hydra.run.dir=single_{s}"], tmp)
            for s in STRATEGIES)
    result["cache_speedup"] = result["five_single_runs_no_cache_s"] / result["multirun_5_strategies_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the training step and aetl --help")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.machine()})",
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              **step_speed(device, args.rounds, args.steps, args.batch), **command_times(args.quick)}
    print(json.dumps(result))
    print(f"\n| measure | value ({result['device']}) |\n|---|---|")
    print(f"| training step, aetl | {result['step_images_per_s_aetl']:.0f} images/s |")
    print(f"| training step, minimal PyTorch loop | {result['step_images_per_s_minimal']:.0f} images/s |")
    print(f"| aetl / minimal | {result['step_ratio']:.3f} |")
    print(f"| `aetl --help` | {result['help_s']:.2f} s |")
    for key, label in (("default_train_s", "default `aetl train`"),
                       ("multirun_5_strategies_s", "5-strategy multirun (shared cache)"),
                       ("five_single_runs_no_cache_s", "five single runs, cache off")):
        if key in result:
            print(f"| {label} | {result[key]:.1f} s |")
    if "cache_speedup" in result:
        print(f"| cache speed-up | {result['cache_speedup']:.2f}x |")


if __name__ == "__main__":
    main()
