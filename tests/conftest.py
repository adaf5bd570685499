"""Shared fixtures: tiny real diffusers UNets and tiny real torch classifiers, all on the CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel
from torch import nn

from diffence_plugin import Reconstructor, tiny_unet_config

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_reconstructor(channels: int = 1, size: int = 8, seed: int = 0) -> Reconstructor:
    torch.manual_seed(seed)
    return Reconstructor(UNet2DModel(**tiny_unet_config(size, channels, width=16)))


class LinearClassifier(nn.Module):
    """A random linear classifier on flattened images (logits out)."""

    def __init__(self, features: int = 64, classes: int = 10, scale: float = 3.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(features, classes)
        with torch.no_grad():
            self.linear.weight.mul_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture(scope="session")
def reconstructor() -> Reconstructor:
    return make_reconstructor()


@pytest.fixture()
def classifier() -> LinearClassifier:
    return LinearClassifier().eval()


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.round(torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 255) / 255  # 8-bit


@pytest.fixture(scope="session")
def digits():
    from diffence_plugin.data import digits_images

    return digits_images()


def onehot(y: np.ndarray, k: int = 10) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[y]
