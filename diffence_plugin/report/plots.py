"""The report's figures: ROC curves on log axes and phi histograms, drawn from an audit's results alone."""

from __future__ import annotations

from diffence_plugin.audit.results import Results

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def plot_roc(results: Results, path: Path) -> Path:
    """Log-log ROC curves of the chosen attack and of LiRA per defense, from the per-record scores."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    for ax, family in zip(axes, ("best", "lira")):
        for r in results["rows"]:
            picked = r.get(family)
            hit = [a for a in r["attacks"] if picked and a["attack"] == picked["attack"]]
            if not hit or "member_scores" not in hit[0]:
                continue
            a = hit[0]
            truth = np.r_[np.ones(len(a["member_scores"])), np.zeros(len(a["nonmember_scores"]))]
            fpr, tpr, _ = roc_curve(truth, np.r_[a["member_scores"], a["nonmember_scores"]], drop_intermediate=False)
            ax.plot(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), label=f"{r['defense']} ({a['attack']})", lw=1.2)
        resolution = results["rows"][0]["best"]["fpr_resolution"]
        ax.plot([1e-4, 1], [1e-4, 1], color="black", lw=0.8, ls="--", label="chance")
        ax.axvline(resolution, color="grey", lw=0.8, ls=":",
                   label=f"FPR resolution 1/{results['rows'][0]['best']['nonmembers']}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(max(resolution / 2, 1e-4), 1)
        ax.set_ylim(1e-3, 1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("chosen attack" if family == "best" else "LiRA (chosen variant)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not on them
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_phi_histograms(phis: dict, path: Path, intervals: dict | None = None) -> Path:
    """phi of evaluation members vs non-members per defense (``results["phi"]``) (the paper's Figures 3-4), on one shared phi axis
    and bins, with each calibrated selection interval marked. Densities keep their own scale per panel:
    MemGuard's spike would flatten every other panel."""
    cols = min(3, len(phis))
    rows = -(-len(phis) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False, sharex=True)
    roles = (("eval_members", "tab:red"), ("eval_nonmembers", "tab:blue"))
    scores = {name: {role: np.asarray(values[role], dtype=float) for role, _ in roles} for name, values in phis.items()}
    point = {name: _one_value(s) for name, s in scores.items()}  # one-hot releases: phi is one huge value
    spread = [v for name, s in scores.items() if point[name] is None for v in s.values()]
    every = np.concatenate(spread or [v for s in scores.values() for v in s.values()])
    edges = np.histogram_bin_edges(every[np.isfinite(every)], bins=40)
    for ax in axes.flat[len(phis):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, phis):
        if point[name] is not None and spread:  # kept off the shared axis, which it would flatten
            ax.text(0.5, 0.5, "every release is one vector shape (one-hot: phi is infinite)\nnothing to histogram",
                    transform=ax.transAxes, ha="center", va="center", fontsize=9)
            ax.set_title(name)
            continue
        for role, colour in roles:
            ax.hist(scores[name][role], bins=edges, alpha=0.55, color=colour, density=True,
                    label=role.replace("eval_", ""))
        interval = (intervals or {}).get(name)
        if interval:
            ax.axvspan(*interval, color="tab:green", alpha=0.12, label="calibrated selection interval")
        ax.set_title(name)
        ax.set_xlabel("phi = log(p_max / (1 - p_max))")
    for ax in axes.flat:
        ax.set_ylabel("density")
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(list(legend.values()), list(legend.keys()), loc="lower center", ncol=len(legend), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _one_value(scores: dict) -> float | None:
    """The single phi every release of a defense has (labels only), or None when the releases vary."""
    values = np.concatenate(list(scores.values()))
    return float(values[0]) if values.size and np.allclose(values, values[0]) else None
