"""Reading a plan: the file (TOML or JSON), ``--set`` overrides, the schema (defaults, types, unknown keys, in
errors that name the field), paths, every check, and the secret defense seed, drawn here once the plan is
known to be valid."""

from __future__ import annotations

import copy
import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from diffence_plugin.audit.plan.checks import check_plan
from diffence_plugin.audit.plan.schema import FORMAT, PRESET_FOLDER, SECTION_MODELS, ConfigError, Plan
from diffence_plugin.randomness import secret_seed

TOP_LEVEL = ("format", "name", "description", "defenses")


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


def resolve(raw: dict, base: Path) -> Plan:
    """Validate a parsed plan and fill in defaults; relative paths are read from ``base`` (the file's folder);
    every check; the secret seed drawn where the plan leaves it to the run."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a table of sections")
    known = set(SECTION_MODELS) | set(TOP_LEVEL)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; valid: {sorted(known)}")
    if raw.get("format", FORMAT) != FORMAT:
        raise ConfigError(f"the plan is format {raw['format']!r}; this version reads {FORMAT!r}")
    given = {k: v for k, v in raw.items() if k != "defenses"}
    given["defenses"] = _resolve_defenses(raw.get("defenses", []))
    for key in ("name", "description"):
        if key in given:
            given[key] = str(given[key])
    try:
        plan = Plan.model_validate(given)
    except ValidationError as exc:
        raise config_error(exc) from None
    _resolve_paths(plan, base)
    check_plan(plan)
    draw_secret(plan)
    return plan


def _where(loc: tuple) -> str:
    """A field's name as errors say it: ``[run].seed``, ``[target.train].epochs``, ``[[defenses]] #1``."""
    section, rest = str(loc[0]), [str(part) for part in loc[1:]]
    if section == "defenses":
        return f"[[defenses]] #{int(rest[0]) + 1}" + "".join(f".{r}" for r in rest[1:]) if rest else "[[defenses]]"
    if section == "target" and rest[:1] == ["train"]:
        section, rest = "target.train", rest[1:]
    return f"[{section}]" + ("." + ".".join(rest) if rest else "")


def _model_at(loc: tuple) -> type[BaseModel]:
    """The schema model that holds the field at ``loc``."""
    model: Any = Plan
    for part in loc:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        inner = [a for a in typing.get_args(field.annotation) or (field.annotation,)] if field else []
        found = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if not found:
            break
        model = found[0]
    return model


def _choices(loc: tuple) -> list:
    """The values a Literal field (or a list of them) allows."""
    names = [part for part in loc if isinstance(part, str)]
    annotation = _model_at(tuple(names[:-1])).model_fields[names[-1]].annotation
    while typing.get_origin(annotation) is not typing.Literal and typing.get_args(annotation):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return list(typing.get_args(annotation))


KINDS = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool", "list_type": "list",
         "dict_type": "dict", "int_from_float": "int"}


def config_error(exc: ValidationError) -> ConfigError:
    """The schema's first complaint, said as the plan's errors are: the field, what it must be, what it got."""
    errors = exc.errors()
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        where = extra[0]["loc"][:-1]
        keys = sorted(str(e["loc"][-1]) for e in extra if e["loc"][:-1] == where)
        valid = sorted(_model_at(where).model_fields)
        return ConfigError(f"unknown key(s) {keys} in {_where(where)}; valid: {valid}")
    error = errors[0]
    loc, kind, value, ctx = error["loc"], error["type"], error.get("input"), error.get("ctx", {})
    where = _where(loc)
    if kind == "model_type":
        return ConfigError(f"{where} must be a table")
    if kind in KINDS:
        return ConfigError(f"{where} must be {KINDS[kind]}, got {type(value).__name__} {value!r}")
    if kind == "literal_error":
        return ConfigError(f"{where} must be one of {_choices(loc)}, got {value!r}")
    for bound, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if bound in ctx:
            return ConfigError(f"{where} must be {sign} {ctx[bound]}, got {value!r}")
    if kind == "missing":
        return ConfigError(f"{where} is required")
    return ConfigError(f"{where}: {error['msg']}, got {value!r}")


def _resolve_defenses(defenses: Any) -> list[dict]:
    """``[[defenses]]`` in one shape: ``name`` a list, ``options`` a table per name, ``label`` given."""
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
        options = d.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options must be dict, got {type(options).__name__} {options!r}")
        if not isinstance(d["name"], list):  # one name: its options; a list: a table per name
            options = {names[0]: options}
        else:
            stray = sorted(set(options) - set(names))
            if stray or not all(isinstance(v, dict) for v in options.values()):
                raise ConfigError(f"{where}.options of a pipeline is a table per defense name ({names}); got "
                                  f"keys {sorted(options)}")
        label = d.get("label", "+".join(names))
        if not isinstance(label, str):
            raise ConfigError(f"{where}.label must be str, got {type(label).__name__} {label!r}")
        resolved.append({"name": names, "label": label, "options": {n: dict(options.get(n, {})) for n in names}})
    labels = [d["label"] for d in resolved]
    if len(set(labels)) != len(labels) or "undefended" in labels:
        raise ConfigError(f"defense labels must be unique and not 'undefended', got {labels}; set label = ...")
    return resolved


def _absolute(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_paths(plan: Plan, base: Path) -> None:
    for section, key in (("target", "weights"), ("data", "npz"), ("data", "folder"), ("members", "indices"),
                         ("run", "out"), ("run", "cache"), ("diffusion", "path")):
        table = getattr(plan, section)
        if getattr(table, key) is not None:
            setattr(table, key, _absolute(base, getattr(table, key)))
    for d in plan.defenses:
        for options in d.options.values():
            for key in ("path", "calibration"):
                if isinstance(options.get(key), str):
                    options[key] = _absolute(base, options[key])


def extended(raw: dict) -> dict:
    """A plan table with the preset it ``extends`` merged under it (tables key by key, anything else replaced)."""
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    name = raw["extends"]
    if not isinstance(name, str):
        raise ConfigError(f"extends must name a shipped preset, got {name!r}")
    merged = extended(read_config_file(preset_path(name)))
    merged.pop("sweep", None)  # a study's own [sweep] only
    _merge(merged, {k: v for k, v in raw.items() if k != "extends"})
    return merged


def _merge(into: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def load_plan(path: str | Path, overrides: list[str] = ()) -> Plan:
    """Read, override (``section.key=value``), validate and resolve a plan file (TOML, or a run's JSON record)."""
    path = Path(path)
    return resolve(apply_overrides(extended(read_config_file(path)), list(overrides)), path.resolve().parent)


def load_preset(name: str, overrides: list[str] = ()) -> Plan:
    """A shipped preset, resolved with ``overrides``; its relative paths are read from the working folder."""
    return resolve(apply_overrides(extended(read_config_file(preset_path(name))), list(overrides)), Path.cwd())


def draw_secret(plan: Plan) -> None:
    """One secret Diffence seed per plan (Diffence defenses on one DDPM then share reconstructions), written
    into the plan so that its record (``config.json``) reruns identically."""
    if plan.run.defense_seed != "secret":
        return
    secret = secret_seed()
    for d in plan.diffences:
        options = d.options["diffence"]
        if "seed" not in options and not (Path(str(options.get("path", ""))) / "diffence.json").is_file():
            options["seed"] = secret
