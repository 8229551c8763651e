"""Style transfer: feature transforms, the cascade, the checkerboard measure, refinement."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aetl.apps.checkerboard import checkerboard, periodic_share
from aetl.apps.refine import StyleLoss, gatys, refine
from aetl.apps.style import adain, depths, run_app, stylize, wct
from aetl.errors import AetlError
from aetl.infra.rundir import Run
from aetl.models.conv import ConvAE
from aetl.models.fconv import FullyConvAE


def maps(seed, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 6, 9, 11, generator=g) * scale + shift


def tiny(channels=3, **kw):
    torch.manual_seed(0)
    return FullyConvAE((channels, 16, 16), latent_channels=4, channels=[4, 8], **kw).eval()


def smooth(seed, size=32, channels=3):
    """A smooth random image (no power at the decoder's periods to speak of)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


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
    assert torch.allclose(out.mean((2, 3)), style.mean((2, 3)), atol=1e-3)
    cov_out, cov_style = torch.cov(out[0].flatten(1)), torch.cov(style[0].flatten(1))
    assert torch.allclose(cov_out, cov_style, atol=1e-2 * cov_style.abs().max())


@pytest.mark.parametrize("channels", [1, 3])
def test_stylize_keeps_the_content_size_and_alpha_zero_reconstructs(channels):
    model = tiny(channels)
    content, style = torch.rand(1, channels, 37, 51), torch.rand(1, channels, 20, 24)
    for method in ("adain", "wct"):
        for levels in (1, depths(model)):
            assert stylize(model, content, style, method, alpha=0.7, levels=levels).shape == content.shape
    padded = torch.nn.functional.pad(content, (0, 1, 0, 3), mode="reflect")
    with torch.no_grad():
        once = model(padded).recon
        twice = model(once).recon
    assert torch.allclose(stylize(model, content, style, "adain", alpha=0.0, levels=1), once[:, :, :37, :51], atol=1e-6)
    # the cascade's second pass re-encodes the first pass's result
    assert torch.allclose(stylize(model, content, style, "wct", alpha=0.0, levels=2), twice[:, :, :37, :51], atol=1e-5)


def test_each_cascade_level_moves_the_image():
    model = tiny()
    content, style = smooth(0), torch.rand(1, 3, 32, 32)
    one, two, three = (stylize(model, content, style, "wct", 1.0, levels) for levels in (1, 2, 3))
    assert depths(model) == 3  # the code and the two stride-2 levels' ReLUs
    assert (one - two).abs().max() > 1e-3 and (two - three).abs().max() > 1e-3


def test_style_transfer_refuses_flat_codes_and_bad_settings():
    flat = ConvAE((1, 16, 16), latent_dim=4, channels=[4, 8])
    with pytest.raises(AetlError, match="needs a fully convolutional backbone"):
        stylize(flat, torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    model = tiny(1)
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(AetlError, match="unknown app.method 'gram'; choose adain or wct"):
        stylize(model, x, x, method="gram")
    with pytest.raises(AetlError, match="app.levels must be 1 to 3 for this backbone"):
        stylize(model, x, x, levels=4)
    with pytest.raises(AetlError, match=r"app.alphas must lie in \[0, 1\]"):
        stylize(model, x, x, alpha=1.5)


def test_checkerboard_sees_periods_2_and_4_and_nothing_else():
    image = smooth(1, size=64)
    assert checkerboard(image, image) == pytest.approx(1.0)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    for period, expect_grid in ((2, True), (4, True), (3, False), (5, False)):
        pattern = 0.03 * torch.cos(2 * torch.pi * xx / period) * torch.cos(2 * torch.pi * yy / period)
        ratio = checkerboard((image + pattern).clamp(0, 1), image)
        assert (ratio > 50) == expect_grid, (period, ratio)
    assert periodic_share(torch.full((1, 3, 8, 8), 0.5)) == 0.0  # no power at all


def test_the_resize_decoder_draws_no_grid_where_the_transposed_one_does():
    """A flat code decodes to a flat image through nearest-neighbour resizing and 3x3
    convolutions (but for the border), but not through stride-2 transposed convolutions,
    whose kernels cover alternate pixels with different taps."""
    code = torch.full((1, 4, 16, 16), 0.3)
    with torch.no_grad():
        resized = tiny(upsample="resize").decode(code)[..., 8:-8, 8:-8]
        transposed = tiny(upsample="transpose").decode(code)[..., 8:-8, 8:-8]
    assert resized.std((2, 3)).max() < 1e-5 < transposed.std((2, 3)).min()  # per channel
    assert periodic_share(transposed) > 0.5


def test_refinement_lowers_the_objective_and_a_heavy_style_weight_lowers_the_style_loss():
    model = tiny()
    content, style = smooth(0), torch.rand(1, 3, 32, 32) ** 3
    loss = StyleLoss(model, content, style)
    start = stylize(model, content, style, "wct", 1.0)
    before = loss.values(start)
    for weight in (1.0, 100.0):
        after = loss.values(refine(model, start, loss, steps=20, style_weight=weight).image)
        assert after["content_loss"] + weight * after["style_loss"] < before["content_loss"] + weight * before["style_loss"]
    assert after["style_loss"] < 0.8 * before["style_loss"]
    assert [p.requires_grad for p in model.parameters()] == [True] * len(list(model.parameters()))


def test_refinement_pays_for_grid_power_above_the_contents():
    model = tiny()
    content, style = smooth(0), torch.rand(1, 3, 32, 32) ** 3
    loss = StyleLoss(model, content, style)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    gridded = (content + 0.05 * torch.cos(torch.pi * xx) * torch.cos(torch.pi * yy)).clamp(0, 1).requires_grad_(True)
    assert loss.grid(content).item() == 0.0  # no more grid than the content has: free
    penalty = loss.grid(gridded)
    assert penalty.item() > 10
    penalty.backward()
    step = (gridded - 1e-4 * gridded.grad / gridded.grad.norm()).detach()
    assert loss.grid(step).item() < penalty.item()  # the gradient points away from the grid
    flat = torch.full((1, 3, 32, 32), 0.5)  # no grid power at all: the charge stays finite
    noisy = flat + 1e-3 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert 0 < StyleLoss(model, flat, style).grid(noisy).item() < 1e3


def test_gatys_starts_at_the_content_and_trades_content_for_style():
    model = tiny()
    content, style = smooth(0), torch.rand(1, 3, 32, 32) ** 3
    loss = StyleLoss(model, content, style)
    result = gatys(content, loss, style_weight=10.0, max_steps=60)
    start, end = loss.values(content), loss.values(result.image)
    assert start["content_loss"] == 0.0 and end["content_loss"] > 0
    assert end["style_loss"] < 0.5 * start["style_loss"]
    assert 1 < result.steps <= 60 and result.image.shape == content.shape


def test_style_app_writes_the_results_the_losses_and_a_labelled_grid(tmp_path):
    Image.fromarray((smooth(3, 40)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)[:, :36]).save(tmp_path / "c.png")
    Image.fromarray((np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / "s.png")
    result = run_app(tiny(), Run(tmp_path / "run"), content=str(tmp_path / "c.png"), style=str(tmp_path / "s.png"),
                     alphas=(0.5, 1.0), levels=2, size=None, refine_steps=4)
    records = result["style_results"]
    assert [r["alpha"] for r in records] == [0.5, 1.0] and result["style_levels"] == 2
    for r in records:
        assert {"seconds", "refine_seconds", "content_loss_before", "style_loss_after", "checkerboard_before",
                "checkerboard_after", "speckle_before", "speckle_after"} <= set(r)
    images = tmp_path / "run" / "images"
    assert Image.open(images / "stylized_wct_alpha0.5.png").size == (36, 40)
    grid = Image.open(images / "style_grid_wct.png")
    assert json.loads(grid.text["columns"]) == ["content", "style", "alpha 0.5", "alpha 1"]
    assert json.loads(grid.text["rows"]) == ["feed-forward", "+ 4 L-BFGS steps"]
    assert grid.height > 2 * 40 and grid.width > 4 * 36  # two rows of four tiles, padded and labelled
    with pytest.raises(AetlError, match=r"app.alphas must lie in \[0, 1\]"):
        run_app(tiny(), Run(tmp_path / "bad"), content=str(tmp_path / "c.png"), style=str(tmp_path / "s.png"),
                alphas=(0.5, 2.0), size=None)
    assert not (tmp_path / "bad" / "images").exists()  # refused before anything was written
    with pytest.raises(AetlError, match="cannot read image 'nowhere.png'.*give skimage:NAME, sklearn:FILE or an image"):
        run_app(tiny(), Run(tmp_path / "bad"), content="nowhere.png", style=str(tmp_path / "s.png"))


def test_a_folder_of_your_own_pictures_joins_the_crops(tmp_path):
    from aetl.data.domains.crops import load

    (tmp_path / "mine").mkdir()
    for k in range(2):
        Image.fromarray(np.full((80, 100, 3), 60 * k, dtype=np.uint8)).save(tmp_path / "mine" / f"p{k}.png")
    (tmp_path / "mine" / "notes.txt").write_text("not an image")
    domain = load(["skimage:coffee"], n=30, size=16, scale=0.25, extra=[str(tmp_path / "mine")])
    assert domain.classes == ["coffee", "p0", "p1"] and np.bincount(domain.labels).tolist() == [10, 10, 10]
    assert (domain.images[domain.labels == 2] == 60).all()  # crops of p1.png, stored as uint8
    (tmp_path / "empty").mkdir()
    with pytest.raises(AetlError, match="no images in .*empty"):
        load(["skimage:coffee"], n=4, size=16, extra=[str(tmp_path / "empty")])
