"""UCI optdigits: 1,797 8x8 digits bundled with scikit-learn."""

from __future__ import annotations

import numpy as np

from aetl.data.domains import Domain, digit_classes, to_uint8


def load() -> Domain:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = to_uint8(bunch.images / 16.0)[:, None]  # the bundled values run 0..16
    return Domain("digits", images, bunch.target.astype(np.int64), digit_classes())
