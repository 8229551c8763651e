
import numpy as np
import pytest
import torch
from conftest import make_folder, write_idx
from PIL import Image

from aetl.data.domains import digits, folder, mnist
from aetl.data.framing import Fit, fit_images
from aetl.data.pair import fixed_splits, load_pair, sample_balanced, stratified_order, withhold_labels
from aetl.errors import AetlError

CPU = torch.device("cpu")


def test_stratified_order_prefixes_are_balanced():
    labels = np.repeat(np.arange(4), [30, 10, 20, 40])
    order = stratified_order(labels, np.random.default_rng(0))
    assert sorted(order) == list(range(100))
    assert np.bincount(labels[order[:40]]).tolist() == [10, 10, 10, 10]
    assert np.bincount(labels[order[:8]]).tolist() == [2, 2, 2, 2]


def test_fixed_splits_are_disjoint_and_ignore_the_run_seed():
    labels = np.repeat(np.arange(3), 50)
    test, val, rest = fixed_splits(labels, 30, 15, split_seed=0, role="target")
    assert len(set(test) | set(val) | set(rest)) == 150
    assert np.bincount(labels[test]).tolist() == [10, 10, 10]
    again = fixed_splits(labels, 30, 15, split_seed=0, role="target")
    assert all((a == b).all() for a, b in zip((test, val, rest), again))
    with pytest.raises(AetlError, match="2 image.s. cannot be split into test, validation and training images"):
        fixed_splits(labels[:2], 100, 50, 0, "target")


def test_budget_per_class_and_withheld_labels():
    labels = np.repeat(np.arange(5), 20)
    pool = np.arange(100)
    idx = sample_balanced(labels, pool, 25, np.random.default_rng(1))
    assert np.bincount(labels[idx]).tolist() == [5] * 5
    y = withhold_labels(labels, idx, 2, np.random.default_rng(1))
    assert np.bincount(y[y >= 0]).tolist() == [2] * 5
    assert ((y == -1) | (y == labels[idx])).all()
    with pytest.raises(AetlError, match=r"labels_per_class=6 but class '0' has only 5"):
        withhold_labels(labels, idx, 6, np.random.default_rng(1))
    with pytest.raises(AetlError, match="n_train=200"):
        sample_balanced(labels, pool, 200, np.random.default_rng(1))


def test_pair_test_split_is_fixed_across_seeds_and_train_is_not(make_cfg):
    cfg = make_cfg()
    a, b = load_pair(cfg.data, 0, CPU), load_pair(cfg.data, 1, CPU)
    assert torch.equal(a.target.test.x, b.target.test.x) and torch.equal(a.target.test.y, b.target.test.y)
    assert torch.equal(a.target.val.x, b.target.val.x)
    assert not torch.equal(a.target.train.x, b.target.train.x)
    assert len(a.target.train) == cfg.data.target.n_train == 40
    assert torch.bincount(a.target.train.labelled().y).tolist() == [5, 5, 5, 5]
    assert a.target.train.x.shape[1:] == a.shape == (1, 16, 16)
    # No training image is also a test image.
    flat_train, flat_test = a.target.train.x.flatten(1), a.target.test.x.flatten(1)
    assert torch.cdist(flat_train, flat_test).min() > 0


def test_fit_frame_matches_the_mnist_margin():
    x = torch.ones(2, 1, 8, 8)
    framed = fit_images(x * torch.tensor([1.0, 0.0]).view(2, 1, 1, 1).expand(2, 1, 8, 8).clone(), 28, 1,
                        Fit("frame", 4))
    assert framed.shape == (2, 1, 28, 28)
    # The border takes each image's own background (its edge): black around a black image...
    assert framed[1].sum() == 0
    dot = torch.zeros(1, 1, 8, 8)
    dot[..., 2:6, 2:6] = 1
    boxed = fit_images(dot, 28, 1, Fit("frame", 4))
    assert boxed[..., :4, :].sum() == 0 and boxed[..., :, -4:].sum() == 0 and boxed[..., 10:18, 10:18].min() > 0.99
    # ... and white around dark ink on white paper
    paper = fit_images(1 - dot, 28, 1, Fit("frame", 4))
    assert paper[..., :4, :].min() == 1 and paper[..., 10:18, 10:18].max() < 0.01
    assert fit_images(x, 28, 1, Fit("resize")).min() > 0.99
    assert fit_images(x, 16, 3, Fit("resize")).shape == (2, 3, 16, 16)
    rgb = torch.rand(2, 3, 8, 8)
    assert fit_images(rgb, 8, 1, Fit("resize")).shape == (2, 1, 8, 8)
    with pytest.raises(AetlError, match="unknown fit 'stretch'"):
        fit_images(x, 28, 1, Fit("stretch"))
    with pytest.raises(AetlError, match=r"margin 14 leaves no room in a 28x28 image; set data.<source\|target>.margin"):
        fit_images(x, 28, 1, Fit("frame", 14))


def test_bundled_domains():
    d = digits.load()
    assert d.images.shape == (1797, 1, 8, 8) and d.images.dtype == np.uint8 and d.images.max() == 255
    assert len(np.unique(d.images)) == 17  # the bundled 0..16 levels, each on the nearest of 0..255
    m = mnist.load()
    assert m.images.shape == (5000, 1, 28, 28) and np.bincount(m.labels).tolist() == [500] * 10
    assert m.images.dtype == np.uint8 and m.images.max() == 255


@pytest.mark.parametrize("layout,gz", [("", True), ("MNIST/raw", False)])
def test_mnist_from_idx_files(tmp_path, layout, gz):
    folder_ = tmp_path / layout
    folder_.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    write_idx(folder_ / f"train-images-idx3-ubyte{ext}", images, gz)
    write_idx(folder_ / f"train-labels-idx1-ubyte{ext}", np.array([7, 1, 2]), gz)
    d = mnist.load(root=str(tmp_path))
    assert d.images.shape == (3, 1, 28, 28) and d.labels.tolist() == [7, 1, 2]
    assert d.images.dtype == np.uint8 and np.array_equal(d.images[0, 0], images[0])


def test_idx_errors(tmp_path):
    with pytest.raises(AetlError, match="does not exist"):
        mnist.load(root=str(tmp_path / "nope"))
    with pytest.raises(AetlError, match="no IDX files"):
        mnist.load(root=str(tmp_path))
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28)), False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3), False)
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(AetlError, match="truncated"):
        mnist.load(root=str(tmp_path))


def test_folder_of_mixed_images_skips_bad_ones(tmp_path):
    for cls, colour in (("cats", "RGB"), ("dogs", "L")):
        (tmp_path / cls).mkdir()
        for i, size in enumerate([(10, 12), (30, 20)]):
            Image.new(colour, size, color=100 if colour == "L" else (200, 10, 10)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"not an image")
    d = folder.load(root=str(tmp_path), size=16)
    assert d.images.shape == (4, 3, 16, 16) and d.classes == ["cats", "dogs"]
    assert d.labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(AetlError, match=r"1 unreadable entry in .*: dogs/broken.jpg \(unreadable: not an image file "
                                        r"Pillow can identify\); remove or fix them, or set skip_bad=true"):
        folder.load(root=str(tmp_path), size=16, skip_bad=False)


def test_a_folder_as_people_have_it(tmp_path, caplog):
    """What operating systems and archivers leave is ignored; entries that cannot be read
    (a symlink loop, a dangling link, a socket, files that are not images) are skipped and
    named; empty classes and classes left without a readable image are named, not kept."""
    import socket

    for cls in ("0", "1", "2"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("L", (10, 10), 40 * i).save(tmp_path / cls / f"{i}.png")
    mac = tmp_path / "__MACOSX" / "0"
    mac.mkdir(parents=True)
    (mac / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # what an archive from a Mac holds
    (tmp_path / "0" / "._1.png").write_bytes(b"\x00\x05\x16\x07")
    for junk in (".DS_Store", "Thumbs.db", "desktop.ini", "1/.hidden.png"):
        (tmp_path / junk).write_bytes(b"junk")
    (tmp_path / ".thumbnails").mkdir()
    Image.new("L", (10, 10)).save(tmp_path / ".thumbnails" / "t.png")
    (tmp_path / "notes").mkdir()  # a sub-folder with no images: not a class
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    (tmp_path / "3").mkdir()  # a class whose only image is unreadable
    (tmp_path / "3" / "broken.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "1" / "loop_a.png").symlink_to(tmp_path / "1" / "loop_b.png")
    (tmp_path / "1" / "loop_b.png").symlink_to(tmp_path / "1" / "loop_a.png")
    (tmp_path / "2" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "2" / "s.png"))
    try:
        d = folder.load(root=str(tmp_path), size=8)
    finally:
        sock.close()
    assert d.classes == ["0", "1", "2"] and d.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert "sub-folders of" in caplog.text and "not classes: notes" in caplog.text
    assert "classes with no readable image" in caplog.text and "left out: 3" in caplog.text
    skipped = next(n for n in d.notes if n.startswith("skipped"))
    for entry in ("1/loop_a.png", "1/loop_b.png", "2/gone.png", "2/s.png", "3/broken.png"):
        assert entry in skipped or "more" in skipped
    assert skipped.startswith("skipped 5 unreadable entries") and "Too many levels of symbolic links" in skipped
    with pytest.raises(AetlError, match=r"5 unreadable entries in .*: 1/loop_a.png \(Too many levels of symbolic "
                                        r"links\).* and 2 more; remove or fix them, or set skip_bad=true"):
        folder.load(root=str(tmp_path), size=8, skip_bad=False)


def test_split_sizes_that_do_not_fit_a_small_domain_are_scaled_and_thin_classes_named(caplog):
    labels = np.repeat(np.arange(10), 30)  # ten classes of 30 images, under a pair's 500 + 200
    test, val, rest = fixed_splits(labels, 500, 200, 0, "target", [f"c{k}" for k in range(10)])
    assert (len(test), len(val), len(rest)) == (64, 26, 210)
    assert "300 images cannot hold n_test=500 + n_val=200; split 64 test / 26 validation / 210 training" in caplog.text
    assert fixed_splits(labels, 30, 15, 0, "target")[0].tolist() == fixed_splits(labels, 30, 15, 0, "target")[0].tolist()
    thin = np.array([*np.repeat(np.arange(3), 20), 3])  # class "rare" has one image
    fixed_splits(thin, 10, 5, 0, "source", ["a", "b", "c", "rare"])
    assert "too few images to reach the" in caplog.text and ": rare (61 images in all)" in caplog.text


def test_folder_errors(tmp_path):
    with pytest.raises(AetlError, match="does not exist"):
        folder.load(root=str(tmp_path / "missing"), size=8)
    with pytest.raises(AetlError, match="no images in"):
        folder.load(root=str(tmp_path), size=8)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(AetlError, match="none of the 1 images"):
        folder.load(root=str(tmp_path), size=8)


def test_unlabelled_folder_needs_zero_labels(make_cfg, tmp_path):
    for i in range(30):
        Image.new("L", (16, 16), color=i * 8).save(tmp_path / f"{i}.png")
    base = ["data/target=folder", f"data.target.root={tmp_path}", "data.target.n_train=10", "data.target.fit=resize",
            "data.target.tone=keep",
            "data.target.n_val=5", "data.target.n_test=10"]
    pair = load_pair(make_cfg(*base, "data.target.labels_per_class=0").data, 0, CPU)
    assert len(pair.target.train) == 10 and len(pair.target.train.labelled()) == 0
    with pytest.raises(AetlError, match="labels_per_class=0"):
        load_pair(make_cfg(*base).data, 0, CPU)


def test_mnist_m_is_deterministic_colour_and_keeps_labels():
    from aetl.data.domains import mnist_m

    a, b, c = mnist_m.load(seed=0), mnist_m.load(seed=0), mnist_m.load(seed=1)
    plain = mnist.load()
    assert a.images.shape == (5000, 3, 28, 28) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)
    assert np.array_equal(a.labels, plain.labels)
    # Where the digit is full ink, the pixel is 255 - photo: the digit is still there to read.
    ink = plain.images[:, 0] == 255
    background = plain.images[:, 0] == 0
    assert (a.images.mean(1)[ink].mean() / 255 - a.images.mean(1)[background].mean() / 255) ** 2 > 0.001


def test_mnist_m_test_digits_are_the_mnist_test_digits(make_cfg):
    cfg = make_cfg("data=mnist_mnist_m")
    from aetl.data.pair import fixed_splits

    labels = mnist.load().labels
    s_test = fixed_splits(labels, cfg.data.source.n_test, cfg.data.source.n_val, cfg.data.split_seed, "source")[0]
    t_test = fixed_splits(labels, cfg.data.target.n_test, cfg.data.target.n_val, cfg.data.split_seed, "target")[0]
    assert np.array_equal(s_test, t_test)


def test_a_colour_target_in_a_grey_frame_says_so(make_cfg, tmp_path, caplog):
    make_folder(tmp_path, n=40, colour=True)
    cfg = make_cfg("data/target=folder", f"data.target.root={tmp_path}", "data.target.fit=resize",
                   "data.target.tone=keep", "data.target.n_train=10", "data.target.labels_per_class=1",
                   "data.target.n_val=5", "data.target.n_test=10")
    load_pair(cfg.data, 0, CPU)
    assert ("target folder: colour images, turned grey to fit the pair's frame (data.channels=1); set "
            "data.channels=3 to keep their colour") in caplog.text
