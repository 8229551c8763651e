"""Seconds to stylise one image feed-forward with aetl's style transfer (median of repeats).

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
        from aetl.apps import load_run

        model, _ = load_run(args.run, device)
    else:
        with initialize_config_module("aetl.configs", version_base="1.3"):
            cfg = compose("train", overrides=["model=fconv", "data.channels=3", "data.image_size=32"])
        model = build_model(cfg.model, (3, 32, 32)).to(device).eval()
    g = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, args.size, args.size, generator=g).to(device)
    style = torch.rand(1, 3, args.size, args.size, generator=g).to(device)
    result = {"size": args.size, "device": str(device), "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    for method in ("adain", "wct"):
        stylize(model, content, style, method)  # warm-up
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            stylize(model, content, style, method)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        result[f"{method}_s_median"] = statistics.median(times)
        result[f"{method}_s_min"] = min(times)
    print(json.dumps(result))
    print(f"\n| method | {args.size}x{args.size} seconds (median of {args.repeats}) |\n|---|---|")
    for method in ("adain", "wct"):
        print(f"| {method} | {result[f'{method}_s_median']:.3f} |")


if __name__ == "__main__":
    main()
