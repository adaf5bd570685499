"""Mean and spread of the demo's best-attack AUC over several runs (seeds).

    for s in 0 1 2; do diffence demo --seed $s --out runs/seed$s --no-progress; done
    python benchmarks/summarize_demo.py runs/seed*/results.json
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(paths: list[str]) -> None:
    runs = [json.loads(open(p).read()) for p in paths]
    names = [r["defense"] for r in runs[0]["rows"]]
    print(f"| defense | best AUC, mean ± sd over {len(runs)} seeds | per seed | loss-attack AUC (mean) | "
          "test accuracy = undefended in every run |")
    print("|---|---|---|---|---|")
    for i, name in enumerate(names):
        rows = [r["rows"][i] for r in runs]
        best = np.array([row["best"]["auc"] for row in rows])
        loss = np.mean([next(a["auc"] for a in row["attacks"] if a["attack"] == "loss") for row in rows])
        same = all(row["test_accuracy"] == r["rows"][0]["test_accuracy"] for row, r in zip(rows, runs))
        print(f"| {name} | {best.mean():.3f} ± {best.std(ddof=1) if len(best) > 1 else 0:.3f} | "
              f"{', '.join(f'{b:.3f}' for b in best)} | {loss:.3f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
