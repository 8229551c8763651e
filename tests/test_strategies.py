"""What each strategy builds from Mf, what it freezes, and how its phases train."""

import copy

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from aetl.data.storage import Split
from aetl.errors import AetlError
from aetl.infra.rundir import Run
from aetl.models import build_model
from aetl.models.weights import load_weights
from aetl.strategies import Context
from aetl.training.loop import Loop, Phase

CPU = torch.device("cpu")
SHAPE = (1, 16, 16)
X = torch.rand(48, *SHAPE) * 0.5 + 0.25  # statistics unlike BatchNorm's initial ones
TRAIN = Split(X, torch.arange(48) % 4)


def adam(groups):
    return torch.optim.Adam(groups)


LOOP = Loop(adam, eval_every=5)


@pytest.fixture
def conv_cfg(make_cfg):
    return make_cfg("model=conv", "model.channels=[4,8]", "model.latent_dim=4")


def source_and_ctx(cfg, tmp_path):
    source = build_model(cfg.model, SHAPE)
    LOOP.run(source, Phase("pretrain", 5, 16, [{"params": list(source.parameters()), "lr": 1e-2}]),
             TRAIN, X[:8], seed=0)  # real BatchNorm statistics
    return source, Context(cfg.model, SHAPE, source, CPU)


def strategy(cfg, name, *overrides):
    node = OmegaConf.merge(cfg.strategy if cfg.strategy.name == name else _compose_strategy(name),
                           OmegaConf.from_dotlist(list(overrides)))
    return instantiate(node)


def _compose_strategy(name):
    from hydra import compose, initialize_config_module
    with initialize_config_module("aetl.configs", version_base="1.3"):
        return compose("train", overrides=[f"strategy={name}"]).strategy


def train_phases(model, phases, tmp_path):
    for i, phase in enumerate(phases):
        Loop(adam, eval_every=100, out=Run(tmp_path)).run(model, phase, TRAIN, X[:8], seed=i)


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same(module, before):
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_scratch_is_fresh_and_trains_everything(conv_cfg, tmp_path):
    source, ctx = source_and_ctx(conv_cfg, tmp_path)
    s = strategy(conv_cfg, "scratch")
    model = s.build(ctx)
    assert not s.uses_source and not torch.equal(model.encoder[0].weight, source.encoder[0].weight)
    (phase,) = s.phases(model, conv_cfg.trainer, ctx)
    assert sum(len(g["params"]) for g in phase.groups) == len(list(model.parameters()))


def test_finetune_copies_mf_and_unfreezes_gradually(conv_cfg, tmp_path):
    source, ctx = source_and_ctx(conv_cfg, tmp_path)
    s = strategy(conv_cfg, "finetune", "encoder_lr_scale=0.1", "unfreeze_fraction=0.4")
    model = s.build(ctx)
    assert_same(model, state(source))
    first, second = s.phases(model, conv_cfg.trainer, ctx)
    assert first.steps + second.steps == conv_cfg.trainer.transfer.steps and first.steps == 4
    enc, rest = second.groups
    assert enc["lr"] == pytest.approx(0.1 * rest["lr"])
    encoder_before = state(model.encoder)
    train_phases(model, [first], tmp_path)
    assert_same(model.encoder, encoder_before)  # weights and BatchNorm statistics
    train_phases(model, [second], tmp_path)
    assert not torch.equal(model.encoder[0].weight, encoder_before["0.weight"])


def test_fixed_init_preserves_mf_in_a_larger_model_then_freezes_then_ties(make_cfg, tmp_path):
    cfg = make_cfg("model=conv", "model.channels=[4,8]", "model.latent_dim=4")
    source, ctx = source_and_ctx(cfg, tmp_path)
    s = strategy(cfg, "fixed_init", "target_model={latent_dim: 7, channels: [6, 8]}", "frozen_fraction=0.5",
                 "feature_weight=0.5")
    model = s.build(ctx)
    assert model.latent_dim == 7 and model.encoder[0].weight.shape[0] == 6
    # Mf's weights fill the leading block; the new inputs start at zero, so the larger
    # model computes exactly what Mf computes.
    assert torch.equal(model.encoder[0].weight[:4], source.encoder[0].weight)
    model.eval(), source.eval()
    assert torch.allclose(model(X).recon, source(X).recon, atol=1e-6)
    assert torch.allclose(model.encode(X)[:, :4], source.encode(X), atol=1e-6)
    frozen, tied = s.phases(model, cfg.trainer, ctx)
    assert model.encoder in frozen.frozen and tied.losses
    encoder_before = state(model.encoder)
    train_phases(model, [frozen], tmp_path)
    assert_same(model.encoder, encoder_before)
    train_phases(model, [tied], tmp_path)
    assert not torch.equal(model.encoder[0].weight, encoder_before["0.weight"])
    assert '"feature"' in (tmp_path / "metrics.jsonl").read_text()


@pytest.mark.parametrize("at", ["latent", "input"])
@pytest.mark.parametrize("backbone", [["model=conv", "model.channels=[4,8]"], ["model=mlp", "model.hidden=[16]"]])
def test_concat_feeds_a_frozen_mf_to_a_larger_model(make_cfg, tmp_path, at, backbone):
    cfg = make_cfg(*backbone, "model.latent_dim=4")
    source, ctx = source_and_ctx(cfg, tmp_path)
    s = strategy(cfg, "concat", f"at={at}", "target_model={latent_dim: 9}")
    model = s.build(ctx)
    out = model(X[:5])
    assert out.recon.shape == (5, *SHAPE) and out.z.shape == (5, 9 + 4)
    source.eval()
    assert torch.allclose(out.z[:, 9:], source.encode(X[:5]))
    mf_before = state(model.mf)
    train_phases(model, s.phases(model, cfg.trainer, ctx), tmp_path)
    assert_same(model.mf, mf_before)  # weights and BatchNorm statistics
    assert not torch.equal(model.decoder[0].weight, build_model(cfg.model, SHAPE).decoder[0].weight)


def test_mixed_concat_finetune_starts_the_inner_model_from_mf(conv_cfg, tmp_path):
    source, ctx = source_and_ctx(conv_cfg, tmp_path)
    s = strategy(conv_cfg, "mixed", "parts=[concat,finetune]")
    model = s.build(ctx)
    assert torch.equal(model.encoder[0].weight, source.encoder[0].weight)
    assert model.decoder[0].weight.shape[1] == 2 * source.latent_dim  # [own code, Mf code]
    assert torch.equal(model.decoder[0].weight[:, :4], source.decoder[0].weight)
    assert (model.decoder[0].weight[:, 4:] == 0).all()
    mf_before = state(model.mf)
    train_phases(model, s.phases(model, conv_cfg.trainer, ctx), tmp_path)
    assert_same(model.mf, mf_before)


@pytest.mark.parametrize("parts", ["[finetune,fixed_init]", "[concat,scratch]", "[concat]", "[concat,concat]"])
def test_impossible_mixtures_are_refused(conv_cfg, parts):
    with pytest.raises(Exception) as info:
        strategy(conv_cfg, "mixed", f"parts={parts}")
    assert "is not a mixture aetl can make; use [concat,finetune] or [concat,fixed_init]" in str(info.value)


def test_frozen_parts_stay_bit_identical_in_the_loop(conv_cfg, tmp_path):
    model = build_model(conv_cfg.model, SHAPE)
    before = state(model.encoder)
    phase = Phase("transfer", 5, 8, [{"params": list(model.parameters()), "lr": 1e-2}], frozen=[model.encoder])
    LOOP.run(model, phase, TRAIN, X[:4], seed=0)
    assert_same(model.encoder, before)
    # The next phase trains what this one froze.
    LOOP.run(model, Phase("transfer", 2, 8, [{"params": list(model.parameters()), "lr": 1e-2}]),
             TRAIN, X[:4], seed=0)
    assert not torch.equal(model.encoder[0].weight, before["0.weight"])


def test_bad_learning_rate_and_divergence(conv_cfg, tmp_path):
    model = build_model(conv_cfg.model, SHAPE)
    with pytest.raises(AetlError, match="learning rates must be > 0"):
        Loop(adam, eval_every=1, out=Run(tmp_path)).run(model, Phase("transfer", 2, 4, [{"params": list(model.parameters()), "lr": -1.0}]),
                                     TRAIN, X, seed=0)
    with torch.no_grad():
        model.decoder[0].weight.fill_(float("nan"))
    with pytest.raises(AetlError, match="loss became nan"):
        Loop(adam, eval_every=1, out=Run(tmp_path)).run(model, Phase("transfer", 2, 4, [{"params": list(model.parameters()), "lr": 1e-3}]),
                                     TRAIN, X, seed=0)


def test_weights_that_do_not_fit_are_refused(conv_cfg):
    other = build_model(OmegaConf.merge(conv_cfg.model, {"latent_dim": 9}), SHAPE)
    with pytest.raises(AetlError, match=r"do not fit the chosen model \(misshapen"):
        load_weights(build_model(conv_cfg.model, SHAPE), other.state_dict(), "ckpt.pt")


def test_run_phase_logs_each_loss_term(conv_cfg, tmp_path):
    model = build_model(conv_cfg.model, SHAPE)
    ref = copy.deepcopy(model)
    from aetl.training.losses import FeatureLoss
    phase = Phase("transfer", 6, 8, [{"params": list(model.parameters()), "lr": 1e-2}], losses=[FeatureLoss(ref, 1.0)])
    Loop(adam, eval_every=3, out=Run(tmp_path)).run(model, phase, TRAIN, X[:10], seed=0)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"step": 6' in lines[1]
    for key in ('"train_loss"', '"recon"', '"feature"', '"val_mse"'):
        assert key in lines[1]


def test_precision_settings(conv_cfg, tmp_path):
    assert Loop.from_config(conv_cfg.trainer, CPU).precision == "fp32"  # auto: fp32 on a CPU
    bad = OmegaConf.merge(conv_cfg.trainer, {"precision": "fp8"})
    with pytest.raises(AetlError, match="trainer.precision must be auto, fp32 or bf16"):
        Loop.from_config(bad, CPU)
    model = build_model(conv_cfg.model, SHAPE)
    before = state(model)
    Loop(adam, eval_every=5, precision="bf16", out=Run(tmp_path)).run(
        model, Phase("transfer", 5, 8, [{"params": list(model.parameters()), "lr": 1e-2}]), TRAIN, X[:4], seed=0)
    assert not torch.equal(model.decoder[0].weight, before["decoder.0.weight"])
    assert '"train_loss"' in (tmp_path / "metrics.jsonl").read_text()
