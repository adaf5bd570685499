"""The model zoo: target architectures by name (no training loops; those live in ``defenses.training``)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from diffence_plugin.data.cifar_models import DenseNet121, ResNet18


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


class CifarCNN(nn.Module):
    """A small CNN for 32x32 colour images (0.29 M parameters at width 16): three conv + max-pool blocks
    and a 256-unit hidden layer, no batch norm, no dropout. Trained without augmentation it memorises a few
    thousand members in minutes on a CPU, as the paper's targets memorise theirs."""

    def __init__(self, nb_classes: int = 10, channels: int = 3, width: int = 16) -> None:
        super().__init__()
        blocks, cin = [], channels
        for cout in (width, 2 * width, 4 * width):
            blocks += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(cin * 16, 256), nn.ReLU(),
                                  nn.Linear(256, nb_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "digits_cnn": lambda classes, channels: DigitsCNN(classes),
    "digits_mlp": lambda classes, channels: DigitsMLP(classes),
    "cifar_cnn": lambda classes, channels: CifarCNN(classes, channels),
    "resnet18": lambda classes, channels: ResNet18(classes, channels),
    "densenet121": lambda classes, channels: DenseNet121(classes, channels),
}


def zoo() -> dict[str, Callable[[int, int], nn.Module]]:
    """Every zoo architecture by name: the built-in ``MODELS`` and those plugins register
    (``diffence_register_models``)."""
    from diffence_plugin.registry.manager import get_models

    return get_models()


def build_model(name: str, nb_classes: int, channels: int, opacus_compatible: bool = False) -> nn.Module:
    """A fresh model by name from the zoo (plugins' models included); ``opacus_compatible`` swaps BatchNorm
    for GroupNorm (opacus' ModuleValidator.fix)."""
    models = MODELS if name in MODELS else zoo()
    if name not in models:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(models)}")
    model = models[name](nb_classes, channels)
    if opacus_compatible:
        from opacus.validators import ModuleValidator

        model = ModuleValidator.fix(model)
    return model


def reinitialised(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with fresh weights from ``seed`` (every submodule's ``reset_parameters``).

    Used where several models of one architecture must start independently: SELENA's sub-models, shadow
    models of the target's architecture.
    """
    import copy

    fresh = copy.deepcopy(model)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    finally:
        torch.random.set_rng_state(state)
    return fresh


class OnDevice(nn.Module):
    """A model that runs where its weights are, in the layout and precision chosen for that device.

    Inputs arrive from anywhere (the audit keeps records on the CPU) and go to the weights' device, in
    channels-last memory format if ``channels_last`` (faster convolutions on GPUs), under bf16 autocast if
    ``bf16`` (refused on CPUs: without bf16 units it runs 10-20x slower). Logits come back as float32 on
    the input's device, so every caller sees the plain model's interface.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", *, channels_last: bool = False,
                 bf16: bool = False) -> None:
        super().__init__()
        device = torch.device(device)
        if bf16 and device.type == "cpu":
            raise ValueError("bf16 on a CPU runs far slower than float32 without bf16 units; use it on a GPU only")
        self.channels_last, self.bf16 = channels_last, bf16
        self.model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        inputs = x.to(device)
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16 and device.type == "cuda"):
            out = self.model(inputs)
        return out.float().to(x.device)
