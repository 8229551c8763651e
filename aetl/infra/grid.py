"""Image grids that say what they show: tiles separated by padding, a label before
each row and above each column (PIL's default font), and the labels also stored as
PNG text ("rows", "columns": JSON lists), so a program can read them back."""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
FONT_SIZE = 12


def to_pil(image: torch.Tensor, zoom: int = 1) -> Image.Image:
    """One (C, H, W) image in [0, 1] as an RGB (3 channels) or L (1 channel) PIL image, zoomed."""
    array = image.detach().float().cpu().clamp(0, 1).mul(255).round().byte().numpy()
    img = Image.fromarray(array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1))
    if zoom != 1:
        img = img.resize((img.width * zoom, img.height * zoom), Image.Resampling.NEAREST)
    return img


def labelled_grid(rows: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str] = (),
                  col_labels: Sequence[str] = (), pad: int = 4, zoom: int = 1) -> Image.Image:
    """rows of (C, H, W) tiles in [0, 1], all the same size, as one RGB image with `pad`
    pixels between tiles and the labels given (either list may be empty)."""
    tiles = [[to_pil(t, zoom).convert("RGB") for t in row] for row in rows]
    tw, th = tiles[0][0].size
    if any(t.size != (tw, th) for row in tiles for t in row):
        raise ValueError("every tile of a grid must have the same size")
    font = ImageFont.load_default(size=FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max((measure.textbbox((0, 0), s, font=font)[2] for s in row_labels), default=-pad) + pad
    top = FONT_SIZE + pad if col_labels else 0
    cw = max([tw, *(measure.textbbox((0, 0), s, font=font)[2] for s in col_labels)])  # a column's width
    n_cols = max(len(row) for row in tiles)
    grid = Image.new("RGB", (left + pad + n_cols * (cw + pad), top + pad + len(tiles) * (th + pad)), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for j, label in enumerate(col_labels):
        draw.text((left + pad + j * (cw + pad), pad // 2), label, fill=INK, font=font)
    for i, row in enumerate(tiles):
        y = top + pad + i * (th + pad)
        if i < len(row_labels):
            draw.text((pad, y + max(0, (th - FONT_SIZE) // 2)), row_labels[i], fill=INK, font=font)
        for j, tile in enumerate(row):
            grid.paste(tile, (left + pad + j * (cw + pad), y))
    return grid


def png_info(row_labels: Sequence[str], col_labels: Sequence[str]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("rows", json.dumps(list(row_labels)))
    info.add_text("columns", json.dumps(list(col_labels)))
    return info
