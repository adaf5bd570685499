"""Stage 5, write: ``results.json`` (the shareable plan, every row, timings, the machine) and the owner-only
``config.json`` that reruns the audit."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffence_plugin.audit.machine import machine
from diffence_plugin.audit.plan import DefenseSpec, Plan, shareable
from diffence_plugin.audit.results import RESULTS_FORMAT, Results, checked, records_digest, write_results_file
from diffence_plugin.audit.stages.arm import Armed
from diffence_plugin.audit.stages.defend import Defended, Defense
from diffence_plugin.audit.stages.prepare import Prepared


def _diffusion_setting(plan: Plan) -> Any:
    """The defender's diffusion model as the report names it: its recipe only when the run trains it."""
    if plan.diffusion.path is not None:
        return f"loaded from {plan.diffusion.path}"
    if plan.needs_defender_ddpm:
        return plan.diffusion.given()
    if plan.diffences:
        return "not trained: each Diffence defense loads its own (options.path)"
    return "none (no Diffence defense)"


def _defense_setting(d: DefenseSpec, defense: Defense | None) -> dict:
    """A defense's options as given, and for a Diffence stage every setting it ran with (defaults included,
    the secret seed left out) and its diffusion model's training."""
    from diffence_plugin.registry import get_defenses, option_defaults

    registry, shown = get_defenses(), {}
    for name, options in d.options.items():
        entry = registry.get(name)
        defaults = {k: v for k, v in (option_defaults(entry.factory) if entry else {}).items() if v is not None}
        hidden = ("seed", "progress") if name == "diffence" else ("progress",)  # Diffence's seed is the secret
        shown[name] = {k: v for k, v in {**defaults, **options}.items() if k not in hidden}
    stage = getattr(defense, "diffence", None)
    if stage is not None:
        config = {f.name: getattr(stage.config, f.name) for f in fields(stage.config) if f.name != "seed"}
        run = getattr(stage.reconstructor, "training", None) or {}
        if "steps" in run:
            config["diffusion model"] = f"{run['steps']} steps on {run.get('images', ['?'])[0]} images, " \
                                        f"t <= {run.get('max_timestep')}"
        shown["diffence"] = {**shown.get("diffence", {}), **config}
    return shown


def settings_summary(plan: Plan, defended: Defended | None = None) -> dict:
    """What the report shows of a plan: the target, data, roles, every defense's settings, the attacker."""
    target, data = plan.target, plan.data
    where = data.npz or data.dataset
    return {
        "title": f"{target.model} on {Path(where).name if data.npz else where}",
        "plan": plan.name,
        "target": target.model + (f" from {target.weights}" if target.weights is not None else
                                  f" trained with {target.train.given()}"),
        "data": data.npz or f"{data.dataset}" + (f" in {data.folder}" if data.folder is not None else ""),
        "members": plan.members.given(),
        "roles": plan.roles.given(),
        "diffusion": _diffusion_setting(plan),
        **{f"defense {d.label}": _defense_setting(d, defended.defenses.get(d.label) if defended else None)
           for d in plan.defenses},
        "attacks": plan.attacks.given(),
        "run seed": plan.run.seed,
    }


def collect_results(plan: Plan, prep: Prepared, defended: Defended, armed: Armed, rows: list, noise: dict | None,
                    timings: dict, start: float, load: dict | None = None, canaries: list | None = None) -> Results:
    """The audit's results from what the stages produced: the one record everything after this reads."""
    calibration = {label: asdict(d.diffence.calibration) for label, d in defended.defenses.items()
                   if d.diffence is not None and d.diffence.calibration is not None}
    results = {"format": RESULTS_FORMAT, "settings": settings_summary(plan, defended), "plan": shareable(plan),
               "target_accuracy": prep.target_accuracy, "training": {**prep.training, **armed.training},
               "records": {"evaluation": records_digest(prep.split.eval_members, prep.split.eval_nonmembers)},
               "calibration": calibration, "rows": [r.to_dict() for r in rows],
               **({"defense_seeds": noise} if noise else {}),
               **({"canaries": {"kind": plan.roles.canary_kind, "members": len(prep.split.canary_members),
                                "nonmembers": len(prep.split.canary_nonmembers),
                                "rows": [r.to_dict() for r in canaries]}} if canaries else {}),
               "phi": released_phi(defended.released[""]), "timings": timings,
               "seconds": time.perf_counter() - start, "machine": {**machine(), "at_start": load}}
    return checked(json.loads(json.dumps(results, default=str)))  # as it will be read back


def released_phi(released: dict) -> dict:
    """phi = log(p_max / (1 - p_max)) of every evaluation record's release, per row: the report's histograms."""
    from diffence_plugin.select import phi

    return {label: {role: np.round(phi(torch.log(torch.as_tensor(probs[role]).double().clamp_min(1e-300))).numpy(),
                                   6).tolist()
                    for role in ("eval_members", "eval_nonmembers")} for label, probs in released.items()}


def write_results(results: Results, out: Path) -> list[Path]:
    """Stage 5: ``results.json``, then every registered report (``report.html``, its figures) from it alone."""
    from diffence_plugin.registry import get_reporters

    written = [write_results_file(results, out / "results.json")]
    for writer in get_reporters().values():
        written += writer(results, out)
    return written


def write_record(plan: Plan, out: Path) -> None:
    """``config.json``: the resolved plan, secret seed included, readable by its owner only; a rerun from it
    gives the same numbers."""
    record = plan.to_dict()
    record["run"]["overwrite"] = False  # a rerun from the record never replaces a folder silently
    path = out / "config.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record, indent=2))
    os.chmod(path, 0o600)
