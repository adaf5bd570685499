"""``diffence evaluate CONFIG``: audit your own model and data from a TOML (or JSON) file, no Python needed.

The config names the target (a zoo model or ``package.module:factory``, weights in safetensors), the data
(an ``.npz`` with ``x`` and ``y``, or a dataset folder), the members (an index file, or a seeded random
split), the defenses by registered name, the attacks and the reference-model recipe, sizes, seeds and the
output folder. Every field is validated with an error that names it. The run writes the resolved config
(``config.json``, which ``diffence evaluate`` accepts back and reproduces the same numbers from), the
machine and package versions, ``results.json`` with per-record scores, and ``report.html``.

Example (``examples/audit-digits.toml``)::

    [target]
    model = "digits_mlp"
    weights = "runs/target/model.safetensors"

    [data]
    dataset = "digits"

    [members]
    count = 300
    seed = 0

    [[defenses]]
    name = "diffence"
    options = { path = "runs/ddpm", n = 50, t = 100, k = 10, scenario = 1 }

    [attacks]
    references = 8
"""

from __future__ import annotations

import copy
import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .executor import Executor

SECTIONS = {
    "target": {"model": str, "weights": str, "nb_classes": int, "options": dict},
    "data": {"npz": str, "dataset": str, "folder": str},
    "members": {"indices": str, "count": int, "seed": int},
    "roles": {"defender": int, "attacker": int, "evaluation": int, "population": int, "seed": int},
    "attacks": {"threshold": bool, "art": list, "references": int, "reference_recipe": dict, "aware": bool,
                "augment": bool, "attacker_ddpm_steps": int, "selection_draws": int},
    "run": {"seed": int, "out": str, "bootstrap": int, "overwrite": bool, "progress": bool, "executor": str,
            "address": str, "threads": int, "shard_size": int},
}
DEFAULTS = {
    "target": {"options": {}},
    "data": {},
    "members": {},
    "roles": {"defender": 75, "attacker": 75, "evaluation": 150, "population": 150, "seed": 0},
    "attacks": {"threshold": True, "art": ["bb_rf", "bb_loss_rf"], "references": 8, "reference_recipe": {},
                "aware": True, "augment": False, "attacker_ddpm_steps": 400, "selection_draws": 10},
    "run": {"seed": 0, "out": "audit", "bootstrap": 1000, "overwrite": False, "progress": True,
            "executor": "local", "address": "", "threads": 1, "shard_size": 256},
}
RECIPE_KEYS = {"model": str, "defense": str, "epochs": int, "batch_size": int, "lr": float, "options": dict,
               "factory": str}
DATASETS = ("digits", "cifar10", "cifar100", "svhn")


class ConfigError(ValueError):
    """A config field is missing, unknown, of the wrong type or inconsistent with the data; the message names it."""


def _check_type(where: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def read_config_file(path: Path) -> dict:
    """The raw table of a TOML or JSON config file (not yet validated)."""
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_bytes()
    try:
        if path.suffix == ".json":
            return json.loads(text)
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        return tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: "
                          f"{exc}") from exc


def resolve(raw: dict, base: Path) -> dict:
    """Validate a parsed config and fill in defaults; relative paths are read from ``base`` (the file's folder)."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a table of sections")
    known = set(SECTIONS) | {"defenses", "format"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; valid: {sorted(known)}")
    out: dict[str, Any] = {"format": "diffence-audit-v1"}
    for section, fields in SECTIONS.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}] must be a table")
        bad = sorted(set(given) - set(fields))
        if bad:
            raise ConfigError(f"unknown key(s) {bad} in [{section}]; valid: {sorted(fields)}")
        merged = copy.deepcopy(DEFAULTS[section])
        for key, value in given.items():
            merged[key] = _check_type(f"[{section}].{key}", value, fields[key])
        out[section] = merged
    out["defenses"] = _resolve_defenses(raw.get("defenses", []))
    _resolve_paths(out, base)
    _check_semantics(out)
    return out


def _resolve_defenses(defenses: Any) -> list[dict]:
    if not isinstance(defenses, list):
        raise ConfigError("[[defenses]] must be an array of tables, each with a name")
    resolved = []
    for i, d in enumerate(defenses):
        where = f"[[defenses]] #{i + 1}"
        if not isinstance(d, dict) or "name" not in d:
            raise ConfigError(f"{where} needs a name")
        bad = sorted(set(d) - {"name", "options", "label"})
        if bad:
            raise ConfigError(f"unknown key(s) {bad} in {where}; valid: ['label', 'name', 'options']")
        resolved.append({"name": _check_type(f"{where}.name", d["name"], str),
                         "label": _check_type(f"{where}.label", d.get("label", d["name"]), str),
                         "options": _check_type(f"{where}.options", d.get("options", {}), dict)})
    labels = [d["label"] for d in resolved]
    if len(set(labels)) != len(labels) or "undefended" in labels:
        raise ConfigError(f"defense labels must be unique and not 'undefended', got {labels}; set label = ...")
    from ..randomness import secret_seed

    secret = secret_seed()  # one per audit: Diffence defenses on the same DDPM then share reconstructions
    for d in resolved:
        saved = Path(str(d["options"].get("path", ""))) / "diffence.json"
        if d["name"] == "diffence" and "seed" not in d["options"] and not saved.is_file():
            d["options"]["seed"] = secret  # written to config.json, so a rerun from the record is identical
    return resolved


def _absolute(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_paths(cfg: dict, base: Path) -> None:
    for section, key in (("target", "weights"), ("data", "npz"), ("data", "folder"), ("members", "indices"),
                         ("run", "out")):
        if key in cfg[section]:
            cfg[section][key] = _absolute(base, cfg[section][key])
    for d in cfg["defenses"]:
        for key in ("path", "calibration"):
            if isinstance(d["options"].get(key), str):
                d["options"][key] = _absolute(base, d["options"][key])


def _check_semantics(cfg: dict) -> None:
    target, data, members = cfg["target"], cfg["data"], cfg["members"]
    for key in ("model", "weights"):
        if key not in target:
            raise ConfigError(f"[target].{key} is required")
    if not Path(target["weights"]).is_file():
        raise ConfigError(f"[target].weights: file {target['weights']!r} does not exist")
    if not target["weights"].endswith(".safetensors"):
        raise ConfigError(f"[target].weights must be a .safetensors file, got {target['weights']!r}")
    if ("npz" in data) == ("dataset" in data):
        raise ConfigError("[data] needs exactly one of npz = FILE or dataset = NAME")
    if "npz" in data and not Path(data["npz"]).is_file():
        raise ConfigError(f"[data].npz: file {data['npz']!r} does not exist")
    if "dataset" in data:
        if data["dataset"] not in DATASETS:
            raise ConfigError(f"[data].dataset must be one of {list(DATASETS)}, got {data['dataset']!r}")
        if data["dataset"] != "digits" and "folder" not in data:
            raise ConfigError(f"[data].folder is required for dataset {data['dataset']!r}")
        if "folder" in data and not Path(data["folder"]).is_dir():
            raise ConfigError(f"[data].folder: folder {data['folder']!r} does not exist")
    if ("indices" in members) == ("count" in members):
        raise ConfigError("[members] needs exactly one of indices = FILE (.npy) or count = N (with seed)")
    if "indices" in members and not Path(members["indices"]).is_file():
        raise ConfigError(f"[members].indices: file {members['indices']!r} does not exist")
    for key, value in cfg["roles"].items():
        if key != "seed" and value < (2 if key == "attacker" else 1):
            raise ConfigError(f"[roles].{key} must be >= {2 if key == 'attacker' else 1}, got {value}")
    attacks = cfg["attacks"]
    if attacks["references"] and (attacks["references"] < 2 or attacks["references"] % 2):
        raise ConfigError(f"[attacks].references must be 0 or an even number >= 2, got {attacks['references']}")
    if not (attacks["threshold"] or attacks["references"] or attacks["art"]):
        raise ConfigError("[attacks] runs no attack: set threshold = true, references > 0 or art = [...]")
    if attacks["augment"] and not attacks["references"]:
        raise ConfigError("[attacks].augment adds flipped queries to LiRA, which needs references > 0")
    bad = sorted(set(attacks["reference_recipe"]) - set(RECIPE_KEYS))
    if bad:
        raise ConfigError(f"unknown key(s) {bad} in [attacks].reference_recipe; valid: {sorted(RECIPE_KEYS)}")
    for key, value in attacks["reference_recipe"].items():
        attacks["reference_recipe"][key] = _check_type(f"[attacks].reference_recipe.{key}", value, RECIPE_KEYS[key])
    from ..adapters.art_attacks import BLACK_BOX

    valid_art = sorted(BLACK_BOX) + ["rule_based", "shadow_models"]
    for name in attacks["art"]:
        if name not in valid_art:
            raise ConfigError(f"[attacks].art: unknown attack {name!r}; valid: {valid_art}")
    if cfg["run"]["bootstrap"] < 0:
        raise ConfigError(f"[run].bootstrap must be >= 0, got {cfg['run']['bootstrap']}")
    from .executor import EXECUTORS

    if cfg["run"]["executor"] not in EXECUTORS:
        raise ConfigError(f"[run].executor must be one of {list(EXECUTORS)}, got {cfg['run']['executor']!r}")
    for key in ("threads", "shard_size"):
        if cfg["run"][key] < 1:
            raise ConfigError(f"[run].{key} must be >= 1, got {cfg['run'][key]}")


def load_config(path: str | Path) -> dict:
    """Read, validate and resolve an audit config (TOML, or the JSON a previous run wrote)."""
    path = Path(path)
    return resolve(read_config_file(path), path.resolve().parent)


# ---- building the pieces ----------------------------------------------------------------------------------

def _import(spec: str, where: str):
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"{where} must look like 'package.module:name', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot import {spec!r}: {exc}") from exc


def load_data(cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """(S, C, H, W) float32 images in [0, 1] and (S,) int64 labels, validated."""
    from ..validation import as_image_batch

    data = cfg["data"]
    if "npz" in data:
        try:
            with np.load(data["npz"], allow_pickle=False) as arrays:
                missing = [k for k in ("x", "y") if k not in arrays.files]
                if missing:
                    raise ConfigError(f"[data].npz {data['npz']!r} lacks array(s) {missing} (has {arrays.files})")
                x, y = arrays["x"], arrays["y"]
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"[data].npz {data['npz']!r} holds pickled objects or is damaged; only plain numeric "
                              f"arrays are read ({exc})") from exc
    elif data["dataset"] == "digits":
        from ..data import digits_images

        x, y = digits_images()
    else:
        from ..data import load_dataset

        loaded = load_dataset(data["dataset"], data["folder"])
        x, y = loaded.x_train, loaded.y_train
    try:
        x = as_image_batch(x, "[data] x").numpy()
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"[data] y must be {x.shape[0]} integer labels, got shape {y.shape} dtype {y.dtype}")
    if (y < 0).any():
        raise ConfigError("[data] y holds negative labels")
    return x, y.astype(np.int64)


def build_split(cfg: dict, total: int):
    """The roles of the audit: the given or drawn members, and roles drawn with ``[roles].seed``."""
    from .protocol import roles_from_members

    members_cfg, roles = cfg["members"], cfg["roles"]
    if "indices" in members_cfg:
        try:
            members = np.load(members_cfg["indices"], allow_pickle=False)
        except ValueError as exc:
            raise ConfigError(f"[members].indices {members_cfg['indices']!r} holds pickled objects or is not a "
                              f".npy array of integers ({exc})") from exc
        if members.ndim != 1 or not np.issubdtype(members.dtype, np.integer):
            raise ConfigError(f"[members].indices must be a 1-D array of integers, got {members.dtype} "
                              f"{members.shape}")
        if members.size and (members.min() < 0 or members.max() >= total):
            raise ConfigError(f"[members].indices reach {int(members.max())} but the data has {total} records")
        if np.unique(members).size != members.size:
            raise ConfigError("[members].indices repeats records")
    else:
        if not 0 < members_cfg["count"] < total:
            raise ConfigError(f"[members].count must lie in (0, {total}), got {members_cfg['count']}")
        members = np.random.default_rng(members_cfg.get("seed", 0)).permutation(total)[: members_cfg["count"]]
    try:
        return roles_from_members(members, total, roles["defender"], roles["attacker"], roles["evaluation"],
                                  roles["population"] if cfg["attacks"]["references"] else 0, seed=roles["seed"])
    except ValueError as exc:
        raise ConfigError(f"[roles]: {exc}") from exc


def build_target(cfg: dict, x: np.ndarray, y: np.ndarray):
    """The target model with its weights, checked against the data's shape and classes."""
    import torch
    from safetensors.torch import load_file

    t = cfg["target"]
    nb_classes = t.get("nb_classes", int(y.max()) + 1)
    if int(y.max()) >= nb_classes:
        raise ConfigError(f"[target].nb_classes = {nb_classes} but the labels reach {int(y.max())}")
    if ":" in t["model"]:
        model = _import(t["model"], "[target].model")(**t["options"])
    else:
        from ..data import MODELS, build_model

        if t["model"] not in MODELS:
            raise ConfigError(f"[target].model {t['model']!r} is neither a zoo model {sorted(MODELS)} nor "
                              "'package.module:factory'")
        model = build_model(t["model"], nb_classes, x.shape[1], bool(t["options"].get("opacus_compatible", False)))
    try:
        state = load_file(t["weights"])
    except Exception as exc:
        raise ConfigError(f"[target].weights {t['weights']!r} is not a readable safetensors file: {exc}") from exc
    state = {k.removeprefix("_module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"[target].weights do not fit [target].model {t['model']!r}: {str(exc)[:300]}") from exc
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x[:2]))
    if out.shape != (min(2, len(x)), nb_classes):
        raise ConfigError(f"[target].model returns shape {tuple(out.shape)} on the data; expected (2, {nb_classes}) "
                          "(check [target].nb_classes and the data's class count)")
    return model, nb_classes


def build_recipe(cfg: dict, nb_classes: int, channels: int):
    from .references import ReferenceRecipe

    recipe = dict(cfg["attacks"]["reference_recipe"])
    if "factory" in recipe:
        train = _import(recipe["factory"], "[attacks].reference_recipe.factory")
        return ReferenceRecipe(train=train, key={"factory": recipe["factory"]})
    model = recipe.get("model", cfg["target"]["model"])
    if ":" in model:
        raise ConfigError("[attacks].reference_recipe needs model = a zoo name, or factory = 'pkg.mod:train' "
                          "for a target from an import path")
    return ReferenceRecipe.from_training(model, nb_classes, channels, defense=recipe.get("defense", "none"),
                                         epochs=recipe.get("epochs", 60), batch_size=recipe.get("batch_size", 64),
                                         lr=recipe.get("lr", 1e-3), options=recipe.get("options"))


@dataclass
class AuditRun:
    """What ``run_audit`` produced."""

    results: dict
    out: Path


def run_audit(cfg: dict, log: Callable[[str], None] | None = None, executor: Executor | None = None) -> AuditRun:
    """Run a resolved config (see ``load_config``); writes everything into ``[run].out``.

    Reference models and reconstruction shards run on ``executor`` (default: the one ``[run].executor``
    names, local or Ray); the results do not depend on which. Progress goes to ``log`` (default: the
    ``diffence_plugin`` logger), each long phase with its duration.
    """
    import torch

    from ..progress import logger

    from ..defense import Diffence
    from ..diffusion import train_diffusion
    from ..plugins import DefensePipeline
    from ..randomness import experiment_seed
    from .executor import candidates_in_shards, get_executor
    from .report import machine, write_report
    from .runner import (ShadowDiffence, attacker_universe, compare_to, diffence_view, evaluate_defense, hflip,
                         labels_kept, post_view, release_all, roles_of, selection_spread, shadow_pool,
                         undefended_releases, undefended_view)

    start = time.perf_counter()
    log = log or logger.info
    run = cfg["run"]
    out = Path(run["out"])
    if out.exists() and any(out.iterdir()) and not run["overwrite"]:
        raise FileExistsError(f"output folder {str(out)!r} is not empty; set [run].overwrite = true or pass "
                              "--overwrite")
    x, y = load_data(cfg)
    split = build_split(cfg, len(x))
    model, nb_classes = build_target(cfg, x, y)
    out.mkdir(parents=True, exist_ok=True)
    record = copy.deepcopy(cfg)
    record["run"]["overwrite"] = False  # a rerun from the record never replaces a folder silently
    (out / "config.json").write_text(json.dumps(record, indent=2))
    torch.manual_seed(run["seed"])
    progress = run["progress"]
    executor = executor or get_executor(run["executor"], address=run["address"] or None, threads=run["threads"],
                                        progress=progress)
    roles = roles_of(split)
    log(f"target {cfg['target']['model']} on {len(split.members)} members; roles {[len(getattr(split, r)) for r in roles]}")

    attacks = cfg["attacks"]
    queries = {"": x} | ({"flip": hflip(x)} if attacks["augment"] else {})  # LiRA's augmented queries
    released = {q: {"undefended": undefended_releases(model, xq, split)} for q, xq in queries.items()}
    pipelines, diffences, reconstructed = {}, {}, {}
    for d in cfg["defenses"]:
        try:
            pipeline = DefensePipeline.from_names(d["name"], classifier=model, options={d["name"]: d["options"]})
        except (ValueError, TypeError, FileNotFoundError) as exc:
            raise ConfigError(f"[[defenses]] {d['label']!r}: {exc}") from exc
        log(f"fitting and releasing through {d['label']}")
        pipeline.fit(torch.from_numpy(x[split.defender_members]), torch.from_numpy(x[split.defender_nonmembers]))
        pipelines[d["label"]] = pipeline
        only = pipeline.pre[0] if len(pipeline.pre) == 1 and not pipeline.post else None
        for q, xq in queries.items():
            if only is not None and hasattr(only, "candidates"):
                only.progress = progress
                c = only.config
                key = (only.fingerprint(), c.n, c.t, c.k, c.seed, c.deterministic, q)  # same DDPM and draws: reuse
                if key not in reconstructed:
                    order = np.concatenate([getattr(split, r) for r in roles])
                    every = candidates_in_shards(executor, only, model, xq[order], run["shard_size"])
                    bounds = np.cumsum([0] + [len(getattr(split, r)) for r in roles])
                    reconstructed[key] = {r: every.subset(torch.arange(bounds[i], bounds[i + 1]))
                                          for i, r in enumerate(roles)}
                if not q:
                    diffences[d["label"]] = (only, reconstructed[key])
                released[q][d["label"]] = release_all(only, reconstructed[key])
            else:
                released[q][d["label"]] = {r: pipeline.release(model, torch.from_numpy(xq[getattr(split, r)])).numpy()
                                           for r in roles}

    views: dict[str, dict] = {q: {} for q in queries}
    shadows = {}
    if attacks["references"]:
        recipe = build_recipe(cfg, nb_classes, x.shape[1])
        universe = attacker_universe(split, 2 * len(split.members))
        log(f"training {attacks['references']} reference models on halves of {len(universe)} attacker records")
        from .references import train_references

        refs = train_references(recipe, x[universe], y[universe], attacks["references"], seed=run["seed"] + 1,
                                cache=out / "reference-cache", progress=progress, executor=executor)
        for q, xq in queries.items():
            views[q]["undefended"] = undefended_view(refs, xq, universe)
        attacker_ddpms: dict = {}  # the attacker's own DDPM and reconstructions, per (UNet, n, t, k)
        for label, (defense, _) in diffences.items():
            if not attacks["aware"]:
                break
            cfg_d = defense.config
            unet = {k: v for k, v in defense.reconstructor.unet.config.items() if not k.startswith("_")}
            key = json.dumps([unet, cfg_d.n, cfg_d.t, cfg_d.k], sort_keys=True, default=str)
            if key not in attacker_ddpms:
                log(f"the attacker's own DDPM ({attacks['attacker_ddpm_steps']} steps on its pool of "
                    f"{len(split.attacker_pool)} records, the defender's UNet architecture) and reconstructions")
                ddpm = train_diffusion(torch.from_numpy(x[split.attacker_pool]), unet_config=unet,
                                       steps=attacks["attacker_ddpm_steps"], max_timestep=cfg_d.t,
                                       seed=run["seed"] + 1, progress=progress)
                mine = Diffence(ddpm, **{**cfg_d.to_dict(), "seed": experiment_seed(run["seed"] + 1)},
                                progress=progress)
                images = {q: mine.reconstructions(torch.from_numpy(xq[universe])) for q, xq in queries.items()}
                pool_images = None
                if "shadow_models" in attacks["art"]:
                    pool = shadow_pool(split, 2 * len(split.members))
                    pool_images = mine.reconstructions(torch.from_numpy(x[pool]))
                attacker_ddpms[key] = (mine, images, pool_images)
            mine, images, pool_images = attacker_ddpms[key]
            mine = mine.with_config(scenario=cfg_d.scenario)
            for q, xq in queries.items():
                views[q][label] = diffence_view(refs, mine, xq, universe, images[q], split)
            if pool_images is not None:
                shadows[label] = ShadowDiffence.for_split(mine, x, split, pool_images, universe, images[""])
        for q, xq in queries.items():
            for label, pipeline in pipelines.items():
                if label not in views[q] and attacks["aware"] and not pipeline.pre:  # post stages copied one by one
                    copied = post_view(views[q]["undefended"], pipeline.post, xq, split, run["seed"] + 1,
                                       upstream_copied=True)
                    if copied is not None:
                        views[q][label] = copied
                views[q].setdefault(label, views[q]["undefended"])

    kept = labels_kept(released[""])
    target_art = None
    rows = []
    for name, probs in released[""].items():
        art = None
        if attacks["art"]:
            from ..adapters import art_attacks
            from ..adapters.art import DefendedClassifier

            target_art = target_art or art_attacks.probability_classifier(model, tuple(x.shape[1:]), nb_classes)
            estimator = DefendedClassifier(target_art, pipelines[name]) if name in pipelines else target_art
            art = dict(estimator=estimator, target=target_art, model=model, attacks=tuple(attacks["art"]),
                       defended=name in pipelines, shadow_answer=shadows.get(name))
        view = views[""].get(name)
        flipped = (released["flip"][name], views["flip"][name]) if "flip" in queries and view is not None else None
        row = evaluate_defense(name, probs, x, y, split, view=view, flipped=flipped, art=art, kept=kept[name],
                               seed=run["seed"], bootstrap=run["bootstrap"], threshold=attacks["threshold"])
        if name in diffences and attacks["selection_draws"] > 1:
            defense, cands = diffences[name]
            row.spread = selection_spread(defense, cands, y, split, view, attacks["selection_draws"],
                                          seed=run["seed"])
        if rows:
            row.change = compare_to(row, rows[0], seed=run["seed"])
        rows.append(row)
        log(f"  {name}: {row.best.attack} AUC {row.best.auc:.3f}")
    calibration = {}
    for label, (defense, _) in diffences.items():
        if defense.calibration is not None:
            calibration[label] = {"lo": defense.calibration.lo, "hi": defense.calibration.hi}
    results = {"settings": {"config": str(out / "config.json"), "seed": run["seed"]},
               "calibration": calibration, "rows": [r.to_dict() for r in rows],
               "seconds": time.perf_counter() - start, "machine": machine()}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, released[""], {r: y[getattr(split, r)] for r in roles}, out)
    return AuditRun(results=results, out=out)
