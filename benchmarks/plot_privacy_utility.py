"""The privacy-utility plane of issue 26 §1: every audited row of one or more engine runs as a point, LiRA's
AUC (with its 95% CI) against accuracy (on the evaluation non-members, the row's ``test_accuracy``) and against the released vectors' ECE on evaluation non-members,
with an arrow from each run's target alone (its ``undefended`` row: the training defense, or none) to the same
target with each output defense (Diffence scenarios, labels only, MemGuard).

    diffence reproduce cifar10 --preset stacking --data ../shared/data/cifar10 --out runs/reproduce-stacking
    diffence reproduce cifar10 --preset stacking --data ../shared/data/cifar10 --out runs/reproduce-stacking-relaxloss \
        --set 'target.train.defense="relaxloss"' --set 'target.train.options={"alpha": 0.5}'
    python benchmarks/plot_privacy_utility.py none=runs/reproduce-stacking/results.json \
        relaxloss=runs/reproduce-stacking-relaxloss/results.json --out docs/figures/stacking_privacy_utility.png

Each run is named on the command line (``name=path``); the figures are read from the runs' ``results.json``,
nothing is recomputed. ``--table`` also prints them as one markdown table, each row's changes paired against
its own run's undefended row (``diffence compare`` pairs rows across runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffence_plugin.attacks.metrics import format_change
from diffence_plugin.report import format_auc, format_tpr
from diffence_plugin.audit.results import load_results

SHORT = {"scenario_1": "S1", "scenario_2": "S2", "scenario_3": "S3", "labels_only": "labels", "mean": "mean",
         "memguard": "MG", "diffence+memguard": "S1+MG", "hamp_output": "HO",
         "diffence+hamp_output": "S1+HO"}


def points(name: str, results: dict) -> list[dict]:
    """One point per audited row of ``results``: its accuracy, ECE and LiRA AUC with CI."""
    out = []
    for row in results["rows"]:
        lira, utility = row.get("lira"), (row.get("utility") or {}).get("nonmembers")
        if not lira or not utility or row.get("test_accuracy") is None:
            continue
        out.append({"run": name, "defense": row["defense"], "accuracy": row["test_accuracy"], "ece": utility["ece"],
                    "auc": lira["auc"], "auc_ci": lira["ci"]["auc"]})
    if not any(p["defense"] == "undefended" for p in out):
        raise SystemExit(f"{name}: no undefended row with LiRA and utility figures in its results.json")
    return out


def plot(runs: dict[str, list[dict]], out: Path, legend: str = "target trained with") -> None:
    """Two panels (LiRA AUC against test accuracy and against ECE); arrows from each run's undefended row."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (name, pts), colour in zip(runs.items(), colours * 4):
        base = next(p for p in pts if p["defense"] == "undefended")
        for ax, key in ((axes[0], "accuracy"), (axes[1], "ece")):
            for p in pts:
                low, high = p["auc_ci"]
                marker = "s" if p is base else "o"
                ax.errorbar(p[key], p["auc"], yerr=[[p["auc"] - low], [high - p["auc"]]], fmt=marker,
                            color=colour, capsize=2, ms=5, label=name if p is base and key == "ece" else None)
                if p is not base:
                    ax.annotate(SHORT.get(p["defense"], p["defense"]), (p[key], p["auc"]), textcoords="offset points",
                                xytext=(4, -3), fontsize=7, color=colour)
                if p is not base:
                    ax.annotate("", (p[key], p["auc"]), (base[key], base["auc"]),
                                arrowprops={"arrowstyle": "->", "color": colour, "lw": 0.8})
    axes[1].legend(title=legend, fontsize=8)
    axes[0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    axes[0].set_xlabel("accuracy (evaluation non-members)")
    axes[1].set_xlabel("ECE of the released vectors (evaluation non-members)")
    axes[0].set_ylabel("LiRA AUC (95% CI)")
    fig.suptitle("privacy against utility: each run's target alone (square) and with each output defense")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def table(runs: dict[str, dict]) -> str:
    """One markdown row per audited row of every run: accuracy, the chosen attack's and LiRA's AUC, LiRA's TPR
    at 1% FPR, ECE and NLL on evaluation non-members, and the paired changes from the run's undefended row."""
    lines = ["| target trained with | rows | accuracy | chosen attack | chosen AUC [95% CI] | LiRA AUC [95% CI] | "
             "LiRA TPR@1%FPR [95% CI] | chosen AUC change [95% CI] | LiRA AUC change [95% CI] | "
             "LiRA TPR@1%FPR change (fraction) [95% CI] | ECE | NLL |", "|" + "---|" * 12]
    for name, results in runs.items():
        for row in results["rows"]:
            best, lira = row.get("best"), row.get("lira")
            utility, change = (row.get("utility") or {}).get("nonmembers") or {}, row.get("change") or {}
            if not best or not lira:
                continue
            cells = [name, "alone" if row["defense"] == "undefended" else f"+ {row['defense']}",
                     f"{row['test_accuracy']:.4f}", best["attack"], format_auc(best), format_auc(lira),
                     format_tpr(lira),
                     format_change(change.get("best")), format_change(change.get("lira")),
                     format_change(change.get("lira"), key="tpr@0.01_change", ci="tpr_ci"),
                     f"{utility['ece']:.3f}" if utility else "-", f"{utility['nll']:.3f}" if utility else "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RESULTS", help="a name and an engine run's results.json")
    parser.add_argument("--out", default="docs/privacy_utility.png")
    parser.add_argument("--legend", default="target trained with", help="what the run names stand for")
    parser.add_argument("--table", action="store_true", help="also print every row as one markdown table")
    args = parser.parse_args()
    runs, loaded = {}, {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{item!r}: expected NAME=path/to/results.json")
        try:
            loaded[name] = load_results(path)
            runs[name] = points(name, loaded[name])
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"{name}: {exc}") from exc
    plot(runs, Path(args.out), args.legend)
    if args.table:
        print(table(loaded) + "\n")
    for name, pts in runs.items():
        for p in pts:
            print(f"{name:>12} {p['defense']:<12} accuracy {p['accuracy']:.3f}  ECE {p['ece']:.3f}  LiRA AUC "
                  f"{p['auc']:.3f} [{p['auc_ci'][0]:.3f}, {p['auc_ci'][1]:.3f}]")


if __name__ == "__main__":
    main()
