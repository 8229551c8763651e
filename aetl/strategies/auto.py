"""auto: a guard against negative transfer. Trains scratch and the Mf-based strategies
named in `candidates` (default: finetune and drcn) on the target images, each exactly as it would
train on its own, and keeps the model that does best on the target *validation* split:
the higher validation accuracy of the linear probe where the target has labels (ties
broken by the lower validation MSE); with no target labels, among the candidates whose
own classifier predicts the target's classes (finetune's Mf head, drcn), the higher
label-free IM score on the target validation images (aetl.evaluation.metrics.label_free)
times the accuracy on the source validation split (`label_free_score`), else the lower
validation MSE. The test split is never read, nor any target label at 0
labels. `drcn` is a candidate where the source has labels and, with no target labels, the
classes match (it is left out, with the reason logged, elsewhere). A source that does not help therefore costs time, not accuracy: scratch is
always among the candidates.
"""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig

from aetl.errors import AetlError
from aetl.infra.schema import ModelOverrides
from aetl.strategies import Strategy
from aetl.training.loop import PhaseSettings

log = logging.getLogger(__name__)


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
        if all(f["val_acc"] is not None and f.get("labelled", 1) for f in figures):
            return min(range(len(figures)), key=lambda i: (-figures[i]["val_acc"], figures[i]["val_mse"]))
        scored = [i for i, f in enumerate(figures) if f.get("val_im") is not None]
        if scored and not any(f.get("labelled", 1) for f in figures):
            log.info("%s: no target labels: choosing among the candidates with a classifier for the target's "
                     "classes by the label-free IM score of their predictions on the target validation images "
                     "times their accuracy on the source validation split (no target label read)", self.name)
            return max(scored, key=lambda i: label_free_score(figures[i]))
        return min(range(len(figures)), key=lambda i: figures[i]["val_mse"])


def label_free_score(figures: dict) -> float:
    """What auto maximises with no target labels: the IM score on the target validation images
    (confident and diverse predictions) times the accuracy on the source validation split. IM
    alone rewards a classifier that collapsed onto confident wrong classes, and such a classifier
    has lost the source task too (MNIST -> MNIST-M: drcn's IM 0.84 at 70% source accuracy
    against drcn_styled's 0.69 at 95%); a small loss of source accuracy, the usual price of
    adapting, costs a candidate only as much (source risk as a validator: Ganin et al. 2016;
    You et al. 2019). Without a source validation split, IM alone."""
    source = figures.get("source_val_acc")
    return figures["val_im"] * (1.0 if source is None else source)
