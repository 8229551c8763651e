"""The source-model cache: reused, missed when a setting changes, safe under concurrency."""

import json
import multiprocessing

import pytest
import torch
from conftest import FIGURES, TINY, TINY_MODEL, read_metrics

from aetl.commands.train import train
from aetl.infra.cache import SourceCache
from aetl.infra.checkpoint import load_checkpoint


def test_second_job_reuses_mf_and_gets_the_same_figures(make_cfg, tmp_path):
    first = train(make_cfg(), tmp_path / "a")
    second = train(make_cfg(), tmp_path / "b")
    assert (first["source_cache"], second["source_cache"]) == ("miss", "hit")
    assert second["pretrain_s"] == 0 and "pretrain" not in {r["phase"] for r in read_metrics(tmp_path / "b")}
    assert [first[k] for k in FIGURES] == [second[k] for k in FIGURES]
    a, b = (load_checkpoint(tmp_path / d / "checkpoints" / "source.pt")["model"] for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_changed_pretrain_setting_or_seed_misses(make_cfg, tmp_path):
    train(make_cfg(), tmp_path / "a")
    assert train(make_cfg("trainer.pretrain.lr=1e-3"), tmp_path / "b")["source_cache"] == "miss"
    assert train(make_cfg("seed=5"), tmp_path / "c")["source_cache"] == "miss"
    assert train(make_cfg("strategy=fixed_init"), tmp_path / "d")["source_cache"] == "hit"
    own = train(make_cfg("strategy.pretrain={steps: 25}"), tmp_path / "e")
    assert own["source_cache"] == "miss"
    assert train(make_cfg("cache_dir=null"), tmp_path / "f")["source_cache"] == "off"


def test_a_sweeps_seeds_share_one_mf_with_pretrain_seed_and_run_settings_change_no_key(make_cfg, tmp_path):
    first = train(make_cfg("seed=0"), tmp_path / "a")
    shared = train(make_cfg("seed=1", "trainer.pretrain.seed=0"), tmp_path / "b")
    assert (first["source_cache"], shared["source_cache"], shared["pretrain_s"]) == ("miss", "hit", 0)
    a, b = (load_checkpoint(tmp_path / d / "checkpoints" / "source.pt")["model"] for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    uncached = train(make_cfg("seed=1", "trainer.pretrain.seed=0", "cache_dir=null"), tmp_path / "c")
    assert [shared[k] for k in FIGURES] == [uncached[k] for k in FIGURES]  # the seed alone makes Mf
    assert train(make_cfg("seed=1"), tmp_path / "d")["source_cache"] == "miss"  # null: Mf follows the seed
    quiet = train(make_cfg("seed=0", "trainer.checkpoint_every=7", "trainer.progress=true", "logger=csv"),
                  tmp_path / "e")
    assert quiet["source_cache"] == "hit" and [quiet[k] for k in FIGURES] == [first[k] for k in FIGURES]


def _job(overrides, out, queue):
    from hydra import compose, initialize_config_module

    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, *TINY_MODEL, *overrides])
    queue.put(train(cfg, out)["source_cache"])


@pytest.mark.slow
def test_two_concurrent_jobs_end_with_one_valid_entry(tmp_path):
    cache_dir = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    overrides = [f"cache_dir={cache_dir}", "trainer.pretrain.steps=200"]
    jobs = [ctx.Process(target=_job, args=(overrides, tmp_path / f"run{i}", queue)) for i in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=600)  # generous: a loaded machine is slow, a deadlock still fails
    assert [job.exitcode for job in jobs] == [0, 0]
    assert sorted(queue.get() for _ in jobs) == ["hit", "miss"]
    # images/, targets/, fits/: the other caches
    (entry,) = [p for p in cache_dir.iterdir() if p.is_dir() and p.name not in ("images", "targets", "fits")]
    assert load_checkpoint(entry / "source.pt")["model"]
    assert json.loads((entry / "spec.json").read_text())["pretrain"]["steps"] == 200
    assert not [p for p in entry.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_an_unreadable_entry_is_trained_again(make_cfg, tmp_path):
    train(make_cfg(), tmp_path / "a")
    cache = SourceCache(make_cfg().cache_dir)
    (entry,) = [p for p in cache.root.iterdir() if p.is_dir() and p.name not in ("images", "targets", "fits")]
    (entry / "source.pt").write_bytes(b"garbage")
    assert train(make_cfg(), tmp_path / "b")["source_cache"] == "miss"
    assert train(make_cfg(), tmp_path / "c")["source_cache"] == "hit"
