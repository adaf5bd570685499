"""Plugin wing: pluggy hook specifications, the plugin manager, built-in registrations and ``DefensePipeline``."""

from .hookspecs import hookimpl, hookspec
from .manager import (ENTRY_POINT_GROUP, LOAD_PLUGINS_ENV, RegisteredDefense, fold_hook, get_attacks, get_datasets,
                      get_defenses, get_executors, get_models, get_plugin_manager)
from .pipeline import DefensePipeline

__all__ = ["ENTRY_POINT_GROUP", "LOAD_PLUGINS_ENV", "DefensePipeline", "RegisteredDefense", "fold_hook",
           "get_attacks", "get_datasets", "get_defenses", "get_executors", "get_models",
           "get_plugin_manager", "hookimpl", "hookspec"]
