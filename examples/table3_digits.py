"""The shape of the paper's Table 3 on digits: every training-time defense, without and with Diffence,
against the threshold attacks, LiRA and RMIA (defense-aware references trained with the same training-time
defense) and ART's black-box attacks, with 95% intervals.

For each defense: the target's test accuracy, and the attacker's chosen attack (picked on its own held-out
records) without Diffence and under Scenarios 1-3 (epsilon for DP-SGD). One DDPM trained on the members
serves every target, and the attacker's own DDPM every reference; each reconstructs its inputs once.
Run: python examples/table3_digits.py [--out runs/table3] [--references 4]  (about 15 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diffence_plugin import DefensePipeline, Diffence, train_diffusion, tiny_unet_config
from diffence_plugin.adapters import art_attacks
from diffence_plugin.adapters.art import DefendedClassifier
from diffence_plugin.data import digits_images
from diffence_plugin.defenses.hamp_output import HAMPOutput
from diffence_plugin.evaluation import ReferenceRecipe, train_references
from diffence_plugin.evaluation.runner import (attacker_universe, compare_to, diffence_view, evaluate_defense,
                                               labels_kept, release_all, roles_of, selection_spread,
                                               undefended_view)
from diffence_plugin.defenses.training import train_target
from diffence_plugin.randomness import experiment_seed
from diffence_plugin.recipes.demo import DIGITS_LEVELS, DemoSettings

DEFENSES = [  # name, options, training overrides (DP-SGD: SGD at a higher rate, fewer epochs)
    ("none", {}, {}),
    ("dpsgd", {"epsilon": 8.0}, {"epochs": 30, "lr": 0.05}),
    ("relaxloss", {"alpha": 0.5}, {}),
    ("hamp", {"gamma": 0.7, "alpha": 0.01}, {}),  # with its output modification (hamp_output) in every column
    ("selena", {"k": 6, "l": 2}, {}),
    ("advreg", {"lam": 1.0}, {}),
]
ATTACKS = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf")


def candidates(defense: Diffence, model, x, split, images: dict) -> dict:
    return {r: defense.candidates_from_reconstructions(model, torch.from_numpy(x[getattr(split, r)]), images[r])
            for r in roles_of(split)}


def output_modification(hamp: HAMPOutput, x, split):
    """``post(role, probs)``: HAMP's test-time output modification of one role's released vectors."""
    return lambda role, probs: hamp(torch.from_numpy(x[getattr(split, role)]), torch.from_numpy(probs)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/table3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--draws", type=int, default=5, help="fresh selection draws per Diffence column")
    args = parser.parse_args()
    s = DemoSettings(seed=args.seed)
    x, y = digits_images()
    split = s.split(len(x))
    roles = roles_of(split)
    unet = tiny_unet_config(8, 1, width=s.ddpm_width)
    ddpm = train_diffusion(torch.from_numpy(x[split.members]), unet_config=unet, steps=s.ddpm_steps,
                           max_timestep=s.ddpm_max_timestep, seed=s.seed, progress=False)
    base = Diffence(ddpm, n=s.n, t=s.t, k=s.k, scenario=3, seed=experiment_seed(s.seed), output="logits",
                    levels=DIGITS_LEVELS)
    images = {r: base.reconstructions(torch.from_numpy(x[getattr(split, r)])) for r in roles}
    universe = attacker_universe(split, 2 * s.members)
    attacker_ddpm = train_diffusion(torch.from_numpy(x[split.attacker_pool]), unet_config=unet, steps=s.ddpm_steps,
                                    max_timestep=s.ddpm_max_timestep, seed=s.seed + 1, progress=False)
    attacker = Diffence(attacker_ddpm, n=s.n, t=s.t, k=s.k, scenario=3, seed=experiment_seed(s.seed + 1),
                        output="logits", levels=DIGITS_LEVELS)
    attacker_images = attacker.reconstructions(torch.from_numpy(x[universe]))
    table = []
    for name, options, overrides in DEFENSES:
        train = dict(epochs=s.target_epochs, lr=1e-3, batch_size=64) | overrides
        own = split.attacker_pool[:75]  # the attacker's own non-members, for AdvReg's references
        recipe = ReferenceRecipe.from_training("digits_mlp", 10, 1, defense=name, options=options,
                                               reference=(x[own], y[own]), **train)
        target = train_target(x[split.members], y[split.members], defense=name, seed=s.seed, progress=False,
                              test=(x[split.eval_nonmembers], y[split.eval_nonmembers]),
                              reference=(x[split.defender_nonmembers], y[split.defender_nonmembers]),
                              options=options, **train)
        model = target.model
        refs = train_references(recipe, x[universe], y[universe], args.references, seed=s.seed + 1, progress=False)
        cands = candidates(base, model, x, split, images)
        defenses = {"3": base}
        for scenario in (1, 2):
            defenses[str(scenario)] = base.with_config(scenario=scenario)
            defenses[str(scenario)].calibrate_from_candidates(cands["defender_members"],
                                                              cands["defender_nonmembers"] if scenario == 1 else None)
        released = {"undefended": {r: c.original_log_probs.exp().numpy() for r, c in cands.items()}}
        released |= {f"scenario_{k}": release_all(defenses[k], cands) for k in "123"}
        views = {"undefended": undefended_view(refs, x, universe)}
        views |= {f"scenario_{k}": diffence_view(refs, attacker.with_config(scenario=int(k)), x, universe,
                                                 attacker_images, split) for k in "123"}
        post = None
        if name == "hamp":  # HAMP = its training plus its test-time output modification, in every column
            hamp = HAMPOutput(seed=s.seed)
            hamp.bind(model)

            post = output_modification(hamp, x, split)
            released = {k: {r: post(r, v[r]) for r in roles} for k, v in released.items()}
            for view in views.values():  # the attacker applies its own output modification to its references
                for i, ref in enumerate(refs.models):
                    own_hamp = HAMPOutput(seed=s.seed + 1)
                    own_hamp.bind(ref)
                    view.probs[i] = own_hamp(torch.from_numpy(x[universe]), torch.from_numpy(view.probs[i])).numpy()
        kept = labels_kept(released)
        art_target = art_attacks.probability_classifier(model, (1, 8, 8), 10)
        post_defenses = [hamp] if name == "hamp" else []
        pipelines = {f"scenario_{k}": DefensePipeline(pre=[defenses[k]], post=post_defenses) for k in "123"}
        if post_defenses:
            pipelines["undefended"] = DefensePipeline(post=post_defenses)
        rows = []
        for key, probs in released.items():
            # ART's loss attacks query the estimator for losses: it must answer through the same defense
            estimator = DefendedClassifier(art_target, pipelines[key]) if key in pipelines else art_target
            art = dict(estimator=estimator, target=art_target, model=model, attacks=ATTACKS, defended=key in pipelines)
            row = evaluate_defense(key, probs, x, y, split, view=views[key], art=art, kept=kept[key], seed=s.seed)
            if key.startswith("scenario_") and args.draws > 1:
                row.spread = selection_spread(defenses[key[-1]], cands, y, split, views[key], args.draws,
                                              seed=s.seed, post=post)
            if rows:
                row.change = compare_to(row, rows[0], seed=s.seed)
            rows.append(row)
        table.append(dict(defense=name, metrics=target.metrics, rows=[r.to_dict(scores=False) for r in rows]))
        print(f"{name}: " + ", ".join(f"{r.defense} {r.best.attack} {r.best.auc:.3f}" for r in rows), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table3.json").write_text(json.dumps(table, indent=2, default=float))
    base_acc = table[0]["rows"][0]["test_accuracy"]
    print("\n| training defense | test acc (change) | epsilon | chosen attack AUC [95% CI]: no Diffence / S1 / S2 / S3 | "
          "LiRA AUC: no Diffence / S1 / S2 / S3 | S1 change [95% CI] | chosen AUC over selection draws: S1 / S2 / S3 "
          "| accuracy identical |")
    print("|---|---|---|---|---|---|---|---|")
    for entry in table:
        rows = entry["rows"]
        acc = rows[0]["test_accuracy"]
        same = all(r["test_accuracy"] == acc and r["labels_kept"] == 1.0 for r in rows)
        change = rows[1]["change"]["best"]
        eps = entry["metrics"].get("epsilon")
        print(f"| {entry['defense']} | {acc:.4f} ({100 * (acc - base_acc):+.1f} pt) | "
              f"{'-' if eps is None else f'{eps:.2f}'} | "
              + " / ".join(f"{r['best']['auc']:.3f} [{r['best']['ci']['auc'][0]:.3f}, {r['best']['ci']['auc'][1]:.3f}]"
                           for r in rows) + " | "
              + " / ".join(f"{r['lira']['auc']:.3f}" for r in rows)
              + f" | {change['auc_change']:+.3f} [{change['ci'][0]:+.3f}, {change['ci'][1]:+.3f}] | "
              + " / ".join(f"{r['spread']['best_auc']['mean']:.3f} ± {r['spread']['best_auc']['sd']:.3f}"
                           if r["spread"] else "-" for r in rows[1:])
              + f" | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
