"""``diffence train-diffusion``: a DDPM (or DualMD's pair, or DistillMD's student) on the defender's images."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffence_plugin.cli.common import (UsageError, _command, _log_to_stderr, _out_folder, _positive)


def add(sub) -> None:
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


def _load_images(path: str):
    """(S, C, H, W) float images in [0, 1] from .npy, or the array 'x' (or the only array) of an .npz."""
    import numpy as np

    if not Path(path).is_file():
        raise UsageError(f"images file {path!r} does not exist")
    from diffence_plugin.validation import numpy_file_problem

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
        from diffence_plugin.validation import as_image_batch

        try:  # NaN, a range outside [0, 1], integers or an empty array: a usage error, before any folder is made
            as_image_batch(images, f"--images {args.images!r}")
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    out = _out_folder(args.out, args.overwrite)
    _log_to_stderr()
    import torch

    from diffence_plugin.attacks.roles import membership_split
    from diffence_plugin.data import digits_images
    from diffence_plugin.diffusion import train_diffusion
    from diffence_plugin.reconstruct import cifar_unet_config, tiny_unet_config

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
        from diffence_plugin.diffusion import train_dual

        split_seed = args.seed if args.split_seed is None else args.split_seed
        reconstructor = train_dual(x, split_seed=split_seed, seed=args.seed, mode=args.mode, **training)
        runs = [model.training for model in reconstructor.models]
        what = f"the DualMD pair (split seed {split_seed}, halves of {runs[0]['split']['half_records']} and " \
               f"{runs[1]['split']['half_records']} images, {args.mode} mode)"
    elif args.distill:
        from diffence_plugin.diffusion import train_distilled
        from diffence_plugin.reconstruct import DualReconstructor

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
