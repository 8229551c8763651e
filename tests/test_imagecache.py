"""The decoded-image cache: decoded once, memory-mapped after, decoded again when a file
changes, once for concurrent jobs, and the frame-mapped arrays cached too."""

import multiprocessing
import os

import numpy as np
import pytest
import torch
from conftest import make_folder, write_idx
from omegaconf import OmegaConf
from PIL import Image

from aetl.data.domains import folder
from aetl.data.fit import FitChoice
from aetl.data.framing import Fit
from aetl.data.imagecache import ImageCache
from aetl.data.pair import Unmapped
from aetl.data.storage import Storage
from aetl.errors import AetlError


def folder_spec(root, size=8):
    return OmegaConf.create({"_target_": "aetl.data.domains.folder.load", "root": str(root), "size": size,
                             "skip_bad": True})


def test_a_folder_is_decoded_once_then_memory_mapped(tmp_path):
    root = make_folder(tmp_path / "images")
    first = ImageCache(tmp_path / "cache")
    a, _, fingerprint = first.load(folder_spec(root), "source")
    second = ImageCache(tmp_path / "cache")
    b, _, again = second.load(folder_spec(root), "source")
    assert (first.misses, second.misses) == (1, 0) and fingerprint == again
    assert isinstance(b.images, np.memmap) and not b.images.flags.writeable
    plain = folder.load(str(root), 8)
    for d in (a, b):
        assert np.array_equal(d.images, plain.images) and np.array_equal(d.labels, plain.labels)
        assert d.classes == ["class0", "class1"] and d.images.shape == (12, 3, 8, 8)
    assert len([p for p in (tmp_path / "cache" / "images").iterdir() if p.is_dir()]) == 1


def test_a_changed_added_or_removed_file_decodes_again(tmp_path):
    root = make_folder(tmp_path / "images")
    cache = ImageCache(tmp_path / "cache")
    before = cache.load(folder_spec(root), "source")[0].images.copy()
    white = root / "class0" / "000.png"
    Image.new("RGB", (10, 12), (255, 255, 255)).save(white)
    os.utime(white, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    changed = cache.load(folder_spec(root), "source")[0]
    assert cache.misses == 2 and changed.images[0].min() == 255 and np.array_equal(changed.images[1:], before[1:])
    Image.new("RGB", (10, 12), (0, 0, 0)).save(root / "class1" / "new.png")
    assert len(cache.load(folder_spec(root), "source")[0].images) == 13 and cache.misses == 3
    (root / "class1" / "new.png").unlink()
    assert len(cache.load(folder_spec(root), "source")[0].images) == 12 and cache.misses == 4
    cache.load(folder_spec(root), "source")
    assert cache.misses == 4
    entries = [p for p in (tmp_path / "cache" / "images").iterdir() if p.is_dir()]
    assert len(entries) == 1  # the stale entry was replaced, not kept beside the new one
    assert cache.load(folder_spec(root, size=6), "source")[0].images.shape[-1] == 6 and cache.misses == 5


def _load_in_process(root, cache_dir, queue):
    cache = ImageCache(cache_dir)
    domain = cache.load(folder_spec(root), "source")[0]
    queue.put((cache.misses, domain.images.sum(dtype=np.int64).item()))


@pytest.mark.slow
def test_concurrent_jobs_decode_once(tmp_path):
    root = make_folder(tmp_path / "images", n=300)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    jobs = [ctx.Process(target=_load_in_process, args=(root, tmp_path / "cache", queue)) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=120)
    assert [job.exitcode for job in jobs] == [0, 0]
    results = [queue.get() for _ in jobs]
    assert sorted(m for m, _ in results) == [0, 1]  # one decoded, the other waited and mapped its entry
    assert results[0][1] == results[1][1] == folder.load(str(root), 8).images.sum(dtype=np.int64)
    names = sorted(p.name for p in (tmp_path / "cache" / "images").iterdir())
    assert len(names) == 2 and names[1].endswith(".lock")  # no staging dir left behind


def test_mapped_arrays_are_cached_unless_the_fit_changes_nothing(tmp_path):
    root = make_folder(tmp_path / "images", colour=False)
    storage = Storage(torch.device("cpu"), cache=ImageCache(tmp_path / "cache"))
    domain, key, fingerprint = storage.cache.load(folder_spec(root), "target")
    idx = np.arange(12)
    side = Unmapped(domain, idx[:8], idx[8:10], idx[10:], domain.labels[:8], "target", key, fingerprint)
    same = side.framed((1, 8, 8), FitChoice(Fit(), {}), storage)
    assert same is domain.images and storage.cache.misses == 1
    framed = side.framed((3, 16, 16), FitChoice(Fit("frame", 2), {}), storage)
    again = side.framed((3, 16, 16), FitChoice(Fit("frame", 2), {}), storage)
    assert storage.cache.misses == 2 and isinstance(again, np.memmap) and np.array_equal(framed, again)
    assert framed.shape == (12, 3, 16, 16) and framed.dtype == np.uint8
    assert (framed[:, 0] == framed[:, 2]).all()  # grey images on three channels
    mapped = side.mapped((3, 16, 16), FitChoice(Fit("frame", 2), {}), storage)
    assert torch.equal(mapped.test.pixels(), torch.from_numpy(np.array(framed[10:])))


def test_bundled_domains_are_keyed_by_their_config(tmp_path):
    spec = OmegaConf.create({"_target_": "aetl.data.domains.synthetic.load", "n": 20, "seed": 1})
    cache = ImageCache(tmp_path / "cache")
    a = cache.load(spec, "source")[0]
    b = cache.load(spec, "source")[0]
    c = cache.load(OmegaConf.merge(spec, {"seed": 2}), "source")[0]
    assert cache.misses == 2 and np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)


def test_without_a_cache_images_are_decoded_into_memory(tmp_path):
    root = make_folder(tmp_path / "images")
    domain = ImageCache(None).load(folder_spec(root), "source")[0]
    assert not isinstance(domain.images, np.memmap) and domain.images.shape == (12, 3, 8, 8)


def test_an_unwritable_cache_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(AetlError, match=r"cannot write the image cache at .*file/images \(.*\); free space there, "
                                        "set cache_dir to a writable folder, or cache_dir=null"):
        ImageCache(tmp_path / "file")


def test_an_unreadable_entry_is_decoded_again(tmp_path, caplog):
    root = make_folder(tmp_path / "images")
    ImageCache(tmp_path / "cache").load(folder_spec(root), "source")
    (entry,) = [p for p in (tmp_path / "cache" / "images").iterdir() if p.is_dir()]
    (entry / "images.npy").write_bytes(b"garbage")
    cache = ImageCache(tmp_path / "cache")
    domain = cache.load(folder_spec(root), "source")[0]
    assert cache.misses == 1 and "is damaged: images.npy is 7 bytes" in caplog.text
    assert np.array_equal(domain.images, folder.load(str(root), 8).images)


def test_idx_files_that_change_are_read_again(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.full((3, 28, 28), 7), False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 2, 3]), False)
    spec = OmegaConf.create({"_target_": "aetl.data.domains.mnist.load", "root": str(tmp_path), "provider": "idx"})
    cache = ImageCache(tmp_path / "cache")
    assert cache.load(spec, "source")[0].images.max() == 7
    assert cache.load(spec, "source")[0].images.max() == 7 and cache.misses == 1
    write_idx(tmp_path / "train-images-idx3-ubyte", np.full((3, 28, 28), 9), False)
    os.utime(tmp_path / "train-images-idx3-ubyte", ns=(1, 1))
    assert cache.load(spec, "source")[0].images.max() == 9 and cache.misses == 2
