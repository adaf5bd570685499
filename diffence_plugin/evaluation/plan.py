"""The plan of one membership audit: a validated table (TOML or JSON) that says everything a run does.

``diffence evaluate CONFIG``, ``diffence demo`` and ``diffence reproduce`` all run a plan through the one
engine (``evaluation.engine``); the demo and the CIFAR presets are plan files shipped in
``diffence_plugin/presets``. A plan names the data and the members, the target (weights to load, or a
recipe to train it), the defender's diffusion model (a folder to load, or how to train it), the defenses by
registered name (a list of names is a pipeline), the attacker (reference models, its own DDPM, which attacks)
and the run (seeds, output folder, device). Every field is checked with an error that names it; unknown keys
are refused. ``resolve`` fills in defaults, so a resolved plan says everything, and the run writes it back
as ``config.json`` (owner-only: it holds the defense's secret seed), which reproduces the same numbers.

Sections and keys (defaults in ``DEFAULTS``):

- ``[data]``: ``npz`` (a file with arrays x (N, C, H, W) in [0, 1] and y) | ``dataset`` (digits, cifar10,
  cifar100, svhn) with ``folder``; a dataset's test split gives the target's test accuracy.
- ``[members]``: ``indices`` (an .npy file) | ``count`` with ``seed``; ``draw = "with_roles"`` draws the
  members and the roles in one permutation of ``[roles].seed`` (the presets' split).
- ``[roles]``: known members/non-members of the ``defender`` and the ``attacker``, ``evaluation`` records of
  each kind, RMIA's ``population`` records, ``canaries`` (that many members and as many non-members made
  maximally vulnerable, audited apart from the average case: the worst case; 0: none) of ``canary_kind``
  ("flipped_labels": a wrong label; "shuffled_pixels": the image's pixels permuted, an out-of-distribution image
  with its label), ``public`` (that many non-members set aside as unlabeled public data for
  ``[diffusion].data = "public"``; taken from what would be the attacker's pool), and their ``seed``.
- ``[target]``: ``model`` (a zoo name or ``package.module:factory``), ``weights`` (safetensors) or
  ``[target.train]`` (``defense``, ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``options``).
- ``[diffusion]``: ``path`` (a saved model) or training: ``unet`` ("tiny" or "cifar"), ``width``, ``steps``,
  ``batch_size``, ``max_timestep``, optional ``seconds`` (a time budget: such a run does not reproduce on
  another machine). ``data``: "members" (the target's training set) or "public" (every record that is no
  evaluation, canary or attacker record: the defender's known records, spare members and ``[roles].public``;
  the attacker's own DDPM then trains on the same public data, all of it). ``kind``: "single" (one DDPM on
  that data), "dual" (DualMD: two DDPMs on disjoint halves, ``split_seed`` and ``mode`` "alternate" or
  "keyed") or "distill" (DistillMD: a student of that pair). ``t_choices``: noise steps the defender's
  calibration chooses among (Scenario 1's criterion, once); every Diffence defense then uses the chosen t.
- ``[[defenses]]``: ``name`` (a registered defense, or a list: a pipeline), ``label``, ``options`` (one
  defense's keyword arguments, or for a pipeline a table per name).
- ``[attacks]``: ``threshold``, ``art`` (ART's attacks), ``references`` (LiRA / RMIA reference models),
  ``reference_recipe`` (default: the target's training recipe), ``aware`` (the attacker copies each
  defense), ``augment`` (flipped queries), ``attacker_ddpm_steps`` (default: the defender's),
  ``attacker_ddpm_records`` (how many of its pool records its DDPM trains on; 0: all; under
  ``[diffusion].data = "public"`` it trains on the public data instead), ``selection_draws``,
  ``defense_seeds``, ``plugins`` (attacks registered by plugins, ``diffence_register_attacks``, by name),
  ``labels`` (LiRA on every release's top-1 labels alone, a floor every row's chosen attack may pick; default on).
- ``[run]``: ``seed``, ``out``, ``bootstrap``, ``overwrite``, ``progress``, ``executor``, ``address``,
  ``threads`` (torch threads per task; 0: torch's current count), ``shard_size``, ``max_batch`` (a cap on
  images per model call; on a CPU the UNet runs the chunk it measures fastest below it), ``compile`` (``torch.compile`` the DDPMs:
  faster on long runs after a first-call cost, see ``Reconstructor.compile``), ``device`` ("auto", "cpu",
  "cuda"), ``channels_last`` (train and run the classifiers and train the DDPMs in channels-last memory
  format on a CPU too: on the 2-core CPU the CPU preset's target trained 26% and its DDPM 10% faster,
  docs/results.md; not bit-identical to the default; CUDA always uses it), ``reconstruct_bf16`` (the DDPM
  reconstructs under bf16 autocast on a CPU too, for the defender and the attacker's copies: for CPUs with
  bf16 units, where Diffence ran 1.2x faster, docs/results.md; a CPU without them warns, being about 10x slower;
  not bit-identical to float32; CUDA always uses bf16), ``defense_seed``
  ("secret": drawn with ``secrets`` and recorded; "derived": from ``[run].seed``, public, for published
  demos only).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FORMAT = "diffence-plan-v1"
SECTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "data": {"npz": str, "dataset": str, "folder": str},
    "members": {"indices": str, "count": int, "seed": int, "draw": str},
    "roles": {"defender": int, "attacker": int, "evaluation": int, "population": int, "canaries": int, "canary_kind": str,
              "public": int, "seed": int},
    "target": {"model": str, "weights": str, "nb_classes": int, "options": dict, "train": dict},
    "diffusion": {"path": str, "unet": str, "width": int, "steps": int, "batch_size": int, "max_timestep": int,
                  "seconds": float, "lr": float, "t_choices": list, "kind": str, "split_seed": int, "mode": str,
                  "data": str},
    "attacks": {"threshold": bool, "art": list, "references": int, "reference_recipe": dict, "aware": bool,
                "augment": bool, "attacker_ddpm_steps": int, "attacker_ddpm_records": int, "selection_draws": int,
                "defense_seeds": int, "plugins": list, "labels": bool},
    "run": {"seed": int, "out": str, "bootstrap": int, "overwrite": bool, "progress": bool, "executor": str,
            "address": str, "threads": int, "shard_size": int, "max_batch": int, "compile": bool, "device": str,
            "channels_last": bool, "reconstruct_bf16": bool,
            "defense_seed": str},
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {},
    "members": {"draw": "separate"},
    "roles": {"defender": 75, "attacker": 75, "evaluation": 150, "population": 150, "canaries": 0,
              "canary_kind": "flipped_labels", "public": 0, "seed": 0},
    "target": {"options": {}},
    "diffusion": {"unet": "tiny", "width": 16, "steps": 400, "batch_size": 128, "max_timestep": 100, "lr": 2e-4,
                  "t_choices": [], "kind": "single", "mode": "alternate", "data": "members"},
    "attacks": {"threshold": True, "art": ["bb_rf", "bb_loss_rf"], "references": 8, "reference_recipe": {},
                "aware": True, "augment": False, "selection_draws": 10, "defense_seeds": 1, "plugins": [],
                "labels": True},
    "run": {"seed": 0, "out": "audit", "bootstrap": 1000, "overwrite": False, "progress": True,
            "executor": "local", "address": "", "threads": 0, "shard_size": 256, "max_batch": 1024,
            "compile": False, "device": "cpu", "channels_last": False, "reconstruct_bf16": False,
            "defense_seed": "secret"},
}
RECIPE_KEYS = {"model": str, "defense": str, "epochs": int, "batch_size": int, "lr": float, "weight_decay": float,
               "options": dict, "factory": str}
PRESET_FOLDER = Path(__file__).resolve().parents[1] / "presets"


class ConfigError(ValueError):
    """A plan field is missing, unknown, of the wrong type or inconsistent with the data; the message names it."""


def check_type(where: str, value: Any, kind: type) -> Any:
    """``value`` if it is of ``kind`` (an int passes as a float; a bool never passes as an int)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def read_config_file(path: Path) -> dict:
    """The raw table of a TOML or JSON plan file (not yet validated)."""
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


def preset_path(name: str) -> Path:
    """The shipped plan file of a preset (``demo``, ``cifar10-cpu``, ``cifar10-gpu``)."""
    path = PRESET_FOLDER / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_FOLDER.glob("*.toml"))
        raise ConfigError(f"unknown preset {name!r}; shipped presets: {known}")
    return path


def apply_overrides(raw: dict, assignments: list[str]) -> dict:
    """A copy of ``raw`` with ``section.key=value`` assignments (values read as JSON where they parse,
    else as strings), e.g. ``run.seed=3`` or ``attacks.art=["bb_rf"]``. ``defenses.LABEL.KEY=value`` sets
    an option of the defense labelled LABEL (``defenses.LABEL.NAME.KEY`` in a pipeline), and
    ``diffence.KEY=value`` an option of every Diffence defense. ``KEY=null`` removes the key."""
    out = copy.deepcopy(raw)
    for assignment in assignments:
        path, sep, text = assignment.partition("=")
        keys = path.strip().split(".")
        if not sep or len(keys) < 2 or not all(keys):
            raise ConfigError(f"--set expects section.key=value, got {assignment!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if keys[0] in ("defenses", "diffence"):
            _override_defenses(out, keys, value, path)
            continue
        table = out
        for key in keys[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {path}: {key!r} is not a table")
        _assign(table, keys[-1], value)
    return out


def _assign(table: dict, key: str, value: Any) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def _override_defenses(raw: dict, keys: list[str], value: Any, path: str) -> None:
    defenses = raw.get("defenses", [])
    if keys[0] == "diffence":
        hits = [d for d in defenses if "diffence" in (d["name"] if isinstance(d["name"], list) else [d["name"]])]
        if len(keys) != 2 or not hits:
            raise ConfigError(f"--set {path}: needs diffence.KEY and a Diffence defense in the plan")
        for d in hits:
            options = d.setdefault("options", {})
            _assign(options.setdefault("diffence", {}) if isinstance(d["name"], list) else options, keys[1], value)
        return
    labels = {d.get("label", "+".join(d["name"]) if isinstance(d["name"], list) else d["name"]): d for d in defenses}
    if len(keys) not in (3, 4) or keys[1] not in labels:
        raise ConfigError(f"--set {path}: needs defenses.LABEL.KEY (LABEL one of {sorted(labels)})")
    options = labels[keys[1]].setdefault("options", {})
    if len(keys) == 4:
        options = options.setdefault(keys[2], {})
    _assign(options, keys[-1], value)


def resolve(raw: dict, base: Path) -> dict:
    """Validate a parsed plan and fill in defaults; relative paths are read from ``base`` (the file's folder)."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a table of sections")
    known = set(SECTIONS) | {"defenses", "format", "name", "description"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; valid: {sorted(known)}")
    out: dict[str, Any] = {"format": FORMAT, "name": str(raw.get("name", "audit")),
                           "description": str(raw.get("description", ""))}
    for section, fields in SECTIONS.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}] must be a table")
        bad = sorted(set(given) - set(fields))
        if bad:
            raise ConfigError(f"unknown key(s) {bad} in [{section}]; valid: {sorted(fields)}")
        merged = copy.deepcopy(DEFAULTS[section])
        for key, value in given.items():
            merged[key] = check_type(f"[{section}].{key}", value, fields[key])
        out[section] = merged
    out["defenses"] = _resolve_defenses(raw.get("defenses", []))
    _resolve_paths(out, base)
    from .plan_checks import check_plan

    check_plan(out)
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
        names = d["name"] if isinstance(d["name"], list) else [d["name"]]
        if not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}.name must be a defense name or a non-empty list of names, got {d['name']!r}")
        options = check_type(f"{where}.options", d.get("options", {}), dict)
        if not isinstance(d["name"], list):  # one name: its options; a list: a table per name
            options = {names[0]: options}
        else:
            stray = sorted(set(options) - set(names))
            if stray or not all(isinstance(v, dict) for v in options.values()):
                raise ConfigError(f"{where}.options of a pipeline is a table per defense name ({names}); got "
                                  f"keys {sorted(options)}")
        label = check_type(f"{where}.label", d.get("label", "+".join(names)), str)
        resolved.append({"name": names, "label": label, "options": {n: dict(options.get(n, {})) for n in names}})
    labels = [d["label"] for d in resolved]
    if len(set(labels)) != len(labels) or "undefended" in labels:
        raise ConfigError(f"defense labels must be unique and not 'undefended', got {labels}; set label = ...")
    return resolved


def _absolute(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_paths(plan: dict, base: Path) -> None:
    for section, key in (("target", "weights"), ("data", "npz"), ("data", "folder"), ("members", "indices"),
                         ("run", "out"), ("diffusion", "path")):
        if key in plan[section]:
            plan[section][key] = _absolute(base, plan[section][key])
    for d in plan["defenses"]:
        for options in d["options"].values():
            for key in ("path", "calibration"):
                if isinstance(options.get(key), str):
                    options[key] = _absolute(base, options[key])


def load_plan(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read, override (``section.key=value``), validate and resolve a plan file (TOML, or a run's JSON record)."""
    path = Path(path)
    return resolve(apply_overrides(read_config_file(path), list(overrides)), path.resolve().parent)


def load_preset(name: str, overrides: list[str] = ()) -> dict:
    """A shipped preset, resolved with ``overrides``; its relative paths are read from the working folder."""
    return resolve(apply_overrides(read_config_file(preset_path(name)), list(overrides)), Path.cwd())


def shareable(plan: dict) -> dict:
    """The plan without its secrets (the Diffence seeds), for results.json and the report."""
    out = copy.deepcopy(plan)
    for d in out["defenses"]:
        for options in d["options"].values():
            if "seed" in options:
                options["seed"] = "(secret: see config.json)"
    out.pop("secrets", None)
    return out


def describe(plan: dict) -> str:
    """The resolved plan (secrets hidden) and the work it implies: what ``--dry-run`` prints."""
    roles, attacks, diffusion = plan["roles"], plan["attacks"], plan["diffusion"]
    members = plan["members"].get("count", "the indexed")
    inputs = 2 * (roles["defender"] + roles["attacker"] + roles["evaluation"] + roles["canaries"]) + (
        roles["population"] if attacks["references"] else 0)
    lines = [json.dumps(shareable(plan), indent=2), "", "work:"]
    target = plan["target"]
    if "train" in target:
        lines.append(f"- target: train {target['model']} for {target['train'].get('epochs', 60)} epochs on {members} "
                     "members")
    else:
        lines.append(f"- target: load {target['weights']}")
    diffences = [d for d in plan["defenses"] if "diffence" in d["name"]]
    if any("path" not in d["options"]["diffence"] for d in diffences):
        lines.append(f"- defender's DDPM: load {diffusion['path']}" if "path" in diffusion else
                     f"- defender's DDPM: train {diffusion['steps']} steps at batch {diffusion['batch_size']} on the "
                     f"{'public data' if diffusion['data'] == 'public' else 'members'} "
                     f"(t <= {diffusion['max_timestep']})")
    seen = set()
    for d in diffences:
        o = d["options"]["diffence"]
        ts = diffusion["t_choices"] or [o.get("t", 40)]
        key = (o.get("n", 50), tuple(ts), o.get("k", 10), o.get("path"))
        if key in seen:
            continue
        seen.add(key)
        n, k = key[0], key[2]
        calls = inputs * n * (max(ts) // k)
        lines.append(f"- Diffence n={n}, t={'/'.join(map(str, ts))}, k={k}: {inputs} inputs x {n} reconstructions, "
                     f"about {calls:,} UNet image passes" + (" (t chosen by calibration)" if len(ts) > 1 else ""))
    if attacks["references"]:
        lines.append(f"- attacker: {attacks['references']} reference models (the target's recipe) and its own DDPM "
                     f"({attacks.get('attacker_ddpm_steps', diffusion['steps'])} steps) for each Diffence setting")
    lines.append(f"- attacks: threshold {attacks['threshold']}, LiRA/RMIA {bool(attacks['references'])}, LiRA on the "
                 f"labels {bool(attacks['references']) and attacks['labels']}, ART "
                 f"{attacks['art']}; {plan['run']['bootstrap']} bootstrap resamples; "
                 f"{len(plan['defenses']) + 1} rows")
    return "\n".join(lines)
