import pytest
import torch

from aetl.errors import AetlError
from aetl.infra.checkpoint import load_checkpoint
from aetl.infra.rundir import Run
from aetl.models import build_model, rebuild
from aetl.models.conv import ConvAE
from aetl.models.fconv import FullyConvAE
from aetl.models.mlp import MLPAE
from aetl.models.resnet import ResNetAE
from aetl.models.weights import transfer_weights


@pytest.mark.parametrize("model", [MLPAE((1, 12, 12), latent_dim=5, hidden=[16]),
                                   ConvAE((3, 16, 16), latent_dim=6, channels=[4, 8]),
                                   ConvAE((1, 28, 28), latent_dim=3, channels=[4, 8])])
def test_shapes_and_range(model):
    x = torch.rand(7, *model.in_shape)
    out = model(x)
    assert out.recon.shape == x.shape and out.z.shape == (7, model.latent_dim)
    assert 0 <= out.recon.min() and out.recon.max() <= 1
    model.eval()
    assert torch.allclose(model.decode(model.encode(x)), model(x).recon)


def test_build_from_config(make_cfg):
    model = build_model(make_cfg("model=conv", "model.channels=[4,8]", "model.latent_dim=7").model, (1, 16, 16))
    assert isinstance(model, ConvAE) and model.latent_dim == 7


def test_shapes_a_backbone_cannot_take():
    with pytest.raises(AetlError, match="divisible by 8, got 28x28"):
        ConvAE((1, 28, 28), channels=[4, 8, 16])
    with pytest.raises(AetlError, match="latent_dim must be >= 1"):
        MLPAE((1, 8, 8), latent_dim=0)


def test_one_step_changes_every_trainable_weight():
    model = ConvAE((1, 16, 16), latent_dim=4, channels=[4, 8])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(8, 1, 16, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.mse_loss(model(x).recon, x).backward()
    opt.step()
    for name, p in model.named_parameters():
        assert not torch.equal(p, before[name]), name


def test_checkpoint_round_trip(tmp_path):
    model = MLPAE((1, 8, 8), latent_dim=3, hidden=[10])
    run = Run(tmp_path)
    path = run.save_checkpoint("m.pt", {"model": model.state_dict()})
    clone = MLPAE((1, 8, 8), latent_dim=3, hidden=[10])
    clone.load_state_dict(load_checkpoint(path)["model"])
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(clone(x).recon, model(x).recon)


@pytest.mark.parametrize("norm, code", [("group", "flat"), ("batch", "map")])
def test_resnet_shapes_features_and_stride(norm, code):
    model = ResNetAE((3, 32, 32), latent_dim=12, channels=[4, 8, 16], blocks=2, norm=norm,
                     latent_channels=5 if code == "map" else None)
    x = torch.rand(3, 3, 32, 32)
    out = model(x)
    assert out.recon.shape == x.shape and 0 <= out.recon.min() and out.recon.max() <= 1
    assert model.factor == 8 and model.flat_code == (code == "flat")
    assert out.z.shape == ((3, 12) if code == "flat" else (3, 5, 4, 4)) and model.latent_dim == out.z[0].numel()
    maps = model.features(x)
    assert [f.shape[1:] for f in maps[:-1]] == [(4, 32, 32), (4, 16, 16), (8, 8, 8), (16, 4, 4)]
    assert torch.equal(maps[-1], model.encode(x))
    model.add_head(3)
    assert model.logits(out.z).shape == (3, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.nn.functional.mse_loss(model(x).recon, x).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n != "head.weight" and
               n != "head.bias")


@pytest.mark.parametrize("build, good, bad, works", [
    (lambda s: ConvAE((1, s, s), latent_dim=3, channels=[4, 8]), [20, 36], 30, "28 or 32"),
    (lambda s: FullyConvAE((3, s, s), latent_channels=2, channels=[4, 8]), [12, 44], 42, "40 or 44"),
    (lambda s: ResNetAE((3, s, s), latent_dim=3, channels=[4, 8, 16]), [24, 40, 96], 60, "56 or 64"),
])
def test_convolutional_backbones_take_any_size_their_stride_divides(build, good, bad, works):
    for size in good:
        x = torch.rand(2, build(size).in_shape[0], size, size)
        assert build(size)(x).recon.shape == x.shape
    with pytest.raises(AetlError, match=f"needs an image size divisible by .*, got {bad}x{bad}; set data.image_size "
                                        f"to a multiple of .* \\(e.g. {works}\\)"):
        build(bad)


def test_resnet_weights_start_a_wider_resnet():
    small = ResNetAE((3, 16, 16), latent_dim=6, channels=[4, 8])
    wide = ResNetAE((3, 16, 16), latent_dim=10, channels=[8, 16])
    report = transfer_weights(wide, small.state_dict())
    assert not report.new and not report.unused and report.partial and report.copied
    assert torch.equal(wide.encoder[0][0].weight[:4], small.encoder[0][0].weight)
    with pytest.raises(AetlError, match="model=resnet needs norm in"):
        ResNetAE((3, 16, 16), norm="layer")


def test_a_resnet_recipe_of_the_older_keys_rebuilds_the_same_network():
    """Before `channels` and `latent_channels: null`, resnet took width, depth and code: flat | map."""
    for old, new in (({"width": 4, "depth": 2, "code": "flat", "latent_channels": 32}, {"latent_channels": None}),
                     ({"width": 4, "depth": 2, "code": "map", "latent_channels": 5}, {"latent_channels": 5})):
        recipe = {"model_cfg": {"_target_": "aetl.models.resnet.ResNetAE", "latent_dim": 6, "blocks": 1,
                                "norm": "group", **old}, "in_shape": [3, 16, 16], "n_classes": 0}
        rebuilt = rebuild(recipe)
        same = ResNetAE((3, 16, 16), latent_dim=6, channels=[4, 8], **new)
        assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == \
               [(k, v.shape) for k, v in same.state_dict().items()]


def test_fconv_settings_it_cannot_take():
    from aetl.models.fconv import FullyConvAE

    with pytest.raises(AetlError, match="unknown model.upsample 'bicubic'; choose one of resize, transpose"):
        FullyConvAE((3, 16, 16), upsample="bicubic")
    with pytest.raises(AetlError, match="model.convs must be >= 1, got 0"):
        FullyConvAE((3, 16, 16), convs=0)


@pytest.mark.parametrize("upsample", ["resize", "transpose"])
@pytest.mark.parametrize("convs", [1, 2])
def test_fconv_codes_are_feature_maps_of_any_divisible_size(upsample, convs):
    from aetl.models.fconv import FullyConvAE

    model = FullyConvAE((3, 16, 16), latent_channels=5, channels=[4, 8], convs=convs, upsample=upsample).eval()
    assert model.latent_dim == 5 * 4 * 4
    x = torch.rand(2, 3, 24, 40)  # not the training size: any multiple of 4 goes
    out = model(x)
    assert out.z.shape == (2, 5, 6, 10) and out.recon.shape == x.shape
    assert 0 <= out.recon.min() and out.recon.max() <= 1
