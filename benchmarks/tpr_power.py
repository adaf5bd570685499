"""How many evaluation records a TPR-at-1%-FPR change needs before its 95% interval can exclude zero.

Reads a ``results.json`` written by ``diffence reproduce`` (it keeps every attack's scores on the
evaluation records), takes LiRA's scores on the undefended target and under one Diffence row, and measures
the paired bootstrap interval of the TPR change (``tpr_difference``, the figure the report prints) on
random subsets of n members and n non-members. The half-width shrinks as c / sqrt(n); the fitted c gives the
n at which a drop of the measured size would exclude zero, and the chance that it does at each n (normal
approximation: Phi(|drop| / se - z), z = norm.ppf(0.975)).

    python benchmarks/tpr_power.py runs/reproduce-seeds/results.json
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
from scipy.stats import norm

from diffence_plugin.attacks.metrics import membership_metrics, tpr_difference


def scores_of(row: dict, attack: str) -> tuple[np.ndarray, np.ndarray]:
    """The member and non-member scores of ``attack`` in one row of results.json."""
    for result in row["attacks"]:
        if result["attack"] == attack:
            if "member_scores" not in result:
                raise ValueError(f"row {row['defense']!r} kept no scores for {attack!r}")
            return np.asarray(result["member_scores"]), np.asarray(result["nonmember_scores"])
    raise ValueError(f"row {row['defense']!r} has no attack {attack!r}")


def half_widths(before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray], n: int,
                subsets: int, level: float, seed: int) -> list[float]:
    """Half-widths of the paired bootstrap interval of the TPR change on ``subsets`` random n + n subsets."""
    rng = np.random.default_rng(seed)
    widths = []
    for _ in range(subsets):
        im = rng.choice(before[0].size, n, replace=False)
        inn = rng.choice(before[1].size, n, replace=False)
        b = membership_metrics("before", before[0][im], before[1][inn], bootstrap=0)
        a = membership_metrics("after", after[0][im], after[1][inn], bootstrap=0)
        _, (low, high) = tpr_difference(a, b, level, seed=int(rng.integers(2**31)))
        widths.append((high - low) / 2)
    return widths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a results.json from `diffence reproduce`")
    parser.add_argument("--defense", default="scenario_1")
    parser.add_argument("--level", type=float, default=0.01)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 750, 1000])
    parser.add_argument("--subsets", type=int, default=20)
    parser.add_argument("--drop", type=float, help="the true drop to plan for (default: the mean over the "
                        "run's defense seeds, else its own point estimate)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with open(args.results) as f:
        results = json.load(f)
    rows = {row["defense"]: row for row in results["rows"]}
    if args.defense not in rows or "undefended" not in rows:
        raise SystemExit(f"{args.results} has no rows 'undefended' and {args.defense!r}: {sorted(rows)}")
    attack = rows["undefended"]["lira"]["attack"]
    before, after = scores_of(rows["undefended"], attack), scores_of(rows[args.defense], attack)
    available = min(before[0].size, before[1].size)
    sizes = [n for n in args.sizes if n <= available]
    if not sizes:
        raise SystemExit(f"every size in {args.sizes} exceeds the {available} evaluation records per side")

    full_a = membership_metrics("after", *after, bootstrap=0)
    full_b = membership_metrics("before", *before, bootstrap=0)
    point = tpr_difference(full_a, full_b, args.level, seed=args.seed)[0]
    seeds = [r["change"]["lira"].get(f"tpr@{args.level:g}_change")
             for r in results.get("defense_seeds", {}).get("rows", {}).get(args.defense, [])]
    seeds = [s for s in seeds if s is not None]
    drop = abs(args.drop if args.drop is not None else (float(np.mean(seeds)) if seeds else point))
    print(f"{attack}, {args.defense}: TPR@{args.level:.0%}FPR change {point:+.3f} on {available} + {available}"
          + (f"; over {len(seeds)} defense seeds mean {np.mean(seeds):+.3f}" if seeds else "")
          + f"; planning for a drop of {drop:.3f}")

    print("| records per side | interval half-width (mean ± sd over subsets) | half-width x sqrt(n) |")
    print("|---|---|---|")
    constants = []
    for n in sizes:
        widths = half_widths(before, after, n, args.subsets, args.level, args.seed + n)
        constants.append(np.mean(widths) * math.sqrt(n))
        print(f"| {n} | {np.mean(widths):.3f} ± {np.std(widths, ddof=1):.3f} | {constants[-1]:.2f} |")
    c = float(np.mean(constants))
    print(f"\nfit: half-width = {c:.2f} / sqrt(n)")
    print("| records per side | predicted half-width | chance the interval excludes zero |")
    print("|---|---|---|")
    z = norm.ppf(0.975)  # tpr_difference gives a two-sided 95% interval
    for n in (1_000, 2_000, 5_000, 10_000, 20_000):
        se = c / math.sqrt(n) / z
        print(f"| {n:,} | {c / math.sqrt(n):.3f} | {norm.cdf(drop / se - z):.0%} |")
    need = math.ceil((c / drop) ** 2)
    print(f"half-width below the drop from n = {need:,} per side (then a 50% chance); "
          f"80% chance from n = {math.ceil((c * (1 + norm.ppf(0.8) / z) / drop) ** 2):,}")


if __name__ == "__main__":
    main()
