"""The shape of the paper's Table 3 on digits: every training-time defense, without and with Diffence.

For each defense: the target's test-accuracy change against the undefended target, and the best-attack AUC and
accuracy without Diffence and under Scenarios 1-3 (epsilon for DP-SGD). One DDPM, trained on the members,
serves every target. Run: python examples/table3_digits.py [--out runs/table3]  (about 8 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diffence_plugin import DefensePipeline, train_diffusion
from diffence_plugin.adapters import art_attacks
from diffence_plugin.data import digits_images
from diffence_plugin.evaluation.protocol import membership_split
from diffence_plugin.evaluation.protocol import ROLES
from diffence_plugin.evaluation.runner import attack_rows, diffence_scenarios, labels_kept, undefended_releases
from diffence_plugin.recipes.demo import DemoSettings
from diffence_plugin.defenses.hamp_output import HAMPOutput
from diffence_plugin.defenses.training import train_target

DEFENSES = [  # name, options, training overrides (DP-SGD: SGD at a higher rate, fewer epochs)
    ("none", {}, {}),
    ("dpsgd", {"epsilon": 8.0}, {"epochs": 30, "lr": 0.05}),
    ("relaxloss", {"alpha": 0.5}, {}),
    ("hamp", {"gamma": 0.7, "alpha": 0.01}, {}),  # with its output modification (hamp_output) in every column
    ("selena", {"k": 6, "l": 2}, {}),
    ("advreg", {"lam": 1.0}, {}),
]
ATTACKS = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/table3")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    s = DemoSettings(seed=args.seed)
    x, y = digits_images()
    split = membership_split(len(x), s.members, s.defender, s.attacker, s.evaluation, seed=s.seed)
    reconstructor = train_diffusion(torch.from_numpy(x[split.members]), steps=s.ddpm_steps,
                                    max_timestep=s.ddpm_max_timestep, seed=s.seed, progress=False)
    table = []
    for name, options, overrides in DEFENSES:
        train = dict(epochs=s.target_epochs, lr=1e-3, batch_size=64) | overrides
        target = train_target(x[split.members], y[split.members], defense=name, seed=s.seed, progress=False,
                              test=(x[split.eval_nonmembers], y[split.eval_nonmembers]),
                              reference=(x[split.defender_nonmembers], y[split.defender_nonmembers]),
                              options=options, **train)
        model = target.model
        defenses, cands, released = diffence_scenarios(model, reconstructor, x, split, n=s.n, t=s.t, k=s.k, seed=s.seed,
                                                       progress=False)
        released["undefended"] = undefended_releases(model, x, split)
        if name == "hamp":  # HAMP = its training plus its test-time output modification, in every column
            hamp = HAMPOutput(seed=s.seed)
            hamp.bind(model)
            released = {k: {r: hamp(torch.from_numpy(x[getattr(split, r)]), torch.from_numpy(v[r])).numpy()
                            for r in ROLES} for k, v in released.items()}
        kept = labels_kept(released)
        post = [hamp] if name == "hamp" else []
        pipelines = {f"scenario_{k}": DefensePipeline(pre=[defenses[k]], post=post) for k in "123"}
        if post:
            pipelines["undefended"] = DefensePipeline(post=post)
        art_target = art_attacks.probability_classifier(model, (1, 8, 8), 10)
        order = {k: released[k] for k in ("undefended", "scenario_1", "scenario_2", "scenario_3")}
        rows = attack_rows(order, kept, x, y, split, art_target, pipelines, ATTACKS, s.seed, log=lambda *a: None)
        table.append(dict(defense=name, metrics=target.metrics,
                          rows=[dict(defense=r.defense, test_accuracy=r.test_accuracy, labels_kept=r.labels_kept,
                                     best=r.best.to_dict()) for r in rows]))
        print(f"{name}: " + ", ".join(f"{r.defense} {r.best.auc:.3f}" for r in rows), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table3.json").write_text(json.dumps(table, indent=2, default=float))
    base = table[0]["rows"][0]["test_accuracy"]
    print("\n| training defense | test acc (change) | epsilon | best AUC: no Diffence / S1 / S2 / S3 | "
          "best attack acc: no Diffence / S1 / S2 / S3 | accuracy identical with Diffence |")
    print("|---|---|---|---|---|---|")
    for entry in table:
        rows = entry["rows"]
        acc = rows[0]["test_accuracy"]
        eps = entry["metrics"].get("epsilon")
        same = all(r["test_accuracy"] == acc and r["labels_kept"] == 1.0 for r in rows)
        print(f"| {entry['defense']} | {acc:.4f} ({100 * (acc - base):+.1f} pt) | "
              f"{'-' if eps is None else f'{eps:.2f}'} | "
              + " / ".join(f"{r['best']['auc']:.3f}" for r in rows) + " | "
              + " / ".join(f"{r['best']['accuracy']:.3f}" for r in rows) + f" | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
