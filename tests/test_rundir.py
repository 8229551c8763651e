import errno
import os
import pickle

import pytest
import torch

from aetl.errors import AetlError
from aetl.infra.checkpoint import load_checkpoint
from aetl.infra.rundir import Run, atomic_write, unique_dir


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")

    def broken(f):
        f.write(b"half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(AetlError, match=f"could not write {path} \\(No space left on device\\); free some space"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_truncated_checkpoint(tmp_path):
    path = Run(tmp_path).save_checkpoint("a.pt", {"model": {"w": torch.ones(1000)}})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(AetlError, match="truncated or corrupt"):
        load_checkpoint(path)
    with pytest.raises(AetlError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


class Payload:
    def __reduce__(self):
        return (os.mkdir, (os.environ["AETL_TEST_MARKER"],))


def test_checkpoint_with_code_is_refused_not_run(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("AETL_TEST_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path, pickle_protocol=2)
    with pytest.raises(AetlError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()
    with open(path, "wb") as f:
        pickle.dump({"model": Payload()}, f, protocol=2)
    with pytest.raises(AetlError):
        load_checkpoint(path)
    assert not marker.exists()


def test_unique_dir_never_hands_out_a_taken_dir(tmp_path):
    base = str(tmp_path / "12-00-00")
    os.makedirs(base)
    first = unique_dir(base)
    assert first == base + "_1" and os.path.isdir(first)
    assert unique_dir(base) == first  # memoised: one process, one answer
    assert unique_dir(str(tmp_path / "12-00-01")) == str(tmp_path / "12-00-01")


def test_a_file_that_is_not_a_checkpoint(tmp_path):
    for name, data in (("notes.pt", b"hello\n"), ("empty.pt", b""), ("config.pt", b"model: 1\n")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(AetlError, match=f"^{tmp_path / name} is not a PyTorch checkpoint \\(torch.save writes a "
                                            "zip archive, and this file is not one\\); pass a .pt file a run wrote$"):
            load_checkpoint(tmp_path / name)
    torch.save({"weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(AetlError, match="has no 'model' state dict; use a checkpoint written by aetl"):
        load_checkpoint(tmp_path / "other.pt")


def test_non_finite_weights_are_refused_on_load(tmp_path):
    w = torch.ones(3, 2)
    w[1, 0] = float("nan")
    torch.save({"model": {"encoder.0.weight": w, "encoder.0.bias": torch.full((3,), float("inf")),
                          "steps": torch.tensor(5)}}, tmp_path / "diverged.pt")
    with pytest.raises(AetlError, match=f"^checkpoint {tmp_path / 'diverged.pt'} holds weights that are nan or inf "
                                        r"\(encoder.0.weight, encoder.0.bias\): the run that wrote it diverged; use "
                                        "another checkpoint, or train again with a lower learning rate$"):
        load_checkpoint(tmp_path / "diverged.pt")
