"""The target-model cache: a label-budget sweep trains each label-free strategy's model once, and
the next budgets load it and refit the probe alone, with the figures an uncached run gives."""

import os
from pathlib import Path

import torch
from conftest import FIGURES, read_metrics

from aetl.commands.train import train
from aetl.infra.checkpoint import load_checkpoint


def _transfer_lines(run):
    return [r for r in read_metrics(run) if r["phase"].startswith("transfer")]


def test_a_label_budget_sweep_trains_the_model_once_with_the_uncached_figures(make_cfg, tmp_path, caplog):
    first = train(make_cfg("data.target.labels_per_class=1"), tmp_path / "a")
    caplog.clear()  # (an earlier test may leave aetl's logger at INFO: the first run's lines are not the second's)
    with caplog.at_level("INFO"):
        second = train(make_cfg("data.target.labels_per_class=3"), tmp_path / "b")
    assert (first["target_cache"], second["target_cache"]) == ("miss", "hit")
    assert any(m.startswith("target model: cache hit ") for m in caplog.messages)
    assert [m for m in caplog.messages if ": phase transfer, " in m] == []  # no training step
    assert _transfer_lines(tmp_path / "b") == _transfer_lines(tmp_path / "a")  # the curve the report reads
    uncached = train(make_cfg("data.target.labels_per_class=3", "cache_dir=null"), tmp_path / "c")
    assert uncached["target_cache"] == "off" and second["target_acc"] != first["target_acc"]
    assert [second[k] for k in FIGURES] == [uncached[k] for k in FIGURES]  # target_mse and the probe's accuracy
    b, c = (load_checkpoint(tmp_path / d / "checkpoints" / "target.pt")["model"] for d in "bc")
    assert all(torch.equal(b[k], c[k]) for k in b)


def test_run_settings_share_an_entry_and_what_changes_the_model_or_reads_labels_does_not(make_cfg, tmp_path):
    train(make_cfg("data.target.labels_per_class=1"), tmp_path / "a")
    quiet = train(make_cfg("data.target.labels_per_class=2", "trainer.checkpoint_every=3", "trainer.progress=true",
                           "logger=csv", "trainer.threads=1"), tmp_path / "b")
    assert quiet["target_cache"] == "hit"
    assert train(make_cfg("seed=1"), tmp_path / "c")["target_cache"] == "miss"
    assert train(make_cfg("trainer.transfer.lr=3e-3"), tmp_path / "d")["target_cache"] == "miss"
    assert train(make_cfg("data.target.n_train=32"), tmp_path / "e")["target_cache"] == "miss"
    assert train(make_cfg("strategy=scratch"), tmp_path / "f")["target_cache"] == "miss"
    assert train(make_cfg("strategy=auto"), tmp_path / "g")["target_cache"] is None  # it chooses by val accuracy


def test_a_damaged_entry_is_made_again_and_one_that_cannot_be_stored_is_a_warning(make_cfg, tmp_path, caplog,
                                                                                     monkeypatch):
    from aetl.errors import AetlError

    auto = ["data.target.fit=auto", "trainer.pretrain.steps=30"]
    first = train(make_cfg(*auto), tmp_path / "a")
    cache = Path(os.environ["AETL_CACHE_DIR"])  # conftest's, the test's own
    for entry in [*cache.glob("targets/*/target.pt"), *cache.glob("fits/*/fit.json")]:
        entry.write_bytes(b"damaged")
    with caplog.at_level("WARNING"):
        again = train(make_cfg(*auto, "data.target.labels_per_class=2"), tmp_path / "b")
    assert any(m.startswith("the target model cache entry ") and m.endswith("(truncated or replaced); training again")
               for m in caplog.messages)
    assert any(m.startswith("the fit choice cache entry ") and m.endswith("(truncated or replaced); choosing again")
               for m in caplog.messages)
    assert again["target_cache"] == "miss" and again["target_mse"] == first["target_mse"]

    def disk_full(path, write):
        raise AetlError(f"could not write {path} (No space left on device); free some space")

    monkeypatch.setattr("aetl.infra.cache.atomic_write", disk_full)
    caplog.clear()
    with caplog.at_level("WARNING"):
        full = train(make_cfg("seed=3"), tmp_path / "c")
    assert full["target_cache"] == "miss" and (tmp_path / "c" / "summary.json").is_file()
    assert any(m.startswith("target model not cached: could not write ") for m in caplog.messages)
