"""sklearn's bundled 8x8 digits as images: the project's offline dataset for demos and tests."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits as float32 (S, 1, 8, 8) images in [0, 1] and int64 labels; no download."""
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    return x, bunch.target.astype(np.int64)
