"""Command line: ``diffence demo``, ``diffence train-diffusion`` and ``diffence train-target``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def _demo(args: argparse.Namespace) -> int:
    from .recipes.demo import DemoSettings, run_demo
    from .evaluation.report import format_attack_table, format_table

    settings = DemoSettings(seed=args.seed, ddpm_steps=args.ddpm_steps, n=args.n, t=args.t,
                            ddpm_max_timestep=max(args.t, 1))
    results = run_demo(settings, out_dir=args.out, progress=not args.no_progress)
    print()
    print(format_table(results))
    print()
    print(format_attack_table(results))
    print(f"\nwrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'report.html'} "
          f"({results['seconds']:.0f} s)")
    return 0


def _load_images(path: str) -> np.ndarray:
    """(S, C, H, W) float images in [0, 1] from .npy, or the array 'x' (or the only array) of an .npz."""
    if not Path(path).is_file():
        raise SystemExit(f"error: images file {path!r} does not exist")
    data = np.load(path, allow_pickle=False)
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if "x" not in keys and len(keys) != 1:
            raise SystemExit(f"error: {path!r} holds arrays {keys}; name the images 'x'")
        data = data["x" if "x" in keys else keys[0]]
    return data


def _train_diffusion(args: argparse.Namespace) -> int:
    from .data import digits_images
    from .diffusion import train_diffusion
    from .evaluation.protocol import membership_split
    from .reconstruct import cifar_unet_config

    if args.images:
        images = _load_images(args.images)
    else:
        x, _ = digits_images()
        images = x[membership_split(len(x), 600, 100, 150, 250, seed=args.seed).members]
    unet_config = cifar_unet_config() if args.unet == "cifar" else None
    reconstructor = train_diffusion(torch.from_numpy(np.asarray(images)), unet_config=unet_config,
                                    steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                    max_timestep=args.max_timestep, seed=args.seed, device=args.device,
                                    checkpoint=args.checkpoint, progress=not args.no_progress)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(f"error: output directory {str(out)!r} is not empty; pass --overwrite to replace it")
    reconstructor.save_pretrained(out)
    print(f"saved the diffusion model to {out}")
    return 0


def _parse_options(pairs: list[str]) -> dict:
    """``key=value`` pairs; values are read as JSON where possible (numbers, booleans), else as strings."""
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --option expects key=value, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _train_target(args: argparse.Namespace) -> int:
    from .data import digits_images
    from .defenses.training import save_target, train_target
    from .evaluation.protocol import membership_split

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(f"error: output directory {str(out)!r} is not empty; pass --overwrite to replace it")
    if args.dataset == "digits":
        x, y = digits_images()
        split = membership_split(len(x), 300, 75, 75, 150, seed=args.seed)
        members, test, reference = split.members, (x[split.eval_nonmembers], y[split.eval_nonmembers]), \
            (x[split.defender_nonmembers], y[split.defender_nonmembers])
    else:
        from .data import load_dataset, paper_split

        if not args.data:
            raise SystemExit(f"error: --dataset {args.dataset} needs --data FOLDER with its files")
        data = load_dataset(args.dataset, args.data)
        x, y = data.x_train, data.y_train
        chosen = paper_split(len(x), args.members or 25_000, args.seed)
        members, test = chosen.members, (data.x_test, data.y_test)
        reference = (x[chosen.reference[:5_000]], y[chosen.reference[:5_000]])
    options = _parse_options(args.option)
    if args.defense == "dpsgd":
        options.setdefault("epsilon", args.epsilon)
        if args.delta is not None:
            options.setdefault("delta", args.delta)
    target = train_target(x[members], y[members], defense=args.defense, model=args.model, epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=not args.no_progress,
                          test=test, reference=reference, options=options)
    save_target(target, out, overwrite=args.overwrite)
    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in target.metrics.items())
    print(f"saved {args.model} trained with {args.defense} to {out} ({metrics})")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from .evaluation.report import format_table
    from .recipes.reproduce import ReproduceSettings, reproduce

    settings = ReproduceSettings(dataset=args.dataset, target_epochs=args.epochs, ddpm_seconds=args.ddpm_seconds,
                                 members=args.members, calibration=args.calibration, evaluation=args.evaluation,
                                 attacker=args.attacker, seed=args.seed)
    results = reproduce(args.data, settings, out_dir=args.out, progress=not args.no_progress)
    print(format_table(results))
    print("\n" + ", ".join(f"{k} {v:.0f} s" for k, v in results["timings"].items())
          + f"; total {results['total_s']:.0f} s on {results['device']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffence", description="Diffence membership-inference defense")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train, defend and attack a digits classifier on this machine")
    demo.add_argument("--out", default="diffence-demo", help="folder for results.json, plots and report.html")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--ddpm-steps", type=int, default=400, help="DDPM training steps")
    demo.add_argument("-n", type=int, default=50, help="reconstructions per input")
    demo.add_argument("-t", type=int, default=100, help="noise step T (the DDPM trains on t <= T)")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=_demo)

    train = sub.add_parser("train-diffusion", help="train a DDPM on the defender's images")
    train.add_argument("--images", help=".npy/.npz of (S, C, H, W) floats in [0, 1]; default: the digits members")
    train.add_argument("--out", required=True, help="folder to save the model (save_pretrained layout)")
    train.add_argument("--unet", choices=("tiny", "cifar"), default="tiny")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--max-timestep", type=int, default=None,
                       help="train only on timesteps <= this (Diffence needs <= t)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    train.add_argument("--checkpoint", help="resumable training checkpoint file")
    train.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=_train_diffusion)

    from .data.models import MODELS
    from .defenses.training import TRAINING_DEFENSES

    target = sub.add_parser("train-target", help="train a target classifier, optionally with a training-time defense")
    target.add_argument("--defense", default="none", help=f"one of {', '.join(TRAINING_DEFENSES)} or a plugin's")
    target.add_argument("--dataset", choices=("digits", "cifar10", "cifar100", "svhn"), default="digits",
                        help="digits: sklearn's, 300 members (the demo's split); others: --data FOLDER, the paper's "
                             "split (25,000 members by default), tested on the test set")
    target.add_argument("--data", help="folder with the dataset's files (not for digits)")
    target.add_argument("--members", type=int, default=None, help="members for CIFAR/SVHN (default 25,000)")
    target.add_argument("--model", choices=sorted(MODELS), default="digits_mlp")
    target.add_argument("--epochs", type=int, default=100)
    target.add_argument("--batch-size", type=int, default=64)
    target.add_argument("--lr", type=float, default=1e-3)
    target.add_argument("--epsilon", type=float, default=8.0, help="DP-SGD target epsilon")
    target.add_argument("--delta", type=float, default=None, help="DP-SGD delta (default 1 / (2 * members))")
    target.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="defense option, e.g. --option alpha=0.5 (repeatable)")
    target.add_argument("--seed", type=int, default=0)
    target.add_argument("--out", required=True, help="folder for model.safetensors and target.json")
    target.add_argument("--overwrite", action="store_true")
    target.add_argument("--no-progress", action="store_true")
    target.set_defaults(func=_train_target)

    rep = sub.add_parser("reproduce", help="the paper's experiment (ResNet-18, 25,000 members) on one GPU")
    rep.add_argument("dataset", choices=("cifar10", "cifar100", "svhn"))
    rep.add_argument("--data", required=True, help="folder with the dataset's files (see diffence_plugin.data.datasets)")
    rep.add_argument("--members", type=int, default=25_000)
    rep.add_argument("--calibration", type=int, default=1_000)
    rep.add_argument("--attacker", type=int, default=1_000)
    rep.add_argument("--evaluation", type=int, default=2_000)
    rep.add_argument("--epochs", type=int, default=30)
    rep.add_argument("--ddpm-seconds", type=float, default=150.0)
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--out", default="runs/reproduce")
    rep.add_argument("--no-progress", action="store_true")
    rep.set_defaults(func=_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
