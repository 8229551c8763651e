"""fit: auto on targets built to be different from the source: framed, inverted, off-centre,
colour, already right. A tiny Mf learns 'strokes framed like MNIST digits'; the label-free
choice must find the mapping that makes each target look like that again."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from aetl.data.fit import FitChoice, source_fit, target_fit
from aetl.data.framing import Fit, Levels, fit_images, unfit_images
from aetl.errors import AetlError
from aetl.models import build_model

SIZE, BOX, MARGIN = 16, 10, 3  # the source draws strokes in a 10x10 box framed in 16x16
AUTO = OmegaConf.create({"name": "folder", "fit": "auto", "margin": 4, "tone": "auto"})


def strokes(n, size, seed):
    """n images of two thick random line segments, ink 1 on 0, filling a size x size box."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    out = np.zeros((n, 1, size, size), np.float32)
    for img in out:
        for _ in range(2):
            (y0, x0), (y1, x1) = rng.uniform(0.5, size - 0.5, (2, 2))
            t = np.clip(((yy - y0) * (y1 - y0) + (xx - x0) * (x1 - x0)) / ((y1 - y0) ** 2 + (x1 - x0) ** 2 + 1e-9), 0, 1)
            dist = np.hypot(yy - (y0 + t * (y1 - y0)), xx - (x0 + t * (x1 - x0)))
            img[0] = np.maximum(img[0], np.clip(1.5 - dist, 0, 1))
    return torch.from_numpy(out)


@pytest.fixture(scope="module")
def mf():
    torch.manual_seed(0)
    x = fit_images(strokes(600, BOX, 0), SIZE, 1, Fit("frame", MARGIN))
    model = build_model(OmegaConf.create({"_target_": "aetl.models.mlp.MLPAE", "latent_dim": 12, "hidden": [96]}),
                        (1, SIZE, SIZE))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for step in range(400):
        batch = x[torch.randint(len(x), (64,))]
        loss = F.mse_loss(model(batch).recon, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), Levels.of(x)


def choose(mf, images, channels=1, spec=AUTO):
    model, reference = mf
    return target_fit(images, spec, SIZE, channels, model, reference)


def test_tight_crops_are_framed_and_the_score_separates_them(mf):
    choice = choose(mf, strokes(200, BOX, 1))
    assert choice.fit.geometry in ("frame", "crop") and choice.fit.margin in (2, 3) and not choice.fit.inverted
    best = choice.scores[choice.fit.label()]
    assert choice.scores["resize"] > 3 * best  # stretched to fill the frame, strokes look nothing like the source
    assert choice.scores["resize invert"] > 10 * best


def test_an_inverted_target_is_detected(mf):
    framed = fit_images(strokes(200, BOX, 2), SIZE, 1, Fit("frame", MARGIN))
    choice = choose(mf, 1 - framed)  # dark ink on white paper, already framed
    assert choice.fit.inverted and choice.fit.geometry == "resize"
    assert choice.scores["resize"] > 10 * choice.scores[choice.fit.label()]


def test_images_mf_cannot_explain_under_any_mapping_are_kept_as_they_are(mf):
    """Smooth random blobs: no geometry or tone makes them strokes; the lowest score would
    still pick some mapping, but none lets Mf explain half their variance."""
    blobs = F.interpolate(torch.rand(200, 1, 4, 4, generator=torch.Generator().manual_seed(5)), size=SIZE,
                          mode="bilinear", align_corners=False)
    choice = choose(mf, blobs)
    assert min(choice.scores.values()) > 0.5 and len(choice.scores) == 21  # every candidate scored and recorded
    assert choice.fit.label() == "resize"  # the simplest: as they are


def test_off_centre_content_is_cropped(mf):
    small = strokes(200, BOX, 3)
    corner = F.pad(small, (0, 14, 0, 14))  # in the top-left corner of a 24x24 canvas
    choice = choose(mf, corner)
    assert choice.fit.geometry == "crop" and not choice.fit.inverted
    assert choice.scores["frame m2"] > 2 * choice.scores[choice.fit.label()]


def test_colour_with_faint_ink_is_matched_to_the_source_levels(mf):
    ink, paper = torch.tensor([0.2, 0.3, 0.8]).view(1, 3, 1, 1), torch.tensor([0.9, 0.85, 0.6]).view(1, 3, 1, 1)
    x = strokes(200, BOX, 4)
    colour = x * ink + (1 - x) * paper  # blue ink on cream paper; the pair is grey
    choice = choose(mf, colour)
    assert choice.fit.tone in ("invert", "match") and choice.fit.inverted
    grey = fit_images(colour, SIZE, 1, choice.fit)
    assert grey[..., 0, :].mean() < 0.1  # the paper is now the source's black background


def test_a_target_that_already_looks_right_is_left_alone(mf):
    same = fit_images(strokes(200, BOX, 5), SIZE, 1, Fit("frame", MARGIN))
    choice = choose(mf, same)
    assert choice.fit == Fit("resize", 0, "keep", 1.0, 0.0)


def test_a_fixed_part_is_kept_and_only_the_rest_is_chosen(mf):
    framed = fit_images(strokes(100, BOX, 6), SIZE, 1, Fit("frame", MARGIN))
    spec = OmegaConf.create({"name": "folder", "fit": "resize", "margin": 4, "tone": "auto"})
    choice = choose(mf, 1 - framed, spec=spec)
    assert choice.fit.geometry == "resize" and choice.fit.inverted and set(choice.scores) == {
        "resize", "resize invert", "resize match"}
    fixed = OmegaConf.create({"name": "digits", "fit": "frame", "margin": 4, "tone": "keep"})
    assert target_fit(framed, fixed, SIZE, 1, None, Levels(0, 1)) == FitChoice(Fit("frame", 4, "keep"), {})


def test_the_source_is_never_refitted():
    assert source_fit(AUTO) == Fit("resize", 0, "keep")
    with pytest.raises(AetlError, match="data.source.tone=match"):
        source_fit(OmegaConf.create({"name": "x", "fit": "resize", "tone": "match"}))
    with pytest.raises(AetlError, match="unknown tone 'sepia' for x; choose auto, keep, invert, match"):
        source_fit(OmegaConf.create({"name": "x", "fit": "resize", "tone": "sepia"}))


@pytest.mark.parametrize("fit", [Fit("resize"), Fit("frame", 2), Fit("crop", 3), Fit("crop", 2, "invert", -1.0, 1.0),
                                 Fit("frame", 1, "match", 0.5, 0.25)])
def test_unfit_undoes_an_enlarging_fit_exactly(fit):
    x = F.pad((strokes(4, 6, 7) > 0.5).float(), (1, 3, 2, 0)) * 0.9  # 8x10, crisp content off-centre
    back = unfit_images(fit_images(x, SIZE, 1, fit), x, fit)
    assert back.shape == x.shape and torch.allclose(back, x, atol=1e-4)


def test_a_shrinking_fit_loses_detail_and_unfit_shows_it():
    x = strokes(8, 32, 8)
    lost = (unfit_images(fit_images(x, SIZE, 1, Fit("resize")), x, Fit("resize")) - x).square().mean()
    assert 0.005 < lost < 0.1
