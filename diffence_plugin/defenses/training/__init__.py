"""Training targets with or without a training-time defense (DP-SGD, RelaxLoss, HAMP, SELENA, AdvReg)."""

from __future__ import annotations

import time

import numpy as np
import torch

from diffence_plugin.data.models import MODELS, OnDevice, build_model
from diffence_plugin.defenses.training.common import (
    TrainedTarget,
    accuracy_of,
    as_tensors,
    load_target,
    save_target,
    train_classifier,
)
from diffence_plugin.defenses.training.dpsgd import DPSGD, to_plain_model

TRAINING_DEFENSES = ("none", "dpsgd", "relaxloss", "hamp", "selena", "advreg")


def train_target(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, defense: str = "none",
                 model: str = "digits_mlp", nb_classes: int | None = None, epochs: int = 100, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0, progress: bool = True,
                 test: tuple | None = None, reference: tuple | None = None, options: dict | None = None,
                 plugin_manager=None, device: str = "cpu", channels_last: bool = False,
                 bf16: bool = False) -> TrainedTarget:
    """Train ``model`` (a name from ``MODELS``) on members ``x, y`` (images in [0, 1]) with ``defense``.

    Args:
        defense: a registered training-time defense ("none", "dpsgd", "relaxloss", "hamp", "selena", "advreg"
            or a plugin's); ``options`` are its constructor arguments.
        test: optional (x_test, y_test) for the test accuracy in the metrics.
        reference: (x, y) of defender-held non-members, needed by AdvReg.
        device, channels_last, bf16: where and how to train; any of them other than the CPU default wraps
            the model in ``OnDevice`` (the training data moves to the device too).
    Returns:
        The trained plain model (no opacus hooks) with its metrics: train/test accuracy, seconds, and for
        DP-SGD the spent epsilon.
    """
    from diffence_plugin.registry import get_defenses

    registry = get_defenses(plugin_manager)
    entry = registry.get(defense)
    if entry is None or entry.stage != "training":
        names = sorted(name for name, e in registry.items() if e.stage == "training")
        raise ValueError(f"unknown training defense {defense!r}; choose from {names}")
    xt, yt = as_tensors(x, y)
    k = nb_classes or int(yt.max()) + 1
    if int(yt.max()) >= k:
        raise ValueError(f"labels reach {int(yt.max())} but nb_classes={k}")
    trainer = entry.factory(**(options or {}))
    opacus = bool(getattr(trainer, "opacus_compatible", False))
    torch.manual_seed(seed)
    net = build_model(model, k, xt.shape[1], opacus_compatible=opacus)
    if device != "cpu" or channels_last or bf16:
        net = OnDevice(net, device, channels_last=channels_last, bf16=bf16)
        xt, yt = xt.to(device), yt.to(device)
    ref = None if reference is None else as_tensors(*reference)
    start = time.perf_counter()
    net, extra = trainer.train(net, xt, yt, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                               generator=torch.Generator().manual_seed(seed), progress=progress, reference=ref,
                               nb_classes=k)
    metrics = {"seconds": time.perf_counter() - start, "train_accuracy": accuracy_of(net, xt, yt), **extra}
    if test is not None:
        metrics["test_accuracy"] = accuracy_of(net, *as_tensors(*test))
    return TrainedTarget(model=net.eval(), model_name=model, defense=defense, nb_classes=k,
                         input_shape=tuple(xt.shape[1:]), options=dict(options or {}), metrics=metrics,
                         opacus_compatible=opacus)


__all__ = ["DPSGD", "MODELS", "TRAINING_DEFENSES", "TrainedTarget", "build_model", "load_target", "save_target",
           "to_plain_model", "train_classifier", "train_target"]
