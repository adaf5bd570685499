"""diffence-plugin: the Diffence membership-inference defense (Peng, Naseh & Houmansadr, NDSS 2025) for
PyTorch and ART, with a membership audit (threshold attacks, LiRA, RMIA, ART's attacks).

Pipeline: input -> reconstruct (``reconstruct.py``) -> classify (``classify.py``) -> select (``select.py``)
-> output, tied together by ``Diffence`` (``defense.py``), all at the top of the package. Other concerns
live in their own wings: ``defenses`` (MemGuard, HAMP, training-time defenses), ``plugins`` (pluggy hooks,
``DefensePipeline``), ``evaluation`` (protocol, metrics, attacks, reports), ``data`` (datasets, model zoo),
``diffusion`` (DDPM training, DualMD's pair and DistillMD's student); the audit engine that every command
runs is ``evaluation.engine``, and the demo and CIFAR presets are plan files in ``presets``.
ART integration lives in ``diffence_plugin.adapters``; the core never imports ART.

The names below are imported on first use, so that ``diffence --help`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_PUBLIC = {
    "Calibration": ".calibrate",
    "Candidates": ".outputs",
    "DefenseOutput": ".outputs",
    "DefensePipeline": ".defenses.pipeline",
    "Diffence": ".defense",
    "DiffenceConfig": ".config",
    "DualReconstructor": ".reconstruct",
    "MemGuard": ".defenses",
    "Reconstructor": ".reconstruct",
    "cifar_unet_config": ".reconstruct",
    "default_scheduler": ".reconstruct",
    "get_defenses": ".registry",
    "get_plugin_manager": ".registry",
    "hookimpl": ".registry",
    "phi": ".select",
    "tiny_unet_config": ".reconstruct",
    "train_diffusion": ".diffusion",
    "train_distilled": ".diffusion",
    "train_dual": ".diffusion",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
