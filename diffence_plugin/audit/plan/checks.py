"""Every check of a plan that can be made before any work: files, sizes, registered names and their options,
Diffence's settings against the diffusion model. A run that passes them fails late only on the data itself
(its shape and labels, checked when it is loaded, still before any training)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from diffence_plugin.attacks.roles import CANARY_KINDS, DIFFUSION_DATA
from diffence_plugin.audit.plan.schema import RECIPE_KEYS, ConfigError, check_type

DIFFENCE_OWN = ("path", "reconstructor", "calibration")  # the diffence factory's keys beyond DiffenceConfig


def check_plan(plan: dict) -> None:
    """Raise ``ConfigError`` naming the first field that cannot work; changes nothing but type coercions."""
    _check_data(plan["data"])
    _check_members(plan["members"], plan["roles"])
    _check_target(plan["target"])
    if plan["roles"]["canaries"] and "weights" in plan["target"]:
        raise ConfigError("[roles].canaries makes records (flipped labels or shuffled pixels) the target must train on: use [target.train], not "
                          "[target].weights (a loaded target never saw the canaries)")
    _check_diffusion(plan["diffusion"])
    _check_defenses(plan)
    _check_attacks(plan)
    _check_run(plan["run"])


def _check_data(data: dict) -> None:
    if ("npz" in data) == ("dataset" in data):
        raise ConfigError("[data] needs exactly one of npz = FILE or dataset = NAME")
    if "npz" in data and not Path(data["npz"]).is_file():
        raise ConfigError(f"[data].npz: file {data['npz']!r} does not exist")
    if "dataset" in data:
        from diffence_plugin.data.datasets import layout_of, needs_folder
        from diffence_plugin.registry import get_datasets

        registry, name = get_datasets(), data["dataset"]
        if name not in registry:
            raise ConfigError(f"[data].dataset must be one of {sorted(registry)} (datasets plugins register), got "
                              f"{name!r}")
        if needs_folder(registry[name]) and "folder" not in data:
            raise ConfigError(f"[data].folder is required for dataset {name!r}: a folder holding "
                              f"{layout_of(name, registry[name])}")
        if "folder" in data and not Path(data["folder"]).is_dir():
            raise ConfigError(f"[data].folder: folder {data['folder']!r} does not exist")


def _check_members(members: dict, roles: dict) -> None:
    if ("indices" in members) == ("count" in members):
        raise ConfigError("[members] needs exactly one of indices = FILE (.npy) or count = N (with seed)")
    if "indices" in members and not Path(members["indices"]).is_file():
        raise ConfigError(f"[members].indices: file {members['indices']!r} does not exist")
    if members["draw"] not in ("separate", "with_roles"):
        raise ConfigError(f"[members].draw must be 'separate' or 'with_roles', got {members['draw']!r}")
    if members["draw"] == "with_roles" and "count" not in members:
        raise ConfigError("[members].draw = 'with_roles' draws count members with the roles; set [members].count")
    need = roles["defender"] + roles["attacker"] + roles["evaluation"] + roles["canaries"]
    if "count" in members and need > members["count"]:
        raise ConfigError(f"[roles]: the member roles need {need} members, [members].count is {members['count']}")
    for key, value in roles.items():
        least = 2 if key == "attacker" else 0 if key in ("population", "canaries", "public") else 1
        if key not in ("seed", "canary_kind") and value < least:
            raise ConfigError(f"[roles].{key} must be >= {least}, got {value}")
    if roles["canary_kind"] not in CANARY_KINDS:
        raise ConfigError(f"[roles].canary_kind must be one of {list(CANARY_KINDS)}, got {roles['canary_kind']!r}")
    if 0 < roles["canaries"] < 2:
        raise ConfigError(f"[roles].canaries must be 0 or >= 2 (members and as many non-members), got "
                          f"{roles['canaries']}")


def check_recipe(where: str, recipe: dict, allowed: dict = RECIPE_KEYS) -> None:
    """Keys and types of a training recipe (``[target.train]``, ``[attacks].reference_recipe``)."""
    bad = sorted(set(recipe) - set(allowed))
    if bad:
        raise ConfigError(f"unknown key(s) {bad} in {where}; valid: {sorted(allowed)}")
    for key, value in recipe.items():
        recipe[key] = check_type(f"{where}.{key}", value, allowed[key])
    if "defense" in recipe:
        from diffence_plugin.registry import get_defenses

        training = sorted(n for n, e in get_defenses().items() if e.stage == "training")
        if recipe["defense"] not in training:
            raise ConfigError(f"{where}.defense: unknown training defense {recipe['defense']!r}; choose from {training}")


def check_trainer_options(where: str, recipe: dict) -> None:
    """The recipe's training defense accepts its ``options`` (its constructor runs: it only stores and checks
    them), so a wrong option stops the run before any training."""
    from diffence_plugin.registry import get_defenses

    defense, options = recipe.get("defense", "none"), recipe.get("options", {})
    entry = get_defenses().get(defense)
    if entry is None:
        return
    try:
        entry.factory(**options)
    except TypeError as exc:
        valid = sorted(p for p in inspect.signature(entry.factory).parameters if p != "self")
        raise ConfigError(f"{where}.options: {defense!r} does not take {sorted(options)}: {exc}; valid options: "
                          f"{valid}") from exc
    except ValueError as exc:
        raise ConfigError(f"{where}.options: {exc}") from exc


def _check_target(target: dict) -> None:
    if "model" not in target:
        raise ConfigError("[target].model is required")
    if ("weights" in target) == ("train" in target):
        raise ConfigError("[target] needs exactly one of weights = FILE (.safetensors) or [target.train] (a recipe)")
    if "weights" in target:
        if not target["weights"].endswith(".safetensors"):
            raise ConfigError(f"[target].weights must be a .safetensors file, got {target['weights']!r}")
        if not Path(target["weights"]).is_file():
            raise ConfigError(f"[target].weights: file {target['weights']!r} does not exist")
        return
    if ":" in target["model"]:
        raise ConfigError("[target.train] trains a zoo model; a target from an import path comes with weights")
    from diffence_plugin.data.models import zoo

    models = zoo()
    if target["model"] not in models:
        raise ConfigError(f"[target].model {target['model']!r} is neither a zoo model {sorted(models)} nor "
                          "'package.module:factory'")
    check_recipe("[target.train]", target["train"], {k: v for k, v in RECIPE_KEYS.items() if k not in ("model",
                                                                                                      "factory")})
    check_trainer_options("[target.train]", target["train"])


def _check_diffusion(diffusion: dict) -> None:
    if diffusion["data"] not in DIFFUSION_DATA:
        raise ConfigError(f"[diffusion].data must be one of {list(DIFFUSION_DATA)}, got {diffusion['data']!r}")
    if "path" in diffusion:
        if diffusion["data"] != "members":
            raise ConfigError('[diffusion].data = "public" trains a diffusion model; a loaded one ([diffusion].path) '
                              "was trained on whatever it was trained on: drop one of the two")
        folder = Path(diffusion["path"])
        if not folder.is_dir():
            raise ConfigError(f"[diffusion].path: folder {diffusion['path']!r} does not exist (train one with "
                              "`diffence train-diffusion --out FOLDER`)")
        return
    if diffusion["kind"] not in ("single", "dual", "distill"):
        raise ConfigError(f"[diffusion].kind must be 'single', 'dual' or 'distill', got {diffusion['kind']!r}")
    if diffusion["mode"] not in ("alternate", "keyed"):
        raise ConfigError(f"[diffusion].mode must be 'alternate' or 'keyed', got {diffusion['mode']!r}")
    if diffusion["unet"] not in ("tiny", "cifar"):
        raise ConfigError(f"[diffusion].unet must be 'tiny' or 'cifar', got {diffusion['unet']!r}")
    for key in ("width", "steps", "batch_size", "max_timestep"):
        if diffusion[key] < 1:
            raise ConfigError(f"[diffusion].{key} must be >= 1, got {diffusion[key]}")
    if "seconds" in diffusion and not diffusion["seconds"] > 0:
        raise ConfigError(f"[diffusion].seconds must be > 0, got {diffusion['seconds']}")
    for t in diffusion["t_choices"]:
        check_type("[diffusion].t_choices[]", t, int)


def diffusion_max_timestep(plan: dict, options: dict) -> int | None:
    """The largest noise step the diffusion model a Diffence defense uses was trained on (None: unknown)."""
    path = options.get("path") or plan["diffusion"].get("path")
    if path is None:
        return plan["diffusion"]["max_timestep"]
    record = Path(path) / "training.json"
    try:
        return int(json.loads(record.read_text())["max_timestep"]) if record.is_file() else None
    except (ValueError, KeyError, TypeError):
        return None


def _check_diffence(plan: dict, where: str, options: dict) -> None:
    from diffence_plugin.config import DiffenceConfig

    config = {k: v for k, v in options.items() if k not in DIFFENCE_OWN}
    tuned = plan["diffusion"]["t_choices"]
    if tuned and "t" in config:
        raise ConfigError(f"{where}: t is chosen by calibration among [diffusion].t_choices {tuned}; drop t here")
    for t in tuned or [config.get("t", DiffenceConfig.t)]:
        try:
            DiffenceConfig(**{**config, "t": t})
        except TypeError as exc:
            valid = sorted(set(inspect.signature(DiffenceConfig).parameters) | set(DIFFENCE_OWN))
            raise ConfigError(f"{where}: {exc}; valid options: {valid}") from exc
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        limit = diffusion_max_timestep(plan, options)
        if limit is not None and t > limit:
            raise ConfigError(f"{where}: t = {t} but the diffusion model is trained on timesteps <= {limit}; "
                              "lower t or train it with a larger max_timestep")
    if "path" in options and not Path(options["path"]).is_dir():
        raise ConfigError(f"{where}: path {options['path']!r} is not a folder")


def _check_defenses(plan: dict) -> None:
    from diffence_plugin.registry import get_defenses

    registry = get_defenses()
    for d in plan["defenses"]:
        for name in d["name"]:
            where = f"[[defenses]] {d['label']!r}" + ("" if d["name"] == [name] else f", {name!r}")
            entry = registry.get(name)
            if entry is None or entry.stage == "training":
                valid = sorted(n for n, e in registry.items() if e.stage != "training")
                raise ConfigError(f"{where}: unknown defense; registered: {valid}")
            options = d["options"][name]
            if name == "diffence":
                _check_diffence(plan, where, options)
                continue
            params = inspect.signature(entry.factory).parameters
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                unknown = sorted(set(options) - set(params))
                if unknown:
                    raise ConfigError(f"{where}: unknown option(s) {unknown}; valid options: {sorted(params) or 'none'}")


def _check_attacks(plan: dict) -> None:
    attacks = plan["attacks"]
    if attacks["references"] and (attacks["references"] < 2 or attacks["references"] % 2):
        raise ConfigError(f"[attacks].references must be 0 or an even number >= 2, got {attacks['references']}")
    if not (attacks["threshold"] or attacks["references"] or attacks["art"] or attacks["plugins"]):
        raise ConfigError("[attacks] runs no attack: set threshold = true, references > 0 or art = [...]")
    if attacks["augment"] and not attacks["references"]:
        raise ConfigError("[attacks].augment adds flipped queries to LiRA, which needs references > 0")
    check_recipe("[attacks].reference_recipe", attacks["reference_recipe"])
    if attacks["reference_recipe"]:  # over the target's own recipe, as the references are trained
        check_trainer_options("[attacks].reference_recipe", {**plan["target"].get("train", {}),
                                                             **attacks["reference_recipe"]})
    recipe_model = attacks["reference_recipe"].get("model", plan["target"]["model"])
    if attacks["references"] and ":" in recipe_model and "factory" not in attacks["reference_recipe"]:
        raise ConfigError("[attacks].reference_recipe needs factory = 'pkg.mod:train' (train(x, y, seed) -> model) "
                          "for a target from an import path, or references = 0")
    for key in ("selection_draws",):
        if attacks[key] < 0:
            raise ConfigError(f"[attacks].{key} must be >= 0, got {attacks[key]}")
    if attacks["defense_seeds"] < 1:
        raise ConfigError(f"[attacks].defense_seeds must be >= 1 (the run's own seed), got {attacks['defense_seeds']}")
    if "attacker_ddpm_steps" in attacks and attacks["attacker_ddpm_steps"] < 1:
        raise ConfigError(f"[attacks].attacker_ddpm_steps must be >= 1, got {attacks['attacker_ddpm_steps']}")
    from diffence_plugin.attacks.families import BUILTIN
    from diffence_plugin.registry import get_attacks

    registry = get_attacks()
    plugins = sorted(set(registry) - set(BUILTIN))
    for name in attacks["plugins"]:
        if name in BUILTIN:
            raise ConfigError(f"[attacks].plugins: {name!r} is built in; it is turned on by [attacks]."
                              f"{'references' if name in ('lira', 'rmia') else name}")
        if name not in registry:
            raise ConfigError(f"[attacks].plugins: no plugin registers an attack {name!r}; registered: "
                              f"{plugins or 'none'}")
    if attacks["art"]:
        try:
            registry["art"](attacks=tuple(attacks["art"]))
        except ValueError as exc:
            raise ConfigError(f"[attacks].art: {exc}") from exc


def _check_run(run: dict) -> None:
    if run["bootstrap"] < 0:
        raise ConfigError(f"[run].bootstrap must be >= 0, got {run['bootstrap']}")
    from diffence_plugin.registry import get_executors

    executors = sorted(get_executors())
    if run["executor"] not in executors:
        raise ConfigError(f"[run].executor must be one of {executors}, got {run['executor']!r}")
    for key in ("shard_size", "max_batch"):
        if run[key] < 1:
            raise ConfigError(f"[run].{key} must be >= 1, got {run[key]}")
    if run["threads"] < 0:
        raise ConfigError(f"[run].threads must be >= 0 (0: torch's current count), got {run['threads']}")
    if run["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"[run].device must be 'auto', 'cpu' or 'cuda', got {run['device']!r}")
    if run["defense_seed"] not in ("secret", "derived"):
        raise ConfigError(f"[run].defense_seed must be 'secret' or 'derived', got {run['defense_seed']!r}")
