"""DualMD and DistillMD against a single DDPM: the diffusion model's own leakage, Diffence's protection of
the classifier with each reconstructor, and the training cost.

Every reconstructor is trained on the target's members (the defender's data) with the same steps per model:
the single DDPM on all members, DualMD's two models on disjoint halves (twice the cost), DistillMD's student
on all members from DualMD's teachers (the teachers' cost plus one model). The diffusion model's leakage is
measured by ``evaluation.diffusion_attacks.diffusion_audit`` (loss at each timestep and the attacker's best
timestep, loss trajectory, SecMI, reconstruction distance; fitted and chosen on the attacker's records,
scored on the evaluation records). With ``--classifier`` each reconstructor also protects the classifier:
on digits through the demo's full audit (``run_experiment``: defense-aware LiRA/RMIA with the attacker's own
DDPM, threshold and ART attacks); on CIFAR-10, where that audit takes 38 minutes per reconstructor on 2
cores, through a lighter one (``classifier_unaware``: threshold attacks, LiRA and RMIA with reference models
that answer undefended, 1,000 + 1,000 evaluation records, smaller defender and attacker sets).

    python benchmarks/bench_dual.py --dataset digits --out runs/dual-digits --classifier
    python benchmarks/bench_dual.py --dataset cifar10 --data ../shared/data/cifar10 --out runs/dual-cifar --classifier
    python benchmarks/bench_dual.py --table runs/dual-digits/dual.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from diffence_plugin import DualReconstructor, train_diffusion
from diffence_plugin.data import digits_images, load_dataset
from diffence_plugin.diffusion import train_distilled, train_dual
from diffence_plugin.evaluation.diffusion_attacks import diffusion_audit
from diffence_plugin.evaluation.experiment import run_experiment
from diffence_plugin.evaluation.protocol import membership_split
from diffence_plugin.evaluation.references import ReferenceRecipe, train_references
from diffence_plugin.evaluation.report import format_change, machine
from diffence_plugin.evaluation.runner import (attacker_universe, compare_to, diffence_scenarios, evaluate_defense,
                                               labels_kept, undefended_releases, undefended_view)
from diffence_plugin.randomness import experiment_seed
from diffence_plugin.recipes.demo import DemoSettings
from diffence_plugin.recipes.reproduce import PRESETS

def echo(message: str) -> None:
    print(message, flush=True)


ATTACKS = ("loss (best t)", "loss_trajectory", "secmi", "reconstruction", "best")


def setting(dataset: str, data: str | None, steps: int | None, seed: int):
    """(x, y, split, recipe, experiment settings, timesteps) for the demo's digits or the CPU preset's CIFAR-10."""
    if dataset == "digits":
        demo = DemoSettings(seed=seed)
        x, y = digits_images()
        recipe = ReferenceRecipe.from_training("digits_mlp", 10, 1, epochs=demo.target_epochs, batch_size=64)
        exp = demo.experiment()
        split, timesteps = demo.split(len(x)), (10, 20, 40, 60, 100)
    else:
        cpu = replace(PRESETS["cpu"], seed=seed)
        d = load_dataset("cifar10", data)
        x, y = d.x_train, d.y_train
        split = membership_split(len(x), cpu.members, cpu.calibration, cpu.attacker, cpu.evaluation, seed=seed,
                                 population=cpu.population)
        recipe = cpu.recipe(10, 3)
        exp = replace(cpu.experiment(), t=60, t_choices=())
        timesteps = (10, 20, 40, 60)
    default_steps = exp.ddpm_steps if dataset == "digits" else 500  # CIFAR: about 3.5 minutes per model here
    exp = replace(exp, ddpm_steps=steps or default_steps, ddpm_seconds=None)
    return x, y, split, recipe, exp, timesteps


def train_all(members: torch.Tensor, exp, seed: int) -> tuple[dict, dict]:
    """The four reconstructors and each one's training seconds (DistillMD's include its teachers')."""
    common = dict(unet_config=exp.unet_config, steps=exp.ddpm_steps, batch_size=exp.ddpm_batch_size,
                  max_timestep=exp.ddpm_max_timestep, progress=False)
    seconds, models = {}, {}
    clock = time.perf_counter()
    models["single"] = train_diffusion(members, seed=seed, **common)
    seconds["single"] = time.perf_counter() - clock
    clock = time.perf_counter()
    models["dual"] = train_dual(members, split_seed=seed, seed=seed, **common)
    seconds["dual"] = seconds["dual_keyed"] = time.perf_counter() - clock
    models["dual_keyed"] = DualReconstructor(*models["dual"].models, mode="keyed")
    clock = time.perf_counter()
    models["distill"] = train_distilled(members, models["dual"], seed=seed, **common)
    seconds["distill"] = seconds["dual"] + time.perf_counter() - clock
    return models, seconds


def classifier_unaware(models: dict, x, y, split, recipe: ReferenceRecipe, exp, seed: int,
                       references: int = 4, sizes: tuple[int, int, int] = (250, 250, 250)) -> list[dict]:
    """The classifier's audit with each reconstructor, at a cost a CPU affords: the target, ``references``
    reference models that answer undefended (defense-unaware LiRA and RMIA) and threshold attacks; the
    defender's, attacker's and population sets cut to ``sizes``, the evaluation records kept whole."""
    d, a, p = sizes
    split = replace(split, defender_members=split.defender_members[:d],
                    defender_nonmembers=split.defender_nonmembers[:d], attacker_members=split.attacker_members[:a],
                    attacker_nonmembers=split.attacker_nonmembers[:a], population=split.population[:p])
    model = recipe.train(x[split.members], y[split.members], seed)
    universe = attacker_universe(split, 2 * len(split.members))
    view = undefended_view(train_references(recipe, x[universe], y[universe], references, seed=seed + 1,
                                            progress=False), x, universe)
    undefended = undefended_releases(model, x, split)
    base = evaluate_defense("undefended", undefended, x, y, split, view=view, seed=seed)
    rows = {"undefended": [base.to_dict(scores=False)]}
    for name, reconstructor in models.items():
        if name == "dual_keyed":
            continue
        clock = time.perf_counter()
        _, _, released = diffence_scenarios(model, reconstructor, x, split, n=exp.n, t=exp.t, k=exp.k,
                                            seed=experiment_seed(seed), progress=False, levels=exp.levels)
        kept = labels_kept({"undefended": undefended, **released})
        rows[name] = []
        for scenario in ("scenario_1", "scenario_3"):
            row = evaluate_defense(scenario, released[scenario], x, y, split, view=view, kept=kept[scenario],
                                   seed=seed)
            row.change = compare_to(row, base, seed=seed)
            rows[name].append(row.to_dict(scores=False))
        echo(f"  {name}: scenario 1 {rows[name][0]['best']['attack']} AUC {rows[name][0]['best']['auc']:.3f} "
             f"(undefended {base.best.auc:.3f}), {time.perf_counter() - clock:.0f} s")
    return [dict(row, reconstructor=name) for name, part in rows.items() for row in part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "cifar10"), default="digits")
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--out", default="runs/dual")
    parser.add_argument("--steps", type=int, default=None, help="DDPM steps per model (default: the setting's)")
    parser.add_argument("--repeats", type=int, default=4, help="noise draws per record for the loss attacks")
    parser.add_argument("--classifier", action="store_true", help="also run the classifier audit per reconstructor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", help="only print the tables of a dual.json")
    args = parser.parse_args()
    if args.table:
        print_tables(json.loads(Path(args.table).read_text()))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    x, y, split, recipe, exp, timesteps = setting(args.dataset, args.data, args.steps, args.seed)
    members = torch.from_numpy(x[split.members])
    echo(f"training single, DualMD and DistillMD DDPMs ({exp.ddpm_steps} steps per model) on {len(members)} members")
    models, seconds = train_all(members, exp, args.seed)
    images = {r: torch.from_numpy(x[getattr(split, r)]) for r in
              ("attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers")}
    result = {"settings": {**vars(args), "ddpm_steps": exp.ddpm_steps, "t": exp.t, "k": exp.k,
                           "timesteps": list(timesteps), "members": len(members),
                           "unet_config": exp.unet_config, "max_timestep": exp.ddpm_max_timestep},
              "training_seconds": seconds, "diffusion": {}, "classifier": {}, "machine": machine()}
    for name, model in models.items():
        clock = time.perf_counter()
        audit = diffusion_audit(model, (images["attacker_members"], images["attacker_nonmembers"]),
                                (images["eval_members"], images["eval_nonmembers"]), timesteps=timesteps, t=exp.t,
                                k=exp.k, repeats=args.repeats, n=4, seed=args.seed)
        result["diffusion"][name] = {attack: r.to_dict(scores=False) for attack, r in audit.items()}
        echo(f"  {name}: best attack {audit['best'].attack} AUC {audit['best'].auc:.3f} "
             f"({time.perf_counter() - clock:.0f} s)")
    if args.classifier and args.dataset == "cifar10":
        echo("classifier audit (defense-unaware references) with each reconstructor")
        result["classifier_protocol"] = "unaware"
        for row in classifier_unaware(models, x, y, split, recipe, exp, args.seed):
            result["classifier"].setdefault(row["reconstructor"], []).append(row)
    elif args.classifier:
        for name, model in models.items():
            if name == "dual_keyed":
                continue
            echo(f"classifier audit with the {name} reconstructor")
            res = run_experiment(recipe, x, y, split, exp, out_dir=out / f"classifier-{name}", progress=False,
                                 reconstructor=model, log=lambda *_: None)
            result["classifier"][name] = [{k: row[k] for k in ("defense", "best", "lira", "change", "labels_kept")}
                                          for row in res["rows"]]
    result["seconds"] = time.perf_counter() - start
    (out / "dual.json").write_text(json.dumps(result, indent=2, default=str))
    print_tables(result)


def _ci(r: dict, key: str) -> str:
    lo, hi = r["ci"][key] if r["ci"].get(key) else (float("nan"),) * 2
    if key == "auc":
        return f"{r['auc']:.3f} [{lo:.3f}, {hi:.3f}]"
    value = r["tpr"].get("0.01")
    return "n/a" if value is None else f"{100 * value:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def print_tables(result: dict) -> None:
    s = result["settings"]
    print(f"\n{s['dataset']}: {s['members']} members, {s['ddpm_steps']} DDPM steps per model, t <= "
          f"{s['max_timestep']}; Diffence t = {s['t']}, k = {s['k']}; {result['seconds']:.0f} s in all\n")
    print("| reconstructor | training s | " + " | ".join(f"{a} AUC" for a in ATTACKS) + " | best: attack, TPR@1%FPR |")
    print("|---|---|" + "---|" * len(ATTACKS) + "---|")
    for name, audit in result["diffusion"].items():
        cells = [_ci(audit[a], "auc") for a in ATTACKS]
        best = audit["best"]
        print(f"| {name} | {result['training_seconds'][name]:.0f} | " + " | ".join(cells)
              + f" | {best['attack']}, {_ci(best, 'tpr@0.01')} |")
    if result["classifier"]:
        print("\n| reconstructor | defense | chosen attack AUC | change [95% CI] | LiRA AUC | LiRA change [95% CI] | "
              "labels kept |")
        print("|---|---|---|---|---|---|---|")
        for name, rows in result["classifier"].items():
            for row in rows:
                change = row["change"] or {}
                best, lira = change.get("best"), change.get("lira")
                print(f"| {name} | {row['defense']} | {row['best']['attack']} {row['best']['auc']:.3f} | "
                      f"{format_change(best, '')} | {(row['lira'] or {}).get('auc', float('nan')):.3f} | {format_change(lira, '')} | "
                      f"{row['labels_kept']:.3f} |")


if __name__ == "__main__":
    main()
