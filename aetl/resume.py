"""Resuming an interrupted run: checkpoints/last.pt, and stopping cleanly on a signal.

Every `trainer.checkpoint_every` steps, at the end of every phase, and after the step in
which SIGTERM, SIGINT or SIGUSR2 came (what SLURM and submitit send before a time limit
or a preemption; Ctrl-C; under torchrun at the next logging point, where the ranks
agree), the loop writes last.pt: the model, the optimiser, the batch generator and the
epoch's shuffle, the global RNG states, the loss sums since the last log line, which
phase and step it reached, where the source model came from, the command's overrides,
and how long metrics.jsonl was. A signal while no step runs (loading data, evaluating)
stops the job at once, and it resumes from the last.pt it has.

`aetl train` in a run dir that holds a last.pt (the same `hydra.run.dir`, `resume=<dir>`,
or a requeued submitit job) carries on from there: metrics.jsonl is cut back to that
length, so no line is lost or written twice, and the figures come out as an
uninterrupted run's.
"""

from __future__ import annotations

import logging
import shlex
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from aetl.distributed import SINGLE, World
from aetl.errors import AetlError, Interrupted
from aetl.rundir import Run, load_checkpoint, resume_hint

log = logging.getLogger(__name__)

LAST = "last.pt"
# SIGUSR2 (what SLURM sends before a time limit) exists on POSIX only.
SIGUSR2 = getattr(signal, "SIGUSR2", None)
# Settings that change how a job runs, not what it computes: they may differ on resume.
NOT_IDENTITY = ("trainer.progress", "trainer.threads", "trainer.checkpoint_every", "cache_dir", "logger", "objective",
                "data.storage", "data.memory_share", "data.workers")


def identity(cfg: DictConfig) -> dict:
    """The resolved config minus NOT_IDENTITY: a run resumes only under the config it started with."""
    missing = missing_values(cfg)
    if missing:
        raise AetlError(needs_value(missing[0]))
    plain = OmegaConf.to_container(cfg, resolve=True)
    for dotted in NOT_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = plain
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    return plain


def config_nodes(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, node) for every node below a DictConfig or ListConfig, unresolved."""
    found = []
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        child = node._get_node(key)
        dotted = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix.rstrip('.')}[{key}]"
        found.append((dotted, child))
        if isinstance(child, (DictConfig, ListConfig)):
            found.extend(config_nodes(child, f"{dotted}."))
    return found


def missing_values(cfg: DictConfig) -> list[str]:
    """The keys left at ??? (a value the user must give)."""
    return [key for key, node in config_nodes(cfg) if node._is_missing()]


def needs_value(key: str) -> str:
    return f"{key} needs a value (it is ??? in the config); add {key}=... to the command"


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two plain configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


class StopSignals:
    """While active, SIGTERM, SIGINT and SIGUSR2 ask the loop to checkpoint and stop at its
    next step instead of killing the process mid-write. Outside the loop (loading data,
    evaluating) they stop at once: the run resumes from the last.pt it has. A second
    Ctrl-C always stops at once."""

    SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, SIGUSR2) if s is not None)

    def __init__(self, run_root: Path, quiet: bool = False) -> None:
        self.run_root = run_root
        self.quiet = quiet  # log nothing (the ranks other than 0)
        self.received: int | None = None
        self.in_loop = False  # set by Loop.run: then the loop decides when to stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # Python only allows handlers there
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if SIGUSR2 is not None and self.received == SIGUSR2 and signum == signal.SIGTERM:
            return  # a requeue (SIGUSR2 to submitit) is pending: a SIGTERM with it must not cancel it
        self.received = signum
        if not self.in_loop:
            self.stop(None if self.quiet else f"stopped by {signal.Signals(signum).name}; "
                                              f"{resume_hint(self.run_root)}")

    def stop(self, message: str | None) -> None:
        """After the checkpoint: hand SIGUSR2 to submitit's handler when it has one (it requeues
        the job and exits), else raise Interrupted. message=None: log nothing (ranks > 0)."""
        signum = self.received
        assert signum is not None
        previous = self.previous.get(signum)
        self.__exit__()
        if message:
            log.warning("%s", message)
        if SIGUSR2 is not None and signum == SIGUSR2 and callable(previous):
            previous(signum, None)
        raise Interrupted(signum, message or "stopped")


def finished_run(root: Path) -> str:
    return f"{root} already holds a finished run; leave hydra.run.dir out (or choose a new dir) to start another"


def changed_config(root: Path, changed: list[str]) -> str:
    return (f"{root} was started with another config (it differs in {', '.join(changed[:5])}); resume it with "
            f"`aetl train resume={shlex.quote(str(root))}` or choose a new run dir")


class Progress:
    """Where a run stands: read from checkpoints/last.pt at the start, written by the loop.

    `context` is what the pipeline adds to every save (the source model's provenance,
    when the transfer started); `saved` is the checkpoint this job resumes from, if any."""

    def __init__(self, run: Run, cfg: DictConfig, world: World = SINGLE, overrides: list[str] | None = None) -> None:
        self.run = run
        self.identity = identity(cfg)
        self.context: dict = {"overrides": overrides}  # what `aetl train resume=` replays
        self.path = run.checkpoints / LAST
        saved: dict | AetlError | None = None
        if world.is_main:
            try:
                saved = self._load()
            except AetlError as err:  # every rank stops with it, none waits for the others
                saved = err
        saved = world.broadcast(saved)  # under torchrun every rank resumes alike
        if isinstance(saved, AetlError):
            raise saved
        self.saved: dict | None = saved
        if self.saved:
            self.context = dict(self.saved["context"])

    def _load(self) -> dict | None:
        for leftover in self.run.checkpoints.glob(".*.pt.*"):  # temp files a kill left behind
            leftover.unlink()
        if not self.path.is_file():
            self.run.truncate_metrics(0)  # killed before its first checkpoint: start over
            return None
        saved = load_checkpoint(self.path)
        if "identity" not in saved:
            raise AetlError(f"{self.path} is not a checkpoint aetl can resume from; move it away to start over")
        changed = differences(saved["identity"], self.identity)
        if changed:
            raise AetlError(changed_config(self.run.root, changed))
        self.run.truncate_metrics(saved["metrics_bytes"])
        self.run.started -= saved["elapsed_s"]
        log.info("resuming %s from %s step %d", self.run.root, saved["phase"], saved["first_step"] + saved["step"])
        return saved

    @property
    def resuming_pretraining(self) -> bool:
        return bool(self.saved) and self.saved["phase"] == "pretrain"

    @property
    def past_source(self) -> bool:
        """The source model was settled before the interruption (checkpoints/source.pt holds it)."""
        return bool(self.saved) and self.saved["phase"] != "pretrain"

    def state(self, phase: str, first_step: int) -> dict | None:
        """The loop state to resume this phase from, if the checkpoint is in it."""
        if self.saved and (self.saved["phase"], self.saved["first_step"]) == (phase, first_step):
            return self.saved
        return None

    def finished(self, position: int) -> bool:
        """The target steps up to this position (counted over every model a run trains on T)
        were done before the interruption: last.pt is in a phase that starts there or later."""
        if not self.past_source:
            return False
        return position <= self.saved["context"].get("position", self.saved["first_step"])

    def save(self, phase: str, first_step: int, step: int, model: torch.nn.Module, loop_state: dict) -> Path:
        """Write last.pt (rank 0); every rank returns its path."""
        state = {"identity": self.identity, "context": self.context, "phase": phase, "first_step": first_step,
                 "step": step, "model": model.state_dict(), **loop_state, "rng": rng_states(),
                 "metrics_bytes": self.run.metrics_bytes(), "elapsed_s": self.run.elapsed()}
        return self.run.save_checkpoint(LAST, state)


def rng_states() -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["cpu"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
