"""mixed: parts of the other strategies in one run, chosen by `parts`.

Rules: `concat` wraps the target AE with the frozen Mf's codes; `finetune` or
`fixed_init` then decides how that target AE starts from Mf and how it trains
(its schedule, learning rates and feature loss), with Mf's weights copied into the
larger target AE by the rule of aetl.models.weights. So the possible mixtures are
[concat, finetune] and [concat, fixed_init]. finetune and fixed_init both decide
the same two things and are refused together; scratch has no Mf to mix with.
Each part keeps its own settings (strategy.concat.at, strategy.finetune.*, ...).
"""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from aetl.errors import AetlError
from aetl.infra.schema import ModelOverrides
from aetl.models import AutoEncoder
from aetl.strategies import Context, Strategy
from aetl.training.loop import Phase, PhaseSettings

MIXABLE = ("concat", "finetune", "fixed_init")


class Mixed(Strategy):
    reads_target_labels = False  # its parts (concat, finetune, fixed_init) read none
    """Builds only the parts it names (the YAML is not instantiated recursively): a concat
    strategy whose `inner` strategy starts and trains the target AE."""

    def __init__(self, name: str, parts: list[str], pretrain: PhaseSettings | None = None,
                 target_model: ModelOverrides | None = None, **options: DictConfig) -> None:
        super().__init__(name, pretrain, target_model)
        parts = list(parts)
        unknown = [p for p in parts if p not in MIXABLE]
        if unknown or len(set(parts)) != len(parts) or len(parts) != 2 or "concat" not in parts:
            raise AetlError(f"strategy.parts={parts} is not a mixture aetl can make; use [concat,finetune] or "
                            "[concat,fixed_init] (finetune and fixed_init both set how Mf's weights start and "
                            "train, and scratch has no Mf)")
        inner = instantiate(options[next(p for p in parts if p != "concat")])
        self.impl = instantiate(options["concat"], name=name, inner=inner)
        self.pretrain = {**self.impl.pretrain, **inner.pretrain, **self.pretrain}

    def build(self, ctx: Context) -> AutoEncoder:
        return self.impl.build(ctx)

    def phases(self, model: AutoEncoder, trainer: DictConfig, ctx: Context) -> list[Phase]:
        return self.impl.phases(model, trainer, ctx)
