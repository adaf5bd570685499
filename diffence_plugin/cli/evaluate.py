"""``diffence evaluate PLAN``: audit your own model and data from a TOML plan."""

from __future__ import annotations

import argparse

from diffence_plugin.cli.common import (_command, _common_overrides, _plan, _plan_flags,
                                    _run_plan)


def add(sub) -> None:
    ev = _command(sub, "evaluate", "audit your own model and data from a TOML plan (see examples/audit-digits.toml)",
                  "diffence evaluate examples/audit-digits.toml --out runs/audit")
    ev.add_argument("config", help="TOML plan, or the config.json a previous run wrote (reruns it exactly)")
    ev.add_argument("--executor", default=None,
                    help="where reference models and reconstruction shards run (default: the plan's [run].executor, "
                         "else local); ray needs the ray extra")
    ev.add_argument("--address", default=None,
                    help="the Ray cluster to join (default: [run].address, else RAY_ADDRESS, else a local instance)")
    _plan_flags(ev, "output folder (default: the plan's [run].out)")
    ev.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from diffence_plugin.audit.plan import load_plan

    return _run_plan(_plan(load_plan, args.config, overrides=_common_overrides(args)), args)
