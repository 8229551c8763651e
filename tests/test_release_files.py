"""Files aetl 0.1 wrote (tests/fixtures/release-0.1/, made by its make.py at commit 3273175,
before the layout of issue 21) still work: an interrupted run resumes from its last.pt to the
figures that release gave, its target.pt styles an image, its source.pt seeds a run, and the
source-model and image cache entries it wrote are still found."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIGURES, read_metrics, without_time
from hydra import compose, initialize_config_module

from aetl.commands.augment import augment
from aetl.commands.stylize import stylize
from aetl.commands.train import train
from aetl.infra.checkpoint import FORMAT, load_checkpoint

RELEASE = Path(__file__).parent / "fixtures" / "release-0.1"
FCONV = ["data=synthetic_pair", "trainer.device=cpu", "trainer.progress=false", "trainer.pretrain.steps=20",
         "trainer.pretrain.batch_size=16", "trainer.transfer.steps=10", "trainer.transfer.batch_size=8",
         "trainer.eval_every=5", "model=fconv", "model.channels=[4,8]", "model.latent_channels=4"]


def compose_cfg(name, overrides):
    with initialize_config_module("aetl.configs", version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.mark.parametrize("name, kind", [("stopped/checkpoints/last.pt", "last"),
                                        ("stopped/checkpoints/source.pt", "source"),
                                        ("finished/checkpoints/target.pt", "target"),
                                        ("cache/33ed248156e5c543/source.pt", "source")])
def test_every_file_of_the_release_reads_as_its_kind_in_the_current_format(name, kind):
    state = load_checkpoint(RELEASE / name, kind=kind)
    assert state["format"] == FORMAT and state["model"]
    if kind == "source":  # rebuilt from the recipe the upgrade gives it
        assert state["recipe"]["n_classes"] == 4 and state["recipe"]["in_shape"] == state["shape"]
    if kind == "last":
        assert state["loop"]["phase"] == "transfer" and state["run"]["mf"]["origin"] == "pretrained"
        assert state["identity"]["data"]["source"]["load"]["_target_"] == "aetl.data.domains.synthetic.load"


def test_a_run_the_release_stopped_resumes_to_the_figures_it_would_have_given(tmp_path):
    expected = json.loads((RELEASE / "stopped.expected.json").read_text())
    shutil.copytree(RELEASE / "stopped", tmp_path / "stopped")
    summary = train(compose_cfg("train", expected["overrides"]), tmp_path / "stopped")
    # Equal to float32 rounding: the fixture was made on another CPU, whose vector kernels round the
    # 7th-8th digit differently (the same commit gives 0.10792746 there and 0.10792745 here).
    assert [summary[k] for k in FIGURES] == pytest.approx([expected["summary"][k] for k in FIGURES], rel=1e-6)
    got, want = without_time(read_metrics(tmp_path / "stopped")), expected["metrics"]
    assert len(got) == len(want)  # every line the release wrote, with its figures (later aetl adds some)
    pairs = [(g.get(k), w[k]) for g, w in zip(got, want) for k in sorted(w)]
    figures = [(g, w) for g, w in pairs if isinstance(w, float)]
    assert [g for g, _ in figures] == pytest.approx([w for _, w in figures], rel=1e-6)
    assert [g for g, w in pairs if not isinstance(w, float)] == [w for _, w in pairs if not isinstance(w, float)]


def test_the_release_target_pt_styles_and_augments_and_its_source_pt_seeds_a_run(tmp_path):
    target = RELEASE / "finished" / "checkpoints" / "target.pt"
    styled = stylize(compose_cfg("stylize", ["device=cpu", f"run={target}", f"content={RELEASE / 'content.png'}",
                                             f"style={RELEASE / 'style.png'}", "app.size=null", "app.alphas=[1.0]"]),
                     tmp_path / "sty")
    assert styled["style_levels"] == 3 and (tmp_path / "sty" / "images" / "stylized_wct_alpha1.png").is_file()
    augmented = augment(compose_cfg("augment", ["device=cpu", f"run={target}", "app.mode=noise", "app.amount=2"]),
                        tmp_path / "aug")  # its data config names the domain by the release's module path
    assert augmented["n_augmented"] == 2 * 20 and augmented["target_acc"] is not None
    source = RELEASE / "finished" / "checkpoints" / "source.pt"
    seeded = train(compose_cfg("train", [*FCONV, f"pretrained={source}", "cache_dir=null"]), tmp_path / "run")
    assert seeded["source_model"] == str(source) and seeded["pretrain_s"] == 0


def test_the_release_cache_entries_are_found_stale_and_rebuilt_in_place(tmp_path, caplog):
    """aetl 0.1's entries carry no checksum: each is named once as stale and built again under
    its own key (the keys still match), then found by the next run."""
    cache = shutil.copytree(RELEASE / "cache", tmp_path / "cache")
    entries = sorted(p.name for p in (cache / "images").iterdir())
    with caplog.at_level("WARNING"):
        summary = train(compose_cfg("train", [*FCONV, f"cache_dir={cache}"]), tmp_path / "run")
    stale = [m for m in caplog.messages if "is stale: it has no checksum (an older aetl wrote it)" in m]
    assert len(stale) == 1 + len(entries)  # Mf's entry and each image entry, once
    assert summary["source_cache"] == "miss"
    assert sorted(p.name for p in (cache / "images").iterdir() if not p.name.endswith(".lock")) == entries
    again = train(compose_cfg("train", [*FCONV, f"cache_dir={cache}"]), tmp_path / "again")
    assert again["source_cache"] == "hit" and again["pretrain_s"] == 0
