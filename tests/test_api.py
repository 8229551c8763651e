"""The Python API: the README's example runs as written (on a tiny run), and load_run's model
is the run's own."""

import re
from pathlib import Path

import pytest
import torch

import aetl
from aetl.errors import AetlError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(make_cfg, tmp_path, monkeypatch):
    trained = aetl.run("train", make_cfg("cache_dir=null"), tmp_path / "run")
    example = re.search(r"## From Python\n.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(example.replace("outputs/2026-11-28/10-00-00", str(tmp_path / "run")), scope)  # noqa: S102
    run = scope["run"]
    assert run.summary["target_acc"] == trained["target_acc"] and run.config is None  # train() wrote no .hydra
    assert scope["codes"].shape == (4, run.model.latent_dim) and scope["again"].shape == scope["images"].shape
    assert torch.equal(scope["again"], run.decode(scope["codes"]))
    assert scope["summary"]["strategy"] == "scratch" and (tmp_path / "outputs" / "from_python" / "summary.json").is_file()


def test_load_run_gives_the_runs_own_model_and_refuses_images_of_another_frame(make_cfg, tmp_path):
    aetl.run("train", make_cfg("cache_dir=null"), tmp_path / "run")
    run = aetl.load_run(tmp_path / "run" / "checkpoints" / "target.pt")
    x = torch.rand(3, *run.model.in_shape)
    with torch.no_grad():
        assert torch.allclose(run.reconstruct(x), run.model(x).recon)
        assert torch.equal(run.encode((x * 255).round().to(torch.uint8)), run.encode((x * 255).round() / 255))
    with pytest.raises(AetlError, match=r"images must be \(N, 1, 16, 16\): the run's frame; got \(3, 1, 8, 8\)"):
        run.encode(torch.rand(3, 1, 8, 8))
    with pytest.raises(AetlError, match="unknown command 'report'"):
        aetl.compose("report")
