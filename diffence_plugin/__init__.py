"""diffence-plugin: the Diffence membership-inference defense (Peng, Naseh & Houmansadr, NDSS 2025) for
PyTorch and ART, with a membership audit (threshold attacks, LiRA, RMIA, ART's attacks).

Pipeline: input -> reconstruct (``reconstruct.py``) -> classify (``classify.py``) -> select (``select.py``)
-> output, tied together by ``Diffence`` (``defense.py``), all at the top of the package. Other concerns
live in their own wings (docs/architecture.md): ``registry`` (pluggy hooks and the plugin manager),
``diffusion``, ``data``, ``defenses`` (post-inference and training-time defenses, ``DefensePipeline``),
``attacks``, ``audit`` (the plan, the stages and the run behind every command), ``report``, ``cli``, and
``builtin``, which registers the built-ins. ART and Ray live in ``diffence_plugin.adapters``, registered by
entry points; the core never imports them.

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
