"""The embedded demo: an overfit digits classifier, attacked with and without Diffence, on a CPU.

Every number is measured in the run: the target and the DDPM are trained here; the attacker trains its own
reference models and its own DDPM, fits its attacks on half of its known records and picks its best attack
on the other half; every figure is scored on disjoint evaluation records, with 95% bootstrap intervals.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data import digits_images
from ..defense import Diffence
from ..defenses import MemGuard
from ..diffusion import train_diffusion
from ..evaluation.protocol import MembershipSplit, membership_split
from ..evaluation.references import ReferenceRecipe, train_references
from ..evaluation.report import machine, write_report
from ..evaluation.runner import (ShadowDiffence, attacker_universe, compare_to, diffence_scenarios, diffence_view,
                                 evaluate_defense, labels_kept, roles_of, selection_spread, shadow_pool,
                                 undefended_releases, undefended_view)
from ..plugins import DefensePipeline
from ..randomness import experiment_seed
from ..reconstruct import tiny_unet_config

DIGITS_LEVELS = 16  # sklearn's digits hold 17 grey levels, k / 16: the quantised key's grid


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and seeds of the demo; the defaults run in under 5 minutes on 2 CPU cores."""

    members: int = 300
    defender: int = 75
    attacker: int = 75
    evaluation: int = 150
    population: int = 150  # the attacker's own non-members, queried as RMIA's z records
    target_epochs: int = 60  # enough to memorise: train loss 0.003 vs 0.21 on non-members
    ddpm_steps: int = 400
    ddpm_max_timestep: int = 100
    ddpm_width: int = 16  # tiny_unet_config width: 8x8 digits need little, and it halves the CPU time
    n: int = 50
    t: int = 100  # the paper's T = 40 barely perturbs 8x8 digits with 17 grey levels; see docs/results.md
    k: int = 20  # 5 DDIM steps from T = 100 (the paper: 4 steps from T = 40)
    seed: int = 0
    references: int = 8  # defense-aware reference models for LiRA and RMIA (0: none)
    selection_draws: int = 10  # fresh selection draws per Diffence row, for the spread over its randomness
    art_attacks: tuple[str, ...] = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf", "shadow_models", "rule_based")
    memguard: bool = True  # rows for MemGuard alone and Diffence (scenario 1) + MemGuard
    bootstrap: int = 1000

    def split(self, total: int) -> MembershipSplit:
        """The demo's roles over ``total`` records (population records only when there are references)."""
        return membership_split(total, self.members, self.defender, self.attacker, self.evaluation, seed=self.seed,
                                population=self.population if self.references else 0)


def _phase(log, timings: dict, name: str, message: str):
    """Log a phase and time it; returns the closer that records its duration."""
    log(message)
    start = time.perf_counter()

    def done() -> None:
        timings[name] = round(time.perf_counter() - start, 2)
    return done


def run_demo(settings: DemoSettings = DemoSettings(), out_dir: str | Path = "diffence-demo",
             progress: bool = True, log=print) -> dict:
    """Train, defend, attack; write ``results.json``, plots and ``report.html`` to ``out_dir``; return the results."""
    from ..adapters import art_attacks
    from ..adapters.art import DefendedClassifier

    start = time.perf_counter()
    s, timings = settings, {}
    torch.manual_seed(s.seed)
    x, y = digits_images()
    split = s.split(len(x))
    nb_classes = 10
    recipe = ReferenceRecipe.from_training("digits_mlp", nb_classes, 1, epochs=s.target_epochs, batch_size=64)

    done = _phase(log, timings, "target_s", f"[1/6] training the target MLP on {s.members} members "
                                            f"({s.target_epochs} epochs)")
    model = recipe.train(x[split.members], y[split.members], s.seed)
    done()
    done = _phase(log, timings, "ddpm_s", f"[2/6] training the DDPM on the same members ({s.ddpm_steps} steps, "
                                          f"t <= {s.ddpm_max_timestep})")
    unet = tiny_unet_config(x.shape[-1], x.shape[1], width=s.ddpm_width)
    reconstructor = train_diffusion(torch.from_numpy(x[split.members]), unet_config=unet, steps=s.ddpm_steps,
                                    max_timestep=s.ddpm_max_timestep, seed=s.seed, progress=progress)
    done()
    roles = roles_of(split)
    done = _phase(log, timings, "diffence_s", f"[3/6] Diffence: reconstructing "
                  f"{sum(len(getattr(split, r)) for r in roles)} inputs x {s.n} (t={s.t}, k={s.k})")
    defenses, cands, diffence_released = diffence_scenarios(model, reconstructor, x, split, n=s.n, t=s.t, k=s.k,
                                                             seed=experiment_seed(s.seed), progress=progress,
                                                             levels=DIGITS_LEVELS)
    released = {"undefended": undefended_releases(model, x, split), **diffence_released}
    memguards = {}
    if s.memguard:
        for name, source in (("memguard", "undefended"), ("diffence+memguard", "scenario_1")):
            guard = MemGuard(seed=s.seed).fit_probabilities(torch.from_numpy(released[source]["defender_members"]),
                                                           torch.from_numpy(released[source]["defender_nonmembers"]))
            released[name] = {r: guard(None, torch.from_numpy(released[source][r])).numpy() for r in roles}
            memguards[name] = guard
    done()

    views, shadows = {}, {}
    if s.references:
        done = _phase(log, timings, "attacker_s", f"[4/6] the attacker: {s.references} reference models, its own "
                      f"DDPM on {len(split.attacker_pool)} records of its pool, its own Diffence")
        universe = attacker_universe(split, 2 * s.members)
        refs = train_references(recipe, x[universe], y[universe], s.references, seed=s.seed + 1, progress=progress)
        attacker_ddpm = train_diffusion(torch.from_numpy(x[split.attacker_pool]), unet_config=unet,
                                        steps=s.ddpm_steps, max_timestep=s.ddpm_max_timestep, seed=s.seed + 1,
                                        progress=progress)
        attacker = Diffence(attacker_ddpm, n=s.n, t=s.t, k=s.k, scenario=3, seed=experiment_seed(s.seed + 1),
                            output="logits", progress=progress, levels=DIGITS_LEVELS)
        images = attacker.reconstructions(torch.from_numpy(x[universe]))
        views["undefended"] = plain = undefended_view(refs, x, universe)
        for scenario in (1, 2, 3):
            views[f"scenario_{scenario}"] = diffence_view(refs, attacker.with_config(scenario=scenario), x, universe,
                                                          images, split)
        views["memguard"] = plain  # the attacker has no MemGuard of its own here: defense-unaware
        views["diffence+memguard"] = dataclasses.replace(views["scenario_1"], aware=False)
        if "shadow_models" in s.art_attacks:  # ART's shadows answer through the attacker's Diffence too
            pool_images = attacker.reconstructions(torch.from_numpy(x[shadow_pool(split, 2 * s.members)]))
            for scenario in (1, 2, 3):
                shadows[f"scenario_{scenario}"] = ShadowDiffence.for_split(
                    attacker.with_config(scenario=scenario), x, split, pool_images, universe, images)
            shadows["diffence+memguard"] = shadows["scenario_1"]
        done()

    done = _phase(log, timings, "attacks_s", "[5/6] attacking every defense (threshold, LiRA, RMIA, ART)")
    kept = labels_kept(released)
    target = art_attacks.probability_classifier(model, (1, 8, 8), nb_classes)
    pipelines = {f"scenario_{k}": DefensePipeline(pre=[defenses[str(k)]]) for k in (1, 2, 3)}
    if s.memguard:
        pipelines["memguard"] = DefensePipeline(post=[memguards["memguard"]])
        pipelines["diffence+memguard"] = DefensePipeline(pre=[defenses["1"]], post=[memguards["diffence+memguard"]])
    rows = []
    for name, probs in released.items():
        estimator = DefendedClassifier(target, pipelines[name]) if name in pipelines else target
        art = dict(estimator=estimator, target=target, model=model, attacks=s.art_attacks, defended=name in pipelines,
                   shadow_answer=shadows.get(name))
        row = evaluate_defense(name, probs, x, y, split, view=views.get(name), art=art, kept=kept[name], seed=s.seed,
                               bootstrap=s.bootstrap)
        if name.startswith("scenario_") and s.selection_draws:
            row.spread = selection_spread(defenses[name[-1]], cands, y, split, views.get(name), s.selection_draws,
                                          seed=s.seed)
        if rows:
            row.change = compare_to(row, rows[0], seed=s.seed)
        rows.append(row)
        log(f"      {name}: {row.best.attack} AUC {row.best.auc:.3f}")
    done()

    done = _phase(log, timings, "report_s", "[6/6] writing results")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "settings": asdict(s),
        "calibration": {f"scenario_{k}": asdict(defenses[k].calibration) for k in ("1", "2")},
        "rows": [r.to_dict() for r in rows],
        "timings": timings,
        "seconds": time.perf_counter() - start,
        "machine": machine(),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, released, {r: y[getattr(split, r)] for r in roles}, out)
    done()
    return results
