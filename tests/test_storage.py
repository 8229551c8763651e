"""Where images live: uint8 until a batch is on the device; batches streamed by DataLoader
workers from the memory-mapped cache give the on-device run's figures, and resume exactly."""

import pickle

import numpy as np
import pytest
import torch
from conftest import FIGURES, read_metrics, signal_at, without_time

import aetl.data.storage
from aetl.commands.train import train
from aetl.data.pair import load_pair
from aetl.data.storage import Feed, Split, Storage, _Rows
from aetl.errors import AetlError, Interrupted

CPU = torch.device("cpu")
# A memory budget nothing fits in: `auto` streams both domains, with one worker process.
STREAM = ["data.storage=auto", "data.memory_share=1e-9", "data.workers=1"]


def test_images_stay_uint8_until_a_batch_reaches_the_device(make_cfg, tmp_path):
    cfg = make_cfg()
    pair = load_pair(cfg.data, 0, CPU, cache_dir=str(tmp_path))
    train_split = pair.source.train
    assert isinstance(train_split.images, np.memmap) and train_split.images.dtype == np.uint8  # read in place
    assert len(train_split) == len(train_split.rows) == 140
    idx = torch.tensor([3, 0, 7])
    x = train_split.batch(idx)
    assert x.dtype == torch.float32 and x.shape == (3, 1, 16, 16) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x * 255, train_split.pixels(idx).float())
    assert torch.equal(train_split.pixels(idx)[1], torch.from_numpy(np.array(train_split.images[train_split.rows[0]])))
    assert pair.target.test.pixels().dtype == torch.uint8


def test_auto_streams_what_does_not_fit(monkeypatch, caplog):
    caplog.set_level("INFO")
    monkeypatch.setattr(aetl.data.storage, "free_memory", lambda device: 1000)
    storage = Storage(CPU, "auto", 0.5, workers=2)
    assert not storage.streams(500, "source x") and storage.streams(501, "source x")
    assert "source x images: 0.0 MiB as uint8, streamed by 2 DataLoader worker(s) (does not fit in 50%" in caplog.text
    assert Storage(CPU, "stream").streams(1, "t") and not Storage(CPU, "device").streams(10 ** 15, "t")


@pytest.mark.parametrize("key, value, message", [
    ("storage", "disk", "data.storage must be auto, device or stream, got 'disk'"),
    ("memory_share", 0, r"data.memory_share must be in \(0, 1\], got 0"),
    ("workers", -1, "data.workers must be >= 0"),
])
def test_storage_settings_out_of_range(make_cfg, key, value, message):
    with pytest.raises(AetlError, match=message):
        Storage.of(make_cfg(f"data.{key}={value}").data, CPU)


def test_a_memory_mapped_array_travels_to_workers_as_its_file(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4))
    rows = _Rows(np.load(path, mmap_mode="r"))
    sent = pickle.dumps(rows)
    assert len(sent) < 400 and str(path).encode() in sent  # the name, not the pixels
    again = pickle.loads(sent)
    assert isinstance(again.array, np.memmap)
    assert torch.equal(again[np.array([1, 0])], rows[np.array([1, 0])])
    assert pickle.loads(pickle.dumps(_Rows(np.ones((2, 1, 2, 2), np.uint8))))[np.array([0])].sum() == 4


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_are_the_on_device_batches(tmp_path, workers):
    np.save(tmp_path / "images.npy", np.random.default_rng(0).integers(0, 256, (30, 3, 4, 4), dtype=np.uint8))
    images = np.load(tmp_path / "images.npy", mmap_mode="r")
    rows = np.arange(3, 27)  # a split: some rows of the domain's array
    y = torch.arange(24)
    on_device = Split(torch.from_numpy(np.array(images[rows])), y)
    streamed = Split(images, y, rows, streamed=True, workers=workers)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    for start in (0, 2):  # a whole epoch, and the rest of one a resumed run carries on
        a, b = list(Feed(on_device, 5).epoch(perm, start)), list(Feed(streamed, 5).epoch(perm, start))
        assert len(a) == len(b) == 4 - start
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.dtype == xb.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)


def test_streaming_gives_the_on_device_figures_and_metrics(make_cfg, tmp_path, caplog):
    caplog.set_level("INFO")
    base = ["strategy=finetune", "trainer.align.kind=coral"]  # alignment draws a source batch every transfer step
    on_device = train(make_cfg(*base, "data.storage=device", f"cache_dir={tmp_path / 'c1'}"), tmp_path / "device")
    assert "streamed" not in caplog.text
    streamed = train(make_cfg(*base, *STREAM, f"cache_dir={tmp_path / 'c2'}"), tmp_path / "stream")
    assert "source synthetic images: 0.0 MiB as uint8, streamed by 1 DataLoader worker(s)" in caplog.text
    assert "target synthetic images: 0.0 MiB as uint8, streamed" in caplog.text
    assert [on_device[k] for k in FIGURES] == [streamed[k] for k in FIGURES]
    assert without_time(read_metrics(tmp_path / "device")) == without_time(read_metrics(tmp_path / "stream"))


def test_a_streamed_run_resumes_exactly(make_cfg, tmp_path, monkeypatch):
    # pretraining: 140 images in batches of 16, 8 a pass: step 20 stops in the middle of the third pass
    longer = ["strategy=fixed_init", "trainer.checkpoint_every=7", "trainer.pretrain.steps=30",
              "trainer.transfer.steps=20", *STREAM]
    reference = train(make_cfg(*longer, f"cache_dir={tmp_path / 'c1'}"), tmp_path / "reference")
    cfg = make_cfg(*longer, f"cache_dir={tmp_path / 'c2'}")
    with monkeypatch.context() as patch:
        signal_at(patch, "pretrain", 20)
        with pytest.raises(Interrupted, match="stopped by SIGTERM at pretrain step 20"):
            train(cfg, tmp_path / "stopped")
    resumed = train(cfg, tmp_path / "stopped")
    assert [resumed[k] for k in FIGURES] == [reference[k] for k in FIGURES]
    assert without_time(read_metrics(tmp_path / "stopped")) == without_time(read_metrics(tmp_path / "reference"))
