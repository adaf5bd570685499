"""diffence-plugin: the Diffence membership-inference defense (NDSS 2025) for PyTorch and ART.

Pipeline: input -> reconstruct (``reconstruct.py``) -> classify (``classify.py``) -> select (``select.py``)
-> output, tied together by ``Diffence`` (``defense.py``), all at the top of the package. Other concerns
live in their own wings: ``defenses`` (MemGuard, HAMP, training-time defenses), ``plugins`` (pluggy hooks,
``DefensePipeline``), ``evaluation`` (protocol, metrics, attacks, reports), ``data`` (datasets, model zoo),
``diffusion`` (DDPM training) and ``recipes`` (demo, reproduce). ART integration lives in
``diffence_plugin.adapters``; the core never imports ART.
"""

from .calibrate import Calibration
from .config import DiffenceConfig
from .defense import Diffence
from .defenses import MemGuard
from .diffusion import train_diffusion
from .outputs import Candidates, DefenseOutput
from .plugins import DefensePipeline, get_defenses, get_plugin_manager, hookimpl
from .reconstruct import Reconstructor, cifar_unet_config, default_scheduler, tiny_unet_config
from .select import phi

__all__ = [
    "Calibration",
    "Candidates",
    "DefenseOutput",
    "DefensePipeline",
    "Diffence",
    "DiffenceConfig",
    "MemGuard",
    "Reconstructor",
    "cifar_unet_config",
    "default_scheduler",
    "get_defenses",
    "get_plugin_manager",
    "hookimpl",
    "phi",
    "tiny_unet_config",
    "train_diffusion",
]
__version__ = "0.1.0"
