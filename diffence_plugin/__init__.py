"""diffence-plugin: the Diffence membership-inference defense (NDSS 2025) for PyTorch and ART.

Pipeline: input -> reconstruct (``reconstruct.py``) -> classify (``classify.py``) -> select (``select.py``)
-> output, tied together by ``Diffence`` (``defense.py``). ART integration lives in
``diffence_plugin.adapters.art``; this package itself never imports ART.
"""

from .calibrate import Calibration
from .config import DiffenceConfig
from .defense import Diffence
from .hookspecs import hookimpl
from .memguard import MemGuard
from .outputs import Candidates, DefenseOutput
from .pipeline import DefensePipeline
from .plugins import get_defenses, get_plugin_manager
from .reconstruct import Reconstructor, cifar_unet_config, default_scheduler, tiny_unet_config
from .select import phi
from .train_diffusion import train_diffusion

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
