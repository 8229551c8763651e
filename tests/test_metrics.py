import math

import pytest
import torch
from torch import nn

from aetl.data.storage import Split
from aetl.evaluation.metrics import accuracy, fit_probe, reconstruction_metrics
from aetl.models import AutoEncoder


class Fixed(AutoEncoder):
    """Encodes to the first pixels; decodes to a constant image."""

    def __init__(self, value: float) -> None:
        super().__init__((1, 2, 2), latent_dim=2)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Identity())
        self.value = value

    def encode(self, x):
        return x.flatten(1)[:, :2]

    def decode(self, z):
        return torch.full((len(z), 1, 2, 2), self.value)


def test_mse_and_psnr_by_hand():
    x = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    m = reconstruction_metrics(Fixed(0.5), x)
    assert m["mse"] == pytest.approx((0.25 + 0.0) / 2)
    # per-image PSNR: 10*log10(1/0.25) = 6.02 dB and the 1e-10 floor (100 dB) for the exact image
    assert m["psnr"] == pytest.approx((10 * math.log10(4) + 100) / 2, rel=1e-5)


def probe_accuracy(model, x_train, y_train, x_test, y_test, n_classes):
    return accuracy(fit_probe(model, x_train, y_train, n_classes), Split(x_test, y_test))


def test_probe_separates_separable_codes_and_not_random_ones():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    x = torch.rand(200, 1, 2, 2, generator=g) * 0.1
    x[:, 0, 0, 0] += y * 0.5  # the first code coordinate carries the class
    acc = probe_accuracy(Fixed(0.0), x[:100], y[:100], x[100:], y[100:], n_classes=2)
    assert acc == 1.0
    noise = torch.rand(200, 1, 2, 2, generator=g)
    acc = probe_accuracy(Fixed(0.0), noise[:100], y[:100], noise[100:], y[100:], n_classes=2)
    assert 0.3 < acc < 0.7
