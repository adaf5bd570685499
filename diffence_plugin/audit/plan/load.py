"""Reading a plan: the file (TOML or JSON), ``--set`` overrides, defaults, paths, every check, and the secret
defense seed, drawn here once the plan is known to be valid."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from diffence_plugin.audit.plan.checks import check_plan
from diffence_plugin.audit.plan.schema import (
    DEFAULTS,
    FORMAT,
    PRESET_FOLDER,
    SECTIONS,
    ConfigError,
    check_type,
)
from diffence_plugin.randomness import secret_seed


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
    check_plan(out)
    draw_secret(out)
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


def draw_secret(plan: dict) -> None:
    """One secret Diffence seed per plan (Diffence defenses on one DDPM then share reconstructions), written
    into the plan so that its record (``config.json``) reruns identically."""
    if plan["run"]["defense_seed"] != "secret":
        return
    secret = secret_seed()
    for d in plan["defenses"]:
        options = d["options"].get("diffence")
        if options is None or "seed" in options:
            continue
        if not (Path(str(options.get("path", ""))) / "diffence.json").is_file():
            options["seed"] = secret
