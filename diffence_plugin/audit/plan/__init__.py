"""The plan of one audit: its schema (``schema``: typed sections with their defaults), the checks the schema
cannot make alone (``checks``), reading a file or preset with ``--set`` overrides and drawing the secret seed
(``load``), showing it without its secrets (``describe``), and its reference page (``reference``).
"""

from diffence_plugin.audit.plan.checks import check_plan, diffusion_max_timestep
from diffence_plugin.audit.plan.describe import describe, shareable
from diffence_plugin.audit.plan.load import (apply_overrides, config_error, draw_secret, extended, load_plan,
                                             load_preset, preset_path, read_config_file, resolve)
from diffence_plugin.audit.plan.schema import (FORMAT, PRESET_FOLDER, SECTION_MODELS, ConfigError, DefenseSpec, Plan,
                                               ReferenceRecipe, SweepSection, TrainingRecipe)

__all__ = ["FORMAT", "PRESET_FOLDER", "SECTION_MODELS", "ConfigError", "DefenseSpec", "Plan", "ReferenceRecipe",
           "SweepSection", "TrainingRecipe", "apply_overrides", "check_plan", "config_error", "describe", "diffusion_max_timestep",
           "draw_secret", "extended", "load_plan", "load_preset", "preset_path", "read_config_file", "resolve", "shareable"]
