"""LiRA and RMIA against the demo's undefended target as the number of reference models grows, and the time to
train them (each count is its own balanced set: every record IN for exactly half of the references).

    python benchmarks/bench_lira_references.py --counts 4 8 16 32
"""

from __future__ import annotations

import argparse
import time


from diffence_plugin.data import digits_images
from diffence_plugin.evaluation import ReferenceRecipe, train_references
from diffence_plugin.evaluation.runner import attacker_universe, reference_attacks, undefended_releases, undefended_view
from demo_sizes import DemoSizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    s = DemoSizes.of(seed=args.seed)
    x, y = digits_images()
    split = s.split(len(x))
    recipe = ReferenceRecipe.from_training("digits_mlp", 10, 1, epochs=s.target_epochs, batch_size=64)
    model = recipe.train(x[split.members], y[split.members], s.seed)
    released = undefended_releases(model, x, split)
    universe = attacker_universe(split, 2 * s.members)
    print("| references | training (s) | LiRA online global | LiRA online per-example | LiRA offline | RMIA online | "
          "RMIA offline | best LiRA TPR@1%FPR |")
    print("|---|---|---|---|---|---|---|---|")
    for count in sorted(args.counts):
        start = time.perf_counter()
        refs = train_references(recipe, x[universe], y[universe], count, seed=s.seed + 1, progress=False)
        seconds = time.perf_counter() - start
        results = {r.attack: r for r in reference_attacks(released, y, split, undefended_view(refs, x, universe),
                                                          seed=s.seed)}

        def cell(name):
            r = results[name]
            return f"{r.auc:.3f} [{r.ci['auc'][0]:.3f}, {r.ci['auc'][1]:.3f}]"
        tpr = max(r.tpr[0.01] for n, r in results.items() if n.startswith("lira"))
        print(f"| {count} | {seconds:.1f} | {cell('lira_online_global')} | {cell('lira_online_per_example')} | "
              f"{cell('lira_offline_global')} | {cell('rmia_online')} | {cell('rmia_offline')} | {100 * tpr:.1f}% |")


if __name__ == "__main__":
    main()
