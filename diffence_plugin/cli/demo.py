"""``diffence demo``: the shipped preset ``demo`` with its flags as overrides."""

from __future__ import annotations

import argparse

from diffence_plugin.cli.common import (_command, _common_overrides, _plan, _plan_flags,
                                    _positive, _run_plan, _seed_overrides)


def add(sub) -> None:
    demo = _command(sub, "demo", "train, defend and audit a digits classifier on this machine (about 2 min on 2 cores): "
                    "the shipped preset 'demo', with these flags as overrides",
                    "diffence demo --out diffence-demo --seed 1")
    demo.add_argument("--seed", type=int, default=None, help="the run's and the split's seed (the preset's: 0)")
    demo.add_argument("--ddpm-steps", type=int, default=None, help="DDPM training steps (the preset's: 400)")
    demo.add_argument("-n", type=int, default=None, help="reconstructions per input (the preset's: 50)")
    demo.add_argument("-t", type=int, default=None,
                      help="noise step T, a multiple of 20; the DDPM then trains on t <= T (the preset's: 100)")
    demo.add_argument("--references", type=int, default=None,
                      help="reference models for LiRA/RMIA, 0: none (the preset's: 8)")
    _plan_flags(demo, "folder for results.json, plots and report.html (the preset's: diffence-demo)")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    _positive(ddpm_steps=args.ddpm_steps)
    from diffence_plugin.audit.plan import load_preset

    overrides = _seed_overrides(args.seed) + _common_overrides(args)
    if args.ddpm_steps is not None:
        overrides.append(f"diffusion.steps={args.ddpm_steps}")
    if args.t is not None:
        overrides.append(f"diffusion.max_timestep={args.t}")  # the DDPM trains on t <= T
    if args.references is not None:
        overrides.append(f"attacks.references={args.references}")
    for key, value in (("n", args.n), ("t", args.t)):
        if value is not None:
            overrides.append(f"diffence.{key}={value}")
    return _run_plan(_plan(load_preset, "demo", overrides=overrides), args, attack_table=True)
