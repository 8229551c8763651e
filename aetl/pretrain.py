"""The source model Mf: pretrained on the source images, or loaded from `pretrained=`."""

from __future__ import annotations

import logging
import time
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from aetl.data import Pair
from aetl.loop import Phase, run_phase
from aetl.models import AutoEncoder
from aetl.rundir import Run, load_checkpoint
from aetl.strategies import load_weights

log = logging.getLogger(__name__)


def source_model(cfg: DictConfig, pair: Pair, new_model: Callable[[], AutoEncoder], run: Run,
                 make_optimizer: Callable) -> tuple[AutoEncoder, float, str]:
    """(model, seconds spent pretraining, where its weights came from); writes checkpoints/source.pt."""
    model = new_model()
    started = time.perf_counter()
    if cfg.pretrained:
        state = load_checkpoint(cfg.pretrained)
        load_weights(model, state["model"], str(cfg.pretrained))
        origin = str(cfg.pretrained)
        log.info("source model loaded from %s", origin)
    else:
        p = cfg.trainer.pretrain
        phase = Phase("pretrain", p.steps, p.batch_size, [{"params": list(model.parameters()), "lr": p.lr}])
        log.info("pretraining %s on %d %s images for %d steps", type(model).__name__, len(pair.source_train),
                 pair.source_name, p.steps)
        run_phase(model, phase, pair.source_train.x, pair.source_val.x, run, make_optimizer,
                  cfg.trainer.eval_every, cfg.seed, cfg.trainer.progress)
        origin = "pretrained"
    seconds = time.perf_counter() - started
    run.save_checkpoint("source.pt", {"model": model.state_dict(), "model_cfg": OmegaConf.to_container(cfg.model),
                                      "source": pair.source_name, "shape": list(pair.shape)})
    return model, seconds, origin
