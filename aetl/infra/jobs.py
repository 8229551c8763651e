"""The jobs under the folders `aetl report` is given, read defensively.

Every directory that holds `.hydra/` is a job. A job with a sound summary.json goes in the
table; any other is listed with what is wrong with it: failed (its run.log's last error),
still running (the process that holds its run dir), stopped (killed or interrupted, with a
checkpoint to resume from), or a damaged summary.json or .hydra/overrides.yaml. Damaged
lines of a metrics.jsonl are skipped and listed. Nothing is silently dropped, and nothing a
job holds ends the report in a traceback.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from aetl.infra.lock import running

# The figures the table averages (each a number or null in summary.json), and what else it groups by.
FIGURES = ["target_mse", "target_psnr", "target_acc", "target_acc_augmented", "pretrain_s", "transfer_s", "total_s"]
NEEDED = ("source", "target", "n_target_train", "labels_per_class", "strategy")


@dataclass
class Job:
    path: Path
    overrides: list[str]
    summary: dict | None = None
    problem: str | None = None  # why it is not in the table
    damage: list[str] = field(default_factory=list)  # what was skipped of a run in the table

    @cached_property
    def records(self) -> list[dict]:
        """metrics.jsonl's records; damaged lines (a half-written last line, say) skipped and noted."""
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
            if isinstance(record, dict) and isinstance(record.get("phase"), str) \
                    and isinstance(record.get("step"), (int, type(None))):  # the eval line has no step
                records.append(record)
            elif line.strip():
                bad.append(number)
        if bad:
            self.damage.append(f"metrics.jsonl: {len(bad)} damaged line(s) skipped (line {bad[0]} first)")
        return records


def find_jobs(dirs: list[Path]) -> list[Job]:
    return [read_job(hydra_dir.parent) for root in dirs for hydra_dir in sorted(root.rglob(".hydra"))]


class Damaged(Exception):
    """A file of a job that cannot be read as what it should be."""


def read_job(path: Path) -> Job:
    """A job dir as the table sees it: its overrides and summary, or what is wrong with it."""
    job = Job(path, [])
    try:
        job.overrides = _overrides(path / ".hydra" / "overrides.yaml")
        job.summary = _summary(path / "summary.json")
        if job.summary is None:
            job.problem = _unfinished(path)
    except Damaged as err:
        job.summary, job.problem = None, str(err)
    return job


def _read(path: Path, missing: str | None = None) -> str | None:
    if not path.is_file():
        return missing
    try:
        return path.read_text(errors="replace")
    except OSError as err:
        raise Damaged(f"cannot read {path.name} ({err.strerror or err})") from None


def _overrides(path: Path) -> list[str]:
    try:
        overrides = yaml.safe_load(_read(path, missing="[]")) or []
    except yaml.YAMLError as err:
        raise Damaged(f"damaged .hydra/overrides.yaml ({str(err).splitlines()[0]})") from None
    if not isinstance(overrides, list):
        raise Damaged("damaged .hydra/overrides.yaml (not a list of overrides)")
    return [str(o) for o in overrides]


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
    odd = [k for k in FIGURES if summary.get(k) is not None and not isinstance(summary[k], (int, float))]
    if odd:
        raise Damaged(f"damaged summary.json ({odd[0]} is {summary[odd[0]]!r}, not a number)")
    return summary


def _unfinished(path: Path) -> str:
    """Why a job has no summary.json: still running, failed, or stopped."""
    holder = running(path)
    if holder:
        return f"still running ({holder})"
    errors = [line for line in (_read(path / "run.log", missing="") or "").splitlines() if "[ERROR]" in line]
    if errors:
        return "failed: " + errors[-1].split("] ", 2)[-1]
    if (path / "checkpoints" / "last.pt").is_file():
        resume = shlex.quote(str(path))
        return f"stopped before it finished (killed or interrupted); resume with: aetl train resume={resume}"
    return "incomplete: no summary.json, and no process holds its run dir (killed before its first checkpoint)"


