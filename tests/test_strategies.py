import copy

import pytest
import torch

from aetl.errors import AetlError
from aetl.loop import Phase, run_phase
from aetl.models.conv import ConvAE
from aetl.rundir import Run
from aetl.strategies import load_weights
from aetl.strategies.finetune import Finetune
from aetl.strategies.scratch import Scratch


def new_model():
    return ConvAE((1, 16, 16), latent_dim=4, channels=[4, 8])


def adam(groups):
    return torch.optim.Adam(groups)


def test_scratch_ignores_the_source_and_trains_everything(make_cfg):
    source = new_model()
    model = Scratch("scratch").build(new_model, source)
    assert not torch.equal(model.encoder[0].weight, source.encoder[0].weight)
    (phase,) = Scratch("scratch").phases(model, make_cfg().trainer)
    assert sum(len(g["params"]) for g in phase.groups) == len(list(model.parameters()))


def test_finetune_starts_from_the_source_with_per_part_lrs(make_cfg):
    source = new_model()
    strategy = Finetune("finetune", encoder_lr_scale=0.1)
    model = strategy.build(new_model, source)
    for (name, a), b in zip(model.state_dict().items(), source.state_dict().values()):
        assert torch.equal(a, b), name
    trainer = make_cfg().trainer
    (phase,) = strategy.phases(model, trainer)
    enc, dec = phase.groups
    assert enc["lr"] == pytest.approx(0.1 * trainer.transfer.lr) and dec["lr"] == trainer.transfer.lr
    assert {id(p) for p in enc["params"]} == {id(p) for p in model.encoder.parameters()}


def test_run_phase_trains_and_logs(tmp_path):
    model = new_model()
    before = copy.deepcopy(model.state_dict())
    x = torch.rand(40, 1, 16, 16)
    phase = Phase("transfer", 6, 8, [{"params": list(model.parameters()), "lr": 1e-2}])
    run = Run(tmp_path)
    run_phase(model, phase, x, x[:10], run, adam, eval_every=3, seed=0, progress=False)
    assert not torch.equal(model.decoder[0].weight, before["decoder.0.weight"])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"step": 6' in lines[1] and '"val_mse"' in lines[1]
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def test_frozen_parts_stay_bit_identical_including_batchnorm_stats(tmp_path):
    model = new_model()
    frozen = copy.deepcopy(model.encoder.state_dict())
    x = torch.rand(32, 1, 16, 16) * 0.5 + 0.3  # statistics unlike BatchNorm's initial ones
    phase = Phase("transfer", 5, 8, [{"params": list(model.parameters()), "lr": 1e-2}], frozen=[model.encoder])
    run_phase(model, phase, x, x[:4], Run(tmp_path), adam, eval_every=5, seed=0, progress=False)
    for name, value in model.encoder.state_dict().items():
        assert torch.equal(value, frozen[name]), name
    assert not torch.equal(model.decoder[0].weight, new_model().decoder[0].weight)


def test_bad_learning_rate_and_divergence(tmp_path):
    model = new_model()
    x = torch.rand(16, 1, 16, 16)
    with pytest.raises(AetlError, match="learning rates must be > 0"):
        run_phase(model, Phase("transfer", 2, 4, [{"params": list(model.parameters()), "lr": -1.0}]),
                  x, x, Run(tmp_path), adam, 1, 0, False)
    with torch.no_grad():
        model.decoder[0].weight.fill_(float("nan"))
    with pytest.raises(AetlError, match="loss became nan"):
        run_phase(model, Phase("transfer", 2, 4, [{"params": list(model.parameters()), "lr": 1e-3}]),
                  x, x, Run(tmp_path), adam, 1, 0, False)


def test_weights_that_do_not_fit_are_refused():
    other = ConvAE((1, 16, 16), latent_dim=9, channels=[4, 8])
    with pytest.raises(AetlError, match=r"do not fit the chosen model \(misshapen"):
        load_weights(new_model(), other.state_dict(), "ckpt.pt")
