"""target.pt is self-contained: it rebuilds its model (a ConcatAE too) without the run's
config, and `aetl stylize` / `aetl augment` work from a copy of it alone."""

import shutil

import numpy as np
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from PIL import Image

from aetl.api import trained_model
from aetl.commands.augment import augment
from aetl.commands.stylize import stylize
from aetl.commands.train import train
from aetl.infra.checkpoint import load_checkpoint
from aetl.strategies.concat import ConcatAE

CPU = torch.device("cpu")
FCONV = ["model=fconv", "model.channels=[4,8]", "model.latent_channels=4"]


def command_cfg(name, *overrides):
    with initialize_config_module("aetl.configs", version_base="1.3"):
        return compose(name, overrides=["device=cpu", *overrides])


def outputs(model, x):
    with torch.no_grad():
        return model(x).recon


def test_stylize_and_augment_from_a_copied_target_pt(make_cfg, tmp_path):
    summary = train(make_cfg(*FCONV, "cache_dir=null"), tmp_path / "run")
    trained, _ = trained_model(tmp_path / "run", CPU)
    x = torch.rand(3, *trained.in_shape)
    expected = outputs(trained, x)
    copy = tmp_path / "elsewhere" / "model.pt"
    copy.parent.mkdir()
    shutil.copy(tmp_path / "run" / "checkpoints" / "target.pt", copy)
    shutil.rmtree(tmp_path / "run")  # no config, no source.pt, no summary beside it

    model, record = trained_model(copy, CPU)
    assert torch.equal(outputs(model, x), expected)
    assert record["run"]["strategy"] == "finetune" and record["seed"] == 0 and record["fit"]["target_fit"] == "resize"

    Image.new("RGB", (21, 17), (200, 120, 40)).save(tmp_path / "content.png")
    Image.fromarray((np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / "style.png")
    styled = stylize(command_cfg("stylize", f"run={copy}", f"content={tmp_path / 'content.png'}",
                                 f"style={tmp_path / 'style.png'}", "app.size=null", "app.alphas=[1.0]",
                                 "app.refine_steps=0"), tmp_path / "sty")
    assert styled["style_levels"] == 3 and (tmp_path / "sty" / "images" / "stylized_wct_alpha1.png").is_file()

    augmented = augment(command_cfg("augment", f"run={copy}", "app.mode=noise", "app.amount=2"), tmp_path / "aug")
    assert augmented["strategy"] == "finetune" and augmented["n_target_train"] == summary["n_target_train"]
    assert augmented["n_augmented"] == 2 * summary["n_target_labelled"]
    assert augmented["target_acc"] == summary["target_acc"]  # the same pair, mapped by the run's fit
    assert augmented["target_mse"] is None  # a figure of summary.json, which did not travel with it


def test_a_concat_model_rebuilds_and_an_older_target_pt_still_loads(make_cfg, tmp_path):
    cfg = make_cfg("strategy=mixed", "strategy.concat.at=input", "cache_dir=null")
    train(cfg, tmp_path / "run")
    target = tmp_path / "run" / "checkpoints" / "target.pt"
    model, _ = trained_model(target, CPU)
    assert isinstance(model, ConcatAE) and not any(p.requires_grad for p in model.mf.parameters())
    x = torch.rand(3, *model.in_shape)
    expected = outputs(model, x)

    # As aetl wrote it before target.pt had a recipe and the frozen Mf was ConcatAE.source:
    # rebuilt from the run dir's config and source.pt.
    state = load_checkpoint(target)
    old = {"model": {k.replace("mf.", "source.", 1): v for k, v in state["model"].items()},
           "model_cfg": state["model_cfg"], "strategy": state["strategy"], "shape": state["shape"]}
    torch.save(old, target)
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")  # what Hydra writes beside it
    legacy, record = trained_model(tmp_path / "run", CPU)
    assert torch.equal(outputs(legacy, x), expected)
    assert record["run"]["strategy"] == "mixed"
