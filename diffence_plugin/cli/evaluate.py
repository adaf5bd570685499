"""``diffence evaluate PLAN``: audit your own model and data from a TOML plan."""

from __future__ import annotations

import argparse

from diffence_plugin.cli.common import (_command, _common_overrides, _plan, _plan_flags,
                                    _run_plan)


def add(sub) -> None:
    ev = _command(sub, "evaluate", "audit your own model and data from a TOML plan (see examples/audit-digits.toml)",
                  "diffence evaluate examples/audit-digits.toml --out runs/audit")
    ev.add_argument("config", help="TOML plan, the config.json a previous run wrote (reruns it exactly), or the name "
                                   "of a shipped preset or study (diffence plugins lists them)")
    ev.add_argument("--executor", default=None,
                    help="where reference models and reconstruction shards run (default: the plan's [run].executor, "
                         "else local); ray needs the ray extra")
    ev.add_argument("--address", default=None,
                    help="the Ray cluster to join (default: [run].address, else RAY_ADDRESS, else a local instance)")
    _plan_flags(ev, "output folder (default: the plan's [run].out)")
    ev.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from diffence_plugin.audit.plan import PRESET_FOLDER, load_plan, load_preset

    if not Path(args.config).exists() and (PRESET_FOLDER / f"{args.config}.toml").is_file():
        return _run_plan(_plan(load_preset, args.config, overrides=_common_overrides(args)), args)
    return _run_plan(_plan(load_plan, args.config, overrides=_common_overrides(args)), args)
