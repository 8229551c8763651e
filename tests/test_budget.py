"""The memory estimate: a run that cannot fit is one line before anything is decoded, and the
estimate of a real small config is close to what it really takes."""

import logging
import time

import numpy as np
import pytest
import torch

from aetl.commands.train import train
from aetl.data.pair import load_pair
from aetl.errors import AetlError
from aetl.models import build_model
from aetl.training import budget


@pytest.mark.parametrize("overrides,lower", [
    (["model=conv", "data.image_size=4096"], "lower trainer.pretrain.batch_size and trainer.transfer.batch_size"),
    (["trainer.pretrain.batch_size=100000000"], "lower trainer.pretrain.batch_size"),
    (["model=mlp", "data.image_size=4096", "trainer.pretrain.batch_size=1", "trainer.transfer.batch_size=1"],
     "lower data.image_size or the model's size"),
])
def test_a_run_that_cannot_fit_is_one_line_before_decoding(make_cfg, tmp_path, overrides, lower):
    cfg = make_cfg(*overrides)
    started = time.perf_counter()
    with pytest.raises(AetlError, match=r"^this run needs about [0-9.]+ GiB \(activations of a batch of .*\) but the "
                                        r"machine has [0-9.]+ [GM]iB of memory available; " + lower) as raised:
        train(cfg, tmp_path / "run")
    assert time.perf_counter() - started < 30 and "\n" not in str(raised.value)
    images = tmp_path.parent / "cache" / "images"
    assert not any(p.is_dir() for p in images.glob("*")) if images.exists() else True  # nothing decoded
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_under_a_memory_limit_the_pools_are_named(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda kind: 2**20)
    cfg = make_cfg("cache_dir=null", "data.source.n_train=100000", "data.image_size=64", "model=mlp",
                   "trainer.pretrain.batch_size=2", "trainer.transfer.batch_size=2")
    with pytest.raises(AetlError, match=r"1\.0 MiB of memory available; lower data\.source\.n_train and "
                                        r"data\.target\.n_train, or set cache_dir"):
        train(cfg, tmp_path / "run")


def test_a_run_that_fits_logs_its_estimate(make_cfg, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="aetl.training.budget"):
        train(make_cfg(), tmp_path / "run")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "aetl.training.budget"]
    assert line.startswith("memory: this run needs about") and line.endswith("memory available")


@pytest.mark.parametrize("model", ["model=conv", "model=mlp"])
def test_the_estimate_of_a_small_config_is_near_what_it_takes(make_cfg, model):
    cfg = make_cfg(model, "cache_dir=null", "data.image_size=16", "data.source.n_train=140")
    est = budget.estimate(cfg, torch.device("cpu"))
    # activations: what autograd really keeps for backward on a real batch, and the output
    net = build_model(cfg.model, est.shape, 10)
    saved = {}

    weights = {p.data_ptr() for p in net.parameters()}

    def keep(t):  # activations only (a linear layer keeps its weight for backward too)
        if t.data_ptr() not in weights:
            saved[(t.data_ptr(), t.shape)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        out = net.decode(net.encode(torch.rand(est.batch, *est.shape)))
    measured = sum(saved.values()) + out.numel() * out.element_size()
    assert measured <= est.activations <= 4 * measured
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    assert est.model == params * budget.OPTIMIZER_COPIES * budget.MODELS
    # images: the rows of the frame's arrays a real pair's splits hold (cache_dir=null: in memory)
    pair = load_pair(cfg.data, 0, torch.device("cpu"))
    splits = [s for side in (pair.source, pair.target) for s in (side.train, side.val, side.test)]
    held = sum(len(s) * np.asarray(s.images[:1]).nbytes for s in splits)
    assert est.images == held and est.pools == sum(len(s) for s in splits)


def test_a_cgroup_limit_is_what_is_left_of_it(tmp_path):
    from aetl.infra import resources

    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    usage.write_text("1000\n")
    for text, room in [("5000\n", 4000), ("max\n", None), ("9223372036854771712\n", None), ("500\n", 0)]:
        limit.write_text(text)
        assert resources._room(limit, usage) == room
    assert resources._room(tmp_path / "absent", usage) is None
