"""Plots and a self-contained HTML report of an evaluation (matplotlib, no network)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..select import phi  # noqa: E402


def plot_phi_histograms(released: dict, path: Path) -> Path:
    """One panel per defense: phi of the released vectors for evaluation members vs non-members (Fig. 4)."""
    cols = min(3, len(released))
    rows = -(-len(released) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    roles = (("eval_members", "tab:red"), ("eval_nonmembers", "tab:blue"))
    for ax in axes.flat[len(released):]:
        ax.set_visible(False)
    for ax, (name, probs) in zip(axes.flat, released.items()):
        scores = {role: phi(torch.log(torch.as_tensor(probs[role]).double().clamp_min(1e-300))).numpy()
                  for role, _ in roles}
        edges = np.histogram_bin_edges(np.concatenate(list(scores.values())), bins=30)
        for role, colour in roles:
            ax.hist(scores[role], bins=edges, alpha=0.55, color=colour, density=True, label=role.replace("eval_", ""))
        ax.set_title(name)
        ax.set_xlabel("phi = log(p_max / (1 - p_max))")
        ax.set_ylabel("density")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_best_auc(results: dict, path: Path) -> Path:
    """Bar chart of the best-attack AUC per defense."""
    names = [r["defense"] for r in results["rows"]]
    aucs = [r["best"]["auc"] for r in results["rows"]]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(names, aucs, color=["tab:gray"] + ["tab:green"] * (len(names) - 1))
    ax.axhline(0.5, color="black", lw=0.8, ls="--")
    ax.set_ylim(0.45, max(aucs) + 0.05)
    ax.set_ylabel("best-attack AUC")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: dict, released: dict, labels: dict, out_dir: Path) -> Path:
    """Write ``phi_histograms.png``, ``best_auc.png`` and ``report.html`` (images inlined) to ``out_dir``."""
    images = [plot_phi_histograms(released, out_dir / "phi_histograms.png"), plot_best_auc(results, out_dir / "best_auc.png")]
    def table(markdown: str) -> str:
        rows = [line.strip("|").split("|") for line in markdown.splitlines() if not line.startswith("|---")]
        cells = lambda r, tag: "".join(f"<{tag}>{html.escape(c.strip())}</{tag}>" for c in r)
        return ("<table><tr>" + cells(rows[0], "th") + "</tr>"
                + "".join("<tr>" + cells(r, "td") + "</tr>" for r in rows[1:]) + "</table>")
    pictures = "".join(
        f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">' for p in images)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Diffence evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}img{{max-width:100%;margin:1em 0}}</style></head>
<body><h1>Diffence evaluation</h1><p>{html.escape(str(results['settings']))}</p>
<h2>Best attack per defense</h2>{table(format_table(results))}
<h2>Every attack</h2>{table(format_attack_table(results))}
{pictures}<p>Run time: {results['seconds']:.0f} s, torch {html.escape(results['torch'])}.</p></body></html>"""
    path = out_dir / "report.html"
    path.write_text(page)
    return path


def format_table(results: dict) -> str:
    """The demo's main table as Markdown (also readable in a terminal)."""
    head = ("| defense | test acc | train acc | labels kept | best AUC | best attack acc | TPR@0.1%FPR | "
            "TNR@0.1%FNR |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in results["rows"]:
        b = r["best"]
        lines.append(f"| {r['defense']} | {r['test_accuracy']:.4f} | {r['train_accuracy']:.4f} | "
                     f"{100 * r['labels_kept']:.1f}% | {b['auc']:.3f} | {b['accuracy']:.3f} | "
                     f"{100 * b['tpr_at_low_fpr']:.1f}% | {100 * b['tnr_at_low_fnr']:.1f}% |")
    return "\n".join(lines)


def format_attack_table(results: dict) -> str:
    """AUC of every attack (rows) under every defense (columns)."""
    names = [r["defense"] for r in results["rows"]]
    attacks = [a["attack"] for a in results["rows"][0]["attacks"]]
    lines = ["| attack AUC | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for attack in attacks:
        cells = []
        for r in results["rows"]:
            hit = [a for a in r["attacks"] if a["attack"] == attack]
            cells.append(f"{hit[0]['auc']:.3f}" if hit else "same labels")
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
