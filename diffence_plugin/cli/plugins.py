"""``diffence plugins``: what is registered, and the names a plan can use."""

from __future__ import annotations

import argparse

from diffence_plugin.cli.common import (_command)


def add(sub) -> None:
    plugins = _command(sub, "plugins", "list the loaded plugins, every registered defense with its options, and the "
                       "names a plan can use", "diffence plugins")
    plugins.set_defaults(func=_plugins)


def _options_of(factory) -> str:
    """A factory's keyword options with their defaults, as ``diffence plugins`` lists them."""
    from diffence_plugin.registry import option_defaults, option_names

    defaults = option_defaults(factory)
    shown = [f"{name}={defaults[name]!r}" if name in defaults else name for name in option_names(factory) or []]
    return ", ".join(shown) or "none"


def _plugins(args: argparse.Namespace) -> int:
    """What is registered: defenses by stage with their options, and the other names a plan can use."""
    from diffence_plugin.attacks.families import BUILTIN
    from diffence_plugin.audit.plan import PRESET_FOLDER
    from diffence_plugin.registry import (
        get_attacks,
        get_datasets,
        get_defenses,
        get_executors,
        get_models,
        get_plugin_manager,
    )

    pm = get_plugin_manager()
    print("plugins loaded: " + ", ".join(sorted(name for name, _ in pm.list_name_plugin())))
    for stage in ("training", "pre_inference", "post_inference"):
        print(f"\n{stage.replace('_', '-')} defenses ([[defenses]] name, options):" if stage != "training" else
              "\ntraining-time defenses ([target.train] defense, options):")
        for name, entry in sorted(get_defenses(pm).items()):
            if entry.stage == stage:
                print(f"  {name}: {_options_of(entry.factory)}")
    art = get_attacks(pm).get("art")
    choices = f": {', '.join(art.choices())}" if hasattr(art, "choices") else ""
    print("\nattack families: threshold ([attacks].threshold), lira and rmia ([attacks].references > 0), labels "
          "([attacks].labels)" + (f", art ([attacks].art{choices})" if art is not None else ""))
    print("zoo models ([target].model): " + ", ".join(sorted(get_models(pm))))
    print("datasets ([data].dataset): " + ", ".join(sorted(get_datasets(pm))))
    attacks = {name: factory for name, factory in get_attacks(pm).items() if name not in BUILTIN}
    print("plugin attacks ([attacks].plugins): " + (", ".join(f"{n} ({_options_of(f)})" for n, f in sorted(attacks.items()))
                                                    or "none installed"))
    print("executors ([run].executor): " + ", ".join(sorted(get_executors(pm))))
    print("presets: " + ", ".join(sorted(p.stem for p in PRESET_FOLDER.glob("*.toml"))))
    return 0
