"""auto: a guard against negative transfer. Trains scratch and the Mf-based strategies
named in `candidates` (default: finetune and drcn) on the target images, each exactly as it would
train on its own, and keeps the model that does best on the target *validation* split:
the higher validation accuracy of the linear probe where the target has labels (ties
broken by the lower validation MSE); with no target labels, among the candidates whose
own classifier predicts the target's classes (finetune's Mf head, drcn), the higher
label-free IM score on the target validation images (aetl.evaluation.metrics.label_free),
else the lower validation MSE. The test split is never read, nor any target label at 0
labels. `drcn` is a candidate where the source has labels and, with no target labels, the
classes match (it is left out, with the reason logged, elsewhere). A source that does not help therefore costs time, not accuracy: scratch is
always among the candidates.
"""

from __future__ import annotations

import logging
import math

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
            kept = self._source_kept(figures, scored)
            log.info("%s: no target labels: choosing among the candidates with a classifier for the target's "
                     "classes that kept the source task by the label-free IM score of their predictions on the "
                     "target validation images (no target label read)", self.name)
            return max(kept, key=lambda i: figures[i]["val_im"])
        return min(range(len(figures)), key=lambda i: figures[i]["val_mse"])

    def _source_kept(self, figures: list[dict], scored: list[int]) -> list[int]:
        """The scored candidates whose source validation accuracy is within two standard errors
        of the best one's: a classifier that lost the source task has no claim to carry it to
        the target, however confident its target predictions (the IM score alone rewards a
        collapse onto confident wrong classes; source risk as a validator: Ganin et al. 2016,
        You et al. 2019)."""
        accs = {i: figures[i].get("source_val_acc") for i in scored}
        known = {i: a for i, a in accs.items() if a is not None and figures[i].get("source_val_n")}
        if not known:
            return scored
        best = max(known, key=known.get)
        n = figures[best]["source_val_n"]
        floor = known[best] - 2 * max(math.sqrt(known[best] * (1 - known[best]) / n), 1 / n)
        kept = [i for i in scored if i not in known or known[i] >= floor]
        if len(kept) < len(scored):
            log.info("%s: %d candidate(s) set aside: source validation accuracy below %.1f%%, two standard errors "
                     "under the best (%.1f%%)", self.name, len(scored) - len(kept), 100 * floor, 100 * known[best])
        return kept
