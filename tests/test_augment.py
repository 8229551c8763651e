"""Augmentation: code-space moves, pixel shifts, source images decoded by the transferred AE."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aetl.apps.augment import Augment, augment, move_codes, move_pixels, restyled, run_app, source_sample
from aetl.commands.train import train
from aetl.data.pair import load_pair
from aetl.errors import AetlError
from aetl.infra.checkpoint import load_checkpoint
from aetl.infra.rundir import Run
from aetl.models import build_model
from aetl.models.conv import ConvAE


def test_move_codes_keeps_labels_and_identical_codes_interpolate_to_themselves():
    z = torch.tensor([[1.0, 2.0], [1.0, 2.0], [5.0, 5.0], [6.0, 5.0]])
    y = torch.tensor([0, 0, 1, 1])
    gen = torch.Generator().manual_seed(0)
    new, new_y = move_codes(z, y, "interpolate", amount=3, strength=1.0, gen=gen)
    assert new.shape == (12, 2) and new_y.tolist() == y.tolist() * 3
    assert torch.equal(new[0], z[0]) and torch.equal(new[1], z[1])  # the neighbour is the same code
    assert ((new[2:4, 0] >= 5) & (new[2:4, 0] <= 6)).all()  # between the two class-1 codes
    far, _ = move_codes(z, y, "extrapolate", amount=1, strength=1.0, gen=gen)
    assert far[2, 0] <= 5 and far[3, 0] >= 6
    noisy, _ = move_codes(z, y, "noise", amount=2, strength=0.5, gen=gen)
    assert not torch.equal(noisy[:4], z)


def test_one_image_per_class_moves_at_most_halfway_to_the_nearest_other_class():
    z = torch.tensor([[0.0, 0.0], [4.0, 0.0], [10.0, 0.0]])
    y = torch.tensor([0, 1, 2])
    gen = torch.Generator().manual_seed(0)
    new, new_y = move_codes(z, y, "interpolate", amount=200, strength=1.0, gen=gen)
    x0, x1 = new[new_y == 0, 0], new[new_y == 1, 0]
    assert 0 <= x0.min() and x0.max() <= 2.0 and x0.max() > 1.5  # towards class 1, never past the midpoint
    assert 2.0 <= x1.min() and x1.max() <= 4.0  # class 1's nearest is class 0 (4 away), not class 2 (6)
    away, away_y = move_codes(z, y, "extrapolate", amount=50, strength=1.0, gen=gen)
    assert (away[away_y == 0, 0] <= 0).all() and (away[away_y == 2, 0] >= 10).all()
    with pytest.raises(AetlError, match="at least 2 labelled images"):
        move_codes(z[:1], y[:1], "interpolate", 1, 0.5, gen)


def test_move_pixels_shifts_each_copy_by_its_own_offset():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    new, new_y = move_pixels(x, torch.tensor([3]), amount=60, strength=0.0, gen=torch.Generator().manual_seed(0))
    assert new.shape == (60, 1, 9, 9) and new_y.tolist() == [3] * 60
    where = {tuple(torch.nonzero(img[0])[0].tolist()) for img in new}
    assert len(where) > 10 and all(2 <= r <= 6 and 2 <= c <= 6 for r, c in where)  # up to 2 pixels off


def test_restyled_codes_take_the_reference_statistics():
    g = torch.Generator().manual_seed(0)
    z, reference = torch.randn(50, 6, generator=g) * 3 + 1, torch.randn(40, 6, generator=g) * 0.5 - 2
    out = restyled(z, reference)
    assert torch.allclose(out.mean(0), reference.mean(0), atol=1e-5)
    assert torch.allclose(out.std(0, unbiased=False), reference.std(0, unbiased=False), atol=1e-5)
    assert torch.allclose(torch.corrcoef(out.T), torch.corrcoef(z.T), atol=1e-5)  # only shifted and scaled


@pytest.mark.parametrize("mode", ["noise", "interpolate", "image", "source"])
def test_augment_makes_images_of_the_input_shape(mode):
    model = ConvAE((1, 16, 16), latent_dim=4, channels=[4, 8])
    x, y = torch.rand(8, 1, 16, 16), torch.tensor([0, 1] * 4)
    new_x, new_y = augment(model, x, y, Augment(mode, amount=2, strength=0.5, seed=0), target=torch.rand(5, 1, 16, 16))
    assert new_x.shape == (16, 1, 16, 16) and new_y.tolist() == y.tolist() * 2
    assert 0 <= new_x.min() and new_x.max() <= 1


def test_augment_refuses_bad_settings(trained, tmp_path):
    model = ConvAE((1, 16, 16), latent_dim=4, channels=[4, 8])
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 0, 1])
    with pytest.raises(AetlError, match="unknown augment mode 'mixup'; choose one of noise, interpolate, "
                                        "extrapolate, image, source"):
        augment(model, x, y, Augment("mixup", 1, 0.5, seed=0))
    with pytest.raises(AetlError, match="augment needs amount >= 1 and strength >= 0, got 0 and 0.5"):
        augment(model, x, y, Augment("noise", 0, 0.5, seed=0))
    _, _, model, pair = trained("data.target.labels_per_class=0")
    with pytest.raises(AetlError, match="augmentation needs labelled target images; set data.target."
                                        "labels_per_class >= 1 or use app.mode=source"):
        run_app(model, Run(tmp_path / "aug"), pair=pair, mode="noise")
    assert not (tmp_path / "aug" / "augmented.npz").exists()


@pytest.fixture
def trained(make_cfg, tmp_path):
    """A finished tiny run, its transferred model and its pair: (cfg, summary, model, pair)."""

    def make(*overrides):
        cfg = make_cfg(*overrides)
        summary = train(cfg, tmp_path / "run")
        state = load_checkpoint(tmp_path / "run" / "checkpoints" / "target.pt")
        model = build_model(cfg.model, (1, 16, 16), state["model"]["head.weight"].shape[0])
        model.load_state_dict(state["model"])
        return cfg, summary, model.eval(), load_pair(cfg.data, cfg.seed, torch.device("cpu"))

    return make


def test_augment_app_compares_on_the_runs_own_splits(trained, tmp_path):
    cfg, summary, model, pair = trained()
    result = run_app(model, Run(tmp_path / "aug"), pair=pair, mode="noise", amount=3)
    assert result["target_acc"] == pytest.approx(summary["target_acc"])  # the same probe on the same splits
    assert result["n_augmented"] == 3 * 20 and 0 <= result["target_acc_augmented"] <= 1
    saved = np.load(tmp_path / "aug" / "augmented.npz")
    assert saved["images"].shape == (60, 1, 16, 16) and saved["images"].dtype == np.uint8
    assert np.bincount(saved["labels"]).tolist() == [15] * 4
    grid = Image.open(tmp_path / "aug" / "images" / "augment_noise.png")
    assert json.loads(grid.text["rows"]) == ["original", "new 1", "new 2", "new 3"]
    assert sorted(json.loads(grid.text["columns"])[:4]) == [f"class class{c}" for c in range(4)]


def test_the_mix_is_chosen_on_validation_and_none_is_a_choice(trained, tmp_path):
    from aetl.apps.augment import Augment, used

    assert [used(s, 10, 600) for s in (0, 0.25, 0.5, 0.75, 1)] == [0, 3, 10, 30, 600]
    assert used(0.5, 0, 600) == 600  # no labelled image: all of them
    cfg, summary, model, pair = trained()
    result = Augment(mode="noise", amount=3, mix=(0.0, 0.5, 1.0))(model, Run(tmp_path / "aug"), pair=pair)
    tried = result["augment_mix_val_acc"]
    assert set(tried) == set(result["augment_mix_test_acc"]) == {"0", "0.5", "1"}
    assert tried["0"] == pytest.approx(result["target_val_acc"])
    assert result["augment_mix_test_acc"][f"{result['augment_mix']:g}"] == pytest.approx(result["target_acc_augmented"])
    best = max(tried.values())
    assert result["augment_mix"] == min(float(k) for k, v in tried.items() if v == best)  # ties: the smaller share
    assert result["target_val_acc_augmented"] == pytest.approx(best)
    assert result["n_augmented_used"] == used(result["augment_mix"], 20, 60)
    # where the new images hurt on validation, none is chosen and the augmented accuracy is the run's own
    hurt = Augment(mode="noise", amount=3, strength=50.0, mix=(0.0, 1.0))(model, Run(tmp_path / "hurt"), pair=pair)
    if hurt["augment_mix_val_acc"]["1"] < hurt["augment_mix_val_acc"]["0"]:
        assert hurt["augment_mix"] == 0 and hurt["target_acc_augmented"] == pytest.approx(hurt["target_acc"])
    with pytest.raises(AetlError, match="app.mix is empty"):
        Augment(mode="noise", mix=())(model, Run(tmp_path / "none"), pair=pair)


def test_source_mode_adds_decoded_source_images_with_their_labels(trained, tmp_path):
    cfg, summary, model, pair = trained("data.target.labels_per_class=0")
    result = run_app(model, Run(tmp_path / "aug"), pair=pair, mode="source", amount=2, source_per_class=6)
    # no target labels: "without" is Mf's own classifier, as aetl train scored the run
    assert result["target_acc"] == pytest.approx(summary["target_acc"])
    assert result["n_augmented"] == 2 * 6 * 4 and 0 <= result["target_acc_augmented"] <= 1
    saved = np.load(tmp_path / "aug" / "augmented.npz")
    assert np.bincount(saved["labels"]).tolist() == [12] * 4
    # the new images are what the transferred AE makes of shifted source images: its own reconstructions
    new = torch.from_numpy(saved["images"]).float() / 255
    with torch.no_grad():
        again = model(new).recon
    assert (again - new).abs().mean() < (source_sample(pair, 6, 0).x - new[:24]).abs().mean()
    grid = Image.open(tmp_path / "aug" / "images" / "augment_source.png")
    assert json.loads(grid.text["rows"]) == ["source", "decoded by T's AE 1", "decoded by T's AE 2"]


def test_source_sample_is_balanced_and_refuses_other_classes(trained):
    _, _, _, pair = trained()
    drawn = source_sample(pair, 5, seed=3)
    assert torch.bincount(drawn.y).tolist() == [5] * 4
    assert torch.equal(drawn.x, source_sample(pair, 5, seed=3).x)
    pair.source.classes = ["cat", "dog"]
    with pytest.raises(AetlError, match="app.mode=source needs a source whose classes are the target's"):
        source_sample(pair, 5, seed=3)
