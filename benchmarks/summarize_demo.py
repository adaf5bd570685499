"""Mean and spread over several demo runs (seeds): the chosen attack, LiRA and RMIA per defense, and in how
many runs the change from the undefended model has a 95% interval that excludes zero.

    for s in 0 1 2; do diffence demo --seed $s --out runs/seed$s --no-progress; done
    python benchmarks/summarize_demo.py runs/seed*/results.json
"""

from __future__ import annotations

import json
import sys

import numpy as np


def _mean_sd(values: list[float]) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def main(paths: list[str]) -> None:
    runs = [json.loads(open(p).read()) for p in paths]
    names = [r["defense"] for r in runs[0]["rows"]]
    print(f"| defense | chosen-attack AUC (mean ± sd over {len(runs)} seeds) | per seed (attack) | LiRA AUC | "
          "RMIA AUC | LiRA TPR@1%FPR | runs whose chosen-attack change excludes 0 | accuracy = undefended |")
    print("|---|---|---|---|---|---|---|---|")
    for i, name in enumerate(names):
        rows = [r["rows"][i] for r in runs]
        per_seed = ", ".join(f"{row['best']['auc']:.3f} ({row['best']['attack']})" for row in rows)
        tpr = [row["lira"]["tpr"]["0.01"] for row in rows if row.get("lira") and row["lira"]["tpr"]["0.01"] is not None]
        changes = [row["change"]["best"] for row in rows if row.get("change")]
        excl = sum(c["ci"][1] < 0 or c["ci"][0] > 0 for c in changes)
        same = all(row["test_accuracy"] == r["rows"][0]["test_accuracy"] for row, r in zip(rows, runs))
        print(f"| {name} | {_mean_sd([row['best']['auc'] for row in rows])} | {per_seed} | "
              f"{_mean_sd([row['lira']['auc'] for row in rows])} | {_mean_sd([row['rmia']['auc'] for row in rows])} | "
              f"{100 * np.mean(tpr):.1f}% | {f'{excl} of {len(changes)}' if changes else '-'} | "
              f"{'yes' if same else 'NO'} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
