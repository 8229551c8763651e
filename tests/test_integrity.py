"""Every cache entry checks its bytes: each kind of damage to an image cache entry or a
source-model cache entry gives one warning naming the entry and the result a clean run gives."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from conftest import make_folder
from omegaconf import OmegaConf

from aetl.commands.train import train
from aetl.data.imagecache import ImageCache
from aetl.infra import integrity
from aetl.infra.cache import SourceCache
from aetl.infra.checkpoint import load_checkpoint


def folder_spec(root, size=8):
    return OmegaConf.create({"_target_": "aetl.data.domains.folder.load", "root": str(root), "size": size,
                             "skip_bad": True})


def flip_pixels(entry):  # same size, bytes changed in place
    with open(entry / "images.npy", "r+b") as f:
        f.seek(-100, 2)
        tail = f.read(50)
        f.seek(-100, 2)
        f.write(bytes(255 - b for b in tail))


def truncate(entry):
    data = (entry / "images.npy").read_bytes()
    (entry / "images.npy").write_bytes(data[: len(data) // 2])


def labels_out_of_range(entry):
    labels = np.load(entry / "labels.npy")
    labels[3] = 99
    np.save(entry / "labels.npy", labels)


def labels_header_huge(entry):  # a size read from the file: compared, never allocated
    labels = np.load(entry / "labels.npy")
    with open(entry / "labels.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": labels.dtype.str, "fortran_order": False,
                                                 "shape": (10**10,)})
        f.write(labels.tobytes())


def metadata_edited(entry):
    meta = json.loads((entry / "entry.json").read_text())
    meta["classes"] = ["cat", "dog"]
    (entry / "entry.json").write_text(json.dumps(meta))


def checksum_missing(entry):
    (entry / integrity.SEAL).unlink()


def checksum_edited(entry):
    record = json.loads((entry / integrity.SEAL).read_text())
    record["files"]["images.npy"]["size"] = "2432"
    (entry / integrity.SEAL).write_text(json.dumps(record))


def resealed_with_bad_labels(entry):  # damage that matches its checksum: the promises still hold it
    labels = np.load(entry / "labels.npy")
    labels[0] = 7
    np.save(entry / "labels.npy", labels)
    integrity.seal(entry, ("images.npy", "labels.npy", "entry.json"))


def resealed_as_other_dtypes(entry):  # a crafted entry, checksum remade without promises: the arrays still checked
    np.save(entry / "images.npy", np.load(entry / "images.npy").astype(np.int16))
    np.save(entry / "labels.npy", np.load(entry / "labels.npy").astype(float))
    integrity.seal(entry, ("images.npy", "labels.npy", "entry.json"))


DAMAGE = [flip_pixels, truncate, labels_out_of_range, labels_header_huge, metadata_edited, checksum_missing,
          checksum_edited, resealed_with_bad_labels, resealed_as_other_dtypes]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_a_damaged_image_cache_entry_is_named_and_rebuilt(tmp_path, caplog, damage):
    root = make_folder(tmp_path / "images")
    clean = ImageCache(tmp_path / "cache").load(folder_spec(root), "source")[0]
    clean_images = np.array(clean.images)  # a copy: the damage below writes into the mapped file
    (entry,) = [p for p in (tmp_path / "cache" / "images").iterdir() if p.is_dir()]
    damage(entry)
    caplog.clear()
    cache = ImageCache(tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        rebuilt = cache.load(folder_spec(root), "source")[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0] and "building it again" in warnings[0]
    assert ("is stale" if damage is checksum_missing else "is damaged") in warnings[0]
    assert cache.misses == 1
    assert np.array_equal(rebuilt.images, clean_images) and np.array_equal(rebuilt.labels, clean.labels)
    assert rebuilt.classes == clean.classes
    again = ImageCache(tmp_path / "cache")
    again.load(folder_spec(root), "source")
    assert again.misses == 0  # the rebuilt entry passes its check


def test_a_large_file_is_hashed_whole_once_then_when_it_changes(tmp_path, monkeypatch):
    """Above FULL_BYTES only the sampled blocks are read on an open whose file is as it was
    last verified; a write between the samples is still found (it changes the file's ctime)."""
    monkeypatch.setattr(integrity, "FULL_BYTES", 0)
    monkeypatch.setattr(integrity, "BLOCK", 16)
    monkeypatch.setattr(integrity, "SAMPLES", 2)  # the first and last 16 bytes
    root = make_folder(tmp_path / "images")
    ImageCache(tmp_path / "cache").load(folder_spec(root), "source")
    (entry,) = [p for p in (tmp_path / "cache" / "images").iterdir() if p.is_dir()]
    hashed = []
    monkeypatch.setattr(integrity, "digest", lambda path, real=integrity.digest: hashed.append(path.name) or real(path))
    assert integrity.verify(entry, ("images.npy",)) is None and hashed == []
    with open(entry / "images.npy", "r+b") as f:  # a byte between the samples
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([255 - byte[0]]))
    assert integrity.verify(entry, ("images.npy",)) == "images.npy's bytes differ from its checksum"
    assert hashed == ["images.npy"]
    # damage the file system does not see (its stamp made to match): a sampled block still tells
    integrity.seal(entry, ("images.npy",))
    with open(entry / "images.npy", "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([255 - last[0]]))
    integrity._stamp(entry, {"images.npy": integrity._stat(entry / "images.npy")})
    hashed.clear()
    assert integrity.verify(entry, ("images.npy",)) == "images.npy's bytes differ from its checksum"
    assert hashed == []


def _entry(cache_dir):
    (entry,) = [p for p in SourceCache(cache_dir).root.iterdir() if p.is_dir() and p.name not in ("images", "targets", "fits")]
    return entry


@pytest.mark.parametrize("damage", ["other_source", "truncated", "checksum_missing", "spec_edited"])
def test_a_damaged_source_model_entry_is_named_and_pretrained_again(make_cfg, tmp_path, caplog, damage):
    clean = train(make_cfg(), tmp_path / "a")
    entry = _entry(make_cfg().cache_dir)
    if damage == "other_source":  # a valid source.pt of another run: loads fine, is not this entry's
        train(make_cfg("seed=3", "cache_dir=null"), tmp_path / "other")
        shutil.copyfile(tmp_path / "other" / "checkpoints" / "source.pt", entry / "source.pt")
    elif damage == "truncated":
        data = (entry / "source.pt").read_bytes()
        (entry / "source.pt").write_bytes(data[:-64])
    elif damage == "checksum_missing":
        (entry / integrity.SEAL).unlink()
    else:
        (entry / "spec.json").write_text(json.dumps({"seed": 9}))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = train(make_cfg(), tmp_path / "b")
    warnings = [r.getMessage() for r in caplog.records if "source model cache entry" in r.getMessage()]
    assert len(warnings) == 1 and str(entry) in warnings[0] and "pretraining again" in warnings[0]
    assert again["source_cache"] == "miss"
    assert [clean[k] for k in ("target_mse", "target_acc", "source_mse")] == \
        [again[k] for k in ("target_mse", "target_acc", "source_mse")]
    a, b = (load_checkpoint(tmp_path / d / "checkpoints" / "source.pt")["model"] for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert train(make_cfg(), tmp_path / "c")["source_cache"] == "hit"


@pytest.mark.parametrize("damage", ["flipped", "checksum_missing", "resealed_margin", "resealed_tone_map"])
def test_damaged_target_model_and_fit_entries_are_named_and_made_again(make_cfg, tmp_path, caplog, damage):
    """The other two kinds of entry (aetl.infra.cache): a transferred model and a fit choice."""
    auto = ["data.target.fit=auto", "trainer.pretrain.steps=30"]
    clean = train(make_cfg(*auto), tmp_path / "a")
    cache = SourceCache(make_cfg().cache_dir).root
    target, fit = next(cache.glob("targets/*/target.pt")), next(cache.glob("fits/*/fit.json"))
    if damage == "flipped":
        for path in (target, fit):
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
    elif damage == "checksum_missing":
        (target.parent / integrity.SEAL).unlink()
        (fit.parent / integrity.SEAL).unlink()
    else:  # a record whose checksum was remade: its fields are still checked
        record = json.loads(fit.read_text())
        record.update({"target_margin": 10**9} if damage == "resealed_margin" else {"target_tone_map": ["x", 0]})
        fit.write_text(json.dumps(record))
        integrity.seal(fit.parent, ("fit.json", "spec.json"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = train(make_cfg(*auto), tmp_path / "b")
    named = [m for m in caplog.messages if " cache entry " in m]
    assert any(m.startswith("the fit choice cache entry ") and str(fit.parent) in m and m.endswith("choosing again")
               for m in named)
    if damage in ("flipped", "checksum_missing"):
        assert any(m.startswith("the target model cache entry ") and str(target.parent) in m for m in named)
        assert again["target_cache"] == "miss"
    assert [clean[k] for k in ("target_mse", "target_acc", "target_fit", "target_margin")] == \
        [again[k] for k in ("target_mse", "target_acc", "target_fit", "target_margin")]
