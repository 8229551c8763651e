"""The extra loss terms: zero when they should be, scale-free, and they pull the right way."""

import pytest
import torch

from aetl.commands.train import train
from aetl.models.mlp import MLPAE
from aetl.training.losses import AlignLoss, ClassifyLoss, FeatureLoss, Step, coral, mmd


def codes(n=64, d=4, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + shift


def test_discrepancies_vanish_on_identical_codes_and_grow_with_a_shift():
    a = codes()
    for fn in (coral, mmd):
        assert fn(a, a).item() == pytest.approx(0, abs=1e-6)
    assert mmd(a, codes(shift=2.0, seed=1)) > mmd(a, codes(seed=1)) > 0
    assert coral(a, codes(seed=1) * 3) > coral(a, codes(seed=1)) > 0


@pytest.mark.parametrize("kind", ["coral", "mmd"])
def test_alignment_is_scale_free_and_training_on_it_lowers_it(kind):
    zs = codes(seed=1)
    zt = codes(seed=2) * 2 + 1
    model = MLPAE((1, 2, 2), latent_dim=4, hidden=[8])
    step = Step(model, None, None, _out(zt))
    step._zs = zs
    small = AlignLoss(kind, 1.0)(step)["align"]
    scaled = Step(model, None, None, _out(zt * 100))
    scaled._zs = zs * 100
    assert AlignLoss(kind, 1.0)(scaled)["align"].item() == pytest.approx(small.item(), rel=1e-4)
    # A learnable affine map of the target codes, trained on the alignment loss alone.
    scale, shift = torch.ones(4, requires_grad=True), torch.zeros(4, requires_grad=True)
    opt = torch.optim.Adam([scale, shift], lr=0.05)
    first = None
    for _ in range(60):
        s = Step(model, None, None, _out(zt * scale + shift))
        s._zs = zs
        loss = AlignLoss(kind, 1.0)(s)["align"]
        first = first if first is not None else loss.item()
        opt.zero_grad(), loss.backward(), opt.step()
    assert loss.item() < 0.5 * first


def _out(z):
    from aetl.models import AEOutput
    return AEOutput(None, z)


def test_feature_loss_is_zero_against_itself_and_pulls_codes_back():
    model = MLPAE((1, 4, 4), latent_dim=3, hidden=[8])
    x = torch.rand(16, 1, 4, 4)
    term = FeatureLoss(model, 1.0)
    assert term(Step(model, x, None, model(x)))["feature"].item() == 0
    drifted = MLPAE((1, 4, 4), latent_dim=3, hidden=[8])
    opt = torch.optim.Adam(drifted.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = term(Step(drifted, x, None, drifted(x)))["feature"]
        losses.append(loss.item())
        opt.zero_grad(), loss.backward(), opt.step()
    assert losses[-1] < 0.2 * losses[0]


def test_classify_loss_trains_the_head_and_skips_unlabelled_batches():
    model = MLPAE((1, 4, 4), latent_dim=3, hidden=[8])
    model.add_head(2)
    x = torch.rand(16, 1, 4, 4)
    unlabelled = torch.full((16,), -1)
    assert ClassifyLoss(1.0)(Step(model, x, unlabelled, model(x))) == {}
    y = (x.mean((1, 2, 3)) > x.mean()).long()
    head_before = model.head.weight.clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = ClassifyLoss(1.0)(Step(model, x, y, model(x)))["cls"]
        losses.append(loss.item())
        opt.zero_grad(), loss.backward(), opt.step()
    assert losses[-1] < 0.5 * losses[0] and not torch.equal(model.head.weight, head_before)
    # On source batches it reads the step's source images and labels instead.
    step = Step(model, x, unlabelled, model(x), xs=x, ys=y)
    assert ClassifyLoss(1.0, on_source=True)(step)["cls"].item() == pytest.approx(losses[-1], rel=0.2)


def test_source_labels_give_a_classifier_for_zero_target_labels(make_cfg, tmp_path):
    # The target is drawn from the source's classes (same patterns), so Mf's classifier applies.
    summary = train(make_cfg("trainer.pretrain.cls_weight=1.0", "trainer.pretrain.steps=60",
                             "data.target.labels_per_class=0", "data.target.seed=1", "trainer.transfer.cls_weight=0.5",
                             "trainer.align.kind=coral"), tmp_path)
    assert summary["source_labels"] is True and summary["n_target_labelled"] == 0
    assert summary["target_acc"] == summary["target_acc_source_head"] and summary["target_acc"] > 0.5
    text = (tmp_path / "metrics.jsonl").read_text()
    assert '"cls"' in text and '"align"' in text
    no_labels = train(make_cfg("data.target.labels_per_class=0", "trainer.pretrain.cls_weight=0"), tmp_path / "plain")
    assert no_labels["target_acc"] is None and no_labels["source_labels"] is False
