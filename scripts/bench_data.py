"""How fast does aetl read a real image collection? Makes a folder of synthetic photos,
measures, prints a JSON object and a short table.

    python scripts/bench_data.py              # 100,000 photos, 64x64 RGB
    python scripts/bench_data.py --n 20000    # fewer

1. generate: N PNG photos in 9 class folders, each a random crop of one of the natural
   photos bundled with scikit-image and scikit-learn (the class), randomly scaled,
   flipped and colour-cast (not a measurement; its time is reported);
2. first decode: a fresh process decodes the folder into a fresh image cache: seconds,
   images/s, peak resident memory (RSS);
3. second load: another fresh process loads it again (listing the files, checking their
   fingerprint, memory-mapping the entry): seconds and peak RSS; and the peak RSS of a
   process that only imports aetl and torch (the fixed overhead);
4. training images/s of model=resnet at 64x64 on the device (CUDA when visible, else the
   CPU) with data.storage=device against data.storage=stream, in alternating rounds, the
   medians and their ratio;
5. `aetl train` with the folder as the source (and the default target, digits, in colour
   at the same size; --model, a few steps) twice: the first decodes, the second maps the
   cache: the peak RSS of each and the time its source took to load (the image cache's
   log line, from listing the files to the memory-mapped entry).
The machine may be shared: compare the figures of one run with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PHOTOS = ["skimage:astronaut", "skimage:coffee", "skimage:chelsea", "skimage:rocket", "skimage:retina",
          "skimage:hubble_deep_field", "skimage:immunohistochemistry", "sklearn:china.jpg", "sklearn:flower.jpg"]
PEAK = """
import atexit, sys


def peak():  # the high-water mark of this process's resident memory (not of the one that started it)
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    sys.stderr.write(f"\\npeak RSS {kib} KiB\\n")


atexit.register(peak)
"""
LOAD = PEAK + """
import json, sys, time
started = time.perf_counter()
from omegaconf import OmegaConf
from aetl.data.imagecache import ImageCache
imported = time.perf_counter()
checked = [0.0]  # seconds spent in the entry's integrity check
if len(sys.argv) > 4:  # verify: the check as it runs; full: every file hashed whole; skip: no check
    import aetl.data.imagecache as imagecache
    import aetl.infra.integrity as integrity
    if sys.argv[4] == "full":
        integrity._stamps = lambda entry: {}

    def timed(entry, names, verify=imagecache.verify):
        started = time.perf_counter()
        try:
            return verify(entry, names) if sys.argv[4] != "skip" else None
        finally:
            checked[0] += time.perf_counter() - started

    imagecache.verify = timed
if sys.argv[1] != "-":
    spec = OmegaConf.create({"_target_": "aetl.data.domains.folder.load", "root": sys.argv[1], "size": int(sys.argv[3]),
                             "skip_bad": True})
    domain = ImageCache(sys.argv[2]).load(spec, "source")[0]
    print(json.dumps({"load_s": time.perf_counter() - imported, "check_s": checked[0], "n": len(domain.images),
                      "shape": list(domain.images.shape[1:])}))
"""


RUN_AETL = """
from aetl.commands.cli import main

sys.argv = ["aetl", *sys.argv[1:]]
main()
"""


def generate(root: Path, n: int, size: int, photos: list[str] = PHOTOS) -> float:
    """n photos under root/<photo>/ (crops of the bundled images named); returns the seconds it took."""
    from aetl.data.domains.crops import read_image

    started = time.perf_counter()
    pool = [Image.fromarray((read_image(name) * 255).round().astype(np.uint8)) for name in photos]
    names = [name.partition(":")[2].split(".")[0] for name in photos]
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)

    def make(i: int) -> None:
        rng = np.random.default_rng(i)
        k = i % len(pool)
        img = pool[k]
        side = int(min(img.size) * rng.uniform(0.1, 0.6))
        x, y = rng.integers(img.width - side + 1), rng.integers(img.height - side + 1)
        out = img.resize((size, size), Image.Resampling.BILINEAR, box=(x, y, x + side, y + side))
        pixels = np.asarray(out, dtype=np.float32) * rng.uniform(0.8, 1.2, 3)  # a colour cast
        pixels = pixels[:, ::-1] if rng.random() < 0.5 else pixels
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / names[k] / f"{i:06d}.png")

    with ThreadPoolExecutor(os.cpu_count()) as threads:
        list(threads.map(make, range(n), chunksize=256))
    return time.perf_counter() - started


def child(args: list[str]) -> tuple[str, str, float, float]:
    """Run a Python command that prints PEAK's line; returns its stdout, stderr, wall seconds and
    peak RSS in MiB. (The process reports its own: wait4's ru_maxrss would count the memory of
    this process, from which it was forked.)"""
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args[3:8])} ... failed:\n{proc.stderr[-3000:]}")
    peak = int(re.findall(r"peak RSS (\d+) KiB", proc.stderr)[-1]) / 1024
    return proc.stdout, proc.stderr, time.perf_counter() - started, peak


def load(folder: Path, cache: Path, size: int, check: str = "verify") -> dict:
    out, _, wall, peak = child([sys.executable, "-c", LOAD, str(folder), str(cache), str(size), check])
    return {**json.loads(out), "wall_s": wall, "peak_rss_mib": peak}


def check_cost(folder: Path, cache: Path, size: int, rounds: int) -> dict:
    """A warm load's seconds with the entry's integrity check as it runs (sizes, headers, labels,
    sampled blocks; the whole file hashed only when it changed since its last check), with the
    whole file hashed (as on the first open after a change), and without any check, in
    alternating order; and, within each checked load, the share of its seconds the check took
    (the figure a busy machine disturbs least): medians of rounds."""
    modes = ("verify", "full", "skip")
    times: dict[str, list[float]] = {m: [] for m in modes}
    shares: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes[:: 1 if r % 2 == 0 else -1]:
            got = load(folder, cache, size, mode)
            times[mode].append(got["load_s"])
            shares[mode].append(got["check_s"] / (got["load_s"] - got["check_s"]))
    med = {m: statistics.median(times[m]) for m in modes}
    return {"warm_load_verify_s": med["verify"], "warm_load_full_s": med["full"], "warm_load_skip_s": med["skip"],
            "warm_load_rounds": {m: [round(t, 3) for t in times[m]] for m in modes}, "load_rounds": rounds,
            "check_over_none": med["verify"] / med["skip"], "full_check_over_none": med["full"] / med["skip"],
            "check_share": statistics.median(shares["verify"]), "full_check_share": statistics.median(shares["full"]),
            "check_share_rounds": [round(x, 4) for x in shares["verify"]]}


def train_speed(folder: Path, cache: Path, size: int, model_name: str, steps: int, batch: int, rounds: int) -> dict:
    """Median training images/s of the model with the images on the device and streamed."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from aetl.data.imagecache import ImageCache
    from aetl.data.storage import Split, Storage, upload
    from aetl.infra.distributed import pick_device
    from aetl.infra.rundir import Run
    from aetl.models import build_model, place
    from aetl.training.loop import Loop, Phase

    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model_name}"])
    device = pick_device("auto")
    spec = OmegaConf.create({"_target_": "aetl.data.domains.folder.load", "root": str(folder), "size": size})
    domain = ImageCache(cache).load(spec, "source")[0]
    rows = np.arange(len(domain.images))
    y = torch.as_tensor(domain.labels).to(device)
    workers = Storage(device).n_workers()
    on_device = Split(domain.images, y, rows) if device.type == "cpu" else Split(upload(domain.images, rows, device), y)
    splits = {"device": on_device,
              "stream": Split(domain.images, y, rows, streamed=True, workers=workers)}
    loop = Loop.from_config(cfg.trainer, device)
    loop.eval_every = 10 ** 9  # one log line per round, at its end
    speeds: dict[str, list[float]] = {"device": [], "stream": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds + 1):  # round 0 warms both up
            for mode in ("device", "stream")[:: 1 if r % 2 else -1]:
                torch.manual_seed(0)
                model = place(build_model(cfg.model, (domain.images.shape[1], size, size)), device)
                phase = Phase("bench", steps, batch, [{"params": list(model.parameters()), "lr": 1e-3}])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                loop.out = Run(tmp)
                loop.run(model, phase, splits[mode], torch.empty(0), seed=r)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if r:
                    speeds[mode].append(steps * batch / (time.perf_counter() - started))
    device_s, stream_s = (statistics.median(speeds[m]) for m in ("device", "stream"))
    return {"train_device_images_per_s": device_s, "train_stream_images_per_s": stream_s,
            "train_device_rounds": [round(v, 2) for v in speeds["device"]],
            "train_stream_rounds": [round(v, 2) for v in speeds["stream"]],
            "stream_over_device": stream_s / device_s, "train_rounds": rounds, "train_steps": steps,
            "train_batch": batch, "stream_workers": workers, "train_device": str(device)}


def run_twice(folder: Path, cache: Path, size: int, model: str, batch: int, out: Path) -> dict:
    """`aetl train` with the folder as the source: the first run decodes, the second maps the cache."""
    found = {}
    for name in ("first", "second"):
        args = [sys.executable, "-c", PEAK + RUN_AETL, "train", "data/source=folder", f"data.source.root={folder}",
                "data.channels=3", f"data.image_size={size}", f"model={model}", "strategy=finetune",
                "trainer.pretrain.steps=5", f"trainer.pretrain.batch_size={batch}", "trainer.transfer.steps=5",
                f"trainer.transfer.batch_size={min(batch, 32)}", "trainer.progress=false", f"cache_dir={cache}",
                f"hydra.run.dir={out / name}"]
        _, err, wall, peak = child(args)
        line = re.search(r"source folder: .*(?:into|from) the image cache \S+ in ([\d.]+) s", err)
        found.update({f"run_{name}_peak_rss_mib": peak, f"run_{name}_wall_s": wall,
                      f"run_{name}_source_load_s": float(line.group(1)) if line else None})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="photos to generate (default 100,000)")
    parser.add_argument("--size", type=int, default=64, help="the side images are trained at (default 64)")
    parser.add_argument("--photo-size", type=int, help="the photos' own side (default: --size; larger: decoding "
                                                       "resizes them)")
    parser.add_argument("--model", default="resnet", help="the backbone trained (default resnet)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per round (default 10)")
    parser.add_argument("--batch", type=int, default=64, help="training batch (default 64)")
    parser.add_argument("--run-batch", type=int, default=16, help="aetl train's pretraining batch (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per storage mode (default 3)")
    parser.add_argument("--load-only", action="store_true", help="stop after the loads (skip steps 4 and 5)")
    parser.add_argument("--dir", type=Path, help="work dir (default: a temporary one, removed after); kept, and "
                                                 "its photos reused by the next run with the same --n")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_data_"))
    folder, cache = work / "photos", work / "cache"
    result = {"device": "cuda" if torch.cuda.is_available() else f"cpu ({platform.machine()})",
              "cores": os.cpu_count(), "load_before": os.getloadavg()[0], "torch": torch.__version__, "n": args.n,
              "size": args.size, "photo_size": args.photo_size or args.size, "model": args.model}
    try:
        for old in (cache, work / "runs"):  # every measure starts from an empty image cache and new run dirs
            shutil.rmtree(old, ignore_errors=True)
        if len(list(folder.glob("*/*.png"))) == args.n:  # --dir from an earlier run: its photos again
            result["generate_s"] = None
        else:
            shutil.rmtree(folder, ignore_errors=True)
            result["generate_s"] = generate(folder, args.n, args.photo_size or args.size)
        first = load(folder, cache / "a", args.size)
        result.update(decode_s=first["load_s"], decode_images_per_s=first["n"] / first["load_s"],
                      decode_peak_rss_mib=first["peak_rss_mib"], uint8_mib=first["n"] * np.prod(first["shape"]) / 2**20)
        second = load(folder, cache / "a", args.size)
        result.update(second_load_s=second["load_s"], second_load_peak_rss_mib=second["peak_rss_mib"])
        result["import_only_peak_rss_mib"] = child([sys.executable, "-c", LOAD, "-"])[3]
        result.update(check_cost(folder, cache / "a", args.size, args.rounds))
        if not args.load_only:
            result.update(train_speed(folder, cache / "a", args.size, args.model, args.steps, args.batch, args.rounds))
            result.update(run_twice(folder, cache / "b", args.size, args.model, args.run_batch, work / "runs"))
        result["load_after"] = os.getloadavg()[0]
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    print(table(result))


def table(r: dict) -> str:
    rows = [("photos", f"{r['n']:,} x {r['photo_size']}x{r['photo_size']} RGB PNG, decoded at {r['size']}x{r['size']}: "
                       f"{r['uint8_mib']:.0f} MiB as uint8"),
            ("generating them (not a measure)",
             "reused (--dir)" if r["generate_s"] is None else f"{r['generate_s']:.0f} s"),
            ("first decode", f"{r['decode_s']:.1f} s = {r['decode_images_per_s']:.0f} images/s, "
                             f"peak RSS {r['decode_peak_rss_mib']:.0f} MiB"),
            ("second load (list, fingerprint, map)", f"{r['second_load_s']:.2f} s, peak RSS "
                                                      f"{r['second_load_peak_rss_mib']:.0f} MiB"),
            ("a process that only imports aetl", f"peak RSS {r['import_only_peak_rss_mib']:.0f} MiB"),
            ("warm load: no check / check / whole file hashed",
             f"{r['warm_load_skip_s']:.3f} / {r['warm_load_verify_s']:.3f} / {r['warm_load_full_s']:.3f} s "
             f"(medians of {r['load_rounds']})"),
            ("check / no check (whole file hashed / no check)",
             f"{r['check_over_none']:.3f} ({r['full_check_over_none']:.3f})"),
            ("the check's seconds / the rest of the load, within each load (whole file hashed)",
             f"{r['check_share']:.4f} ({r['full_check_share']:.4f})")]
    if "train_device_images_per_s" in r:  # not with --load-only
        rows += training_rows(r)
    rows.append(("load average before / after", f"{r['load_before']:.1f} / {r['load_after']:.1f} "
                                                f"on {r['cores']} cores"))
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def training_rows(r: dict) -> list[tuple[str, str]]:
    rows = [(f"training, model={r['model']}, storage=device", f"{r['train_device_images_per_s']:.1f} images/s"),
            (f"training, model={r['model']}, storage=stream", f"{r['train_stream_images_per_s']:.1f} images/s "
                                                       f"({r['stream_workers']} worker(s))"),
            ("stream / device", f"{r['stream_over_device']:.3f}")]
    for name in ("first", "second"):
        load_s = r[f"run_{name}_source_load_s"]
        rows.append((f"aetl train, {name} run: source load, peak RSS",
                     f"{'n/a' if load_s is None else f'{load_s:.2f} s'}, {r[f'run_{name}_peak_rss_mib']:.0f} MiB"))
    return rows


if __name__ == "__main__":
    main()
