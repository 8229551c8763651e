"""Files a team can share: everything aetl writes (run dirs, source-model and image cache entries,
reports) gets the umask's permissions, as every Unix tool's files do, and target.pt holds no path
of the machine that wrote it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from aetl.commands.report import main as report
from aetl.commands.train import train


@pytest.fixture
def umask():
    """Set the process's umask for the test (put back after)."""
    before = os.umask(0o022)
    yield os.umask
    os.umask(before)


def modes(*roots: Path) -> dict[str, set[str]]:
    """{"files": {"0o644"}, "dirs": {"0o755"}}: the permission bits of everything under roots."""
    found: dict[str, set[str]] = {"files": set(), "dirs": set()}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            kind = "dirs" if path.is_dir() else "files"
            found[kind].add(oct(stat.S_IMODE(path.stat().st_mode)))
    return found


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, "0o644", "0o755"), (0o002, "0o664", "0o775")])
def test_every_file_aetl_writes_gets_the_umasks_permissions(make_cfg, tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    cache = tmp_path / "cache"
    train(make_cfg(f"cache_dir={cache}", "data.target.fit=auto"), tmp_path / "run")  # source.pt, images, fit
    (tmp_path / "run" / ".hydra").mkdir()  # what Hydra writes (with its own modes) and report looks for
    (tmp_path / "run" / ".hydra" / "overrides.yaml").write_text("[]\n")
    assert report([str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {"run/summary.json", "run/checkpoints/target.pt", "run/checkpoints/source.pt", "run/checkpoints/last.pt",
            "run/images/recon_target.png", "report/report.csv"} <= written
    assert any(p.endswith("/source.pt") for p in written if p.startswith("cache/"))
    assert any(p.endswith("/images.npy") for p in written if p.startswith("cache/images/"))
    assert modes(tmp_path / "run", cache, tmp_path / "report") == {"files": {file_mode}, "dirs": {dir_mode}}


def test_target_pt_holds_no_path_of_the_machine_that_wrote_it(make_cfg, tmp_path):
    train(make_cfg(f"cache_dir={tmp_path / 'cache'}"), tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoints" / "target.pt", weights_only=True)

    def strings(value):
        if isinstance(value, dict):
            for k, v in value.items():
                yield str(k)
                yield from strings(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    assert "cache_dir" not in state
    assert not [s for s in strings({k: v for k, v in state.items() if k != "model"}) if str(tmp_path) in s]
