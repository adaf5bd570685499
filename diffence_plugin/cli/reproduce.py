"""``diffence reproduce DATASET --preset NAME``: the paper's CIFAR experiments as shipped presets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffence_plugin.cli.common import (UsageError, _command, _common_overrides, _plan, _plan_flags,
                                    _positive, _run_plan, _seed_overrides)


def add(sub) -> None:
    rep = _command(sub, "reproduce", "the paper's CIFAR experiment with the full audit: --preset gpu (ResNet-18, 25,000 "
                   "members, one GPU) or --preset cpu (a small CNN, 5,000 members, 2 CPU cores)",
                   "diffence reproduce cifar10 --preset cpu --data ../shared/data/cifar10 --out runs/reproduce-cpu")
    rep.add_argument("dataset", choices=("cifar10", "cifar100", "svhn"), help="the dataset")
    rep.add_argument("--data", required=True, help="folder with the dataset's files (see diffence_plugin.data.datasets)")
    rep.add_argument("--preset", choices=("gpu", "cpu", "frontier", "canaries", "public", "stacking"), default="gpu",
                     help="the plan: presets/cifar10-gpu.toml (the paper's sizes), presets/cifar10-cpu.toml, "
                     "presets/cifar10-frontier.toml (the CPU preset at three reconstruction costs), "
                     "presets/cifar10-canaries.toml (the CPU preset with flipped-label canaries), "
                     "presets/cifar10-public.toml (the CPU preset with its DDPMs trained on public data) or "
                     "presets/cifar10-stacking.toml (Diffence with a training defense and MemGuard)")
    for flag, what in (("members", "target training records"), ("calibration", "defender's known members and "
                       "non-members each"), ("attacker", "attacker's known members and non-members each"),
                       ("evaluation", "held-out members and non-members each"), ("epochs", "target training epochs"),
                       ("ddpm-steps", "DDPM training steps, the defender's and the attacker's")):
        rep.add_argument(f"--{flag}", type=int, default=None, help=f"{what} (default: the preset's)")
    rep.add_argument("--ddpm-seconds", type=float, default=None,
                     help="an optional DDPM time budget; a run it stops does not reproduce on another machine")
    rep.add_argument("--defense-seeds", type=int, default=None,
                     help="defense seeds to measure the Diffence rows with (default: 1; each further one "
                          "reconstructs, calibrates and is attacked again: about one more reconstruction phase)")
    rep.add_argument("--t-choices", type=int, nargs="+", default=None, metavar="T",
                     help="noise steps calibration chooses among (default: the preset's; cpu: 40 60 100)")
    rep.add_argument("--seed", type=int, default=None, help="the run's and the split's seed (the preset's: 0)")
    _plan_flags(rep, "output folder (the preset's: runs/reproduce-cpu or runs/reproduce)")
    rep.set_defaults(func=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    _positive(members=args.members, calibration=args.calibration, attacker=args.attacker, evaluation=args.evaluation,
              epochs=args.epochs, ddpm_steps=args.ddpm_steps, ddpm_seconds=args.ddpm_seconds,
              defense_seeds=args.defense_seeds)
    if not Path(args.data).is_dir():
        from diffence_plugin.data.datasets import LAYOUTS

        raise UsageError(f"--data folder {args.data!r} does not exist; {args.dataset} is read from a folder holding "
                         f"{LAYOUTS[args.dataset]}")
    from diffence_plugin.audit.plan import load_preset

    overrides = [f"data.dataset={json.dumps(args.dataset)}", f"data.folder={json.dumps(str(Path(args.data).resolve()))}"]
    overrides += _seed_overrides(args.seed)
    for flag, key in (("members", "members.count"), ("calibration", "roles.defender"), ("attacker", "roles.attacker"),
                      ("evaluation", "roles.evaluation"), ("epochs", "target.train.epochs"),
                      ("ddpm_steps", "diffusion.steps"), ("ddpm_seconds", "diffusion.seconds"),
                      ("defense_seeds", "attacks.defense_seeds"), ("t_choices", "diffusion.t_choices")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={json.dumps(getattr(args, flag))}")
    if args.t_choices:
        overrides.append("diffence.t=null")  # calibration chooses t among the choices
    plan = _plan(load_preset, f"cifar10-{args.preset}", overrides=overrides + _common_overrides(args))
    return _run_plan(plan, args)
