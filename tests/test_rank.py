"""aetl rank's edge cases: valid JSON always (null for a score that does not exist), the true
reason for a missing score, a clear refusal when nothing is left to rank, the best source
compared with the runner-up before "use X", and the target read through the image cache."""

import json
import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

from aetl.commands import rank as rank_command
from aetl.commands.rank import Scored, compare, rank, recommend, table
from aetl.commands.train import train
from aetl.errors import AetlError


def strict_json(text):
    """json.loads that refuses NaN and Infinity, as every JSON parser but Python's does."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def rank_cfg(*overrides):
    with initialize_config_module("aetl.configs", version_base="1.3"):
        return compose("rank", overrides=["data=synthetic_pair", "model=mlp", "model.hidden=[32]", "model.latent_dim=4",
                                          "trainer.device=cpu", "trainer.pretrain.steps=20", *overrides])


@pytest.fixture(scope="module")
def source_pt(tmp_path_factory):
    """A tiny source model (a run's checkpoints/source.pt)."""
    from conftest import TINY, TINY_MODEL

    run = tmp_path_factory.mktemp("source")
    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, *TINY_MODEL, "trainer.transfer.steps=1"])
    train(cfg, run)
    return run / "checkpoints" / "source.pt"


def identical_folder(root, classes=4, per_class=10):
    pixels = (np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8)
    for c in range(classes):
        (root / str(c)).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(pixels).save(root / str(c) / f"{i}.png")
    return root


def test_identical_images_give_null_scores_the_true_reason_and_valid_json(source_pt, tmp_path):
    folder = identical_folder(tmp_path / "same")
    cfg = rank_cfg("data/target=folder", f"data.target.root={folder}", "data.target.n_train=24",
                   "data.target.labels_per_class=5", "data.target.n_val=8", "data.target.n_test=8",
                   "data.target.fit=resize", "data.target.tone=keep", "sources=[]", f"models=[{source_pt}]")
    result = rank(cfg, tmp_path / "rank", [])
    written = strict_json((tmp_path / "rank" / "rank.json").read_text())
    assert written == result
    (row,) = written["sources"]
    assert row["logme"] is None and row["logme_pca"] is None and row["logme_gain"] is None
    assert row["note"] == ("LogME undefined: Mf's codes and the target's PCA codes do not vary across the labelled "
                           "images (are the images identical?)")
    assert result["recommendation"].startswith(f"no verdict for {source_pt}: LogME undefined: Mf's codes")
    assert "under 2" not in result["recommendation"] and "labels per class" not in result["recommendation"]
    assert "nan" not in (tmp_path / "rank" / "rank.csv").read_text().lower()


def test_a_class_with_one_label_is_the_reason_named_for_a_missing_standard_error(source_pt, tmp_path):
    cfg = rank_cfg("data.target.labels_per_class=1", "sources=[]", f"models=[{source_pt}]")
    result = rank(cfg, tmp_path / "rank", [])
    (row,) = result["sources"]
    assert row["logme_gain"] is not None and row["logme_gain_se"] is None
    assert row["note"].startswith("no standard error: class ") and "has 1 labelled image" in row["note"]
    assert "with no standard error (class " in result["recommendation"]
    strict_json((tmp_path / "rank" / "rank.json").read_text())


@pytest.mark.parametrize("sources, skipped", [("[synthetic]", "synthetic is the target's own domain; "), ("[]", "")])
def test_nothing_left_to_rank_is_refused_before_any_work(tmp_path, sources, skipped):
    """sources=[the target's own domain] is refused as sources=[] is, before a run dir is written."""
    overrides = ["data=synthetic_pair", "data.target.seed=1"]  # the source's patterns: the same domain
    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose("rank", overrides=[*overrides, f"sources={sources}"])
        with pytest.raises(AetlError, match=f"^nothing to rank: {skipped}give sources="):
            rank(cfg, tmp_path / "r", overrides)
    assert not (tmp_path / "r").exists()


def scored(name, gain, codes=None, labels=None, zero_shot=0.5):
    row = {"source": name, "fit": "resize", "zero_shot": zero_shot, "domain_gap": None, "logme": None,
           "logme_pca": None, "logme_gain": None if math.isnan(gain) else round(gain, 4), "logme_gain_se": 0.005,
           "behind_best": None, "behind_best_se": None, "mf_s": 0.0, "score_s": 0.0, "note": None}
    return Scored(row, codes, labels, gain)


def codes_of(signal, seed, n=120):
    """(Mf's codes, the PCA codes) of n labelled images: class signal of the given strength plus noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    mine = torch.randn(n, 8, generator=gen) + torch.nn.functional.one_hot(y, 8) * signal
    return (mine, torch.randn(n, 8, generator=torch.Generator().manual_seed(99))), y


def test_the_best_is_compared_with_the_runner_up_before_use_x():
    from aetl.evaluation.transferability import logme

    (good, y), (poor, _) = codes_of(3.0, 1), codes_of(0.5, 3)
    close = (good[0] + 0.05 * torch.randn(good[0].shape, generator=torch.Generator().manual_seed(5)), good[1])

    def candidate(name, codes):
        return scored(name, logme(codes[0], y) - logme(codes[1], y), codes, y)

    rows = compare([candidate("poor", poor), candidate("close", close), candidate("good", good)], seed=0)
    order = [r["source"] for r in rows]
    assert set(order[:2]) == {"good", "close"} and order[2] == "poor" and rows[0]["behind_best"] is None
    runner, last = rows[1], rows[2]
    assert runner["behind_best"] <= 0 and -runner["behind_best"] < 2 * runner["behind_best_se"]  # within 2 s.e.
    assert -last["behind_best"] > 2 * last["behind_best_se"]
    verdict = recommend(rows)
    assert verdict.startswith(f"use {order[0]} or {order[1]}: transfer is expected to help") and \
        "within two standard errors" in verdict
    alone = compare([candidate("poor", poor), candidate("good", good)], seed=0)
    assert recommend(alone).startswith("use good: transfer is expected to help") and " ahead of poor (paired)" in \
        recommend(alone)
    assert "| behind best | ± s.e. |" in table(rows)


def test_rows_without_a_gain_follow_the_rows_with_one():
    rows = compare([scored("a", math.nan, zero_shot=0.1), scored("b", 0.02), scored("c", math.nan, zero_shot=None)],
                   seed=0)
    assert [r["source"] for r in rows] == ["b", "a", "c"]


def test_rank_reads_the_target_through_the_image_cache(source_pt, tmp_path, monkeypatch):
    seen = {}
    load_target = rank_command.load_target

    def spy(cfg, seed, cache_dir=None):
        seen["cache_dir"] = cache_dir
        return load_target(cfg, seed, cache_dir)

    monkeypatch.setattr(rank_command, "load_target", spy)
    cfg = rank_cfg("sources=[]", f"models=[{source_pt}]", f"cache_dir={tmp_path / 'cache'}")
    rank(cfg, tmp_path / "rank", [])
    assert seen["cache_dir"] == str(tmp_path / "cache") and (tmp_path / "cache" / "images").is_dir()
