"""What `aetl train` returns to a Hydra sweeper: one figure of summary.json, as a float.

`objective.key` names it and `objective.direction` says which way is better. Only
validation figures may be optimised, so that a search never looks at the target test
split. A job that failed (or has no such figure) returns the worst value (+inf when
minimising, -inf when maximising): the Optuna sweeper records a completed trial the
sampler steers away from, where NaN or None would be a failed trial that ends the
search when every trial fails.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from omegaconf import DictConfig

from aetl.errors import AetlError

log = logging.getLogger(__name__)

# The figures of the target validation split a sweep may optimise, and which way is better.
VALIDATION = {"target_val_mse": "minimize", "target_val_acc": "maximize"}
DIRECTIONS = ("minimize", "maximize")


@dataclass
class Objective:
    """The `objective` config (its values are checked together: check_objective)."""

    key: str
    direction: str


def check_objective(objective: DictConfig) -> None:
    """Refuse a test-split figure or an unknown direction before anything trains."""
    if objective.key not in VALIDATION:
        raise AetlError(f"objective.key={objective.key} is not a validation figure; sweeps optimise one of "
                        f"{', '.join(VALIDATION)} (the test split is only for the final report)")
    if objective.direction not in DIRECTIONS:
        raise AetlError(f"objective.direction must be minimize or maximize, got {objective.direction!r}")
    better = VALIDATION[objective.key]
    if objective.direction != better:
        raise AetlError(f"objective.key={objective.key} is better {'lower' if better == 'minimize' else 'higher'}, so "
                        f"objective.direction={objective.direction} would search for the worst model; set "
                        f"objective.direction={better}")


def worst(objective: DictConfig) -> float:
    return math.inf if objective.direction == "minimize" else -math.inf


def objective_value(summary: dict | None, objective: DictConfig) -> float:
    """summary[objective.key] as a float; the worst value for a failed job (summary None),
    a rank other than 0 (an empty summary) or a figure the run could not compute."""
    if not summary:
        return worst(objective)
    value = summary.get(objective.key)
    if value is None or math.isnan(value):
        log.warning("objective %s is %s in this run (e.g. target_val_acc without target labels); returning %s",
                    objective.key, value, worst(objective))
        return worst(objective)
    return float(value)
