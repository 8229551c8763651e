"""auto: a guard against negative transfer. Trains scratch and the Mf-based strategies
named in `candidates` (default: finetune) on the target images, each exactly as it would
train on its own, and keeps the model that does best on the target *validation* split:
the higher validation accuracy of the linear probe where the target has labels (ties
broken by the lower validation MSE), else the lower validation MSE. The test split is
never read. A source that does not help therefore costs time, not accuracy: scratch is
always among the candidates.
"""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from aetl.errors import AetlError
from aetl.infra.schema import ModelOverrides
from aetl.strategies import Strategy
from aetl.training.loop import PhaseSettings


class Auto(Strategy):
    def __init__(self, name: str, candidates: list[str], pretrain: PhaseSettings | None = None,
                 target_model: ModelOverrides | None = None, **options: DictConfig) -> None:
        super().__init__(name, pretrain, target_model)
        names = ["scratch", *(c for c in candidates if c != "scratch")]
        unknown = [c for c in names if c not in options or c == name]
        if unknown or len(set(names)) != len(names):
            choices = ", ".join(sorted(k for k in options if k != name))
            raise AetlError(f"strategy.candidates={list(candidates)} names {unknown or 'a strategy twice'}; "
                            f"choose among {choices}")
        self.options = [instantiate(options[c]) for c in names]
        self.uses_source = any(s.uses_source for s in self.options)
        for option in self.options:  # one Mf for all of them
            self.pretrain = {**option.pretrain, **self.pretrain}

    def candidates(self) -> list[Strategy]:
        return self.options

    def choose(self, figures: list[dict]) -> int:
        if all(f["val_acc"] is not None for f in figures):
            return min(range(len(figures)), key=lambda i: (-figures[i]["val_acc"], figures[i]["val_mse"]))
        return min(range(len(figures)), key=lambda i: figures[i]["val_mse"])
