"""Hydra callbacks, registered for every command in configs/runtime.yaml."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from aetl.infra.rundir import atomic_write

FINISHED = ("summary.json", "rank.json")  # what a job of each command writes when it ends well
SHOWN = 10  # logs named on the last line at most


class SweepEnd(Callback):
    """A sweep's last line: where its jobs are and how to tabulate them. A sweep goes on past
    a failed job (its one line is in its run.log, and an Optuna trial gets the worst
    objective); when any job failed, the last line says how many and where their logs are,
    and the exit status is 1."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = sweep_jobs(Path(str(config.hydra.sweep.dir)), self.started)
        failed = [job for job in jobs if not any((job / name).is_file() for name in FINISHED)]
        if not failed:
            print(f"{sys.argv[0]}: {len(jobs)} jobs finished in {config.hydra.sweep.dir} "
                  f"(aetl report {config.hydra.sweep.dir} makes their table)")
            return
        logs = [str(job / "run.log") for job in failed]
        if len(failed) == len(jobs):
            no_best(Path(str(config.hydra.sweep.dir)))
        more = f" and {len(logs) - SHOWN} more" if len(logs) > SHOWN else ""
        print(f"{sys.argv[0]}: {len(failed)} of {len(jobs)} jobs failed; their logs: {', '.join(logs[:SHOWN])}{more} "
              f"(aetl report {config.hydra.sweep.dir} lists why)", file=sys.stderr)
        raise SystemExit(1)  # not an Exception: Hydra passes it on instead of warning about it


def no_best(sweep: Path) -> None:
    """A search whose every trial failed has no best trial: the Optuna sweeper's results file
    (which names the first of the failed ones) says so instead."""
    import yaml

    results = sweep / "optimization_results.yaml"
    if results.is_file():
        saved = yaml.safe_load(results.read_text()) or {}
        text = yaml.safe_dump({"name": saved.get("name", "optuna"), "best_params": None, "best_value": None,
                               "note": "every trial failed: no best trial; their logs say why"}, sort_keys=False)
        atomic_write(results, lambda f: f.write(text.encode()))


def sweep_jobs(sweep: Path, since: float) -> list[Path]:
    """The job dirs this sweep wrote (Hydra rewrites a job's .hydra/ when it starts it; a dir
    an earlier sweep left in the same sweep dir is older), in job order."""
    dirs = [p.parent for p in sweep.rglob(".hydra") if (p / "config.yaml").is_file()
            and (p / "config.yaml").stat().st_mtime >= since - 2]  # 2 s: a shared file system's clock
    return sorted(dirs, key=lambda d: [int(s) if s.isdigit() else s for s in d.relative_to(sweep).parts])
