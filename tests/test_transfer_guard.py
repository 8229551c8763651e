"""Transfer on the user's own images: the fit chosen for a folder and recorded, source heads
that belong to the source's classes, strategy=auto as a guard against a bad source, and
aetl rank putting a matching source above a mismatched one."""

import json

import numpy as np
import pytest
import torch
from conftest import options
from hydra import compose, initialize_config_module
from PIL import Image

from aetl.commands.rank import rank, recommend
from aetl.commands.train import train
from aetl.data.domains import synthetic
from aetl.data.fit import MAPPED_AT_MOST
from aetl.errors import AetlError, user_error
from aetl.infra.checkpoint import load_checkpoint

FIGURES = ["target_mse", "target_psnr", "target_acc", "target_val_mse"]


def write_folder(root, classes, invert=False, n=16, seed=2):
    """A labelled folder of the synthetic domain's images (seed 2: the tiny target's patterns)."""
    d = synthetic.load(n=n * len(classes), n_classes=len(classes), seed=seed)
    for i, (image, label) in enumerate(zip(d.images, d.labels)):
        pixels = image[0] if not invert else 1 - image[0]
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    return root


def folder_overrides(root, n_train=8, lpc=2):
    return ["data/target=folder", f"data.target.root={root}", f"data.target.n_train={n_train}",
            f"data.target.labels_per_class={lpc}", "data.target.n_val=8", "data.target.n_test=8"]


@pytest.mark.parametrize("cache", ["on", "off"])
@pytest.mark.parametrize("classes, head", [(["cats", "dogs"], False), (["class0", "class1", "class3"], True)])
def test_folders_with_fewer_classes_than_the_source_train_with_the_default_config(make_cfg, tmp_path, cache,
                                                                                    classes, head):
    """The source head keeps the source's 4 classes; it scores the target only when every target
    class is one of the source's (here by name), and is null otherwise."""
    root = write_folder(tmp_path / "images", classes)
    extra = [] if cache == "on" else ["cache_dir=null"]
    summary = train(make_cfg(*folder_overrides(root), *extra, "data.target.labels_per_class=0"), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "source.pt")["model"]["head.weight"].shape[0] == 4
    assert summary["n_target_labelled"] == 0
    assert (summary["target_acc_source_head"] is not None) == head
    assert (summary["target_acc"] is not None) == head  # with no target labels, only the source head can score
    again = train(make_cfg(*folder_overrides(root), *extra), tmp_path / "probe")  # 2 labels per class: the probe
    assert again["target_acc"] is not None and again["source_cache"] == ("hit" if cache == "on" else "off")


def test_a_folder_gets_a_fit_chosen_with_mf_and_recorded(make_cfg, tmp_path):
    """The choice itself is test_fit.py's (inverted, framed, off-centre, colour targets);
    here: a folder run makes it with Mf, even for scratch, and records it consistently."""
    root = write_folder(tmp_path / "images", ["class0", "class1", "class2", "class3"], invert=True, n=12)
    summary = train(make_cfg(*folder_overrides(root, 16), "strategy=scratch", "trainer.pretrain.steps=60"),
                    tmp_path / "run")
    scores, chosen = summary["target_fit_scores"], _label(summary)
    assert len(scores) == 21 and summary["target_fit_images"] == 48 - 16  # all but validation and test
    if min(scores.values()) > MAPPED_AT_MOST:  # (Mf after 60 steps) no mapping applies: kept as they are
        assert chosen == "resize"
    else:
        assert scores[chosen] <= MAPPED_AT_MOST
    assert summary["target_invert"] == (summary["target_tone_map"][0] < 0)
    assert summary["source_fit"] == "resize" and summary["source_tone"] == "keep"
    assert summary["source_model"] == "pretrained"  # scratch needs Mf here, to choose the fit with
    assert summary["source_labels"] is False  # ... but none of its weights


def _label(summary):
    where = "resize" if summary["target_fit"] == "resize" else f"{summary['target_fit']} m{summary['target_margin']}"
    return where if summary["target_tone"] == "keep" else f"{where} {summary['target_tone']}"


def test_auto_keeps_scratch_when_mf_is_deliberately_bad(make_cfg, tmp_path):
    good = train(make_cfg("strategy=finetune"), tmp_path / "good")
    ckpt = load_checkpoint(tmp_path / "good" / "checkpoints" / "source.pt")
    torch.manual_seed(1)
    ckpt["model"] = {k: v + 3 * torch.randn_like(v) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, tmp_path / "bad.pt")
    auto = train(make_cfg("strategy=auto", "strategy.candidates=[finetune]", f"pretrained={tmp_path / 'bad.pt'}"),
                 tmp_path / "auto")
    scratch = train(make_cfg("strategy=scratch"), tmp_path / "scratch")
    assert auto["strategy"] == "auto" and auto["chosen"] == "scratch"
    assert set(auto["candidates"]) == {"scratch", "finetune"}
    assert auto["candidates"]["finetune"]["val_mse"] > auto["candidates"]["scratch"]["val_mse"]
    # The kept model is scratch's own: the same figures as scratch trained alone
    assert [auto[k] for k in FIGURES] == [scratch[k] for k in FIGURES]
    assert auto["transfer_steps"] == scratch["transfer_steps"] and not auto["source_labels"]
    records = [json.loads(line) for line in (tmp_path / "auto" / "metrics.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in records} >= {"scratch/transfer", "finetune/transfer"}
    assert good["strategy"] == "finetune"


def test_auto_names_its_candidates_and_needs_a_validation_split(make_cfg, tmp_path):
    with pytest.raises(Exception) as raised:  # (Hydra's instantiate wraps it; the CLI shows the AetlError)
        train(make_cfg("strategy=auto", "strategy.candidates=[finetnue]"), tmp_path / "a")
    others = options("strategy").replace("auto, ", "")
    assert str(user_error(raised.value)) == f"strategy.candidates=['finetnue'] names ['finetnue']; choose among {others}"
    with pytest.raises(AetlError, match="set data.target.n_val >= 1"):
        train(make_cfg("strategy=auto", "data.target.n_val=0"), tmp_path / "b")


def test_rank_puts_a_matching_source_above_a_mismatched_one(make_cfg, tmp_path, capsys):
    """Two source models: one trained on the target's own patterns (seed 2), one on others (seed 7)."""
    for name, seed in (("match", 2), ("other", 7)):
        train(make_cfg("strategy=finetune", f"data.source.seed={seed}", "trainer.pretrain.steps=80",
                       "trainer.transfer.steps=1"), tmp_path / name)
    with initialize_config_module("aetl.configs", version_base="1.3"):
        cfg = compose("rank", overrides=["data=synthetic_pair", "model=mlp", "model.hidden=[32]", "model.latent_dim=4",
                                         "trainer.device=cpu", "sources=[]", "models=[" + ",".join(
                                             str(tmp_path / n / "checkpoints" / "source.pt") for n in ("other", "match")) + "]"])
    result = rank(cfg, tmp_path / "rank", [])
    order = [row["source"] for row in result["sources"]]
    assert order[0].endswith("match/checkpoints/source.pt") and order[1].endswith("other/checkpoints/source.pt")
    best, worst = result["sources"]
    assert best["zero_shot"] < worst["zero_shot"] and best["logme_gain"] > worst["logme_gain"]
    assert best["logme_gain"] == pytest.approx(best["logme"] - best["logme_pca"], abs=2e-4) and best["logme_gain_se"] > 0
    assert result["recommendation"].startswith(("use ", "no source", "too close to call"))
    assert json.loads((tmp_path / "rank" / "rank.json").read_text())["sources"] == result["sources"]
    assert (tmp_path / "rank" / "rank.csv").read_text().splitlines()[0].startswith("source,fit,zero_shot")
    assert result["recommendation"] in capsys.readouterr().out


@pytest.mark.parametrize("gain, se, note, verdict", [
    (0.05, 0.01, None, "use a: transfer is expected to help (LogME of a's codes +0.0500 ± 0.0100"),
    (-0.05, 0.01, None, "no source is expected to help (LogME of a's codes -0.0500 ± 0.0100"),
    (0.015, 0.01, None, "too close to call (LogME of a's codes +0.0150 ± 0.0100"),
    (0.05, None, "no standard error: class 3 has 1 labelled image; resampling for a standard error needs at least 2",
     "too close to call: LogME of a's codes +0.0500 against the target's own PCA codes, with no standard error "
     "(class 3 has 1 labelled image;"),
    (None, None, "LogME undefined: Mf's codes do not vary across the labelled images (are the images identical?)",
     "no verdict for a: LogME undefined: Mf's codes do not vary"),
    (None, None, "no LogME without labels of at least two target classes",
     "no verdict without labels of at least two target classes: a reconstructs the target best"),
])
def test_the_verdict_calls_helps_or_hurts_only_two_standard_errors_from_zero(gain, se, note, verdict):
    row = {"source": "a", "zero_shot": 0.3, "logme_gain": gain, "logme_gain_se": se, "behind_best": None,
           "behind_best_se": None, "note": note}
    assert recommend([row]).startswith(verdict)


@pytest.mark.parametrize("behind, se, verdict", [
    (-0.005, 0.01, "use a or b: transfer is expected to help (LogME of a's codes +0.0500 ± 0.0100 against the target's "
     "own PCA codes (per image; ± one standard error)), but a is ahead of b by only +0.0050 ± 0.0100 (paired, within "
     "two standard errors)"),
    (-0.03, 0.01, "use a: transfer is expected to help (LogME of a's codes +0.0500 ± 0.0100 against the target's own "
     "PCA codes (per image; ± one standard error)); +0.0300 ± 0.0100 ahead of b (paired)"),
])
def test_use_x_needs_x_two_standard_errors_ahead_of_the_runner_up(behind, se, verdict):
    best = {"source": "a", "zero_shot": 0.3, "logme_gain": 0.05, "logme_gain_se": 0.01, "behind_best": None,
            "behind_best_se": None, "note": None}
    runner = {**best, "source": "b", "logme_gain": 0.05 + behind, "behind_best": behind, "behind_best_se": se}
    assert recommend([best, runner]).startswith(verdict)


def test_rank_refuses_nothing_and_a_model_of_another_shape(make_cfg, tmp_path):
    with initialize_config_module("aetl.configs", version_base="1.3"):
        nothing = compose("rank", overrides=["data=synthetic_pair", "trainer.device=cpu", "sources=[]"])
        wrong = compose("rank", overrides=["data=synthetic_pair", "trainer.device=cpu", "sources=[]",
                                           f"models=[{tmp_path / 'big' / 'checkpoints' / 'source.pt'}]"])
    with pytest.raises(AetlError, match=r"nothing to rank: give sources=\[mnist,fashion_mnist,...\]"):
        rank(nothing, tmp_path / "a", [])
    with initialize_config_module("aetl.configs", version_base="1.3"):
        unknown = compose("rank", overrides=["data=synthetic_pair", "sources=[mnsit]"])
        with pytest.raises(AetlError, match="unknown source 'mnsit' in sources; choose among digits, fashion_mnist"):
            rank(unknown, tmp_path / "c", ["data=synthetic_pair"])
    assert not (tmp_path / "c" / "rank.json").exists()
    foreign = tmp_path / "foreign.pt"  # a checkpoint naming code outside aetl's autoencoders as its model
    torch.save({"model": {"w": torch.zeros(1)}, "model_cfg": {"_target_": "os.system"}, "shape": [1, 16, 16]}, foreign)
    with initialize_config_module("aetl.configs", version_base="1.3"):
        crafted = compose("rank", overrides=["data=synthetic_pair", "trainer.device=cpu", "sources=[]", f"models=[{foreign}]"])
    with pytest.raises(AetlError, match="the checkpoint's model is 'os.system', not one of aetl's autoencoders"):
        rank(crafted, tmp_path / "d", [])
    train(make_cfg("data.image_size=8", "trainer.pretrain.steps=2", "trainer.transfer.steps=1"), tmp_path / "big")
    with pytest.raises(AetlError, match=r"is not a source model for 1x16x16 images \(it was trained for \[1, 8, 8\]\)"):
        rank(wrong, tmp_path / "b", [])


def test_auto_at_0_labels_weighs_the_im_score_by_source_accuracy(make_cfg):
    """IM alone rewards a classifier that collapsed onto confident wrong classes (MNIST -> MNIST-M:
    drcn's IM 0.84 with 25% target accuracy, its source accuracy down to 70%, against drcn_styled's
    0.69 with 72%); weighed by source accuracy it loses. A small loss of source accuracy, the price
    of adapting, costs only as much (UCI digits -> MNIST: drcn at 93.6% source accuracy is 11 points
    better on the target than finetune at 98.0%, which a guard on the source accuracy set aside)."""
    from hydra.utils import instantiate
    auto = instantiate(make_cfg("strategy=auto").strategy)

    def figures(*candidates):
        return [{"val_mse": 0.01, "val_acc": None, "labelled": 0, "val_im": im, "source_val_acc": acc}
                for im, acc in candidates]

    scratch = (None, None)
    assert auto.choose(figures(scratch, (0.654, 0.648), (0.837, 0.700), (0.692, 0.952))) == 3  # collapsed
    assert auto.choose(figures(scratch, (0.729, 0.948), (0.890, 0.964), (0.620, 0.960))) == 2
    assert auto.choose(figures(scratch, (0.739, 0.980), (0.914, 0.936), (0.471, 0.788))) == 2
    assert auto.choose(figures(scratch, (0.8, 0.91), (0.9, 0.8))) == 1  # 0.728 against 0.720
    assert auto.choose(figures(scratch, (0.8, 0.89), (0.9, 0.8))) == 2  # 0.712 against 0.720
    assert auto.choose(figures(scratch, (0.8, None), (0.7, 0.99))) == 1  # no source figure: IM alone
