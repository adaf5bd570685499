"""One membership experiment end to end, for any image data and target recipe: train the target and the
defender's DDPM, defend (Scenarios 1-3, optionally MemGuard), build the attacker (defense-aware reference
models, its own DDPM and Diffence, ART shadows answering through it), attack every defense and write the
results. The digits demo and the CIFAR-10 CPU preset are this function with different data and sizes.

Every figure is measured in the run; the attacker fits its attacks on half of its known records and picks
its best attack on the other half; every figure is scored on disjoint evaluation records, with 95%
bootstrap intervals.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..classify import probabilities
from ..defense import Diffence
from ..defenses import LabelsOnly, MemGuard
from ..diffusion import train_diffusion
from ..plugins import DefensePipeline
from ..progress import logger, phase
from ..randomness import experiment_seed
from ..reconstruct import Reconstructor
from .metrics import accuracy
from .protocol import MembershipSplit
from .references import ReferenceRecipe, train_references
from .report import machine, write_report
from .runner import (ShadowDiffence, attacker_universe, compare_to, diffence_scenarios, diffence_view,
                     evaluate_defense, labels_kept, post_view, reference_candidates, roles_of, selection_spread,
                     shadow_pool, undefended_releases, undefended_view)


@dataclass(frozen=True)
class ExperimentSettings:
    """Everything but the data and the target recipe.

    Args:
        unet_config: the DDPM's ``UNet2DModel`` arguments (the defender's and the attacker's).
        ddpm_steps, ddpm_seconds: training stops at whichever comes first (``ddpm_seconds`` None: no budget).
        n, t, k, levels: Diffence's reconstructions, noise step, DDIM stride and the input's grey levels.
        t_choices: noise steps calibration chooses among on the defender's records (empty: always ``t``).
        references: defense-aware reference models for LiRA and RMIA (0: none, no attacker phase).
        selection_draws: fresh selection draws per Diffence row, for the spread over its randomness.
        defense_seeds: defense seeds the Diffence rows are measured with. The first is the run's; each further
            one reconstructs every input again with other noise, recalibrates and is attacked again, for the
            spread over the defense's own noise, which selection draws (reconstructions fixed) do not cover.
    """

    unet_config: dict
    ddpm_steps: int = 400
    ddpm_max_timestep: int = 100
    ddpm_seconds: float | None = None
    ddpm_batch_size: int = 128
    n: int = 50
    t: int = 100
    k: int = 20
    levels: int = 255
    t_choices: tuple[int, ...] = ()
    seed: int = 0
    references: int = 8
    selection_draws: int = 10
    defense_seeds: int = 1
    art_attacks: tuple[str, ...] = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf", "shadow_models", "rule_based")
    memguard: bool = True
    labels_only: bool = True  # a row releasing the one-hot top-1 label: the floor every soft release must beat
    bootstrap: int = 1000
    max_batch: int = 1024
    attacker_pool_size: int | None = None  # records the attacker's DDPM trains on (None: its whole pool)
    device: str = "cpu"  # where the DDPMs train and reconstruct (the recipe places the classifiers)
    bf16: bool = False  # bf16 autocast for the UNets (GPUs only)
    extra: dict = field(default_factory=dict)  # recorded in results.json as given (e.g. the target's epochs)

    def __post_init__(self) -> None:
        if self.bf16 and torch.device(self.device).type == "cpu":
            raise ValueError("bf16 autocast on a CPU runs far slower than float32 without bf16 units; set bf16 only "
                             "with a GPU device")

    @property
    def autocast(self) -> torch.dtype | None:
        """The UNets' autocast dtype."""
        return torch.bfloat16 if self.bf16 else None


def run_experiment(recipe: ReferenceRecipe, x: np.ndarray, y: np.ndarray, split: MembershipSplit,
                   settings: ExperimentSettings, *, out_dir: str | Path, progress: bool = True,
                   log: Callable[[str], None] = logger.info, test: tuple[np.ndarray, np.ndarray] | None = None,
                   reconstructor: Reconstructor | None = None) -> dict:
    """Train, defend, attack; write ``results.json``, plots and ``report.html`` to ``out_dir``; return the results.

    Args:
        recipe: trains the target (on ``split.members``) and the attacker's reference models alike.
        x, y: every record the split indexes: (S, C, H, W) floats in [0, 1] and int labels.
        test: optional held-out (x, y) for the target's test accuracy.
        reconstructor: the defender's diffusion model, already trained on ``split.members`` (e.g. a DualMD
            pair or a DistillMD student); None trains a single DDPM with the settings. The attacker's own
            DDPM is a single one either way.
    """
    from ..adapters import art_attacks
    from ..adapters.art import DefendedClassifier

    start = time.perf_counter()
    s, timings = settings, {}
    if s.defense_seeds < 1:
        raise ValueError(f"defense_seeds must be at least 1 (the run's own seed), got {s.defense_seeds}")
    torch.manual_seed(s.seed)
    nb_classes = int(recipe.key.get("nb_classes", int(y.max()) + 1))
    members = torch.from_numpy(x[split.members])

    with phase(f"[1/6] training the target on {len(split.members)} members", timings, "target_s", log):
        model = recipe.train(x[split.members], y[split.members], s.seed)
    target_accuracy = _accuracies(model, x[split.members], y[split.members], test)
    log(f"      target accuracy: train {target_accuracy['train']:.3f}"
        + (f", test {target_accuracy['test']:.3f}" if "test" in target_accuracy else ""))

    if reconstructor is None:
        budget = f", at most {s.ddpm_seconds:.0f} s" if s.ddpm_seconds else ""
        with phase(f"[2/6] training the DDPM on the same members ({s.ddpm_steps} steps{budget}, "
                   f"t <= {s.ddpm_max_timestep})", timings, "ddpm_s", log):
            reconstructor = train_diffusion(members, unet_config=s.unet_config, steps=s.ddpm_steps,
                                            batch_size=s.ddpm_batch_size, max_timestep=s.ddpm_max_timestep,
                                            seed=s.seed, progress=progress, max_seconds=s.ddpm_seconds,
                                            device=s.device, autocast=s.autocast)
        log(f"      {reconstructor.training['steps']} DDPM steps ({reconstructor.training['stopped']})")
    else:
        log(f"[2/6] the defender's diffusion model is given: {type(reconstructor).__name__} "
            f"{reconstructor.fingerprint()}")

    roles = roles_of(split)
    with phase(f"[3/6] Diffence: reconstructing {sum(len(getattr(split, r)) for r in roles)} inputs x {s.n} "
               f"(t={s.t}{' or ' + '/'.join(map(str, s.t_choices)) if s.t_choices else ''}, k={s.k})",
               timings, "diffence_s", log):
        defenses, cands, diffence_released = diffence_scenarios(model, reconstructor, x, split, n=s.n, t=s.t, k=s.k,
                                                                 seed=defense_seed(s.seed, 0), progress=progress,
                                                                 levels=s.levels, max_batch=s.max_batch,
                                                                 t_choices=s.t_choices, autocast=s.autocast)
        released = {"undefended": undefended_releases(model, x, split), **diffence_released}
        memguards = {}
        if s.memguard:
            for name, source in (("memguard", "undefended"), ("diffence+memguard", "scenario_1")):
                guard = MemGuard(seed=s.seed).fit_probabilities(
                    torch.from_numpy(released[source]["defender_members"]),
                    torch.from_numpy(released[source]["defender_nonmembers"]))
                released[name] = {r: guard(None, torch.from_numpy(released[source][r])).numpy() for r in roles}
                memguards[name] = guard
        if s.labels_only:
            released["labels_only"] = {r: LabelsOnly()(None, torch.from_numpy(p)).numpy()
                                       for r, p in released["undefended"].items()}
    chosen_t = defenses["1"].config.t
    if s.t_choices:
        log(f"      calibration chose t = {chosen_t} "
            f"({defenses['1'].calibration.extra.get('t_search')})")

    views, shadows = {}, {}
    if s.references:
        pool = split.attacker_pool[: s.attacker_pool_size]
        with phase(f"[4/6] the attacker: {s.references} reference models, its own DDPM on {len(pool)} records "
                   f"of its pool, its own Diffence", timings, "attacker_s", log):
            universe = attacker_universe(split, 2 * len(split.members))
            refs = train_references(recipe, x[universe], y[universe], s.references, seed=s.seed + 1,
                                    progress=progress)
            attacker_ddpm = train_diffusion(torch.from_numpy(x[pool]), unet_config=s.unet_config,
                                            steps=s.ddpm_steps, batch_size=s.ddpm_batch_size,
                                            max_timestep=s.ddpm_max_timestep, seed=s.seed + 1, progress=progress,
                                            max_seconds=s.ddpm_seconds, device=s.device, autocast=s.autocast)
            # the attacker knows the defense's public settings, the chosen t included, not its secret seed
            attacker = Diffence(attacker_ddpm, n=s.n, t=chosen_t, k=s.k, scenario=3,
                                seed=experiment_seed(s.seed + 1), output="logits", progress=progress,
                                levels=s.levels, max_batch=s.max_batch, autocast=s.autocast)
            images = attacker.reconstructions(torch.from_numpy(x[universe]))
            views["undefended"] = plain = undefended_view(refs, x, universe)
            ref_cands = reference_candidates(refs, attacker, x, universe, images)
            for scenario in (1, 2, 3):
                views[f"scenario_{scenario}"] = diffence_view(refs, attacker.with_config(scenario=scenario), x,
                                                              universe, images, split, ref_cands)
            # post-inference stages copied stage by stage: MemGuard fitted on the attacker's own records
            if s.memguard:
                views["memguard"] = post_view(plain, [memguards["memguard"]], x, split, s.seed + 1,
                                              upstream_copied=True)
                views["diffence+memguard"] = post_view(views["scenario_1"], [memguards["diffence+memguard"]], x,
                                                       split, s.seed + 1)
            if s.labels_only:
                views["labels_only"] = post_view(plain, [LabelsOnly()], x, split, s.seed + 1, upstream_copied=True)
            if "shadow_models" in s.art_attacks:  # ART's shadows answer through the attacker's Diffence too
                pool_images = attacker.reconstructions(torch.from_numpy(x[shadow_pool(split, 2 * len(split.members))]))
                for scenario in (1, 2, 3):
                    shadows[f"scenario_{scenario}"] = ShadowDiffence.for_split(
                        attacker.with_config(scenario=scenario), x, split, pool_images, universe, images)
                shadows["diffence+memguard"] = shadows["scenario_1"]

    with phase("[5/6] attacking every defense (threshold, LiRA, RMIA, ART)", timings, "attacks_s", log):
        kept = labels_kept(released)
        target = art_attacks.probability_classifier(model, tuple(x.shape[1:]), nb_classes)
        pipelines = {f"scenario_{k}": DefensePipeline(pre=[defenses[str(k)]]) for k in (1, 2, 3)}
        if s.memguard:
            pipelines["memguard"] = DefensePipeline(post=[memguards["memguard"]])
            pipelines["diffence+memguard"] = DefensePipeline(pre=[defenses["1"]],
                                                             post=[memguards["diffence+memguard"]])
        if s.labels_only:
            pipelines["labels_only"] = DefensePipeline(post=[LabelsOnly()])
        rows = []
        for name, probs in released.items():
            estimator = DefendedClassifier(target, pipelines[name]) if name in pipelines else target
            art = dict(estimator=estimator, target=target, model=model, attacks=s.art_attacks,
                       defended=name in pipelines, shadow_answer=shadows.get(name))
            row = evaluate_defense(name, probs, x, y, split, view=views.get(name), art=art, kept=kept[name],
                                   seed=s.seed, bootstrap=s.bootstrap)
            if name.startswith("scenario_") and s.selection_draws:
                row.spread = selection_spread(defenses[name[-1]], cands, y, split, views.get(name),
                                              s.selection_draws, seed=s.seed)
            if rows:
                row.change = compare_to(row, rows[0], seed=s.seed)
            rows.append(row)
            log(f"      {name}: {row.best.attack} AUC {row.best.auc:.3f}")

    noise = None
    if s.defense_seeds > 1:
        with phase(f"[5b/6] the defense's own noise: {s.defense_seeds - 1} more defense seeds, each reconstructing "
                   "and calibrating again", timings, "defense_seeds_s", log):
            noise = _defense_seed_spread(model, reconstructor, x, y, split, s, rows, released["undefended"],
                                         (views, shadows), target, chosen_t, log)

    with phase("[6/6] writing results", timings, "report_s", log):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        results = {
            "settings": asdict(s),
            "target_accuracy": target_accuracy,
            "training": {"defender_ddpm": reconstructor.training,
                         **({"attacker_ddpm": attacker_ddpm.training} if s.references else {})},
            "calibration": {f"scenario_{k}": asdict(defenses[k].calibration) for k in ("1", "2")},
            "rows": [r.to_dict() for r in rows],
            **({"defense_seeds": noise} if noise else {}),
            "timings": timings,
            "seconds": time.perf_counter() - start,
            "machine": machine(),
        }
        (out / "results.json").write_text(json.dumps(results, indent=2))
        write_report(results, released, {r: y[getattr(split, r)] for r in roles}, out)
    return results


def defense_seed(seed: int, draw: int) -> int:
    """The Diffence seed of an experiment's ``draw``-th defense seed (0: the run's own, ``experiment_seed``)."""
    return experiment_seed(seed) if draw == 0 else experiment_seed(seed, f"diffence-draw-{draw}")


def _defense_seed_spread(model, reconstructor, x: np.ndarray, y: np.ndarray, split: MembershipSplit,
                         s: ExperimentSettings, rows: list, undefended: dict, attacker: tuple[dict, dict], target,
                         chosen_t: int, log) -> dict:
    """Scenarios 1-3 under ``s.defense_seeds - 1`` further defense seeds against the same attacker: per seed
    the chosen t, the chosen attack's AUC and the changes from the undefended row with their intervals, and
    over all seeds (the run's first) the mean and sd of each change. The attacker is the run's (its reference
    models, shadows and Diffence, with the first seed's chosen t: the public setting it knows)."""
    from ..adapters.art import DefendedClassifier

    views, shadows = attacker
    per_seed = {r.defense: [{"draw": 0, "t": chosen_t, "best_auc": r.best.auc, "best_attack": r.best.attack,
                             "change": r.change}] for r in rows if r.defense.startswith("scenario_")}
    for draw in range(1, s.defense_seeds):
        defenses, _, released = diffence_scenarios(model, reconstructor, x, split, n=s.n, t=s.t, k=s.k,
                                                   seed=defense_seed(s.seed, draw), progress=False,
                                                   levels=s.levels, max_batch=s.max_batch, t_choices=s.t_choices,
                                                   autocast=s.autocast)
        kept = labels_kept({"undefended": undefended, **released})
        for name, probs in released.items():
            art = dict(estimator=DefendedClassifier(target, DefensePipeline(pre=[defenses[name[-1]]])),
                       target=target, model=model, attacks=s.art_attacks, defended=True,
                       shadow_answer=shadows.get(name))
            row = evaluate_defense(name, probs, x, y, split, view=views.get(name), art=art, kept=kept[name],
                                   seed=s.seed, bootstrap=s.bootstrap)
            per_seed[name].append({"draw": draw, "t": defenses["1"].config.t, "best_auc": row.best.auc,
                                   "best_attack": row.best.attack, "change": compare_to(row, rows[0], seed=s.seed)})
            log(f"      defense seed {draw}, {name}: {row.best.attack} AUC {row.best.auc:.3f}")
    summary = {}
    for name, draws in per_seed.items():
        figures = {"best": [d["change"]["best"]["auc_change"] for d in draws]}
        if all("lira" in d["change"] for d in draws):
            figures["lira"] = [d["change"]["lira"]["auc_change"] for d in draws]
            if all("tpr@0.01_change" in d["change"]["lira"] for d in draws):
                figures["lira_tpr@0.01"] = [d["change"]["lira"]["tpr@0.01_change"] for d in draws]
        summary[name] = {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "seeds": len(v)}
                         for k, v in figures.items()}
    return {"seeds": s.defense_seeds, "rows": per_seed, "summary": summary}


def _accuracies(model, x: np.ndarray, y: np.ndarray, test: tuple[np.ndarray, np.ndarray] | None) -> dict[str, float]:
    out = {"train": accuracy(probabilities(model, torch.from_numpy(x)).numpy(), y)}
    if test is not None:
        out["test"] = accuracy(probabilities(model, torch.from_numpy(test[0])).numpy(), test[1])
    return out
