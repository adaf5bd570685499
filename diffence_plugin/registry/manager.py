"""The plugin manager and the registries it answers (defenses, attacks, executors, datasets, models)."""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

import pluggy

from diffence_plugin.registry import hookspecs

ENTRY_POINT_GROUP = "diffence_plugin"
LOAD_PLUGINS_ENV = "DIFFENCE_LOAD_PLUGINS"
DEFAULT_PLUGINS = ("diffence_plugin.builtin",)  # the one module named here: it registers every built-in
OWN_DISTRIBUTION = "diffence-plugin"  # its adapters (ART, Ray) are entry points like any plugin's
STAGES = ("training", "pre_inference", "post_inference")


def get_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with the built-ins and the entry points of group ``diffence_plugin``.

    The built-ins are one module (``diffence_plugin.builtin``); the adapters that ship with diffence-plugin
    (ART's attacks and postprocessors, the Ray executor) are entry points of its own distribution, which
    always load. ``DIFFENCE_LOAD_PLUGINS`` (read now, not at import) filters the others: unset loads every
    installed plugin; ``""`` none; ``"a,b"`` the entry points named a and b.
    Raises ``pluggy.PluginValidationError`` when a plugin implements a hook that does not exist.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    allowed = os.environ.get(LOAD_PLUGINS_ENV)
    if allowed is None:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    else:
        wanted = {name.strip() for name in allowed.split(",") if name.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            own = ep.dist is not None and ep.dist.name == OWN_DISTRIBUTION
            if (own or ep.name in wanted) and pm.get_plugin(ep.name) is None:
                pm.register(ep.load(), name=ep.name)
    for module in DEFAULT_PLUGINS:
        if pm.get_plugin(module) is None:
            pm.register(importlib.import_module(module), name=module)
    pm.check_pending()
    return pm


@dataclass(frozen=True)
class RegisteredDefense:
    """A defense offered by a plugin."""

    name: str
    stage: str
    factory: Callable[..., Any]


def get_defenses(pm: pluggy.PluginManager | None = None) -> dict[str, RegisteredDefense]:
    """Every registered defense by name; a name registered twice is an error naming both factories."""
    pm = pm or get_plugin_manager()
    found: dict[str, RegisteredDefense] = {}

    def registrar(stage: str):
        def register(name: str, factory: Callable[..., Any]) -> None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"defense names must be non-empty strings, got {name!r}")
            if name in found:
                raise ValueError(f"defense {name!r} registered twice: {found[name].factory!r} and {factory!r}")
            found[name] = RegisteredDefense(name, stage, factory)
        return register

    pm.hook.diffence_register_training_defenses(register=registrar("training"))
    pm.hook.diffence_register_pre_inference(register=registrar("pre_inference"))
    pm.hook.diffence_register_post_inference(register=registrar("post_inference"))
    return found


def _registry(hook: pluggy.HookCaller, what: str) -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}

    def register(name: str, factory: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what} names must be non-empty strings, got {name!r}")
        if name in found:
            raise ValueError(f"{what} {name!r} registered twice: {found[name]!r} and {factory!r}")
        found[name] = factory

    hook(register=register)
    return found


def get_attacks(pm: pluggy.PluginManager | None = None) -> dict[str, Callable[..., Any]]:
    """Every membership attack family registered (``diffence_register_attacks``: threshold, lira, rmia, art
    and the plugins' own), by name; ``attacks.families.as_family`` makes each a family."""
    return _registry((pm or get_plugin_manager()).hook.diffence_register_attacks, "attack")


def get_executors(pm: pluggy.PluginManager | None = None) -> dict[str, Callable[..., Any]]:
    """Every executor registered (``diffence_register_executors``: local, and ray from its adapter), by name."""
    return _registry((pm or get_plugin_manager()).hook.diffence_register_executors, "executor")


def get_reporters(pm: pluggy.PluginManager | None = None) -> dict[str, Callable[..., Any]]:
    """Every report writer registered (``diffence_register_reporters``: html, and the plugins' own), by name."""
    return _registry((pm or get_plugin_manager()).hook.diffence_register_reporters, "reporter")


def get_datasets(pm: pluggy.PluginManager | None = None) -> dict[str, Callable[..., Any]]:
    """Every dataset registered (``diffence_register_datasets``: digits, cifar10, cifar100, svhn and the
    plugins' own), by name, each a ``loader(folder) -> data.ImageDataset``."""
    return _registry((pm or get_plugin_manager()).hook.diffence_register_datasets, "dataset")


def get_models(pm: pluggy.PluginManager | None = None) -> dict[str, Callable[..., Any]]:
    """Every zoo model registered (``diffence_register_models``: the built-in zoo and the plugins' own), by
    name, each a ``factory(nb_classes, channels) -> torch.nn.Module``."""
    return _registry((pm or get_plugin_manager()).hook.diffence_register_models, "model")


def option_names(factory: Callable[..., Any]) -> list[str] | None:
    """The keyword options a registered factory accepts, in its signature's order (None: any, it takes
    ``**kwargs``). The one place a factory's signature is read, with ``option_defaults``."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name != "self" and p.kind is not p.VAR_POSITIONAL]


def accepted_options(factory: Callable[..., Any]) -> set[str] | None:
    """``option_names`` as a set: what a plan's or a command's options are checked against."""
    names = option_names(factory)
    return None if names is None else set(names)


def option_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """A factory's keyword options with their defaults (those without one left out), in signature order."""
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()
            if p.name != "self" and p.default is not inspect.Parameter.empty}


def fold_hook(caller: pluggy.HookCaller, value_name: str, value: Any, **kwargs: Any) -> Any:
    """Run every implementation of ``caller`` in pluggy's call order, each on the previous output."""
    for impl in reversed(caller.get_hookimpls()):
        args = {value_name: value, **kwargs}
        out = impl.function(**{name: args[name] for name in impl.argnames})
        if out is not None:
            value = out
    return value
