"""What a resolved plan says, for people: the plan without its secrets, and the work it implies (``--dry-run``)."""

from __future__ import annotations

import copy
import json


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
