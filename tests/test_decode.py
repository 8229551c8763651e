"""Decoding a folder's files: every image mode, EXIF orientation, oversized images, all cores."""

import numpy as np
import pytest
from PIL import Image

from aetl.data.domains import folder
from aetl.data.domains.decode import BadImage, decode_into, read
from aetl.errors import AetlError

SIZE = 8


def _ramp(dtype, top):
    """An 8x8 horizontal ramp from 0 to top."""
    return np.tile(np.linspace(0, top, SIZE), (SIZE, 1)).astype(dtype)


def _save(tmp_path, name, img, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


@pytest.mark.parametrize("make, ext, grey", [
    (lambda: Image.fromarray(_ramp(np.uint8, 255), "L"), "png", True),
    (lambda: Image.fromarray(_ramp(np.uint8, 255), "L").convert("RGB"), "png", False),
    (lambda: Image.fromarray(_ramp(np.uint8, 255), "L").convert("P"), "gif", True),  # a grey palette
    (lambda: Image.fromarray(_ramp(np.uint8, 255), "L").convert("CMYK"), "tif", False),
    (lambda: Image.fromarray(_ramp(np.uint16, 65535)), "png", True),  # I;16: 16-bit grey
    (lambda: Image.fromarray(_ramp(np.float32, 1.0), "F"), "tif", True),
    (lambda: Image.fromarray(_ramp(np.float32, 1.0) * 4000 - 1000, "F"), "tif", True),  # stretched min..max
])
def test_every_mode_is_scaled_by_its_real_range(tmp_path, make, ext, grey):
    img = make()
    path = _save(tmp_path, f"ramp.{ext}", img)
    assert Image.open(path).mode == img.mode
    out = read(path, SIZE)
    assert out.dtype == np.uint8 and out.shape == ((SIZE, SIZE) if grey else (SIZE, SIZE, 3))
    row = out[0] if grey else out[0].mean(1)
    # the ramp runs from black to white whatever the mode's depth (never clipped at 255)
    assert row[0] <= 2 and row[-1] >= 253 and np.all(np.diff(row.astype(int)) >= 0)


def test_32_bit_integer_images_by_their_declared_depth(tmp_path):
    half = Image.fromarray(np.full((SIZE, SIZE), 2 ** 31, np.int64).astype(np.int32) - 1)  # mode I, 32 bits
    assert read(_save(tmp_path, "half.tif", half), SIZE).mean() == pytest.approx(127.5, abs=1)
    sixteen = Image.fromarray(np.full((SIZE, SIZE), 65535, np.int32))  # in memory: no declared depth, so 16 bits
    from aetl.data.domains.decode import _scaled

    assert _scaled(sixteen).min() == 255


def test_one_bit_images(tmp_path):
    bits = Image.fromarray(_ramp(np.uint8, 255) > 127).convert("1")
    out = read(_save(tmp_path, "bits.png", bits), SIZE)
    assert set(np.unique(out)) <= {0, 255} and out[0, 0] == 0 and out[0, -1] == 255


@pytest.mark.parametrize("mode, ext", [("LA", "png"), ("RGBA", "png"), ("PA", "tif"), ("P", "png")])
def test_transparency_is_composited_onto_white(tmp_path, mode, ext):
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., :3] = (200, 30, 30)
    rgba[:, SIZE // 2:, 3] = 255  # the left half transparent, the right half opaque red
    img = Image.fromarray(rgba, "RGBA")
    img = img.convert(mode) if mode != "P" else img.convert("RGB").convert("P")
    kwargs = {}
    if mode == "P":  # a palette entry marked transparent: the left half's
        img.putpalette([0, 0, 0] * 256)
        img.putdata([0 if x < SIZE // 2 else 1 for _ in range(SIZE) for x in range(SIZE)])
        img.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
        kwargs = {"transparency": 0}
    path = _save(tmp_path, f"a.{ext}", img, **kwargs)
    assert Image.open(path).mode == mode
    out = read(path, SIZE).astype(int)
    left, right = out[:, :2], out[:, -2:]
    assert (left >= 254).all()  # transparent: white, as a viewer shows it
    if mode in ("LA",):
        assert (right < 254).all() and out.ndim == 2
    else:
        assert out.ndim == 3 and abs(right[..., 0].mean() - 200) <= 2 and abs(right[..., 1].mean() - 30) <= 2


def test_photos_are_turned_upright_by_their_exif_orientation(tmp_path):
    stored = np.zeros((10, 20), np.uint8)
    stored[:, 10:] = 255  # left half black, right half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(tmp_path, "phone.png", Image.fromarray(stored), exif=exif)
    out = read(path, SIZE)
    assert out[:2].max() == 0 and out[-2:].min() == 255  # displayed: the black half on top
    plain = read(_save(tmp_path, "plain.png", Image.fromarray(stored)), SIZE)
    assert plain[:, :2].max() == 0 and plain[:, -2:].min() == 255


def test_oversized_images_are_skipped_like_unreadable_ones(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    Image.new("L", (16, 16), 50).save(tmp_path / "a_big.png")  # 256 pixels: fine
    Image.new("L", (20, 20), 50).save(tmp_path / "b_bigger.png")  # 400: over the limit
    Image.new("L", (30, 30), 50).save(tmp_path / "c_bomb.png")  # 900: over twice the limit, PIL refuses it
    (tmp_path / "d_broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(BadImage, match="oversized: 20x20 pixels, over the decompression-bomb limit of 300"), \
            pytest.warns(Image.DecompressionBombWarning):  # PIL's own; decode_into quiets it
        read(tmp_path / "b_bigger.png", SIZE)
    with pytest.raises(BadImage, match="oversized: .*900 pixels.*"):
        read(tmp_path / "c_bomb.png", SIZE)
    d = folder.load(str(tmp_path), SIZE)
    assert len(d.images) == 1 and d.images.shape[1] == 1
    assert "skipped 3 unreadable entries" in caplog.text and "b_bigger.png (oversized" in caplog.text
    with pytest.raises(AetlError, match=r"3 unreadable entries in .*: b_bigger.png \(oversized"):
        folder.load(str(tmp_path), SIZE, skip_bad=False)


def test_threads_decode_what_one_thread_decodes(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        mode = "RGB" if i % 3 else "L"
        shape = (12, 12, 3) if mode == "RGB" else (12, 12)
        paths.append(_save(tmp_path, f"{i:02d}.png", Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)))
    one, many = (np.zeros((40, 3, SIZE, SIZE), np.uint8) for _ in range(2))
    assert decode_into(paths, SIZE, one, workers=1) == ({}, True)
    assert decode_into(paths, SIZE, many, workers=4) == ({}, True)
    assert np.array_equal(one, many) and one.any()
    assert np.array_equal(one[0, 0], one[0, 2])  # a grey image fills all three channels
