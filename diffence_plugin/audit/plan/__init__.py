"""The plan of one audit: its schema (sections, keys, defaults), reading and checking it, and describing it.

``schema`` says what a plan may hold; ``checks`` says whether a resolved plan can work, before any work;
``load`` reads a file or preset, applies ``--set`` overrides, fills in defaults and draws the secret seed;
``describe`` shows it without its secrets and the work it implies (``--dry-run``).
"""

from diffence_plugin.audit.plan.checks import (
                                             check_plan,
                                             check_recipe,
                                             diffusion_max_timestep,
)
from diffence_plugin.audit.plan.describe import describe, shareable
from diffence_plugin.audit.plan.load import (
                                             apply_overrides,
                                             draw_secret,
                                             load_plan,
                                             load_preset,
                                             preset_path,
                                             read_config_file,
                                             resolve,
)
from diffence_plugin.audit.plan.schema import (
                                             DEFAULTS,
                                             FORMAT,
                                             PRESET_FOLDER,
                                             RECIPE_KEYS,
                                             SECTIONS,
                                             ConfigError,
                                             check_type,
)

__all__ = ["DEFAULTS", "FORMAT", "PRESET_FOLDER", "RECIPE_KEYS", "SECTIONS", "ConfigError", "apply_overrides",
           "check_plan", "check_recipe", "check_type", "describe", "diffusion_max_timestep", "draw_secret",
           "load_plan", "load_preset", "preset_path", "read_config_file", "resolve", "shareable"]
