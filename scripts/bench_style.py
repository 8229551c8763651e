"""Seconds to stylise one image feed-forward with aetl's style transfer (median of repeats):
AdaIN and WCT, at the code only (app.levels=1) and over every depth (the default cascade).

    python scripts/bench_style.py                 # the default fconv backbone, 512x512, CPU
    python scripts/bench_style.py --run outputs/2026-11-28/10-00-00 --size 1024

Timing depends on the backbone's shape, not its weights, so without --run an untrained
model of the default `model=fconv` config is timed. Prints a JSON object and a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from hydra import compose, initialize_config_module

from aetl.apps.style import stylize
from aetl.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a finished aetl train run dir with model=fconv")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.run:
        from aetl.api import trained_model

        model, _ = trained_model(args.run, device)
    else:
        with initialize_config_module("aetl.configs", version_base="1.3"):
            cfg = compose("train", overrides=["model=fconv", "data.channels=3", "data.image_size=32"])
        model = build_model(cfg.model, (3, 32, 32)).to(device).eval()
    g = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, args.size, args.size, generator=g).to(device)
    style = torch.rand(1, 3, args.size, args.size, generator=g).to(device)
    result = {"size": args.size, "device": str(device), "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    settings = [(method, levels) for method in ("adain", "wct") for levels in (1, None)]
    for method, levels in settings:  # interleaved repeats: machine noise spreads over every setting
        stylize(model, content, style, method, levels=levels)  # warm-up
    times: dict = {s: [] for s in settings}
    for _ in range(args.repeats):
        for method, levels in settings:
            times[(method, levels)].append(timed(stylize, model, content, style, method, levels, device))
    for (method, levels), t in times.items():
        name = f"{method}_{'code' if levels == 1 else 'cascade'}"
        result[f"{name}_s_median"], result[f"{name}_s_min"] = statistics.median(t), min(t)
    print(json.dumps(result))
    print(f"\n| method | {args.size}x{args.size} seconds, code only (median of {args.repeats}) | cascade over "
          "every depth |\n|---|---|---|")
    for method in ("adain", "wct"):
        print(f"| {method} | {result[f'{method}_code_s_median']:.3f} | {result[f'{method}_cascade_s_median']:.3f} |")


def timed(fn, model, content, style, method, levels, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn(model, content, style, method, levels=levels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
