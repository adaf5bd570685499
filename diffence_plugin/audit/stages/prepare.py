"""The engine's first stage: the data, the roles, the target and the defender's diffusion model of a plan.

Each piece is loaded when the plan names a file, and trained when it gives a recipe; every check of the data
against the plan (shape, labels, classes, members inside the data) runs before any training.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffence_plugin.attacks.roles import (
    MembershipSplit,
    flip_labels,
    membership_split,
    roles_from_members,
    shuffle_pixels,
)
from diffence_plugin.audit.plan import ConfigError, Plan
from diffence_plugin.audit.plan.schema import MembersSection
from diffence_plugin.audit.store import Stages, stage_key

if TYPE_CHECKING:
    from diffence_plugin.audit.context import RunContext
from diffence_plugin.progress import phase


def import_object(spec: str, where: str):
    """The object ``package.module:name`` names; a ConfigError naming ``where`` if it cannot be imported."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"{where} must look like 'package.module:name', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot import {spec!r}: {exc}") from exc


def load_data(plan: Plan) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """(S, C, H, W) float32 images in [0, 1], (S,) int64 labels and the dataset's test split (or None)."""
    from diffence_plugin.validation import as_image_batch

    data, test = plan.data, None
    if data.npz is not None:
        x, y = _read_npz(data.npz)
    else:
        x, y, test = _registered_dataset(data.dataset, data.folder)
    shape = np.shape(x)
    if len(shape) == 4 and shape[1] not in (1, 3) and shape[-1] in (1, 3):
        raise ConfigError(f"[data] x has shape {shape}, which looks channels-last (N, H, W, C); images must be "
                          "(N, C, H, W): transpose them with x.transpose(0, 3, 1, 2)")
    try:
        x = as_image_batch(x, "[data] x").numpy()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{exc}; [data] x must be finite (N, C, H, W) float images in [0, 1]") from exc
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"[data] y must be {x.shape[0]} integer labels, got shape {y.shape} dtype {y.dtype}")
    if (y < 0).any():
        raise ConfigError("[data] y holds negative labels")
    return x, y.astype(np.int64), test


def _registered_dataset(name: str, folder: str | None):
    """The training images, labels and test split (or None) of a registered dataset."""
    from diffence_plugin.data.datasets import open_dataset
    from diffence_plugin.registry import get_datasets

    registry = get_datasets()
    if name not in registry:
        raise ConfigError(f"[data].dataset must be one of {sorted(registry)}, got {name!r}")
    try:
        loaded = open_dataset(registry[name], folder)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"[data] dataset {name!r}: {exc}") from exc
    test = None if loaded.x_test is None else (loaded.x_test, loaded.y_test)
    return loaded.x_train, loaded.y_train, test


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    from diffence_plugin.validation import numpy_file_problem

    problem = numpy_file_problem(path, ("npz",))
    if problem:
        raise ConfigError(f"[data].npz {path!r} {problem}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x", "y") if k not in arrays.files]
            if missing:
                raise ConfigError(f"[data].npz {path!r} lacks array(s) {missing} (has {arrays.files})")
            return arrays["x"], arrays["y"]
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:
        raise ConfigError(f"[data].npz {path!r} is not a numpy .npz archive of plain numeric arrays ({exc})") from exc


def build_split(plan: Plan, total: int) -> MembershipSplit:
    """The roles of the audit: the given or drawn members, and roles drawn with ``[roles].seed``."""
    members_cfg, roles = plan.members, plan.roles
    population = roles.population if plan.attacks.references else 0
    sizes = (roles.defender, roles.attacker, roles.evaluation)
    try:
        if members_cfg.draw == "with_roles":
            return membership_split(total, members_cfg.count, *sizes, seed=roles.seed, population=population,
                                    canaries=roles.canaries, public=roles.public)
        members = _members(members_cfg, total)
        return roles_from_members(members, total, *sizes, population, seed=roles.seed, canaries=roles.canaries,
                                  public=roles.public)
    except ValueError as exc:
        raise ConfigError(f"[roles]: {exc}") from exc


def _members(members_cfg: MembersSection, total: int) -> np.ndarray:
    if members_cfg.indices is None:
        if not 0 < members_cfg.count < total:
            raise ConfigError(f"[members].count must lie in (0, {total}), got {members_cfg.count}")
        return np.random.default_rng(members_cfg.seed or 0).permutation(total)[: members_cfg.count]
    from diffence_plugin.validation import numpy_file_problem

    problem = numpy_file_problem(members_cfg.indices, ("npy",))
    if problem:
        raise ConfigError(f"[members].indices {members_cfg.indices!r} {problem}")
    try:
        members = np.load(members_cfg.indices, allow_pickle=False)
    except ValueError as exc:
        raise ConfigError(f"[members].indices {members_cfg.indices!r} holds pickled objects or is not a "
                          f".npy array of integers ({exc})") from exc
    if members.ndim != 1 or not np.issubdtype(members.dtype, np.integer):
        raise ConfigError(f"[members].indices must be a 1-D array of integers, got {members.dtype} {members.shape}")
    if members.size and (members.min() < 0 or members.max() >= total):
        raise ConfigError(f"[members].indices reach {int(members.max())} but the data has {total} records")
    if np.unique(members).size != members.size:
        raise ConfigError("[members].indices repeats records")
    return members


def placement(plan: Plan) -> dict:
    """Where the models run: ``[run].device`` ("auto": CUDA when there is one), with bf16 autocast and
    channels-last on CUDA, and channels-last on a CPU too with ``[run].channels_last``."""
    device = plan.run.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("[run].device = 'cuda' but torch sees no CUDA device")
    cuda = device == "cuda"
    return {"device": device, "channels_last": cuda or plan.run.channels_last, "bf16": cuda}


def nb_classes_of(plan: Plan, y: np.ndarray) -> int:
    """The target's class count: ``[target].nb_classes``, else from the labels."""
    nb_classes = plan.target.nb_classes if plan.target.nb_classes is not None else int(y.max()) + 1
    if int(y.max()) >= nb_classes:
        raise ConfigError(f"[target].nb_classes = {nb_classes} but the labels reach {int(y.max())}")
    return nb_classes


def training_recipe(plan: Plan, recipe: dict, nb_classes: int, channels: int,
                    reference: tuple[np.ndarray, np.ndarray] | None = None):
    """A ``ReferenceRecipe`` from a recipe table (``[target.train]`` or ``[attacks].reference_recipe``);
    ``reference`` is the trainer's own non-member (x, y), which AdvReg needs (given to it alone)."""
    from diffence_plugin.attacks.references import ReferenceRecipe

    if "factory" in recipe:
        train = import_object(recipe["factory"], "[attacks].reference_recipe.factory")
        return ReferenceRecipe(train=train, key={"factory": recipe["factory"]})
    model = recipe.get("model", plan.target.model)
    where = placement(plan)
    return ReferenceRecipe.from_training(model, nb_classes, channels, defense=recipe.get("defense", "none"),
                                         epochs=recipe.get("epochs", 60), batch_size=recipe.get("batch_size", 64),
                                         lr=recipe.get("lr", 1e-3), weight_decay=recipe.get("weight_decay", 0.0),
                                         options=recipe.get("options"),
                                         reference=reference if recipe.get("defense") == "advreg" else None, **where)


def reference_recipe(plan: Plan, nb_classes: int, x: np.ndarray, y: np.ndarray, split: MembershipSplit):
    """How the attacker trains its references: ``[attacks].reference_recipe`` over the target's own recipe;
    AdvReg's non-members are the attacker's own pool records."""
    recipe = {**(plan.target.train.given() if plan.target.train else {}), **plan.attacks.reference_recipe.given()}
    own = split.attacker_pool[: plan.roles.defender]
    return training_recipe(plan, recipe, nb_classes, x.shape[1], reference=(x[own], y[own]))


def load_target(plan: Plan, x: np.ndarray, nb_classes: int) -> torch.nn.Module:
    """The target model with its weights, checked against the data's shape and classes."""
    from safetensors.torch import load_file

    t = plan.target
    if ":" in t.model:
        model = import_object(t.model, "[target].model")(**t.options)
    else:
        from diffence_plugin.data import build_model, zoo

        models = zoo()
        if t.model not in models:
            raise ConfigError(f"[target].model {t.model!r} is neither a zoo model {sorted(models)} nor "
                              "'package.module:factory'")
        model = build_model(t.model, nb_classes, x.shape[1], bool(t.options.get("opacus_compatible", False)))
    try:
        state = load_file(t.weights)
    except Exception as exc:
        raise ConfigError(f"[target].weights {t.weights!r} is not a readable safetensors file: {exc}") from exc
    try:
        model.load_state_dict({k.removeprefix("_module."): v for k, v in state.items()})
    except RuntimeError as exc:
        hint = ("" if t.nb_classes is not None else f" (the model was built for {nb_classes} classes because [data] y reaches "
                f"{nb_classes - 1}: labels must lie in 0..K-1)")
        raise ConfigError(f"[target].weights do not fit [target].model {t.model!r}{hint}: {str(exc)[:300]}") from exc
    return model.eval()


def check_target(model: torch.nn.Module, x: np.ndarray, nb_classes: int) -> None:
    """The target answers the data with one row of ``nb_classes`` scores per input."""
    with torch.no_grad():
        out = model(torch.from_numpy(x[:2]))
    if out.dim() == 2 and out.shape[0] == min(2, len(x)) and out.shape[1] < nb_classes:
        raise ConfigError(f"[data] y reaches {nb_classes - 1} but [target].model scores {out.shape[1]} classes: "
                          f"labels must lie in 0..{out.shape[1] - 1} (a label of {nb_classes - 1} among "
                          f"{out.shape[1]} classes?)")
    if tuple(out.shape) != (min(2, len(x)), nb_classes):
        raise ConfigError(f"[target].model returns shape {tuple(out.shape)} on the data; expected (2, {nb_classes}) "
                          "(check [target].nb_classes and the data's class count)")


def unet_config(plan: Plan, x: np.ndarray) -> dict:
    """The UNet of a trained ``[diffusion]`` model: the tiny one sized to the data, or the DDPM CIFAR UNet."""
    from diffence_plugin.reconstruct import cifar_unet_config, tiny_unet_config

    if plan.diffusion.unet == "cifar":
        return cifar_unet_config()
    return tiny_unet_config(x.shape[-1], x.shape[1], width=plan.diffusion.width)


def train_ddpm(plan: Plan, images: np.ndarray, config: dict, seed: int, steps: int, max_timestep: int,
               progress: bool, kind: str = "single"):
    """A diffusion model trained as ``[diffusion]`` says (by steps; ``seconds`` adds a time budget) on
    ``images``: one DDPM, DualMD's pair (``kind="dual"``) or DistillMD's student of that pair ("distill")."""
    from diffence_plugin import diffusion

    d, where = plan.diffusion, placement(plan)
    training = dict(unet_config=config, steps=steps, batch_size=d.batch_size, lr=d.lr, max_timestep=max_timestep,
                    progress=progress, max_seconds=d.seconds, device=where["device"],
                    autocast=torch.bfloat16 if where["bf16"] else None, channels_last=plan.run.channels_last)
    x = torch.from_numpy(images)
    if kind == "single":
        return diffusion.train_diffusion(x, seed=seed, **training)
    split_seed = d.split_seed if d.split_seed is not None else seed
    pair = diffusion.train_dual(x, split_seed=split_seed, seed=seed, mode=d.mode, **training)
    return pair if kind == "dual" else diffusion.train_distilled(x, pair, seed=seed, **training)


@dataclass
class Prepared:
    """What every later stage reads: data, roles, the target, the defender's diffusion model (if any)."""

    x: np.ndarray
    y: np.ndarray
    split: MembershipSplit
    model: torch.nn.Module
    nb_classes: int
    test: tuple[np.ndarray, np.ndarray] | None
    reconstructor: Any = None
    training: dict = field(default_factory=dict)
    target_accuracy: dict = field(default_factory=dict)


@dataclass
class Inputs:
    """The data and roles of a plan, read and checked (and the target, when it is loaded), before any training."""

    x: np.ndarray
    y: np.ndarray
    test: tuple[np.ndarray, np.ndarray] | None
    split: Any
    nb_classes: int
    model: torch.nn.Module | None


def read_inputs(plan: Plan) -> Inputs:
    """Every check of the data against the plan: shape, labels, classes, members, a loaded target's fit."""
    x, y, test = load_data(plan)
    split = build_split(plan, len(x))
    nb_classes = nb_classes_of(plan, y)
    if len(split.canary_members):  # the canaries are what they are everywhere: in training and in every query
        seed = int(np.random.SeedSequence([plan.roles.seed, 0xCA4A]).generate_state(1)[0])
        if plan.roles.canary_kind == "shuffled_pixels":
            x = shuffle_pixels(x, split.canaries, seed)
        else:
            y = flip_labels(y, split.canaries, nb_classes, seed)
    check_ddpm_sizes(plan, x)
    model = None
    if plan.target.weights is not None:
        model = load_target(plan, x, nb_classes)
        check_target(model, x, nb_classes)
    return Inputs(x=x, y=y, test=test, split=split, nb_classes=nb_classes, model=model)


def check_ddpm_sizes(plan: Plan, x: np.ndarray) -> None:
    """Every saved diffusion model the plan names reconstructs images of the data's channels and size."""
    folders = {"[diffusion].path": plan.diffusion.path}
    folders |= {f"[[defenses]] {d.label!r} path": d.options["diffence"].get("path") for d in plan.diffences}
    for where, folder in folders.items():
        if folder is None:
            continue
        configs = sorted(Path(folder).glob("**/unet/config.json"))
        for config in configs:
            try:
                unet = json.loads(config.read_text())
            except ValueError as exc:
                raise ConfigError(f"{where}: {str(config)!r} is not valid JSON ({exc})") from exc
            size, channels = unet.get("sample_size"), unet.get("in_channels")
            if (channels, size) != (x.shape[1], x.shape[-1]):
                raise ConfigError(f"{where}: the diffusion model in {folder!r} is for {channels}x{size}px images, "
                                  f"the data are {x.shape[1]}x{x.shape[-1]}px")


def prepare(ctx: RunContext, inputs: Inputs | None = None) -> Prepared:
    """Stage 1: data, roles, the target and the defender's DDPM (each trained model kept in the run's cache)."""
    plan, log, timings, stages = ctx.plan, ctx.log, ctx.timings, ctx.stages
    inputs = inputs or read_inputs(plan)
    x, y, split, nb_classes, model = inputs.x, inputs.y, inputs.split, inputs.nb_classes, inputs.model
    training = {}
    if model is None:
        target = plan.target
        recipe = training_recipe(plan, {"model": target.model, **target.train.given()}, nb_classes, x.shape[1],
                                 reference=(x[split.defender_nonmembers], y[split.defender_nonmembers]))
        with phase(f"[1/6] training the target ({target.model}) on {len(split.members)} members", timings,
                   "target_s", log):
            model, metrics = stages.model(
                "target", stage_key(recipe=recipe.key, members=split.members.tolist(), seed=plan.run.seed,
                                    **({"canaries": split.canaries.tolist(), "canary_labels": y[split.canaries].tolist(),
                                        "canary_kind": plan.roles.canary_kind} if len(split.canaries) else {})),
                recipe.build, lambda: recipe.train_with_metrics(x[split.members], y[split.members], plan.run.seed))
        model = model.eval()
        check_target(model, x, nb_classes)
        training = {"target": {"recipe": recipe.key, **metrics}}
    else:
        source = plan.target.weights or "the caller"
        log(f"[1/6] the target {plan.target.model or type(model).__name__} from {source}: "
            f"{len(split.members)} members of {len(x)} records, {nb_classes} classes")
    prep = Prepared(x=x, y=y, split=split, model=model, nb_classes=nb_classes, test=inputs.test, training=training)
    prep.target_accuracy = _accuracies(prep)
    log("      target accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in prep.target_accuracy.items()))
    if plan.needs_defender_ddpm:
        prep.reconstructor = _defender_ddpm(plan, prep, log, timings, plan.run.progress, stages)
    elif plan.diffences:
        log("[2/6] the defender's diffusion model: each Diffence defense loads its own (options.path)")
    else:
        log("[2/6] no diffusion model: no Diffence defense in the plan")
    return prep


def _accuracies(prep: Prepared) -> dict[str, float]:
    from diffence_plugin.attacks.metrics import accuracy
    from diffence_plugin.classify import probabilities

    members = prep.split.members
    out = {"train": accuracy(probabilities(prep.model, torch.from_numpy(prep.x[members])).numpy(), prep.y[members])}
    if prep.test is not None:
        out["test"] = accuracy(probabilities(prep.model, torch.from_numpy(prep.test[0])).numpy(), prep.test[1])
    return out


def _compiled(plan: Plan, ddpm):
    """``ddpm``, compiled when ``[run].compile`` asks for it (``Reconstructor.compile``)."""
    return ddpm.compile() if plan.run.compile else ddpm


def _defender_ddpm(plan: Plan, prep: Prepared, log, timings: dict, progress: bool, stages: Stages):
    from diffence_plugin.reconstruct import Reconstructor

    d = plan.diffusion
    if d.path is not None:
        log(f"[2/6] the defender's diffusion model from {d.path}")
        try:
            ddpm = Reconstructor.from_pretrained(d.path, placement(plan)["device"])
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"[diffusion].path: {exc}") from exc
        return _compiled(plan, ddpm)
    budget = f", at most {d.seconds:.0f} s" if d.seconds else ""
    records = ddpm_records(plan, prep.split)
    what = "the same members" if d.data == "members" else f"{len(records)} public records"
    with phase(f"[2/6] training the DDPM on {what} ({d.steps} steps{budget}, t <= {d.max_timestep})",
               timings, "ddpm_s", log):
        config = unet_config(plan, prep.x)
        kind = plan.roles.canary_kind if len(prep.split.canaries) else None  # shuffled canaries change x
        key = stage_key(diffusion=d.given(), unet=config, members=records.tolist(), seed=plan.run.seed,
                        device=placement(plan), canaries=kind)
        ddpm = stages.ddpm("defender-ddpm", key,
                           lambda: train_ddpm(plan, prep.x[records], config, plan.run.seed, d.steps,
                                              d.max_timestep, progress, d.kind), placement(plan)["device"])
    _compiled(plan, ddpm)
    runs = [m.training for m in ddpm.models] if hasattr(ddpm, "models") else [ddpm.training]
    log(f"      {d.kind}: " + "; ".join(f"{r['steps']} DDPM steps ({r['stopped']})" for r in runs))
    record = runs[0] if len(runs) == 1 else {"kind": d.kind, "models": runs}
    prep.training["defender_ddpm"] = {**record, "data": d.data, "records": len(records)}
    return ddpm


def ddpm_records(plan: Plan, split) -> np.ndarray:
    """The records the defender's DDPM trains on: the target's members, or ``split.public_data``."""
    return split.members if plan.diffusion.data == "members" else split.public_data
