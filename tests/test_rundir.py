import errno
import os
import pickle

import pytest
import torch

from aetl.errors import AetlError
from aetl.rundir import Run, atomic_write, load_checkpoint, unique_dir


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
