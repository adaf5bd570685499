"""LiRA and RMIA against the demo's undefended target as the number of reference models grows, and the time to
train them (each count is its own balanced set: every record IN for exactly half of the references).

    python benchmarks/bench_lira_references.py --counts 4 8 16 32
"""

from __future__ import annotations

import argparse
import time

from diffence_plugin.attacks import train_references
from diffence_plugin.attacks.attacker import attacker_universe, undefended_view
from diffence_plugin.attacks.releases import undefended_releases
from diffence_plugin.attacks.scoring import reference_attacks
from diffence_plugin.audit.plan import load_preset
from diffence_plugin.audit.stages.prepare import prepare, reference_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    plan = load_preset("demo", [f"run.seed={args.seed}", f"roles.seed={args.seed}", "run.progress=false"])
    plan["defenses"] = []  # the undefended target only: the engine's first stage trains no DDPM then
    prep = prepare(plan, log=lambda *a: None, timings={})
    x, y, split = prep.x, prep.y, prep.split
    recipe = reference_recipe(plan, prep.nb_classes, x, y, split)  # the target's own recipe
    released = undefended_releases(prep.model, x, split)
    universe = attacker_universe(split, 2 * len(split.members))
    print("| references | training (s) | LiRA online global | LiRA online per-example | LiRA offline | RMIA online | "
          "RMIA offline | best LiRA TPR@1%FPR |")
    print("|---|---|---|---|---|---|---|---|")
    for count in sorted(args.counts):
        start = time.perf_counter()
        refs = train_references(recipe, x[universe], y[universe], count, seed=args.seed + 1, progress=False)
        seconds = time.perf_counter() - start
        results = {r.attack: r for r in reference_attacks(released, y, split, undefended_view(refs, x, universe),
                                                          seed=args.seed)}

        def cell(name):
            r = results[name]
            return f"{r.auc:.3f} [{r.ci['auc'][0]:.3f}, {r.ci['auc'][1]:.3f}]"
        tpr = max(r.tpr[0.01] for n, r in results.items() if n.startswith("lira"))
        print(f"| {count} | {seconds:.1f} | {cell('lira_online_global')} | {cell('lira_online_per_example')} | "
              f"{cell('lira_offline_global')} | {cell('rmia_online')} | {cell('rmia_offline')} | {100 * tpr:.1f}% |")


if __name__ == "__main__":
    main()
