"""strategy=drcn: the joint loss trains the classifier and the decoder through one encoder,
no target label is read at 0 labels, a run killed mid-transfer resumes exactly, and a target
whose classes are not the source's is refused in one line."""

import dataclasses
import math

import pytest
import torch
from conftest import FIGURES, read_metrics, without_time
from hydra.utils import instantiate

import aetl.commands.train as pipeline
from aetl.commands.train import train
from aetl.data.pair import load_pair
from aetl.errors import AetlError
from aetl.infra.checkpoint import load_checkpoint
from aetl.infra.rundir import Run
from aetl.models import build_model
from aetl.strategies import Context
from aetl.strategies.drcn import JointClassify, shifted
from aetl.training.loop import Loop
from aetl.training.losses import Step

CPU = torch.device("cpu")
CONV = ["model=conv", "model.channels=[4,8]", "model.latent_dim=4", "strategy=drcn"]


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(module, before):
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def built(cfg, *overrides):
    """A drcn model started from a (random) Mf with a head, its phases, and the pair."""
    torch.manual_seed(0)
    pair = load_pair(cfg.data, 0, CPU)
    mf = build_model(cfg.model, pair.shape, len(pair.source.classes))
    node = cfg.strategy.copy()
    for o in overrides:
        key, value = o.split("=")
        node[key] = type(node[key])(value) if node[key] is not None else int(value)
    drcn = instantiate(node)
    ctx = Context(cfg.model, pair.shape, mf, CPU, pair)
    model = drcn.build(ctx)
    return model, drcn.phases(model, cfg.trainer, ctx), pair


def run_phases(model, phases, pair, tmp_path):
    for i, phase in enumerate(phases):
        Loop(torch.optim.Adam, eval_every=100, out=Run(tmp_path)).run(model, phase, pair.target.train,
                                                                      pair.target.val.pixels(), seed=i)


def test_the_joint_loss_trains_encoder_decoder_and_classifier(make_cfg, tmp_path):
    cfg = make_cfg(*CONV, "data.target.labels_per_class=0")
    model, phases, pair = built(cfg)
    (phase,) = phases
    assert phase.source_images is pair.source.train and phase.inputs is not None
    before = state(model)
    run_phases(model, phases, pair, tmp_path)
    assert {"encoder.0.weight", "decoder.0.weight", "head.weight"} <= changed(model, before)
    last = [r for r in read_metrics(tmp_path) if r["phase"] == "transfer"][-1]
    assert last["recon"] > 0 and last["cls"] > 0 and "im" in last
    assert "cls_target" not in last  # no target labels, no such term


def test_with_no_classification_share_the_classifier_stays_as_mf_left_it(make_cfg, tmp_path):
    model, phases, pair = built(make_cfg(*CONV, "strategy.balance=0", "strategy.adapt.im=0"))
    before = state(model)
    run_phases(model, phases, pair, tmp_path)
    assert not {k for k in changed(model, before) if k.startswith("head.")}
    assert "encoder.0.weight" in changed(model, before) and "decoder.0.weight" in changed(model, before)


def test_target_labels_join_the_cross_entropy_under_their_source_class(make_cfg, tmp_path):
    model, phases, pair = built(make_cfg(*CONV, "data.target.labels_per_class=5"))
    run_phases(model, phases, pair, tmp_path)
    assert "cls_target" in [r for r in read_metrics(tmp_path) if r["phase"] == "transfer"][-1]


def test_adabn_leaves_the_running_statistics_to_target_batches(make_cfg):
    model, _, pair = built(make_cfg(*CONV))
    model.train()
    norm = model.encoder[1]
    x, xs = pair.target.train.batch(slice(0, 8)), pair.source.train.batch(slice(0, 8))
    step = Step(model, x, torch.full((8,), -1), model(x), xs, pair.source.train.y[:8])
    kept = norm.running_mean.clone()
    JointClassify(1.0, pair.head_classes(), adabn=True)(step)
    assert torch.equal(norm.running_mean, kept) and norm.momentum == 0.1
    losses = JointClassify(1.0, pair.head_classes(), adabn=False, im=0.5)(step)
    assert not torch.equal(norm.running_mean, kept)
    assert set(losses) == {"cls", "im"} and losses["im"] <= 0.5 * math.log(len(pair.target.classes))


def test_shifts_move_whole_pixels_within_the_bound():
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1
    moved = shifted(x, 2)
    rows, cols = (moved[:, 0] == 1).nonzero()[:, 1:].T
    assert len(rows) == 64 and (rows - 4).abs().max() <= 2 and (cols - 4).abs().max() <= 2
    assert len({(r, c) for r, c in zip(rows.tolist(), cols.tolist())}) > 5
    assert moved.sum() == 64  # one pixel each, none blurred


def test_source_augmentations_invert_tint_and_mix_in_target_images(make_cfg):
    """What the classifier sees of a source batch: half inverted, channels scaled by gains in
    [0.2, 1], and a target image of the batch blended in by a share up to `mix`."""
    drcn = instantiate(make_cfg(*CONV).strategy)
    drcn.augment.source, drcn.augment.shift = False, 0
    x = torch.rand(400, 3, 4, 4)
    torch.manual_seed(0)
    drcn.augment.invert, drcn.augment.tint = True, False
    flipped = (drcn._source_inputs(x, x) - (1 - x)).abs().amax((1, 2, 3)) < 1e-6
    assert 150 < flipped.sum() < 250
    drcn.augment.invert, drcn.augment.tint = False, True
    gains = (drcn._source_inputs(x, x) / x).amax((2, 3))  # one gain per image and channel
    assert gains.min() >= 0.2 and gains.max() <= 1 and gains.std() > 0.2
    assert not torch.allclose(gains[:, 0], gains[:, 1])
    drcn.augment.tint, drcn.augment.mix = False, 0.5
    blend = JointClassify(1.0, None, drcn._source_inputs)
    model = build_model(make_cfg(*CONV).model, (3, 4, 4), 4)
    seen = []
    model.encode = lambda images: seen.append(images) or torch.zeros(len(images), 4)
    target = torch.ones(400, 3, 4, 4)
    source, labels = torch.zeros(400, 3, 4, 4), torch.zeros(400, dtype=torch.long)
    blend(Step(model, target, torch.full((400,), -1), None, source, labels))
    shares = seen[0].amax((1, 2, 3))  # black source + white target: the share itself
    assert shares.min() >= 0 and shares.max() <= 0.5 and shares.mean() == pytest.approx(0.25, abs=0.03)


def _poisoned(load_target, calls):
    def load(cfg, seed, cache_dir=None):
        unmapped = load_target(cfg, seed, cache_dir)
        domain = unmapped.domain
        wrong = (domain.labels + 1) % len(domain.classes)  # every target label wrong, the classes the same
        calls.append(wrong)
        return dataclasses.replace(unmapped, domain=dataclasses.replace(domain, labels=wrong))
    return load


@pytest.mark.parametrize("strategy", [["strategy=drcn"], ["strategy=auto", "strategy.candidates=[finetune,drcn]"]])
def test_no_target_label_is_read_at_0_labels(make_cfg, tmp_path, monkeypatch, strategy):
    cfg = make_cfg(*strategy, "data.target.labels_per_class=0", "cache_dir=null")
    honest = train(cfg, tmp_path / "honest")
    calls = []
    monkeypatch.setattr(pipeline, "load_target", _poisoned(pipeline.load_target, calls))
    poisoned = train(cfg, tmp_path / "poisoned")
    assert len(calls) == 1  # the run read the poisoned labels' domain
    a, b = (load_checkpoint(tmp_path / d / "checkpoints" / "target.pt")["model"] for d in ("honest", "poisoned"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert poisoned.get("chosen") == honest.get("chosen")
    assert honest["target_val_im"] == poisoned["target_val_im"] is not None


@pytest.mark.parametrize("strategy", ["drcn", "drcn_styled"])  # drcn_styled: the source restyled, randomly
def test_a_run_killed_mid_transfer_resumes_to_the_same_figures(make_cfg, tmp_path, monkeypatch, strategy):
    cfg = make_cfg(f"strategy={strategy}", "data.target.labels_per_class=0", "cache_dir=null", "trainer.checkpoint_every=7",
                   "trainer.pretrain.steps=30", "trainer.transfer.steps=30")
    reference = train(cfg, tmp_path / "reference")
    with monkeypatch.context() as patch:  # the process dies after step 15, its last.pt from step 14
        log_metrics = Run.log_metrics

        def die(self, phase, epoch=None, step=None, **metrics):
            log_metrics(self, phase, epoch, step, **metrics)
            if (phase, step) == ("transfer", 15):
                raise SystemExit("killed")

        patch.setattr(Run, "log_metrics", die)
        with pytest.raises(SystemExit):
            train(cfg, tmp_path / "killed")
    last = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["loop"]
    assert (last["phase"], last["step"]) == ("transfer", 14)
    resumed = train(cfg, tmp_path / "killed")
    assert [resumed[k] for k in FIGURES] == [reference[k] for k in FIGURES]
    assert without_time(read_metrics(tmp_path / "killed")) == without_time(read_metrics(tmp_path / "reference"))


def test_a_target_whose_classes_are_not_the_sources_is_refused_at_0_labels(make_cfg, tmp_path, caplog, monkeypatch):
    cfg = make_cfg("strategy=drcn", "data.target.labels_per_class=0", "data.target.load.n_classes=6")

    def no_mf(*args, **kwargs):
        raise AssertionError("Mf was asked for: the refusal must come before pretraining")

    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "settle_fit", no_mf)
        with pytest.raises(AetlError, match=r"^strategy=drcn with no target labels needs the target's classes among "
                                            r"the source's \(source: .*; target: .*\): there is no shared "
                                            r"label space to adapt; give the target labels "
                                            r"\(data.target.labels_per_class > 0\) or choose another strategy$"):
            train(cfg, tmp_path / "refused")
    assert not (tmp_path / "refused" / "summary.json").exists()
    caplog.set_level("INFO")
    auto = train(make_cfg("strategy=auto", "data.target.labels_per_class=0", "data.target.load.n_classes=6"),
                 tmp_path / "auto")  # the default candidates: finetune, drcn, drcn_styled
    assert set(auto["candidates"]) == {"scratch", "finetune"}  # the drcn ones left out, the reason logged
    assert "drcn left out: strategy=drcn with no target labels" in caplog.text
    assert "drcn_styled left out: strategy=drcn_styled with no target labels" in caplog.text


def test_a_source_model_without_a_classifier_is_refused(make_cfg, tmp_path):
    with pytest.raises(AetlError, match="strategy=drcn trains Mf's source classifier, and this Mf has none"):
        train(make_cfg("strategy=drcn", "trainer.pretrain.cls_weight=0"), tmp_path)
