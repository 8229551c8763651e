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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from aetl.errors import AetlError
from aetl.infra.checkpoint import LOOP_KEYS, load_checkpoint, pack
from aetl.infra.distributed import SINGLE, World
from aetl.infra.runconfig import changed_config, differences, identity
from aetl.infra.rundir import Run

log = logging.getLogger(__name__)

LAST = "last.pt"


@dataclass
class Provenance:
    """How a run obtained Mf (aetl.strategies.pretrain.SourceModel less the model)."""

    seconds: float  # spent pretraining it in this run
    origin: str     # "pretrained", "cache", or the checkpoint path given
    cache: str      # "hit", "miss" or "off"
    labels: bool    # trained with source labels


@dataclass
class CandidateTime:
    """strategy=auto: one finished candidate's transfer time."""

    name: str
    seconds: float


@dataclass
class RunState:
    """What the pipeline carries across an interruption, in last.pt beside the loop's state."""

    overrides: list[str] | None = None  # the command line's: what `aetl train resume=` replays
    mf: Provenance | None = None  # set once Mf is settled (then checkpoints/source.pt holds it)
    pretrain_started_s: float | None = None  # the run's clock when pretraining started ...
    transfer_started_s: float | None = None  # ... and the transfer: their times count across resumes
    position: int = 0  # target steps of the models trained before the one in training (auto)
    candidates: list[CandidateTime] = field(default_factory=list)  # auto: those finished, in order

    def seconds_of(self, name: str) -> float | None:
        return next((c.seconds for c in self.candidates if c.name == name), None)

    def to_saved(self) -> dict:
        return asdict(self)

    @classmethod
    def from_saved(cls, saved: dict) -> "RunState":
        """The state as last.pt holds it; also the context of an aetl 0.1 last.pt (Mf's provenance
        under "mf", earlier "source"; "source_started_s"; candidate times in "seconds")."""
        mf = saved.get("mf") or saved.get("source")
        times = saved.get("candidates") or [{"name": k, "seconds": v} for k, v in saved.get("seconds", {}).items()]
        return cls(overrides=saved.get("overrides"), mf=Provenance(**mf) if mf else None,
                   pretrain_started_s=saved.get("pretrain_started_s", saved.get("source_started_s")),
                   transfer_started_s=saved.get("transfer_started_s"), position=int(saved.get("position", 0)),
                   candidates=[CandidateTime(**t) for t in times])


@dataclass
class LoopState:
    """Where the loop stands in a phase, with what it needs to carry on exactly from there."""

    phase: str
    first_step: int  # the phase's first step on the shared step axis
    step: int        # steps done in this phase
    optimizer: dict  # the optimiser's own state dict
    generator: torch.Tensor  # the batch generator's state
    perm: torch.Tensor       # this epoch's shuffle
    running: dict[str, torch.Tensor]  # loss sums by term since the last log line
    since_log: int
    rng: list[torch.Tensor]  # torch's global RNG states: the CPU's, then each CUDA device's

    def to_saved(self) -> dict:
        return {**self.__dict__, "rng": {"cpu": self.rng[0], "cuda": self.rng[1:]}}

    @classmethod
    def from_saved(cls, saved: dict) -> "LoopState":
        return cls(**{**saved, "rng": [saved["rng"]["cpu"], *saved["rng"]["cuda"]]})


class Progress:
    """Where a run stands: read from checkpoints/last.pt at the start, written by the loop.

    `state` is what the pipeline keeps there (Mf's provenance, its clocks, how far the
    candidates have come); `resumed` is the state, and `loop` the loop's, that this job
    resumes from, if any."""

    def __init__(self, run: Run, cfg: DictConfig, world: World = SINGLE, overrides: list[str] | None = None) -> None:
        self.run = run
        self.identity = identity(cfg)
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
        self.loop = LoopState.from_saved(saved["loop"]) if saved else None
        self.resumed = RunState.from_saved(saved["run"]) if saved else None
        self.state = RunState.from_saved(saved["run"]) if saved else RunState(overrides=overrides)

    def _load(self) -> dict | None:
        for leftover in self.run.checkpoints.glob(".*.pt.*"):  # temp files a kill left behind
            leftover.unlink()
        if not self.path.is_file():
            self.run.truncate_metrics(0)  # killed before its first checkpoint: start over
            return None
        saved = load_checkpoint(self.path)
        if saved["kind"] != "last" or "identity" not in saved:
            raise AetlError(f"{self.path} is not a checkpoint aetl can resume from; move it away to start over")
        changed = differences(saved["identity"], self.identity)
        if changed:
            raise AetlError(changed_config(self.run.root, changed))
        if not isinstance(saved.get("loop"), dict) or any(saved["loop"].get(k) is None for k in LOOP_KEYS):
            raise AetlError(f"{self.path} is not a checkpoint aetl can resume from; move it away to start over")
        self.run.truncate_metrics(saved["metrics_bytes"])
        self.run.started -= saved["elapsed_s"]
        loop = saved["loop"]
        log.info("resuming %s from %s step %d", self.run.root, loop["phase"], loop["first_step"] + loop["step"])
        return saved

    @property
    def resuming_pretraining(self) -> bool:
        return self.loop is not None and self.loop.phase == "pretrain"

    @property
    def past_source(self) -> bool:
        """The source model was settled before the interruption (checkpoints/source.pt holds it)."""
        return self.loop is not None and self.loop.phase != "pretrain"

    def resume_point(self, phase: str, first_step: int) -> tuple[dict, LoopState] | None:
        """The model's state dict and the loop state to resume this phase from, if last.pt is in it."""
        if self.loop is not None and (self.loop.phase, self.loop.first_step) == (phase, first_step):
            return self.saved["model"], self.loop
        return None

    def finished(self, position: int) -> bool:
        """The target steps up to this position (counted over every model a run trains on T)
        were done before the interruption: last.pt is in a phase that starts there or later."""
        if not self.past_source:
            return False
        return position <= max(self.resumed.position, self.loop.first_step)

    def save(self, model: torch.nn.Module, loop: LoopState) -> Path:
        """Write last.pt (rank 0); every rank returns its path."""
        state = pack("last", model.state_dict(), getattr(model, "recipe", None), identity=self.identity,
                     run=self.state.to_saved(), loop=loop.to_saved(), metrics_bytes=self.run.metrics_bytes(),
                     elapsed_s=self.run.elapsed())
        return self.run.save_checkpoint(LAST, state)


def rng_states() -> list[torch.Tensor]:
    """torch's global RNG states: the CPU's, then each CUDA device's."""
    return [torch.get_rng_state(), *(torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])]


def set_rng_states(states: list[torch.Tensor]) -> None:
    torch.set_rng_state(states[0])
    if len(states) > 1 and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states[1:])
