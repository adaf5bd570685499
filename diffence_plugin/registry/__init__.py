"""The registry: pluggy's hook specifications and the plugin manager, and nothing else.

It imports no domain code: the built-ins (``diffence_plugin.builtin``) and the adapters are plugins it loads
like any other, so every wing may look a name up here without importing the wings that provide it.
"""

from diffence_plugin.registry.hookspecs import hookimpl, hookspec
from diffence_plugin.registry.manager import (ENTRY_POINT_GROUP, LOAD_PLUGINS_ENV, RegisteredDefense,
                                              accepted_options, fold_hook, get_attacks, get_datasets, get_defenses,
                                              get_executors, get_models, get_plugin_manager, get_reporters,
                                              option_defaults, option_names)

__all__ = ["ENTRY_POINT_GROUP", "LOAD_PLUGINS_ENV", "RegisteredDefense", "accepted_options", "fold_hook",
           "get_attacks", "get_datasets", "get_defenses", "get_executors", "get_models", "get_plugin_manager",
           "get_reporters", "hookimpl", "hookspec", "option_defaults", "option_names"]
