"""A sweep: one plan run over a list of values for one or more of its keys, each variant in its own sub-folder.

A plan's ``[sweep]`` (or ``--over KEY=V1,V2,...``) names the keys, as ``--set`` does, and their values; the
variants are the values' product, or with ``zip = true`` the values taken in step. Every variant is the same
resolved plan (the same secret defense seed included) with its values set, run into ``OUT/VARIANT`` with one
cache (``OUT/cache``) for the trained stages, so the variants reuse the target, the DDPMs and the reference
models they have in common (all of them when only attack settings change). ``sweep.json`` lists the variants;
the report's ``sweep`` module makes one table and one plot of them.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from diffence_plugin.audit.plan import ConfigError, Plan, apply_overrides, resolve
from diffence_plugin.audit.run import run_plan
from diffence_plugin.progress import logger

SWEEP_FORMAT = "diffence-sweep-v1"


@dataclass
class Variant:
    """One point of a sweep: its folder name, the values it sets, and its resolved plan."""

    name: str
    values: dict[str, Any]
    plan: Plan


def combinations(over: dict[str, list], zipped: bool) -> list[dict[str, Any]]:
    """The value of every key at each point: the product of the lists, or with ``zipped`` the lists in step."""
    if not over:
        raise ConfigError("[sweep].over names no key: give KEY = [V1, V2, ...]")
    for key, values in over.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[sweep].over.{key} must be a non-empty list of values, got {values!r}")
    if zipped:
        lengths = {key: len(values) for key, values in over.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"[sweep].zip takes the values in step: every list needs the same length, got {lengths}")
        return [dict(zip(over, point)) for point in zip(*over.values())]
    return [dict(zip(over, point)) for point in itertools.product(*over.values())]


def variant_name(values: dict[str, Any]) -> str:
    """A folder name for a point: ``references=8`` (the last part of each key), safe on every file system."""
    parts = [f"{key.split('.')[-1]}={json.dumps(value, separators=(',', ':'))}" for key, value in values.items()]
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "", "_".join(parts))[:120]


def variant_names(points: list[dict[str, Any]]) -> list[str]:
    """Folder names for every point: by the first key's value alone where that tells them apart (a zipped
    sweep's companions need not be spelled out), else by every key's."""
    first = [variant_name(dict(list(p.items())[:1])) for p in points]
    names = first if len(set(first)) == len(first) else [variant_name(p) for p in points]
    if len(set(names)) != len(names):
        raise ConfigError(f"[sweep]: variants share folder names {sorted(names)}; give distinct values")
    return names


def expand(plan: Plan, out: Path | None = None) -> list[Variant]:
    """The variants of a plan with a ``[sweep]``: each a resolved plan writing into ``OUT/VARIANT`` (``OUT``: the
    plan's ``[run].out``) with the shared cache ``OUT/cache``. Every variant is checked before any runs."""
    if plan.sweep is None:
        raise ConfigError("the plan has no [sweep]: give [sweep] over = {KEY = [V1, V2]} or --over KEY=V1,V2")
    out = Path(out or plan.run.out)
    base = plan.to_dict()
    base.pop("sweep")
    points = combinations(plan.sweep.over, plan.sweep.zip)
    variants = []
    for name, values in zip(variant_names(points), points):
        sets = [f"{key}={json.dumps(value)}" for key, value in values.items()]
        sets += [f"run.out={json.dumps(str(out / name))}", f"run.cache={json.dumps(str(out / 'cache'))}"]
        try:
            resolved = resolve(apply_overrides(base, sets), Path.cwd())
        except ConfigError as exc:
            raise ConfigError(f"[sweep] variant {name}: {exc}") from exc
        variants.append(Variant(name=name, values=values, plan=resolved))
    return variants


def run_sweep(plan: Plan, log: Callable[[str], None] | None = None) -> dict:
    """Run every variant of ``plan`` (see ``expand``) and write ``sweep.json`` in ``[run].out``; returns it."""
    log = log or logger.info
    out = Path(plan.run.out)
    variants = expand(plan, out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"format": SWEEP_FORMAT, "plan": plan.name, "over": plan.sweep.over, "zip": plan.sweep.zip,
              "variants": [{"name": v.name, "values": v.values, "results": f"{v.name}/results.json"}
                           for v in variants]}
    for i, variant in enumerate(variants):
        log(f"sweep {i + 1}/{len(variants)}: {variant.name}")
        run_plan(variant.plan, log)
    (out / "sweep.json").write_text(json.dumps(record, indent=2))
    return record


def load_sweep(path: str | Path) -> tuple[dict, list[dict]]:
    """A finished sweep's record and every variant's results (``OUT/sweep.json`` or its folder)."""
    from diffence_plugin.audit.results import load_results

    path = Path(path)
    path = path / "sweep.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no sweep.json at {str(path)!r}")
    record = json.loads(path.read_text())
    if record.get("format") != SWEEP_FORMAT:
        raise ValueError(f"{str(path)!r} is sweep format {record.get('format')!r}; this version reads {SWEEP_FORMAT!r}")
    return record, [load_results(path.parent / v["results"]) for v in record["variants"]]
