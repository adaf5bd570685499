"""Every check of a resolved plan that the schema cannot make alone and that can be made before any work:
files, sizes, one-of pairs, registered names and their options, Diffence's settings against the diffusion
model. A run that passes them fails late only on the data itself (its shape and labels, checked when it is
loaded, still before any training). Nothing here changes the plan."""

from __future__ import annotations

import json
from pathlib import Path

from diffence_plugin.audit.plan.schema import (ConfigError, DataSection, DiffusionSection, MembersSection, Plan,
                                               RolesSection, TargetSection)
from diffence_plugin.registry import accepted_options, get_attacks, get_datasets, get_defenses, get_executors

DIFFENCE_OWN = ("path", "reconstructor", "calibration")  # the diffence factory's keys beyond DiffenceConfig


def check_plan(plan: Plan) -> None:
    """Raise ``ConfigError`` naming the first field that cannot work."""
    _check_data(plan.data)
    _check_members(plan.members, plan.roles)
    _check_target(plan.target)
    if plan.roles.canaries and plan.target.weights is not None:
        raise ConfigError("[roles].canaries makes records (flipped labels or shuffled pixels) the target must train "
                          "on: use [target.train], not [target].weights (a loaded target never saw the canaries)")
    _check_diffusion(plan.diffusion)
    _check_defenses(plan)
    _check_attacks(plan)
    executors = sorted(get_executors())
    if plan.run.executor not in executors:
        raise ConfigError(f"[run].executor must be one of {executors}, got {plan.run.executor!r}")


def _check_data(data: DataSection) -> None:
    from diffence_plugin.data.datasets import layout_of, needs_folder

    if (data.npz is None) == (data.dataset is None):
        raise ConfigError("[data] needs exactly one of npz = FILE or dataset = NAME")
    if data.npz is not None and not Path(data.npz).is_file():
        raise ConfigError(f"[data].npz: file {data.npz!r} does not exist")
    if data.dataset is not None:
        registry, name = get_datasets(), data.dataset
        if name not in registry:
            raise ConfigError(f"[data].dataset must be one of {sorted(registry)} (datasets plugins register), got "
                              f"{name!r}")
        if needs_folder(registry[name]) and data.folder is None:
            raise ConfigError(f"[data].folder is required for dataset {name!r}: a folder holding "
                              f"{layout_of(name, registry[name])}")
    if data.folder is not None and not Path(data.folder).is_dir():
        raise ConfigError(f"[data].folder: folder {data.folder!r} does not exist")


def _check_members(members: MembersSection, roles: RolesSection) -> None:
    if (members.indices is None) == (members.count is None):
        raise ConfigError("[members] needs exactly one of indices = FILE (.npy) or count = N (with seed)")
    if members.indices is not None and not Path(members.indices).is_file():
        raise ConfigError(f"[members].indices: file {members.indices!r} does not exist")
    if members.draw == "with_roles" and members.count is None:
        raise ConfigError("[members].draw = 'with_roles' draws count members with the roles; set [members].count")
    need = roles.defender + roles.attacker + roles.evaluation + roles.canaries
    if members.count is not None and need > members.count:
        raise ConfigError(f"[roles]: the member roles need {need} members, [members].count is {members.count}")
    if 0 < roles.canaries < 2:
        raise ConfigError(f"[roles].canaries must be 0 or >= 2 (members and as many non-members), got "
                          f"{roles.canaries}")


def check_trainer_options(where: str, recipe: dict) -> None:
    """The recipe's training defense exists and accepts its ``options`` (its constructor runs: it only stores
    and checks them), so a wrong option stops the run before any training."""
    registry = get_defenses()
    defense, options = recipe.get("defense", "none"), recipe.get("options", {})
    training = sorted(n for n, e in registry.items() if e.stage == "training")
    if defense not in training:
        raise ConfigError(f"{where}.defense: unknown training defense {defense!r}; choose from {training}")
    try:
        registry[defense].factory(**options)
    except TypeError as exc:
        raise ConfigError(f"{where}.options: {defense!r} does not take {sorted(options)}: {exc}; valid options: "
                          f"{sorted(accepted_options(registry[defense].factory))}") from exc
    except ValueError as exc:
        raise ConfigError(f"{where}.options: {exc}") from exc


def _check_target(target: TargetSection) -> None:
    from diffence_plugin.data.models import zoo

    if target.model is None:
        raise ConfigError("[target].model is required")
    if (target.weights is None) == (target.train is None):
        raise ConfigError("[target] needs exactly one of weights = FILE (.safetensors) or [target.train] (a recipe)")
    if target.weights is not None:
        if not target.weights.endswith(".safetensors"):
            raise ConfigError(f"[target].weights must be a .safetensors file, got {target.weights!r}")
        if not Path(target.weights).is_file():
            raise ConfigError(f"[target].weights: file {target.weights!r} does not exist")
        return
    if ":" in target.model:
        raise ConfigError("[target.train] trains a zoo model; a target from an import path comes with weights")
    models = zoo()
    if target.model not in models:
        raise ConfigError(f"[target].model {target.model!r} is neither a zoo model {sorted(models)} nor "
                          "'package.module:factory'")
    check_trainer_options("[target.train]", target.train.given())


def _check_diffusion(diffusion: DiffusionSection) -> None:
    if diffusion.path is None:
        return
    if diffusion.data != "members":
        raise ConfigError('[diffusion].data = "public" trains a diffusion model; a loaded one ([diffusion].path) '
                          "was trained on whatever it was trained on: drop one of the two")
    if not Path(diffusion.path).is_dir():
        raise ConfigError(f"[diffusion].path: folder {diffusion.path!r} does not exist (train one with "
                          "`diffence train-diffusion --out FOLDER`)")


def diffusion_max_timestep(plan: Plan, options: dict) -> int | None:
    """The largest noise step the diffusion model a Diffence defense uses was trained on (None: unknown)."""
    path = options.get("path") or plan.diffusion.path
    if path is None:
        return plan.diffusion.max_timestep
    record = Path(path) / "training.json"
    try:
        return int(json.loads(record.read_text())["max_timestep"]) if record.is_file() else None
    except (ValueError, KeyError, TypeError):
        return None


def _check_diffence(plan: Plan, where: str, options: dict) -> None:
    from diffence_plugin.config import DiffenceConfig

    config = {k: v for k, v in options.items() if k not in DIFFENCE_OWN}
    tuned = plan.diffusion.t_choices
    if tuned and "t" in config:
        raise ConfigError(f"{where}: t is chosen by calibration among [diffusion].t_choices {tuned}; drop t here")
    for t in tuned or [config.get("t", DiffenceConfig.t)]:
        try:
            DiffenceConfig(**{**config, "t": t})
        except TypeError as exc:
            valid = sorted(set(accepted_options(DiffenceConfig)) | set(DIFFENCE_OWN))
            raise ConfigError(f"{where}: {exc}; valid options: {valid}") from exc
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        limit = diffusion_max_timestep(plan, options)
        if limit is not None and t > limit:
            raise ConfigError(f"{where}: t = {t} but the diffusion model is trained on timesteps <= {limit}; "
                              "lower t or train it with a larger max_timestep")
    if "path" in options and not Path(options["path"]).is_dir():
        raise ConfigError(f"{where}: path {options['path']!r} is not a folder")


def _check_defenses(plan: Plan) -> None:
    registry = get_defenses()
    for d in plan.defenses:
        for name in d.name:
            where = f"[[defenses]] {d.label!r}" + ("" if d.name == [name] else f", {name!r}")
            entry = registry.get(name)
            if entry is None or entry.stage == "training":
                valid = sorted(n for n, e in registry.items() if e.stage != "training")
                raise ConfigError(f"{where}: unknown defense; registered: {valid}")
            options = d.options[name]
            if name == "diffence":
                _check_diffence(plan, where, options)
                continue
            accepted = accepted_options(entry.factory)
            unknown = sorted(set(options) - accepted) if accepted is not None else []
            if unknown:
                raise ConfigError(f"{where}: unknown option(s) {unknown}; valid options: {sorted(accepted) or 'none'}")


def _check_attacks(plan: Plan) -> None:
    from diffence_plugin.attacks.families import BUILTIN

    attacks = plan.attacks
    if attacks.references and (attacks.references < 2 or attacks.references % 2):
        raise ConfigError(f"[attacks].references must be 0 or an even number >= 2, got {attacks.references}")
    if not (attacks.threshold or attacks.references or attacks.art or attacks.plugins):
        raise ConfigError("[attacks] runs no attack: set threshold = true, references > 0 or art = [...]")
    if attacks.augment and not attacks.references:
        raise ConfigError("[attacks].augment adds flipped queries to LiRA, which needs references > 0")
    recipe = attacks.reference_recipe.given()
    if recipe:  # over the target's own recipe, as the references are trained
        check_trainer_options("[attacks].reference_recipe",
                              {**(plan.target.train.given() if plan.target.train else {}), **recipe})
    model = recipe.get("model", plan.target.model)
    if attacks.references and ":" in model and "factory" not in recipe:
        raise ConfigError("[attacks].reference_recipe needs factory = 'pkg.mod:train' (train(x, y, seed) -> model) "
                          "for a target from an import path, or references = 0")
    registry = get_attacks()
    plugins = sorted(set(registry) - set(BUILTIN))
    for name in attacks.plugins:
        if name in BUILTIN:
            raise ConfigError(f"[attacks].plugins: {name!r} is built in; it is turned on by [attacks]."
                              f"{'references' if name in ('lira', 'rmia') else name}")
        if name not in registry:
            raise ConfigError(f"[attacks].plugins: no plugin registers an attack {name!r}; registered: "
                              f"{plugins or 'none'}")
    if attacks.art:
        try:
            registry["art"](attacks=tuple(attacks.art))
        except ValueError as exc:
            raise ConfigError(f"[attacks].art: {exc}") from exc
