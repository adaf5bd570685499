"""Small target classifiers and their training loop, for the demo and the tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 one-channel digits; wide enough to memorise its training set."""

    def __init__(self, nb_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, nb_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitsMLP(nn.Module):
    """A wide two-hidden-layer MLP for 8x8 digits: trained without regularisation it overfits its members,
    which makes it the vulnerable target of the demo."""

    def __init__(self, nb_classes: int = 10, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, nb_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_classifier(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int = 60, batch_size: int = 64,
                     lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0, progress: bool = True) -> nn.Module:
    """Train ``model`` with Adam and cross-entropy, no augmentation (the paper's undefended setting)."""
    from .training.common import run_epochs

    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    return run_epochs(model, xt, yt, cross_entropy_loss, epochs=epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, generator=torch.Generator().manual_seed(seed), progress=progress,
                      desc="target")


def cross_entropy_loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, epoch: int) -> torch.Tensor:
    """The plain objective, in the ``batch_loss(model, xb, yb, epoch)`` form of ``run_epochs``."""
    return nn.functional.cross_entropy(model(xb), yb)
