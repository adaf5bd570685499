"""A sweep's combined table and plot: every variant's rows side by side, from their results alone."""

from __future__ import annotations

from diffence_plugin.audit.results import Results

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffence_plugin.attacks.metrics import over_draws  # noqa: E402
from diffence_plugin.report.tables import format_auc, format_tpr  # noqa: E402

REPEATS = {"run.draw", "run.seed", "roles.seed"}  # a sweep over only these keys repeats one audit


def _values(variant: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in variant["values"].items())


def format_sweep_table(record: dict, results: list[Results]) -> str:
    """One Markdown row per variant and defense: the chosen attack, LiRA, LiRA's TPR at 1% FPR, RMIA, accuracy."""
    lines = ["| variant | defense | test acc | chosen attack | AUC [95% CI] | LiRA AUC | LiRA TPR@1%FPR | RMIA AUC |",
             "|---|---|---|---|---|---|---|---|"]
    for variant, res in zip(record["variants"], results):
        for row in res["rows"]:
            best = row["best"]
            accuracy = row.get("test_accuracy")
            lines.append(f"| {_values(variant)} | {row['defense']} | "
                         f"{'-' if accuracy is None else f'{accuracy:.4f}'} | {best['attack']} | {format_auc(best)} | "
                         f"{format_auc(row.get('lira'))} | {format_tpr(row.get('lira'))} | "
                         f"{format_auc(row.get('rmia'))} |")
    return "\n".join(lines)


def _scores(row: dict, family: str) -> tuple[list, list] | None:
    """The evaluation scores of the attack a row names for ``family`` ("best" or "lira")."""
    picked = row.get(family)
    hit = [a for a in row["attacks"] if picked and a["attack"] == picked["attack"] and "member_scores" in a]
    return (hit[0]["member_scores"], hit[0]["nonmember_scores"]) if hit else None


def repeats_summary(record: dict, results: list[Results], bootstrap: int = 1000) -> dict | None:
    """For a sweep that repeats one audit over seeds (``REPEATS``): per defense, the chosen attack's and LiRA's
    AUC and TPR at 1% FPR as mean ± sd over the repeats, with intervals that cover the records' sampling and
    the repeats (``attacks.metrics.over_draws``). None for a sweep over anything else."""
    if not set(record["over"]) <= REPEATS or len(results) < 2:
        return None
    summary = {}
    for name in [row["defense"] for row in results[0]["rows"]]:
        rows = [next(r for r in res["rows"] if r["defense"] == name) for res in results]
        summary[name] = {}
        for family in ("best", "lira"):
            pairs = [_scores(row, family) for row in rows]
            if all(pairs):
                summary[name][family] = over_draws(pairs, bootstrap=bootstrap)
    return summary


def format_repeats_table(summary: dict) -> str:
    """The repeats as one Markdown row per defense: mean ± sd [interval over records and repeats]."""
    def cell(figure: dict | None, pct: bool = False) -> str:
        if not figure:
            return "-"
        scale, unit = (100, "%") if pct else (1, "")
        low, high = figure["ci"]
        return (f"{scale * figure['mean']:.{1 if pct else 3}f}{unit} ± {scale * figure['sd']:.{1 if pct else 3}f} "
                f"[{scale * low:.{1 if pct else 3}f}, {scale * high:.{1 if pct else 3}f}]")
    lines = ["| defense | repeats | chosen attack AUC | LiRA AUC | LiRA TPR@1%FPR |", "|---|---|---|---|---|"]
    for name, families in summary.items():
        draws = next(iter(families.values()), {}).get("draws", "-")
        lira = families.get("lira", {})
        lines.append(f"| {name} | {draws} | {cell(families.get('best', {}).get('auc'))} | {cell(lira.get('auc'))} | "
                     f"{cell(lira.get('tpr@0.01'), pct=True)} |")
    return "\n".join(lines)


def plot_sweep(record: dict, results: list[Results], path: Path) -> Path:
    """The chosen attack's and LiRA's AUC (with 95% intervals) per defense across the variants."""
    labels = [_values(v) for v in record["variants"]]
    defenses = [row["defense"] for row in results[0]["rows"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, family in zip(axes, ("best", "lira")):
        for offset, name in enumerate(defenses):
            points = [(i, row[family]) for i, res in enumerate(results) for row in res["rows"]
                      if row["defense"] == name and row.get(family)]
            if not points:
                continue
            xs = [i + 0.06 * (offset - len(defenses) / 2) for i, _ in points]
            aucs = [r["auc"] for _, r in points]
            low = [r["auc"] - r["ci"]["auc"][0] for _, r in points]
            high = [r["ci"]["auc"][1] - r["auc"] for _, r in points]
            ax.errorbar(xs, aucs, yerr=[low, high], marker="o", capsize=3, lw=1, label=name)
        ax.axhline(0.5, color="black", lw=0.8, ls="--")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title("chosen attack" if family == "best" else "LiRA")
        ax.set_ylabel("AUC (95% CI)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{record['plan']}: " + " x ".join(record["over"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_sweep_report(record: dict, results: list[Results], out: Path) -> list[Path]:
    """``sweep.md`` (the table) and ``sweep.png`` (the plot) beside ``sweep.json``."""
    out = Path(out)
    table = out / "sweep.md"
    repeats = repeats_summary(record, results)
    over = ("\n\nOver the repeats: mean ± sd [95% interval over the evaluation records and the repeats]\n\n"
            + format_repeats_table(repeats)) if repeats else ""
    table.write_text(f"# {record['plan']}\n\n{format_sweep_table(record, results)}{over}\n")
    return [table, plot_sweep(record, results, out / "sweep.png")]
