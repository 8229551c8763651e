import json

import pytest
from conftest import FIGURES, SUMMARY_KEYS, TINY, read_metrics
from PIL import Image

from aetl.commands.train import train
from aetl.errors import AetlError


def test_finetune_run_writes_the_whole_run_dir(make_cfg, tmp_path):
    summary = train(make_cfg("strategy=finetune"), tmp_path)
    assert SUMMARY_KEYS <= set(summary)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["strategy"] == "finetune" and summary["source"] == summary["target"] == "synthetic"
    assert summary["n_target_train"] == 40 and summary["n_target_labelled"] == 20 and summary["device"] == "cpu"
    assert 0 < summary["target_mse"] < 0.25 and 0 <= summary["target_acc"] <= 1 and summary["pretrain_s"] > 0
    assert summary["source_model"] == "pretrained" and summary["target_fit"] == "resize"
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {"source.pt", "target.pt", "last.pt"}
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records if r["phase"] == "pretrain"] == [5, 10, 15, 20]
    assert [r["step"] for r in records if r["phase"] == "transfer"] == [5, 10]
    assert records[-1]["phase"] == "eval" and records[-1]["target_mse"] == summary["target_mse"]
    assert all({"phase", "epoch", "step", "time_s"} <= set(r) for r in records)
    for name in ("recon_source.png", "recon_target.png"):
        with Image.open(tmp_path / "images" / name) as img:  # 8 inputs over 8 reconstructions, drawn 2x, padded
            assert json.loads(img.text["rows"]) == ["input", "reconstruction"]
            assert img.height == 4 + 2 * (16 * 2 + 4) and img.width > 8 * (16 * 2 + 4)


def test_same_config_and_seed_give_the_same_figures(make_cfg, tmp_path):
    a = train(make_cfg("seed=3"), tmp_path / "a")
    b = train(make_cfg("seed=3"), tmp_path / "b")
    c = train(make_cfg("seed=4"), tmp_path / "c")
    assert [a[k] for k in FIGURES] == [b[k] for k in FIGURES]
    assert a["target_mse"] != c["target_mse"]


def test_scratch_never_touches_the_source_model(make_cfg, tmp_path):
    summary = train(make_cfg("strategy=scratch", "model=conv", "model.channels=[4,8]"), tmp_path)
    assert summary["pretrain_s"] == 0 and summary["source_model"] is None
    assert not (tmp_path / "checkpoints" / "source.pt").exists()
    assert {r["phase"] for r in read_metrics(tmp_path)} == {"transfer", "eval"}


def test_pretrained_checkpoint_replaces_pretraining(make_cfg, tmp_path):
    train(make_cfg(), tmp_path / "first")
    source = tmp_path / "first" / "checkpoints" / "source.pt"
    summary = train(make_cfg(f"pretrained={source}"), tmp_path / "second")
    assert summary["source_model"] == str(source)
    assert "pretrain" not in {r["phase"] for r in read_metrics(tmp_path / "second")}
    with pytest.raises(AetlError, match="do not fit the chosen model"):
        train(make_cfg(f"pretrained={source}", "model.latent_dim=6"), tmp_path / "third")


def test_style_transfer_brings_the_fully_convolutional_backbone_it_needs(tmp_path):
    from hydra import compose, initialize_config_module

    small = ["model.channels=[4,8]", "model.latent_channels=4", "app.size=32", "app.alphas=[1.0]"]
    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, "strategy=scratch", "app=style_transfer", *small])
        assert compose("train", overrides=["app=style_transfer", "model=conv"]).model._target_.endswith("ConvAE")
    assert cfg.model._target_ == "aetl.models.fconv.FullyConvAE"  # no model= given: the app's choice
    summary = train(cfg, tmp_path)
    assert summary["model"] == "FullyConvAE" and len(summary["style_results"]) == 1
    assert (tmp_path / "images" / "style_grid_wct.png").is_file()


RESNET = ["model=resnet", "model.channels=[4,8]", "model.latent_dim=8"]


def test_every_strategy_trains_the_resnet_backbone(make_cfg, tmp_path):
    """concat (Mf's code into the input's channels), mixed (concat around finetune) and fixed_init
    into a wider target model cover every way a strategy uses Mf (one Mf, from the cache)."""
    wider = "strategy.target_model={channels: [8,16], latent_dim: 12}"
    for strategy in ("concat strategy.at=input", "mixed", f"fixed_init {wider}"):
        name, *more = strategy.split(" ", 1)
        summary = train(make_cfg(*RESNET, "model.norm=batch", f"strategy={name}", *more), tmp_path / name)
        assert summary["model"] in ("ResNetAE", "ConcatAE") and 0 < summary["target_mse"] < 0.25, strategy
        assert 0 <= summary["target_acc"] <= 1
    assert summary["latent_dim"] == 12 and summary["source_cache"] == "hit"


def test_style_transfer_on_the_resnet_feature_map_code(make_cfg, tmp_path):
    summary = train(make_cfg(*RESNET, "model.latent_channels=4", "strategy=scratch",
                             "app=style_transfer", "app.size=32", "app.alphas=[1.0]"), tmp_path)
    assert summary["model"] == "ResNetAE" and len(summary["style_results"]) == 1
    assert (tmp_path / "images" / "style_grid_wct.png").is_file()
