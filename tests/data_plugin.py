"""A plugin that registers a dataset and a zoo model, for tests/test_plugins.py (loaded by name, not
installed): generated stripes (no download) and a small MLP for them."""

import numpy as np
from torch import nn

from diffence_plugin.data import ImageDataset
from diffence_plugin.registry import hookimpl


def stripes(folder=None) -> ImageDataset:
    """Generated 8x8 one-channel images: four classes of horizontal, vertical and diagonal stripes plus noise."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:8, 0:8]
    patterns = np.stack([rows % 2, cols % 2, (rows + cols) % 2, (rows // 2 + cols // 2) % 2]).astype(np.float32)
    labels = rng.integers(0, 4, size=500)
    images = np.clip(0.7 * patterns[labels] + rng.uniform(0, 0.3, size=(500, 8, 8)), 0, 1).astype(np.float32)
    return ImageDataset(images[:400, None], labels[:400], images[400:, None], labels[400:], 4)


def stripes_mlp(nb_classes: int, channels: int) -> nn.Module:
    """A one-hidden-layer MLP for 8x8 images of ``channels`` channels."""
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * 64, 64), nn.ReLU(), nn.Linear(64, nb_classes))


@hookimpl
def diffence_register_datasets(register):
    register("stripes", stripes)


@hookimpl
def diffence_register_models(register):
    register("stripes_mlp", stripes_mlp)
