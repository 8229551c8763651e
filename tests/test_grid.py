"""Labelled, padded image grids (aetl.infra.grid) and the run dir's grids."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aetl.infra.grid import BACKGROUND, labelled_grid
from aetl.infra.rundir import Run


def test_tiles_sit_in_a_padded_lattice_with_the_labels_before_and_above():
    tiles = [[torch.full((3, 10, 12), v) for v in (0.0, 0.5)], [torch.full((3, 10, 12), v) for v in (1.0, 0.25)]]
    plain = np.asarray(labelled_grid(tiles, pad=3))
    assert plain.shape == (3 + 2 * (10 + 3), 3 + 2 * (12 + 3), 3)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            y, x = 3 + i * 13, 3 + j * 15
            assert (plain[y:y + 10, x:x + 12] == round(float(tile[0, 0, 0]) * 255)).all()
    assert (plain[:3] == BACKGROUND).all() and (plain[:, 15:18] == BACKGROUND).all()  # padding, not image
    labelled = np.asarray(labelled_grid(tiles, ["first", "second"], ["a", "b"], pad=3))
    assert labelled.shape[0] > plain.shape[0] and labelled.shape[1] > plain.shape[1]
    text_band = labelled[: labelled.shape[0] - plain.shape[0]]
    assert (text_band != BACKGROUND).any()  # the column labels are drawn
    with pytest.raises(ValueError, match="same size"):
        labelled_grid([[torch.zeros(1, 4, 4), torch.zeros(1, 5, 4)]])


def test_recon_grid_says_which_row_is_which(tmp_path):
    run = Run(tmp_path)
    x = torch.rand(5, 1, 8, 8)
    run.save_recon_grid("r.png", x, 1 - x)
    with Image.open(tmp_path / "images" / "r.png") as img:
        assert json.loads(img.text["rows"]) == ["input", "reconstruction"] and json.loads(img.text["columns"]) == []
        assert img.mode == "RGB" and img.height == 4 + 2 * (16 + 4)
        grey = np.asarray(img.convert("L"))
    # the first input tile, drawn 2x, sits 4 pixels from the top, right of the label column
    left = img.width - 5 * (16 + 4)
    expected = np.kron((x[0, 0].numpy() * 255).round().astype(np.uint8), np.ones((2, 2), dtype=np.uint8))
    assert np.abs(grey[4:20, left:left + 16].astype(int) - expected).max() <= 1
