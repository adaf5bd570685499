"""The cost-privacy frontier of the reconstruction (issue 26 §4) as one figure: each audited Diffence setting
of ``presets/cifar10-frontier.toml`` at its measured cost, LiRA's AUC change and TPR@1%FPR change against the
undefended target (paired bootstrap CIs from the engine's ``results.json``) against Diffence ms per input on
this machine (``bench_reconstruct.py --frontier``).

    diffence reproduce cifar10 --preset frontier --data ../shared/data/cifar10 --out runs/reproduce-frontier
    python benchmarks/bench_reconstruct.py --frontier --inputs 128 --out runs/bench-frontier.json
    python benchmarks/plot_frontier.py runs/reproduce-frontier/results.json runs/bench-frontier.json \
        --out docs/frontier.png
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def points(results: dict, costs: dict) -> list[dict]:
    """One point per Diffence row labelled ``n<N>_steps<S>``: its cost and LiRA changes with their CIs."""
    ms = {(c["n"], c["ddim_steps"]): c["ms_per_input"] for c in costs["frontier"]}
    out = []
    for row in results["rows"]:
        match = re.fullmatch(r"n(\d+)_steps(\d+)", row["defense"])
        lira = (row.get("change") or {}).get("lira")
        if not match or not lira:
            continue
        n, steps = int(match[1]), int(match[2])
        out.append({"label": row["defense"], "ms": ms[(n, steps)], "auc": lira["auc_change"], "auc_ci": lira["ci"],
                    "tpr": lira.get("tpr@0.01_change"), "tpr_ci": lira.get("tpr_ci")})
    if not out:
        raise SystemExit("no n<N>_steps<S> rows with a LiRA change in the results: run the frontier preset")
    return sorted(out, key=lambda p: p["ms"])


def plot(pts: list[dict], out: Path) -> None:
    """Two panels (AUC change, TPR@1%FPR change) against ms/input, with 95% CIs as error bars."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, title in ((axes[0], "auc", "LiRA AUC change"), (axes[1], "tpr", "LiRA TPR@1%FPR change")):
        for p in pts:
            if p[key] is None:
                continue
            low, high = p[f"{key}_ci"]
            ax.errorbar(p["ms"], p[key], yerr=[[p[key] - low], [high - p[key]]], fmt="o", capsize=3)
            ax.annotate(p["label"], (p["ms"], p[key]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([5, 10, 20, 50, 100], labels=["5", "10", "20", "50", "100"])
        ax.set_xlabel("Diffence ms per input (2 CPU threads)")
        ax.set_title(title + " vs undefended")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="results.json of the frontier preset")
    parser.add_argument("costs", help="JSON of bench_reconstruct.py --frontier")
    parser.add_argument("--out", default="docs/frontier.png")
    args = parser.parse_args()
    pts = points(json.loads(Path(args.results).read_text()), json.loads(Path(args.costs).read_text()))
    plot(pts, Path(args.out))
    for p in pts:
        print(f"{p['label']}: {p['ms']:.1f} ms/input, LiRA AUC {p['auc']:+.3f} [{p['auc_ci'][0]:+.3f}, "
              f"{p['auc_ci'][1]:+.3f}]" + ("" if p["tpr"] is None else
                                          f", TPR@1% {p['tpr']:+.3f} [{p['tpr_ci'][0]:+.3f}, {p['tpr_ci'][1]:+.3f}]"))


if __name__ == "__main__":
    main()
