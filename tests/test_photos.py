"""Colour photo folders end to end: a sweep with model=resnet decodes each folder once into
the image cache, and `aetl report` tables it."""

import json
import os

import pytest
from conftest import TINY, aetl, make_folder

pytestmark = pytest.mark.slow


def test_a_sweep_on_a_colour_folder_pair_with_resnet_and_its_report(tmp_path):
    source, target = make_folder(tmp_path / "a", n=60), make_folder(tmp_path / "b", n=60, seed=1)
    env = {**os.environ, "AETL_CACHE_DIR": str(tmp_path / "cache")}
    pair = ["data/source=folder", f"data.source.root={source}", "data.source.n_val=6", "data.source.n_test=10",
            "data/target=folder", f"data.target.root={target}", "data.target.n_train=20",
            "data.target.labels_per_class=2", "data.target.n_val=6", "data.target.n_test=10", "data.channels=3"]
    resnet = ["model=resnet", "model.channels=[4,8]", "model.latent_dim=8"]
    out = aetl("train", "-m", *TINY, *pair, *resnet, "strategy=scratch,finetune", "hydra.sweep.dir=sweep",
               cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    jobs = [tmp_path / "sweep" / str(i) for i in range(2)]
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert [s["strategy"] for s in summaries] == ["scratch", "finetune"]
    assert all(s["model"] == "ResNetAE" and s["image_shape"] == [3, 16, 16] and s["source"] == "folder"
               for s in summaries)
    first, second = ((job / "run.log").read_text() for job in jobs)
    assert "source folder: 60 images 3x16x16 decoded into the image cache" in first
    assert "source folder: 60 images 3x16x16 memory-mapped from the image cache" in second
    assert "target folder: 60 images 3x16x16 memory-mapped from the image cache" in second
    report = aetl("report", "sweep", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    rows = [line for line in report.stdout.splitlines() if "folder" in line]
    assert any("scratch" in r for r in rows) and any("finetune" in r for r in rows)
