"""The run dirs under the folders `aetl report` is given, read defensively.

Every directory that holds `.hydra/` is a run of some aetl command (named by Hydra's
`.hydra/hydra.yaml`; when that is missing, by the files the run wrote). `aetl train` and
`aetl augment` runs with a usable summary.json go in the table. Every other run is listed
with what it is: a run of another command (rank, stylize: nothing to average), failed (its
run.log's last error), still running (the process that holds its run dir), stopped (killed
or interrupted, with a checkpoint to resume from), or a summary.json the report cannot use
and why (every field it groups by or averages is checked for type and range: a string where
a number belongs, NaN, Infinity, 1e308). Damaged lines of a metrics.jsonl are skipped and
listed. Nothing is silently dropped, and nothing a run dir holds ends the report in a traceback.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from aetl.infra.lock import running
from aetl.infra.schema import Spec

# The commands whose runs the table averages; the others' runs are listed as what they are.
TABULATED = ("train", "augment")
COMMANDS = ("train", "augment", "rank", "stylize")
# What each command leaves in a finished run dir (rank writes no summary.json).
FINISHED = {"train": "summary.json", "augment": "summary.json", "stylize": "summary.json", "rank": "rank.json"}

_PIXEL_SHARE = Spec("float", lo=0, hi=1, nullable=True)  # MSE of pixels in [0, 1]; an accuracy
_SECONDS = Spec("float", lo=0, hi=1e9, nullable=True)  # up to about 30 years: past that, not a time
# The figures the table averages (each a number or null in summary.json).
FIGURES = {"target_mse": _PIXEL_SHARE, "target_psnr": Spec("float", lo=0, hi=100, nullable=True),  # dB, peak 1,
           "target_acc": _PIXEL_SHARE, "target_acc_augmented": _PIXEL_SHARE,  # error clamped at 1e-10
           "pretrain_s": _SECONDS, "transfer_s": _SECONDS, "total_s": _SECONDS}
# What the table groups by (NEEDED: a run without them cannot be placed), and what else it reads.
NEEDED = {"source": Spec("str"), "target": Spec("str"), "n_target_train": Spec("int", lo=1),
          "labels_per_class": Spec("int", lo=0), "strategy": Spec("str"), "seed": Spec("int", lo=0, hi=2**32 - 1)}
READ = {"source_labels": Spec("bool", nullable=True), "transfer_steps": Spec("int", lo=0, nullable=True),
        "target_val_mse": _PIXEL_SHARE, "augment_mode": Spec("str", nullable=True),
        "chosen": Spec("str", nullable=True)}
VAL_MSE = Spec("float", lo=0, hi=1)  # a metrics.jsonl record's val_mse
STEP = Spec("int", lo=0, nullable=True)  # its step (the eval line has none)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when there: a sweep has a hydra.yaml per job


@dataclass
class Job:
    path: Path
    overrides: list[str]
    command: str = "train"
    summary: dict | None = None  # set only for a run the table can use
    problem: str | None = None  # why a train or augment run is not in the table
    damage: list[str] = field(default_factory=list)  # what was skipped of a run in the table

    @property
    def tabulated(self) -> bool:
        return self.command in TABULATED

    @cached_property
    def records(self) -> list[dict]:
        """metrics.jsonl's records; damaged lines (a half-written last line, a NaN) skipped and noted."""
        try:
            lines = _read(self.path / "metrics.jsonl", missing="").splitlines()
        except Damaged as err:
            self.damage.append(f"metrics.jsonl: {err}")
            return []
        records, bad = [], []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if _sound_record(record):
                records.append(record)
            elif line.strip():
                bad.append(number)
        if bad:
            self.damage.append(f"metrics.jsonl: {len(bad)} damaged line(s) skipped (line {bad[0]} first)")
        return records


def _sound_record(record: object) -> bool:
    """A metrics.jsonl record the validation curve can use: a phase, a whole step (or none),
    and a val_mse, when it has one, that is an MSE (finite, in [0, 1])."""
    return isinstance(record, dict) and isinstance(record.get("phase"), str) \
        and STEP.problem(record.get("step")) is None \
        and ("val_mse" not in record or VAL_MSE.problem(record["val_mse"]) is None)


def find_jobs(dirs: list[Path]) -> list[Job]:
    return [read_job(hydra_dir.parent) for root in dirs for hydra_dir in sorted(root.rglob(".hydra"))]


class Damaged(Exception):
    """A file of a job that cannot be read as what it should be."""


def read_job(path: Path) -> Job:
    """A run dir as the table sees it: its command, overrides and summary, or what is wrong with it."""
    job = Job(path, [])
    try:
        job.overrides = _overrides(path / ".hydra" / "overrides.yaml")
        job.command = command_of(path)
        if not job.tabulated:
            job.problem = _other_command(path, job.command)
            return job
        job.summary = _summary(path / "summary.json")
        if job.summary is None:
            job.problem = _unfinished(path, job.command)
    except Damaged as err:
        job.summary, job.problem = None, str(err)
    return job


def command_of(path: Path) -> str:
    """The aetl command that made a run dir: Hydra's job name in .hydra/hydra.yaml (the
    command's module), else told by the files the command writes."""
    try:
        hydra = yaml.load(_read(path / ".hydra" / "hydra.yaml", missing="") or "{}", Loader=_LOADER)
        job = hydra["hydra"]["job"]
        name = next((n for n in (job.get("name"), job.get("config_name")) if n in COMMANDS), None)
    except (Damaged, yaml.YAMLError, KeyError, TypeError, AttributeError):
        name = None
    if name:
        return name
    if (path / "rank.json").is_file():
        return "rank"
    try:
        keys = json.loads(_read(path / "summary.json", missing="{}"))
    except (Damaged, ValueError):
        return "train"  # a damaged summary.json is reported as such, for the command that reads it
    if isinstance(keys, dict) and "augment_mode" in keys:
        return "augment"
    if isinstance(keys, dict) and any(str(k).startswith("style_") for k in keys) and "strategy" not in keys:
        return "stylize"
    return "train"


def _other_command(path: Path, command: str) -> str:
    """What a run of a command the table does not average is: finished (and what it made), or why not."""
    made = FINISHED[command]
    if (path / made).is_file():
        return f"aetl {command} run, finished ({made}); not a training result, so not in the table"
    return f"aetl {command} run, {_unfinished(path, command)}"


def _read(path: Path, missing: str | None = None) -> str | None:
    if not path.exists():
        return missing
    if not path.is_file():
        raise Damaged(f"{path.name} is not a file")
    try:
        return path.read_text(errors="replace")
    except OSError as err:
        raise Damaged(f"cannot read {path.name} ({err.strerror or err})") from None


def _overrides(path: Path) -> list[str]:
    try:
        overrides = yaml.safe_load(_read(path, missing="[]")) or []
    except yaml.YAMLError as err:
        raise Damaged(f"damaged .hydra/overrides.yaml ({str(err).splitlines()[0]})") from None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise Damaged("damaged .hydra/overrides.yaml (not a list of overrides)")
    return overrides


def _summary(path: Path) -> dict | None:
    text = _read(path)
    if text is None:
        return None
    try:
        summary = json.loads(text)
    except ValueError as err:
        raise Damaged(f"damaged summary.json ({err})") from None
    if not isinstance(summary, dict):
        raise Damaged("damaged summary.json (not a JSON object)")
    lacking = [k for k in NEEDED if k not in summary]
    if lacking:
        raise Damaged(f"damaged summary.json (no {', '.join(lacking)})")
    for name, spec in {**NEEDED, **READ, **FIGURES}.items():
        wrong = spec.problem(summary.get(name))
        if wrong:
            raise Damaged(f"unusable summary.json: {name} is {_json(summary[name])}, not {wrong}; "
                          "it is not what aetl writes: run the job again")
    return summary


def _json(value: object) -> str:
    """A value as summary.json spells it (NaN, Infinity, "10", [100])."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _unfinished(path: Path, command: str) -> str:
    """Why a run has not written what its command writes last: still running, failed, or stopped."""
    holder = running(path)
    if holder:
        return f"still running ({holder})"
    errors = [line for line in (_read(path / "run.log", missing="") or "").splitlines() if "[ERROR]" in line]
    if errors:
        return "failed: " + errors[-1].split("] ", 2)[-1]
    if command == "train" and (path / "checkpoints" / "last.pt").is_file():
        resume = shlex.quote(str(path))
        return f"stopped before it finished (killed or interrupted); resume with: aetl train resume={resume}"
    what = "its first checkpoint" if command == "train" else f"its {FINISHED[command]}"
    return f"incomplete: no {FINISHED[command]}, and no process holds its run dir (killed before {what})"
