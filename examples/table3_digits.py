"""The shape of the paper's Table 3 on digits: every training-time defense, without and with Diffence,
against the threshold attacks, LiRA and RMIA (defense-aware references trained with the same training-time
defense) and ART's black-box attacks, with 95% intervals.

Each training-time defense is one plan of the audit engine: the demo preset with the target trained under
that defense, and the defenses Scenario 1-3 (for HAMP, its output modification in every column: alone, and
after each Diffence scenario). The attacker's reference models are trained with the target's own recipe,
so they know the training-time defense too. For each defense: the target's test accuracy, the attacker's
chosen attack (picked on its own held-out records) without Diffence and under Scenarios 1-3 (epsilon for
DP-SGD), LiRA, the change Scenario 1 makes with its paired interval and the spread over selection draws.
Run: python examples/table3_digits.py [--out runs/table3] [--references 4]  (about 15 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffence_plugin.audit.plan import (
    apply_overrides,
    preset_path,
    read_config_file,
    resolve,
)
from diffence_plugin.audit.run import run_plan

ATTACKS = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf")

DEFENSES = [  # name, options, training overrides (DP-SGD: SGD at a higher rate, fewer epochs)
    ("none", {}, {}),
    ("dpsgd", {"epsilon": 8.0}, {"epochs": 30, "lr": 0.05}),
    ("relaxloss", {"alpha": 0.5}, {}),
    ("hamp", {"gamma": 0.7, "alpha": 0.01}, {}),  # with its output modification (hamp_output) in every column
    ("selena", {"k": 6, "l": 2}, {}),
    ("advreg", {"lam": 1.0}, {}),
]
ATTACKS = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf")


def plan_for(name: str, options: dict, overrides: dict, args: argparse.Namespace) -> dict:
    """The demo preset with its target trained under ``name`` and Diffence's three scenarios."""
    raw = read_config_file(preset_path("demo"))
    raw["target"]["train"] = {**raw["target"]["train"], "defense": name, "options": options, "lr": 1e-3, **overrides}
    scenarios = [d for d in raw["defenses"] if d.get("label", "").startswith("scenario_")]
    raw["defenses"] = scenarios
    if name == "hamp":  # HAMP = its training plus its test-time output modification, in every column
        hamp = {"seed": args.seed}
        raw["defenses"] = [{"name": "hamp_output", "options": hamp}] + [
            {"name": ["diffence", "hamp_output"], "label": d["label"],
             "options": {"diffence": d["options"], "hamp_output": hamp}} for d in scenarios]
    raw["attacks"].update(art=list(ATTACKS), references=args.references, selection_draws=args.draws)
    raw["run"].update(seed=args.seed, out=str(Path(args.out) / name), overwrite=True, progress=False)
    raw["roles"]["seed"] = args.seed
    return resolve(apply_overrides(raw, args.set or []), Path.cwd())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/table3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--draws", type=int, default=5, help="fresh selection draws per Diffence column")
    parser.add_argument("--only", nargs="+", default=None, help="run only these training defenses")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a plan field")
    args = parser.parse_args(argv)
    table = []
    for name, options, overrides in DEFENSES:
        if args.only and name not in args.only:
            continue
        results = run_plan(plan_for(name, options, overrides, args), log=lambda *a: None).results
        rows = [r for r in results["rows"] if not (name == "hamp" and r["defense"] == "undefended")]
        metrics = {**results["training"].get("target", {}), **results["target_accuracy"]}
        table.append(dict(defense=name, metrics=metrics, rows=rows))
        print(f"{name}: " + ", ".join(f"{r['defense']} {r['best']['attack']} {r['best']['auc']:.3f}" for r in rows),
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table3.json").write_text(json.dumps(table, indent=2, default=float))
    print_table(table)
    return table


def print_table(table: list[dict]) -> None:
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
        eps = entry["metrics"].get("epsilon")  # recorded by DP-SGD's training, when the engine keeps it
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
