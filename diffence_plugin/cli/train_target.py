"""``diffence train-target``: a target classifier, optionally with a training-time defense."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffence_plugin.cli.common import (UsageError, _command, _out_folder, _positive)


def add(sub) -> None:
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
    from diffence_plugin.registry import get_defenses, option_names

    registry = get_defenses()
    entry = registry.get(defense)
    if entry is None or entry.stage != "training":
        names = sorted(n for n, e in registry.items() if e.stage == "training")
        raise UsageError(f"unknown --defense {defense!r}; choose from {names}")
    names = option_names(entry.factory)
    if names is None:
        return
    valid = sorted(names)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UsageError(f"unknown --option {unknown} for defense {defense!r}; valid options: {valid or 'none'}")


def _train_target(args: argparse.Namespace) -> int:
    from diffence_plugin.data.models import zoo
    from diffence_plugin.registry import get_datasets

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
    from diffence_plugin.defenses.training import save_target, train_target

    target = train_target(x[members], y[members], defense=args.defense, model=args.model, epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=not args.no_progress,
                          test=test, reference=reference, options=options)
    save_target(target, out, overwrite=True)
    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in target.metrics.items())
    print(f"saved {args.model} trained with {args.defense} to {out} ({metrics})")
    return 0


def _check_data_folder(name: str, loader, folder: str | None, flag: str) -> None:
    """A usage error when dataset ``name`` needs a folder that is not given or does not exist."""
    from diffence_plugin.data.datasets import layout_of, needs_folder

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
    from diffence_plugin.attacks.roles import membership_split
    from diffence_plugin.data.datasets import open_dataset

    try:
        data = open_dataset(loader, args.data)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"--dataset {args.dataset}: {exc}") from exc
    x, y = data.x_train, data.y_train
    if args.dataset == "digits":
        split = membership_split(len(x), 300, 75, 75, 150, seed=args.seed)
        return (x, y, split.members, (x[split.eval_nonmembers], y[split.eval_nonmembers]),
                (x[split.defender_nonmembers], y[split.defender_nonmembers]))
    from diffence_plugin.data import paper_split

    chosen = paper_split(len(x), args.members or min(25_000, len(x) // 2), args.seed)
    test = None if data.x_test is None else (data.x_test, data.y_test)
    reference = (x[chosen.reference[:5_000]], y[chosen.reference[:5_000]])
    return x, y, chosen.members, test, reference
