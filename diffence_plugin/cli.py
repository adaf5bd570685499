"""Command line: ``diffence demo | evaluate | train-diffusion | train-target | reproduce | compare | plugins``.

Every argument is validated before any work starts. Exit codes: 0 success, 2 usage errors (a bad argument,
a refused output folder), 1 anything else (bad data, a failed run, Ctrl-C). Output folders must be empty
unless ``--overwrite`` is given; an audit's folder is made once its plan and data are checked, before any
training, so an interrupted run keeps what it finished. ``demo``, ``evaluate`` and ``reproduce`` all run a
plan through the one engine (``evaluation.engine``).
torch, diffusers and ART are imported only when a command runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

from . import __version__


class UsageError(Exception):
    """A command-line argument is wrong; exit code 2."""


def _out_folder(path: str, overwrite: bool, create: bool = True) -> Path:
    """The output folder, created now unless ``create`` is False (checked only); a non-empty one is refused
    without ``--overwrite``."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"output folder {str(out)!r} is not empty; pass --overwrite to replace its contents")
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value is not None and not value > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def _plan(load, *arguments, overrides: list[str]):
    """A resolved plan from ``load`` (``load_plan`` or ``load_preset``); its errors are usage errors."""
    from .evaluation.plan import ConfigError

    try:
        return load(*arguments, overrides)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _run_plan(plan: dict, args: argparse.Namespace, *, attack_table: bool = False) -> int:
    """Run a plan through the engine and print its tables: every command's last step."""
    if getattr(args, "dry_run", False):
        from .evaluation.engine import read_inputs
        from .evaluation.plan import describe

        read_inputs(plan)  # the data, the members, a loaded target and the DDPMs' image size: checked, not run
        print(describe(plan))
        return 0
    from .evaluation.stages import claim_folder

    try:
        claim_folder(plan)  # refused here as a usage error; the engine resumes or clears it (and says so)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from exc
    out = Path(plan["run"]["out"])
    _set_threads(getattr(args, "threads", None))
    _log_to_stderr()
    from .evaluation.engine import run_plan
    from .evaluation.report import (format_attack_table, format_change_table, format_seed_table, format_table,
                                    format_utility_table, training_note)

    results = run_plan(plan).results
    tables = [format_table(results), format_change_table(results), format_utility_table(results),
              format_seed_table(results), format_attack_table(results) if attack_table else "", training_note(results)]
    print("\n" + "\n\n".join(t for t in tables if t))
    print(f"\nwrote {out / 'results.json'}, {out / 'report.html'} and {out / 'config.json'} (owner-only: it holds "
          f"the defense's seed) in {results['seconds']:.0f} s")
    return 0


def _common_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` assignments, then the flags every plan command shares."""
    out = list(getattr(args, "set", None) or [])
    if getattr(args, "out", None):
        out.append(f"run.out={json.dumps(str(Path(args.out).resolve()))}")
    if getattr(args, "overwrite", False):
        out.append("run.overwrite=true")
    if getattr(args, "no_progress", False):
        out.append("run.progress=false")
    for flag in ("executor", "address"):
        if getattr(args, flag, None):
            out.append(f"run.{flag}={json.dumps(getattr(args, flag))}")
    return out


def _seed_overrides(seed: int | None) -> list[str]:
    return [] if seed is None else [f"run.seed={seed}", f"roles.seed={seed}"]


def _demo(args: argparse.Namespace) -> int:
    _positive(ddpm_steps=args.ddpm_steps)
    from .evaluation.plan import load_preset

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


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation.plan import load_plan

    return _run_plan(_plan(load_plan, args.config, overrides=_common_overrides(args)), args)


def _load_images(path: str):
    """(S, C, H, W) float images in [0, 1] from .npy, or the array 'x' (or the only array) of an .npz."""
    import numpy as np

    if not Path(path).is_file():
        raise UsageError(f"images file {path!r} does not exist")
    from .validation import numpy_file_problem

    problem = numpy_file_problem(path, ("npy", "npz"), head=8)
    if problem:
        raise UsageError(f"images file {path!r} {problem}")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise UsageError(f"{path!r} holds pickled Python objects; only plain numeric arrays are read, never "
                         "pickles") from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if "x" not in keys and len(keys) != 1:
            raise UsageError(f"{path!r} holds arrays {keys}; name the images 'x'")
        data = data["x" if "x" in keys else keys[0]]
    return data


def _train_diffusion(args: argparse.Namespace) -> int:
    _positive(steps=args.steps, batch_size=args.batch_size, lr=args.lr, width=args.width, max_seconds=args.max_seconds)
    if args.images and not Path(args.images).is_file():
        raise UsageError(f"images file {args.images!r} does not exist")
    if args.dual and args.distill:
        raise UsageError("--dual trains the teachers, --distill a student from them: one at a time")
    if (args.dual or args.distill) and args.checkpoint:
        raise UsageError("--checkpoint resumes a single model's training; not with --dual or --distill")
    if args.distill and not (Path(args.distill) / "dual.json").is_file():
        raise UsageError(f"--distill needs a folder written by train-diffusion --dual; {args.distill!r} has no "
                         "dual.json")
    import numpy as np

    images = _load_images(args.images) if args.images else None
    shape = np.shape(images) if images is not None else ()
    if len(shape) == 4 and shape[1] not in (1, 3) and shape[-1] in (1, 3):
        raise UsageError(f"--images {args.images!r} has shape {shape}, which looks channels-last (N, H, W, C); "
                         "images must be (N, C, H, W): transpose them with x.transpose(0, 3, 1, 2)")
    if images is not None:
        from .validation import as_image_batch

        try:  # NaN, a range outside [0, 1], integers or an empty array: a usage error, before any folder is made
            as_image_batch(images, f"--images {args.images!r}")
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    out = _out_folder(args.out, args.overwrite)
    _log_to_stderr()
    import torch

    from .data import digits_images
    from .diffusion import train_diffusion
    from .evaluation.protocol import membership_split
    from .reconstruct import cifar_unet_config, tiny_unet_config

    if images is None:
        x, _ = digits_images()
        images = x[membership_split(len(x), 300, 75, 75, 150, seed=args.seed).members]  # train-target's members
    if args.unet == "cifar":
        unet_config = cifar_unet_config()
    else:
        shape = np.asarray(images).shape
        unet_config = tiny_unet_config(shape[-1], shape[1], width=args.width) if len(shape) == 4 else None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    training = dict(unet_config=unet_config, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    max_timestep=args.max_timestep, device=device, progress=not args.no_progress,
                    max_seconds=args.max_seconds)
    x = torch.from_numpy(np.asarray(images))
    if args.dual:
        from .diffusion import train_dual

        split_seed = args.seed if args.split_seed is None else args.split_seed
        reconstructor = train_dual(x, split_seed=split_seed, seed=args.seed, mode=args.mode, **training)
        runs = [model.training for model in reconstructor.models]
        what = f"the DualMD pair (split seed {split_seed}, halves of {runs[0]['split']['half_records']} and " \
               f"{runs[1]['split']['half_records']} images, {args.mode} mode)"
    elif args.distill:
        from .diffusion import train_distilled
        from .reconstruct import DualReconstructor

        teachers = DualReconstructor.from_pretrained(args.distill, device)
        reconstructor = train_distilled(x, teachers, seed=args.seed, **training)
        runs, what = [reconstructor.training], f"the DistillMD student of {args.distill}"
    else:
        reconstructor = train_diffusion(x, seed=args.seed, checkpoint=args.checkpoint, **training)
        runs, what = [reconstructor.training], "the diffusion model"
    reconstructor.save_pretrained(out)
    done = "; ".join(f"step {run['steps']} of {run['max_steps']}, {run['steps_this_run']} steps in "
                     f"{run['seconds_this_run']:.0f} s, stopped by {run['stopped']}" for run in runs)
    print(f"saved {what} to {out} ({done})")
    return 0


def _parse_options(pairs: list[str]) -> dict:
    """``key=value`` pairs; values are read as JSON where possible (numbers, booleans), else as strings."""
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option expects key=value, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _check_options(defense: str, options: dict) -> None:
    """Refuse unknown ``--option`` keys, listing the defense's valid ones."""
    import inspect

    from .plugins import get_defenses

    registry = get_defenses()
    entry = registry.get(defense)
    if entry is None or entry.stage != "training":
        names = sorted(n for n, e in registry.items() if e.stage == "training")
        raise UsageError(f"unknown --defense {defense!r}; choose from {names}")
    params = inspect.signature(entry.factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = sorted(name for name in params if name != "self")
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UsageError(f"unknown --option {unknown} for defense {defense!r}; valid options: {valid or 'none'}")


def _train_target(args: argparse.Namespace) -> int:
    from .data.models import zoo
    from .plugins import get_datasets

    models, datasets = zoo(), get_datasets()
    if args.model not in models:
        raise UsageError(f"unknown --model {args.model!r}; choose from {sorted(models)}")
    if args.dataset not in datasets:
        raise UsageError(f"unknown --dataset {args.dataset!r}; choose from {sorted(datasets)}")
    _positive(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, epsilon=args.epsilon, delta=args.delta,
              members=args.members)
    options = _parse_options(args.option)
    if args.defense == "dpsgd":
        options.setdefault("epsilon", args.epsilon)
        if args.delta is not None:
            options.setdefault("delta", args.delta)
    _check_options(args.defense, options)
    _check_data_folder(args.dataset, datasets[args.dataset], args.data, "--data")
    _out_folder(args.out, args.overwrite, create=False)  # refused before the data is read
    x, y, members, test, reference = _target_data(args, datasets[args.dataset])
    out = _out_folder(args.out, args.overwrite)  # after every check: a refused run leaves no folder
    from .defenses.training import save_target, train_target

    target = train_target(x[members], y[members], defense=args.defense, model=args.model, epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=not args.no_progress,
                          test=test, reference=reference, options=options)
    save_target(target, out, overwrite=True)
    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in target.metrics.items())
    print(f"saved {args.model} trained with {args.defense} to {out} ({metrics})")
    return 0


def _check_data_folder(name: str, loader, folder: str | None, flag: str) -> None:
    """A usage error when dataset ``name`` needs a folder that is not given or does not exist."""
    from .data.datasets import layout_of, needs_folder

    if not needs_folder(loader):
        return
    if not folder:
        raise UsageError(f"--dataset {name} needs {flag} FOLDER holding {layout_of(name, loader)}")
    if not Path(folder).is_dir():
        raise UsageError(f"{flag} folder {folder!r} does not exist; {name} is read from a folder holding "
                         f"{layout_of(name, loader)}")


def _target_data(args: argparse.Namespace, loader):
    """Images, labels, member indices, test split and reference records for ``train-target``: digits' own
    small split, or the paper's split of any other dataset (members at random, the rest as reference)."""
    from .data.datasets import open_dataset
    from .evaluation.protocol import membership_split

    try:
        data = open_dataset(loader, args.data)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"--dataset {args.dataset}: {exc}") from exc
    x, y = data.x_train, data.y_train
    if args.dataset == "digits":
        split = membership_split(len(x), 300, 75, 75, 150, seed=args.seed)
        return (x, y, split.members, (x[split.eval_nonmembers], y[split.eval_nonmembers]),
                (x[split.defender_nonmembers], y[split.defender_nonmembers]))
    from .data import paper_split

    chosen = paper_split(len(x), args.members or min(25_000, len(x) // 2), args.seed)
    test = None if data.x_test is None else (data.x_test, data.y_test)
    reference = (x[chosen.reference[:5_000]], y[chosen.reference[:5_000]])
    return x, y, chosen.members, test, reference


def _reproduce(args: argparse.Namespace) -> int:
    _positive(members=args.members, calibration=args.calibration, attacker=args.attacker, evaluation=args.evaluation,
              epochs=args.epochs, ddpm_steps=args.ddpm_steps, ddpm_seconds=args.ddpm_seconds,
              defense_seeds=args.defense_seeds)
    if not Path(args.data).is_dir():
        from .data.datasets import LAYOUTS

        raise UsageError(f"--data folder {args.data!r} does not exist; {args.dataset} is read from a folder holding "
                         f"{LAYOUTS[args.dataset]}")
    from .evaluation.plan import load_preset

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


def _compare(args: argparse.Namespace) -> int:
    """Run B's rows against run A's on the same evaluation records, with paired intervals."""
    from .evaluation.compare import compare_results, format_comparison, load_results

    comparison = compare_results(load_results(args.a), load_results(args.b), rows=tuple(args.rows) if args.rows else None,
                                 seed=args.seed)
    print(format_comparison(comparison, (args.a, args.b)))
    if args.json:
        target = Path(args.json)
        if target.exists() and not args.overwrite:
            raise UsageError(f"--json file {str(target)!r} exists; pass --overwrite to replace it")
        target.write_text(json.dumps(comparison, indent=2))
    return 0


def _options_of(factory) -> str:
    """A factory's keyword options with their defaults, as ``diffence plugins`` lists them."""
    import inspect

    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()) and factory.__name__ == "_diffence":
        from .config import DiffenceConfig

        params = {**{k: v for k, v in params.items() if v.kind is not v.VAR_KEYWORD},
                  **inspect.signature(DiffenceConfig).parameters}
    shown = [f"{name}={p.default!r}" if p.default is not p.empty else name for name, p in params.items()
             if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    return ", ".join(shown) or "none"


def _plugins(args: argparse.Namespace) -> int:
    """What is registered: defenses by stage with their options, and the other names a plan can use."""
    from .adapters.art_family import ATTACKS as ART_ATTACKS
    from .evaluation.families import BUILTIN
    from .evaluation.plan import PRESET_FOLDER
    from .plugins import get_attacks, get_datasets, get_defenses, get_executors, get_models, get_plugin_manager

    pm = get_plugin_manager()
    print("plugins loaded: " + ", ".join(sorted(name for name, _ in pm.list_name_plugin())))
    for stage in ("training", "pre_inference", "post_inference"):
        print(f"\n{stage.replace('_', '-')} defenses ([[defenses]] name, options):" if stage != "training" else
              "\ntraining-time defenses ([target.train] defense, options):")
        for name, entry in sorted(get_defenses(pm).items()):
            if entry.stage == stage:
                print(f"  {name}: {_options_of(entry.factory)}")
    print("\nattack families: threshold ([attacks].threshold), lira and rmia ([attacks].references > 0), "
          f"art ([attacks].art: {', '.join(ART_ATTACKS)})")
    print("zoo models ([target].model): " + ", ".join(sorted(get_models(pm))))
    print("datasets ([data].dataset): " + ", ".join(sorted(get_datasets(pm))))
    attacks = {name: factory for name, factory in get_attacks(pm).items() if name not in BUILTIN}
    print("plugin attacks ([attacks].plugins): " + (", ".join(f"{n} ({_options_of(f)})" for n, f in sorted(attacks.items()))
                                                    or "none installed"))
    print("executors ([run].executor): " + ", ".join(sorted(get_executors(pm))))
    print("presets: " + ", ".join(sorted(p.stem for p in PRESET_FOLDER.glob("*.toml"))))
    return 0


def _add_plugins(sub) -> None:
    plugins = _command(sub, "plugins", "list the loaded plugins, every registered defense with its options, and the "
                       "names a plan can use", "diffence plugins")
    plugins.set_defaults(func=_plugins)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _log_to_stderr() -> None:
    """Show the library's progress lines (``diffence_plugin`` logger, INFO) on stderr, once."""
    import logging

    class Stderr(logging.StreamHandler):
        """Writes to whatever ``sys.stderr`` is when a line is logged (so redirections and tests see it)."""

        stream = property(lambda self: sys.stderr, lambda self, value: None)

    logger = logging.getLogger("diffence_plugin")
    if not any(getattr(h, "diffence_cli", False) for h in logger.handlers):
        handler = Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler.diffence_cli = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # shown here already; a root handler (opacus calls basicConfig) would repeat each line


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (once, and only where there is one), and examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)) or action.required:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def _command(sub, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=summary, epilog=f"example:\n  {example}",
                          formatter_class=_Help)


def _plan_flags(command: argparse.ArgumentParser, out_help: str) -> None:
    """The flags every command that runs a plan shares."""
    command.add_argument("--out", default=None, help=out_help)
    command.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                         help="override any plan field, e.g. --set run.seed=3 (repeatable; KEY=null removes it)")
    command.add_argument("--dry-run", action="store_true", help="print the resolved plan and the work it implies, then exit")
    command.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    command.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty output folder")
    command.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_demo(sub) -> None:
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


def _add_evaluate(sub) -> None:
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


def _add_train_diffusion(sub) -> None:
    train = _command(sub, "train-diffusion", "train a DDPM on the defender's images",
                     "diffence train-diffusion --images members.npz --max-timestep 100 --out runs/ddpm")
    train.add_argument("--images", help=".npy/.npz of (S, C, H, W) floats in [0, 1]; default: the 300 digits members "
                                        "that train-target uses (same seed)")
    train.add_argument("--out", required=True, help="folder to save the model (save_pretrained layout)")
    train.add_argument("--unet", choices=("tiny", "cifar"), default="tiny", help="the UNet: tiny or the DDPM CIFAR one")
    train.add_argument("--width", type=int, default=32, help="channels of the tiny UNet (16 suffices for 8x8 digits)")
    train.add_argument("--steps", type=int, default=2000, help="training steps")
    train.add_argument("--batch-size", type=int, default=128, help="images per step")
    train.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate")
    train.add_argument("--max-timestep", type=int, default=None,
                       help="train only on timesteps <= this (Diffence needs <= t; default: all 999)")
    train.add_argument("--seed", type=int, default=0, help="the training's seed")
    train.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    train.add_argument("--max-seconds", type=float, default=None,
                       help="stop once this much training time is spent (the steps run are reported and saved; "
                            "such a model does not reproduce on another machine)")
    train.add_argument("--checkpoint", help="resumable training checkpoint file")
    train.add_argument("--dual", action="store_true",
                       help="DualMD: train two models on disjoint halves of the images (saved together in --out)")
    train.add_argument("--split-seed", type=int, default=None, help="the halves' seed for --dual (default: --seed)")
    train.add_argument("--mode", choices=("alternate", "keyed"), default="alternate",
                       help="--dual: alternate the models across DDIM steps, or give each reconstruction to one "
                            "model by its (key-derived) noise")
    train.add_argument("--distill", metavar="DUAL_FOLDER",
                       help="DistillMD: train a student on the same images from the teachers of a --dual folder")
    train.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out folder")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=_train_diffusion)


def _add_train_target(sub) -> None:
    target = _command(sub, "train-target", "train a target classifier, optionally with a training-time defense",
                      "diffence train-target --defense relaxloss --option alpha=0.5 --out runs/relaxloss")
    target.add_argument("--defense", default="none", help="none, dpsgd, relaxloss, hamp, selena, advreg or a plugin's")
    target.add_argument("--dataset", default="digits",
                        help="digits (sklearn's, 300 members: the demo's split), cifar10, cifar100, svhn or a "
                             "plugin's (diffence plugins lists them); others than digits: the paper's split, tested "
                             "on the test set")
    target.add_argument("--data", help="folder with the dataset's files (not for digits)")
    target.add_argument("--members", type=int, default=None,
                        help="members for datasets other than digits (default: 25,000, or half a smaller training set)")
    target.add_argument("--model", default="digits_mlp",
                        help="digits_mlp, digits_cnn, cifar_cnn, resnet18, densenet121 or a plugin's zoo model")
    target.add_argument("--epochs", type=int, default=100, help="training epochs")
    target.add_argument("--batch-size", type=int, default=64, help="records per step")
    target.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    target.add_argument("--epsilon", type=float, default=8.0, help="DP-SGD target epsilon")
    target.add_argument("--delta", type=float, default=None, help="DP-SGD delta (default: 1 / (2 * members))")
    target.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="defense option, e.g. --option alpha=0.5 (repeatable)")
    target.add_argument("--seed", type=int, default=0, help="the split's and the training's seed")
    target.add_argument("--out", required=True, help="folder for model.safetensors and target.json")
    target.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out folder")
    target.add_argument("--no-progress", action="store_true", help="no progress bars")
    target.set_defaults(func=_train_target)


def _add_reproduce(sub) -> None:
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


def _add_compare(sub) -> None:
    cmp = _command(sub, "compare", "two audits of the same evaluation records, row by row: B's change from A in the "
                   "chosen attack's and LiRA's AUC and LiRA's TPR at 1% FPR, with paired bootstrap intervals",
                   "diffence compare runs/reproduce-public-members runs/reproduce-public")
    cmp.add_argument("a", help="run A's folder (or its results.json): the baseline")
    cmp.add_argument("b", help="run B's folder (or its results.json)")
    cmp.add_argument("--rows", nargs=2, metavar=("ROW_A", "ROW_B"), default=None,
                     help="pair only row ROW_A of A with row ROW_B of B (A and B may be the same run), e.g. "
                     "memguard diffence+memguard")
    cmp.add_argument("--json", default=None, help="also write the comparison to this JSON file")
    cmp.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    cmp.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    cmp.set_defaults(func=_compare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffence", formatter_class=_Help,
                                     description="Diffence: a diffusion-based defense against membership inference, "
                                                 "with a membership audit (threshold attacks, LiRA, RMIA, ART).",
                                     epilog="example:\n  diffence demo\n  diffence evaluate examples/audit-digits.toml")
    parser.add_argument("--version", action="version", version=f"diffence-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_evaluate, _add_train_diffusion, _add_train_target, _add_reproduce, _add_compare,
                _add_plugins):
        add(sub)
    return parser


def _warning_line(seen: set[str]) -> Callable[..., None]:
    """A ``warnings.showwarning`` for the commands: each distinct warning once, as one timestamped line (a user
    of the command line has no use for the library's source line that raised it)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"{time.strftime('%H:%M:%S')} warning: {text}", file=sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    # Threads that sleep at a barrier instead of spinning: beside one other busy process the 2-core machine ran
    # Diffence 2.8x slower with OpenMP's default spinning and 1.6x with this, and as fast alone
    # (benchmarks/bench_reconstruct.py, docs/results.md). Read when torch loads, which the CLI does lazily.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"diffence {args.command}"
    library_log = logging.getLogger("diffence_plugin")
    propagate = library_log.propagate  # _log_to_stderr turns it off for the command; callers get it back
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line(set())
            return args.func(args)
    except UsageError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2

    except KeyboardInterrupt:
        where = getattr(args, "out", None)
        print(f"{prefix}: interrupted; what was finished is kept" + (f" in {where}" if where else ""),
              file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        from .evaluation.plan import ConfigError  # a plan field that does not fit the data: found before training

        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    finally:
        library_log.propagate = propagate


if __name__ == "__main__":
    raise SystemExit(main())
