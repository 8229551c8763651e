"""Style transfer and latent-space augmentation."""

import numpy as np
import pytest
import torch

from aetl.apps.augment import augment, move_codes, run_app
from aetl.apps.style import adain, losses, refine, stylize, wct
from aetl.errors import AetlError
from aetl.models.conv import ConvAE
from aetl.models.fconv import FullyConvAE
from aetl.rundir import Run
from aetl.train import train


def maps(seed, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 6, 9, 11, generator=g) * scale + shift


def test_adain_gives_the_style_statistics():
    out = adain(maps(0), maps(1, shift=3.0, scale=0.2))
    style = maps(1, shift=3.0, scale=0.2)
    assert torch.allclose(out.mean((2, 3)), style.mean((2, 3)), atol=1e-4)
    assert torch.allclose(out.std((2, 3)), style.std((2, 3)), atol=1e-3)


def test_wct_gives_the_style_covariance():
    content = maps(0)
    mix = torch.tensor(np.random.default_rng(0).normal(size=(6, 6)), dtype=torch.float32)
    style = torch.einsum("ij,njhw->nihw", mix, maps(1)) + 2.0  # correlated channels
    out = wct(content, style)

    def cov(f):
        flat = f[0].flatten(1)
        return torch.cov(flat)

    assert torch.allclose(out.mean((2, 3)), style.mean((2, 3)), atol=1e-3)
    assert torch.allclose(cov(out), cov(style), atol=1e-2 * cov(style).abs().max())


@pytest.mark.parametrize("channels", [1, 3])
def test_stylize_keeps_the_content_size_and_alpha_zero_reconstructs(channels):
    torch.manual_seed(0)
    model = FullyConvAE((channels, 16, 16), latent_channels=4, channels=[4, 8]).eval()
    content, style = torch.rand(1, channels, 37, 51), torch.rand(1, channels, 20, 24)
    for method in ("adain", "wct"):
        out = stylize(model, content, style, method, alpha=0.7)
        assert out.shape == content.shape
    padded = torch.nn.functional.pad(content, (0, 1, 0, 3), mode="reflect")
    with torch.no_grad():
        expected = model(padded).recon[:, :, :37, :51]
    assert torch.allclose(stylize(model, content, style, "adain", alpha=0.0), expected, atol=1e-6)


def test_style_transfer_refuses_flat_codes_and_bad_settings():
    flat = ConvAE((1, 16, 16), latent_dim=4, channels=[4, 8])
    with pytest.raises(AetlError, match="needs a fully convolutional backbone"):
        stylize(flat, torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    model = FullyConvAE((1, 16, 16), latent_channels=4, channels=[4, 8])
    with pytest.raises(AetlError, match="unknown style method 'gram'"):
        stylize(model, torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), method="gram")


def test_lbfgs_refinement_lowers_the_objective():
    torch.manual_seed(0)
    model = FullyConvAE((3, 16, 16), latent_channels=4, channels=[4, 8]).eval()
    content, style = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24) ** 3
    start = stylize(model, content, style, "adain", 1.0)
    before, after = losses(model, start, content, style), losses(model, refine(model, start, content, style, 15),
                                                                       content, style)
    objective = [d["content_loss"] + d["style_loss"] for d in (before, after)]
    assert objective[1] < objective[0]


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
    with pytest.raises(AetlError, match="at least 2 labelled images per class"):
        move_codes(z[1:], y[1:], "interpolate", 1, 0.5, gen)


@pytest.mark.parametrize("mode", ["noise", "interpolate", "image"])
def test_augment_makes_images_of_the_input_shape(mode):
    model = ConvAE((1, 16, 16), latent_dim=4, channels=[4, 8])
    x, y = torch.rand(8, 1, 16, 16), torch.tensor([0, 1] * 4)
    new_x, new_y = augment(model, x, y, mode, amount=2, strength=0.5, seed=0)
    assert new_x.shape == (16, 1, 16, 16) and new_y.tolist() == y.tolist() * 2
    assert 0 <= new_x.min() and new_x.max() <= 1


def test_augment_app_compares_on_the_runs_own_splits(make_cfg, tmp_path):
    cfg = make_cfg()
    from aetl.data import load_pair
    from aetl.models import build_model

    summary = train(cfg, tmp_path / "run")
    model = build_model(cfg.model, (1, 16, 16), 4)
    from aetl.rundir import load_checkpoint
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "checkpoints" / "target.pt")["model"])
    pair = load_pair(cfg.data, cfg.seed, torch.device("cpu"))
    result = run_app(model, Run(tmp_path / "aug"), pair=pair, mode="noise", amount=3)
    assert result["target_acc"] == pytest.approx(summary["target_acc"])  # the same probe on the same splits
    assert result["n_augmented"] == 3 * 20 and 0 <= result["target_acc_augmented"] <= 1
    saved = np.load(tmp_path / "aug" / "augmented.npz")
    assert saved["images"].shape == (60, 1, 16, 16) and saved["images"].dtype == np.uint8
    assert np.bincount(saved["labels"]).tolist() == [15] * 4
    assert (tmp_path / "aug" / "images" / "augment_noise.png").is_file()
