"""Every size a checkpoint's recipe gives is checked by type and range before a model is built
from it: a crafted source.pt is one line, never an allocation attempt."""

import copy

import pytest
import torch
from omegaconf import OmegaConf

from aetl.commands import cli
from aetl.errors import AetlError
from aetl.infra.checkpoint import load_checkpoint, pack
from aetl.models import build_model

MLP = {"_target_": "aetl.models.mlp.MLPAE", "latent_dim": 4, "hidden": [8]}


def source_pt(path, edit=lambda recipe: None):
    model = build_model(OmegaConf.create(MLP), (1, 8, 8), 3)
    recipe = copy.deepcopy(model.recipe)
    edit(recipe)
    torch.save(pack("source", model.state_dict(), recipe, model_cfg=recipe.get("model_cfg"), source="synthetic",
                    shape=[1, 8, 8], source_labels=True, source_classes=["a", "b", "c"], source_levels=[0.0, 1.0]),
               path)
    return path


def set_in(*keys, value):
    def edit(recipe):
        node = recipe
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return edit


CRAFTED = [
    (set_in("model_cfg", "latent_dim", value=10**10), r"model\.latent_dim must be in \[1, 65536\], got 10000000000"),
    (set_in("model_cfg", "latent_dim", value="4"), r"model\.latent_dim must be an integer in \[1, 65536\], got '4'"),
    (set_in("model_cfg", "latent_dim", value=0), r"model\.latent_dim must be in \[1, 65536\], got 0"),
    (set_in("model_cfg", "hidden", value=[10**9]), r"model\.hidden must be a list .* got \[1000000000\]"),
    (set_in("in_shape", value=[1, 10**6, 8]), r"in_shape height must be in \[1, 4096\], got 1000000"),
    (set_in("in_shape", value=[7, 8, 8]), r"in_shape channels must be 1 or 3, got 7"),
    (set_in("in_shape", value=[1, 8]), r"in_shape is \[1, 8\], not \[channels, height, width\]"),
    (set_in("n_classes", value=-5), r"n_classes must be in \[0, 65536\], got -5"),
    (set_in("n_classes", value=2.5), r"n_classes must be an integer in \[0, 65536\], got 2.5"),
    (set_in("model_cfg", value=None), r"its recipe names no model"),
    (set_in("model_cfg", "latent_dim", value=True), r"model\.latent_dim must be an integer in \[1, 65536\], got True"),
    (set_in("in_shape", value=[1, 8.0, 8]), r"in_shape height must be an integer in \[1, 4096\], got 8\.0"),
]


@pytest.mark.parametrize("edit,message", CRAFTED, ids=[m.split(" must")[0] for _, m in CRAFTED])
def test_a_crafted_recipe_is_one_line(tmp_path, edit, message):
    path = source_pt(tmp_path / "source.pt", edit)
    with pytest.raises(AetlError, match=message) as raised:
        load_checkpoint(path, "source")
    assert str(raised.value).startswith(str(path)) and "\n" not in str(raised.value)
    assert str(raised.value).endswith("the file is damaged or not a checkpoint aetl wrote")


def test_a_recipe_with_a_key_the_model_does_not_take_is_one_line(tmp_path):
    from aetl.strategies.pretrain import load_mf

    path = source_pt(tmp_path / "source.pt", set_in("model_cfg", "evil", value=1))
    with pytest.raises(AetlError, match=r"^the checkpoint's recipe does not build a MLPAE \(.*unexpected keyword "
                                        r"argument 'evil'\); the file is damaged or not a checkpoint aetl wrote$"):
        load_mf(load_checkpoint(path, "source"), str(path), torch.device("cpu"))


def test_a_sound_recipe_loads(tmp_path):
    state = load_checkpoint(source_pt(tmp_path / "source.pt"), "source")
    assert state["recipe"]["model_cfg"]["latent_dim"] == 4


def test_rank_with_a_huge_latent_dim_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    path = source_pt(tmp_path / "source.pt", set_in("model_cfg", "latent_dim", value=10**10))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["rank", "data=synthetic_pair", "trainer.device=cpu", "sources=[]", f"models=[{path}]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2
    assert err[-1].endswith(f"{path}: its recipe's model.latent_dim must be in [1, 65536], got 10000000000; "
                            "the file is damaged or not a checkpoint aetl wrote")
    assert not any("Traceback" in line for line in err)


def target_pt(path, data, seed=0):
    model = build_model(OmegaConf.create(MLP), (1, 8, 8))
    torch.save(pack("target", model.state_dict(), model.recipe, run={"seed": seed, "strategy": "scratch"}, data=data,
                    fit={}, cache_dir=None), path)
    return path


@pytest.mark.parametrize("data,seed,message", [
    ({"image_size": 10**10, "channels": 1}, 0, r"its recorded data\.image_size must be in \[1, 4096\], got 10000000000"),
    ({"image_size": 8, "channels": 1, "target": {"n_test": "500"}}, 0, r"its recorded data\.target\.n_test must be"),
    ({"image_size": 8, "channels": 1}, -1, r"its recorded seed must be in \[0, 4294967295\], got -1"),
    ("not a mapping", 0, r"it records no data config or fit"),
])
def test_a_target_checkpoint_records_sizes_that_are_checked(tmp_path, data, seed, message):
    from aetl.api import trained_model

    path = target_pt(tmp_path / "target.pt", data, seed)
    with pytest.raises(AetlError, match=message) as raised:
        trained_model(path, torch.device("cpu"))
    assert str(raised.value).startswith(str(path)) and str(raised.value).endswith("not a checkpoint aetl wrote")
