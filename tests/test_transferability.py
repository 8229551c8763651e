"""aetl rank's scores: LogME against a per-class transcription of You et al.'s algorithm, and
the LogME gain with its bootstrap standard error."""

import math

import pytest
import torch

from aetl.evaluation.transferability import logme, logme_gain, paired_difference, pca_codes, resampled


def logme_one_class_at_a_time(features, labels, iterations=50):
    """The paper's Algorithm 1, one class (one-hot column) at a time, in plain floats."""
    f = features.double()
    f = (f - f.mean(0)) / f.std(0, unbiased=False).clamp_min(1e-8)
    n, d = f.shape
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    sigma, evidences = s.square(), []
    for c in labels.unique():
        t = (labels == c).double()
        z2 = (u.T @ t).square()
        outside = (t.square().sum() - z2.sum()).clamp_min(0)
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            gamma = (beta * sigma / (alpha + beta * sigma)).sum()
            m2 = (beta ** 2 * sigma * z2 / (alpha + beta * sigma).square()).sum()
            res2 = (alpha ** 2 * z2 / (alpha + beta * sigma).square()).sum() + outside
            new = (gamma / (m2 + 1e-10)).item(), ((n - gamma) / (res2 + 1e-10)).item()
            done = abs(new[0] - alpha) / alpha < 1e-4 and abs(new[1] - beta) / beta < 1e-4
            alpha, beta = new
            if done:
                break
        log_det = torch.log(alpha + beta * sigma).sum() + (d - len(sigma)) * math.log(alpha)
        evidence = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi)
                    - beta / 2 * res2 - alpha / 2 * m2 - log_det / 2)
        evidences.append(evidence.item() / n)
    return sum(evidences) / len(evidences)


@pytest.mark.parametrize("n, d, classes", [(100, 32, 10), (40, 64, 4), (200, 8, 2)])
def test_logme_matches_the_per_class_algorithm(n, d, classes):
    gen = torch.Generator().manual_seed(n)
    y = torch.randint(classes, (n,), generator=gen)
    x = torch.randn(n, d, generator=gen)
    x[:, 0] += 2 * y  # one informative feature
    assert logme(x, y) == pytest.approx(logme_one_class_at_a_time(x, y), abs=1e-9)


def test_the_gain_of_informative_codes_is_many_standard_errors_above_noise():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 4
    informative = torch.randn(120, 8, generator=gen) + torch.nn.functional.one_hot(y, 8) * 3
    noise = torch.randn(120, 8, generator=gen)
    gain, se = logme_gain(informative, noise, y)
    assert gain == pytest.approx(logme(informative, y) - logme(noise, y))
    assert se > 0 and gain > 5 * se
    same, se_same = logme_gain(noise, noise, y)
    assert same == 0 and se_same == 0  # paired resamples: a score against itself has no spread


def test_pca_codes_keep_at_most_one_fewer_components_than_images():
    framed = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    assert pca_codes(framed, 12).shape == (5, 4) and pca_codes(framed, 2).shape == (5, 2)


def test_logme_of_codes_that_do_not_vary_does_not_exist():
    y = torch.arange(50) % 10
    assert math.isnan(logme(torch.ones(50, 8), y)) and math.isnan(logme(torch.zeros(50, 8), y))
    one_varies = torch.ones(50, 8)
    one_varies[:, 3] = torch.arange(50.0)
    assert math.isfinite(logme(one_varies, y))


def test_the_paired_difference_of_two_sources_cancels_what_they_share():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 4
    pca = torch.randn(120, 8, generator=gen)
    good = torch.randn(120, 8, generator=gen) + torch.nn.functional.one_hot(y, 8) * 3
    close = good + 0.05 * torch.randn(120, 8, generator=gen)  # nearly the same codes: nearly the same gain
    noise = torch.randn(120, 8, generator=gen)
    same, se_same, why = paired_difference((good, pca), (good, pca), y)
    assert same == 0 and se_same == 0 and why is None
    far, se_far, _ = paired_difference((good, pca), (noise, pca), y)
    assert far == pytest.approx((logme(good, y) - logme(pca, y)) - (logme(noise, y) - logme(pca, y)))
    assert far > 5 * se_far
    near, se_near, _ = paired_difference((good, pca), (close, pca), y)
    assert abs(near) < 2 * se_near  # within two standard errors: no winner
    assert se_near < resampled(lambda pick: logme(good[pick], y[pick]) - logme(pca[pick], y[pick]), y)[0]


def test_a_missing_standard_error_says_why():
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    codes = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    assert resampled(lambda pick: logme(codes[pick], y[pick]), y)[1] is None
    se, why = resampled(lambda pick: logme(codes[pick], y[pick]), torch.tensor([0, 0, 0, 1, 2, 2, 2, 2]))
    assert math.isnan(se) and why.startswith("class 1 has 1 labelled image; resampling for a standard error needs")
    se, why = resampled(lambda pick: logme(torch.ones(8, 3)[pick], y[pick]), y)
    assert math.isnan(se) and why == "LogME is undefined on 100 of 100 resamples of the labelled images"
