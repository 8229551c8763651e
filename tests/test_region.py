"""Regional style transfer at the content's own size: boxes, the feathered paste, the auto box,
extreme shapes, the seam and speckle measures."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aetl.apps.checkerboard import checkerboard, speckle
from aetl.apps.region import locate, parse_boxes, paste, seam
from aetl.apps.style import StyleTransfer
from aetl.errors import AetlError
from aetl.infra.rundir import Run
from aetl.models.fconv import FullyConvAE


def tiny():
    torch.manual_seed(0)
    return FullyConvAE((3, 16, 16), latent_channels=4, channels=[4, 8]).eval()


def save(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def photo(h, w, seed=0):
    """A smooth random colour picture, uint8 (H, W, 3)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(1, h // 8), max(1, w // 8), generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture
def images(tmp_path):
    style = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    return save(tmp_path / "c.png", photo(120, 90)), save(tmp_path / "s.png", style)


def test_boxes_in_pixels_shares_or_lists_and_one_line_for_a_bad_one():
    assert parse_boxes([10, 20, 50, 70], 90, 120) == [(10, 20, 50, 70)]
    assert parse_boxes([0.1, 0.25, 0.5, 1.0], 90, 120) == [(9, 30, 45, 120)]
    assert parse_boxes([0, 0, 1, 1], 90, 120) == [(0, 0, 90, 120)]  # every value in [0, 1]: shares
    assert parse_boxes([[0, 0, 0.5, 0.5], [60, 60, 200, 200]], 90, 120) == [(0, 0, 45, 60), (60, 60, 90, 120)]
    for bad, match in [([10, 20, 5, 70], "holds no pixel"), ([1, 2, 3], r"must be \[x0, y0, x1, y1\]"),
                       ("nowhere", r"must be \[x0, y0, x1, y1\], a list of them or auto"), ([], "a list of them"),
                       ([200, 200, 300, 300], "holds no pixel of the 90x120 content")]:
        with pytest.raises(AetlError, match=match):
            parse_boxes(bad, 90, 120)


def test_only_the_box_changes_ys_is_interpolated_to_its_size_and_the_edge_is_feathered():
    content = torch.rand(1, 3, 100, 140)
    ys = torch.rand(1, 3, 16, 16)
    box = (30, 20, 110, 80)
    out = paste(content, ys, box, band=6)
    outside = torch.ones(100, 140, dtype=torch.bool)
    outside[20:80, 30:110] = False
    assert torch.equal(out[:, :, outside], content[:, :, outside])  # bit for bit
    up = torch.nn.functional.interpolate(ys, size=(60, 80), mode="bilinear", align_corners=False)
    assert torch.allclose(out[:, :, 26:74, 36:104], up[:, :, 6:54, 6:74])  # inside the band: ys at the box's size
    edge = out[:, :, 50, 30] - content[:, :, 50, 30]
    assert (edge.abs() < (up[:, :, 30, 0] - content[:, :, 50, 30]).abs() + 1e-6).all()  # the ramp starts low
    whole = paste(content, ys, (0, 0, 140, 100), band=6)  # edges on the image's border: no ramp there
    assert torch.allclose(whole, torch.nn.functional.interpolate(ys, size=(100, 140), mode="bilinear",
                                                                 align_corners=False).clamp(0, 1))


def test_the_app_keeps_every_pixel_outside_box_and_band_and_records_the_box(tmp_path, images):
    content, style = images
    result = StyleTransfer(content=content, style=style, alphas=(1.0,), size=32, box=[20, 30, 70, 100],
                           feather=0.2)(tiny(), Run(tmp_path / "run"))
    out = np.asarray(Image.open(tmp_path / "run" / "images" / "stylized_wct_alpha1.png"))
    original = np.asarray(Image.open(content))
    assert out.shape == original.shape == (120, 90, 3)  # the content's own size, not app.size
    changed = (out != original).any(2)
    assert changed[30:100, 20:70].mean() > 0.5 and not changed[:30].any() and not changed[100:].any() \
        and not changed[:, :20].any() and not changed[:, 70:].any()
    assert result["style_boxes"] == [[20, 30, 70, 100]] and result["style_output_size"] == [90, 120]
    assert result["style_feather_px"] == 10 and result["style_peak_memory_mb"] > 0
    record = result["style_results"][0]
    assert {"seam", "seam_hard", "checkerboard", "speckle", "seconds"} <= set(record)
    grid = Image.open(tmp_path / "run" / "images" / "style_grid_wct.png")
    assert json.loads(grid.text["columns"]) == ["content", "style", "alpha 1"]


def test_background_keeps_the_box_and_auto_finds_an_object_on_a_texture(tmp_path):
    rng = np.random.default_rng(0)
    scene = (rng.random((96, 128, 3)) * 60 + 20).astype(np.uint8)  # a dark, fine texture
    scene[30:70, 70:110] = photo(40, 40, seed=2) // 2 + 128  # a bright, smooth object
    content = save(tmp_path / "scene.png", scene)
    style = save(tmp_path / "s.png", photo(24, 24, seed=5))
    x0, y0, x1, y1 = (round(v * s) for v, s in zip(locate(tiny(), torch.from_numpy(scene / 255.0).permute(2, 0, 1)
                                                                  [None].float()), (128, 96, 128, 96)))
    inter = max(0, min(x1, 110) - max(x0, 70)) * max(0, min(y1, 70) - max(y0, 30))
    assert inter / ((x1 - x0) * (y1 - y0) + 40 * 40 - inter) > 0.6  # IoU with the pasted object's box
    result = StyleTransfer(content=content, style=style, alphas=(1.0,), size=64, box="auto",
                           region="background")(tiny(), Run(tmp_path / "run"))
    (bx0, by0, bx1, by1), = result["style_boxes"]
    assert result["style_box_auto"] and result["style_region"] == "background"
    out = np.asarray(Image.open(tmp_path / "run" / "images" / "stylized_wct_alpha1.png"))
    assert np.array_equal(out[by0:by1, bx0:bx1], scene[by0:by1, bx0:bx1])  # the object is the content's own
    assert (out != scene).any(2).mean() > 0.5


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1), (2, 2), (10, 8000), (1, 1)])
def test_extreme_shapes_give_an_image_or_one_clear_line(tmp_path, images, shape):
    content = save(tmp_path / "x.png", (np.random.default_rng(0).random(shape + (3,)) * 255).astype(np.uint8))
    for box in (None, [0, 0, 1, 1]):
        app = StyleTransfer(content=content, style=images[1], alphas=(1.0,), box=box, refine_steps=2)
        result = app(tiny(), Run(tmp_path / str(box)))
        size = Image.open(tmp_path / str(box) / "images" / "stylized_wct_alpha1.png").size
        assert min(size) >= 1 and json.dumps(result, allow_nan=False)
        if box is not None:  # the content's own size, the long side at most app.max_side
            assert size == (min(shape[1], 4096), shape[0]) or max(size) == 4096
    with pytest.raises(AetlError, match="app.box=auto needs a content at least 8 pixels on each side"):
        StyleTransfer(content=content, style=images[1], box="auto")(tiny(), Run(tmp_path / "auto"))


def test_seam_and_speckle_see_what_they_should():
    g = torch.Generator().manual_seed(0)
    content = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear")
    bright = torch.ones(1, 3, 8, 8)
    hard, soft = paste(content, bright, (16, 16, 48, 48), 0), paste(content, bright, (16, 16, 48, 48), 8)
    assert seam(hard, content, [(16, 16, 48, 48)], 8) > 1.5 * seam(soft, content, [(16, 16, 48, 48)], 8)
    assert seam(content, content, [(16, 16, 48, 48)], 8) == 1.0
    noisy = (content + 0.05 * torch.randn(content.shape, generator=g)).clamp(0, 1)
    assert speckle(noisy, content) > 3 and speckle(content, content) == 1.0
    assert checkerboard(noisy, content) < speckle(noisy, content)  # the grid measure sees little of it


def test_the_schema_takes_a_box_a_list_of_boxes_or_auto_and_names_them_otherwise():
    import typing

    from aetl.infra.schema import problem, spec_of

    spec = spec_of(typing.get_type_hints(StyleTransfer, include_extras=True)["box"])
    for fine in ([0, 0, 1, 1], [10.5, 2, 30, 40], [[0, 0, 0.5, 0.5], [1, 2, 3, 4]], "auto", None):
        assert problem("app.box", fine, spec) is None, fine
    line = problem("app.box", "nowhere", spec)
    assert line == ("app.box must be a list ([a, b, ...]), each item a number >= 0, a list ([a, b, ...]), each item a "
                    "list ([a, b, ...]), each item a number >= 0 or auto or null, got 'nowhere'; fix it in the override "
                    "or config")
