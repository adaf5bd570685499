"""What a resolved plan says, for people: the plan without its secrets, and the work it implies (``--dry-run``)."""

from __future__ import annotations

import json

from diffence_plugin.audit.plan.schema import Plan

HIDDEN = "(secret: see config.json)"


def shareable(plan: Plan) -> dict:
    """The plan as a table without its secrets (the Diffence seeds; other defenses' seeds are settings like any),
    for results.json and the report."""
    out = plan.to_dict()
    for d in out["defenses"]:
        if "seed" in d["options"].get("diffence", {}):
            d["options"]["diffence"]["seed"] = HIDDEN
    return out


def describe(plan: Plan) -> str:
    """The resolved plan (secrets hidden) and the work it implies: what ``--dry-run`` prints."""
    roles, attacks, diffusion = plan.roles, plan.attacks, plan.diffusion
    members = plan.members.count if plan.members.count is not None else "the indexed"
    inputs = 2 * (roles.defender + roles.attacker + roles.evaluation + roles.canaries) + (
        roles.population if attacks.references else 0)
    lines = [json.dumps(shareable(plan), indent=2), "", "work:"]
    target = plan.target
    if target.train is not None:
        epochs = target.train.epochs if target.train.epochs is not None else 60
        lines.append(f"- target: train {target.model} for {epochs} epochs on {members} members")
    else:
        lines.append(f"- target: load {target.weights}")
    if any("path" not in d.options["diffence"] for d in plan.diffences):
        where = "public data" if diffusion.data == "public" else "members"
        lines.append(f"- defender's DDPM: load {diffusion.path}" if diffusion.path is not None else
                     f"- defender's DDPM: train {diffusion.steps} steps at batch {diffusion.batch_size} on the "
                     f"{where} (t <= {diffusion.max_timestep})")
    lines += _diffence_work(plan, inputs)
    if attacks.references:
        steps = attacks.attacker_ddpm_steps or diffusion.steps
        lines.append(f"- attacker: {attacks.references} reference models (the target's recipe) and its own DDPM "
                     f"({steps} steps) for each Diffence setting")
    lines.append(f"- attacks: threshold {attacks.threshold}, LiRA/RMIA {bool(attacks.references)}, LiRA on the "
                 f"labels {bool(attacks.references) and attacks.labels}, ART {attacks.art}; {plan.run.bootstrap} "
                 f"bootstrap resamples; {len(plan.defenses) + 1} rows")
    return "\n".join(lines)


def _diffence_work(plan: Plan, inputs: int) -> list[str]:
    """One line per distinct Diffence setting: how many UNet image passes it costs."""
    lines, seen = [], set()
    for d in plan.diffences:
        o = d.options["diffence"]
        ts = plan.diffusion.t_choices or [o.get("t", 40)]
        key = (o.get("n", 50), tuple(ts), o.get("k", 10), o.get("path"))
        if key in seen:
            continue
        seen.add(key)
        n, k = key[0], key[2]
        calls = inputs * n * (max(ts) // k)
        lines.append(f"- Diffence n={n}, t={'/'.join(map(str, ts))}, k={k}: {inputs} inputs x {n} reconstructions, "
                     f"about {calls:,} UNet image passes" + (" (t chosen by calibration)" if len(ts) > 1 else ""))
    return lines
