"""Resuming an interrupted run: checkpoints/last.pt (stopping on a signal: aetl/infra/signals.py).

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
from pathlib import Path

import torch
from omegaconf import DictConfig

from aetl.errors import AetlError
from aetl.infra.distributed import SINGLE, World
from aetl.infra.runconfig import changed_config, differences, identity
from aetl.infra.rundir import Run, load_checkpoint

log = logging.getLogger(__name__)

LAST = "last.pt"


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
