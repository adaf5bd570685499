"""Tables, plots and a self-contained HTML report of an evaluation (matplotlib, images inlined, no network).

Every privacy figure is printed with its 95% bootstrap interval and the attack that produced it; a TPR at
an FPR below the resolution 1 / non-members prints as "n/a".
"""

from __future__ import annotations

import base64
import html
import os
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from ..select import phi  # noqa: E402
from .metrics import format_change, resolvable  # noqa: E402
from .protocol import CANARY_WORDS  # noqa: E402


def machine() -> dict:
    """What produced the numbers: CPU, cores, torch threads and library versions."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("diffence-plugin", "torch", "diffusers", "adversarial-robustness-toolbox", "opacus", "numpy",
                    "scikit-learn", "scipy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "versions": versions}


def machine_load(sample_s: float = 0.25) -> dict:
    """How busy this machine is now: cores, the 1-minute load average, the cores busy over ``sample_s`` (from
    /proc/stat, Linux), torch's threads and OpenMP's wait policy; an audit records it when it starts."""
    busy = None
    try:
        def ticks() -> tuple[int, int]:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # all, idle + iowait
        total0, idle0 = ticks()
        time.sleep(sample_s)
        total1, idle1 = ticks()
        busy = (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(1, total1 - total0))
    except (OSError, ValueError, IndexError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cores": os.cpu_count(), "load_1min": load, "busy_cores": busy, "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}


def describe_load(load: dict) -> str:
    """One line of ``machine_load``: what a run started with."""
    busy = "" if load["busy_cores"] is None else f", {load['busy_cores']:.1f} busy now"
    average = "" if load["load_1min"] is None else f"; load average {load['load_1min']:.2f}"
    return (f"torch threads {load['torch_threads']}, OpenMP wait policy {load['omp_wait_policy']}; "
            f"{load['cores']} cores{busy}{average}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ci(ci, pct: bool = False) -> str:
    if not ci:
        return ""
    low, high = ci
    return f" [{100 * low:.1f}, {100 * high:.1f}]" if pct else f" [{low:.3f}, {high:.3f}]"


def format_auc(result: dict | None) -> str:
    """An attack's AUC with its 95% interval, as the tables print it: "0.866 [0.858, 0.874]"."""
    if result is None:
        return "-"
    return f"{result['auc']:.3f}{_ci(result['ci'].get('auc'))}"


def format_tpr(result: dict | None, level: str = "0.01") -> str:
    """An attack's TPR at FPR ``level`` with its interval, in percent: "18.2% [15.5, 20.8]"."""
    if result is None:
        return "-"
    return _pct(result["tpr"].get(level)) + _ci(result["ci"].get(f"tpr@{level}"), pct=True)


def format_table(results: dict) -> str:
    """The main table as Markdown: accuracy, the attacker's chosen attack, LiRA, RMIA and the label-only floor.

    TPR at 0.1% FPR gets its own columns only where the evaluation non-members resolve it (at least 1,000)."""
    rows = results["rows"]
    nonmembers = rows[0]["best"]["nonmembers"]
    fine = resolvable(0.001, nonmembers)
    columns = ["defense", "test acc", "labels kept", "chosen attack", "AUC [95% CI]", "TPR@1%FPR", "LiRA AUC",
               "LiRA TPR@1%FPR", *(["TPR@0.1%FPR", "LiRA TPR@0.1%FPR"] if fine else []), "RMIA AUC",
               "label-only floor AUC"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        b = r["best"]
        cells = [r["defense"], f"{r['test_accuracy']:.4f}", f"{100 * r['labels_kept']:.1f}%", b["attack"],
                 format_auc(b), format_tpr(b), format_auc(r.get("lira")), format_tpr(r.get("lira")),
                 *([format_tpr(b, "0.001"), format_tpr(r.get("lira"), "0.001")] if fine else []),
                 format_auc(r.get("rmia")), format_auc(r.get("correctness"))]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"TPR at 0.1% FPR rests on {round(0.001 * nonmembers)} false positives" if fine
            else "TPR at 0.1% FPR is n/a")
    lines.append(f"\nFPR resolution 1/{nonmembers} = {100 / nonmembers:.3f}%: {note}.")
    return "\n".join(lines)


def format_change_table(results: dict) -> str:
    """AUC change from the undefended row (paired bootstrap), and the spread over Diffence's selection draws."""
    lines = ["| defense | chosen-attack AUC change [95% CI] | LiRA AUC change [95% CI] | "
             "LiRA TPR@1%FPR change [95% CI] | chosen AUC over draws (mean ± sd) | LiRA AUC over draws | references |",
             "|---|---|---|---|---|---|---|"]
    for r in results["rows"][1:]:
        change, spread = r.get("change") or {}, r.get("spread") or {}

        def draws(key):
            d = spread.get(key)
            return f"{d['mean']:.3f} ± {d['sd']:.3f} ({d['draws']})" if d else "-"

        aware = {True: "defense-aware", False: "defense-unaware", None: "-"}[r.get("reference_aware")]
        lines.append(f"| {r['defense']} | {format_change(change.get('best'))} | {format_change(change.get('lira'))} | "
                     f"{format_change(change.get('lira'), key='tpr@0.01_change', ci='tpr_ci')} | {draws('best_auc')} | "
                     f"{draws('lira_auc')} | {aware} |")
    return "\n".join(lines)


def format_utility_table(results: dict) -> str:
    """The utility of each row's released vectors: ECE (15 bins), NLL and Brier score on the evaluation
    non-members and members, with 95% bootstrap intervals. Labels only is the floor a soft release must beat."""
    lines = ["| defense | test acc | ECE non-members [95% CI] | NLL non-members [95% CI] | Brier non-members [95% CI] "
             "| ECE members | NLL members |", "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        u = r.get("utility")
        if not u:
            continue
        n, m = u["nonmembers"], u["members"]

        def cell(side: dict, key: str) -> str:
            return f"{side[key]:.3f}{_ci(side['ci'].get(key))}"

        lines.append(f"| {r['defense']} | {r['test_accuracy']:.4f} | {cell(n, 'ece')} | {cell(n, 'nll')} | "
                     f"{cell(n, 'brier')} | {m['ece']:.3f} | {m['nll']:.3f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def training_note(results: dict) -> str:
    """A warning when a model behind the numbers was trained against a time budget: the same command trains a
    different number of steps on another machine, so the numbers do not reproduce there."""
    runs = []
    for name, run in (results.get("training") or {}).items():
        parts = run.get("models", [run]) if isinstance(run, dict) else []
        runs += [(name, part) for part in parts if isinstance(part, dict) and part.get("stopped") == "time budget"]
    if not runs:
        return ""
    said = "; ".join(f"{name} stopped by its time budget after {run.get('steps')} steps" for name, run in runs)
    return (f"Not reproducible on another machine: {said}. Train by steps (the default) for numbers a rerun "
            "gives again.")


def format_seed_table(results: dict) -> str:
    """Each Diffence row under each defense seed (reconstructed and calibrated again), and the mean and sd over
    the seeds: the spread over the defense's own noise. Empty when the run used one seed."""
    noise = results.get("defense_seeds")
    if not noise:
        return ""
    lines = ["| defense | defense seed | t | chosen attack | chosen-attack AUC change [95% CI] | LiRA AUC change [95% CI] "
             "| LiRA TPR@1%FPR change [95% CI] |", "|---|---|---|---|---|---|---|"]
    for name, draws in noise["rows"].items():
        for d in draws:
            tpr = format_change(d["change"].get("lira"), key="tpr@0.01_change", ci="tpr_ci")
            lines.append(f"| {name} | {d['draw']} | {d['t']} | {d['best_attack']} | "
                         f"{format_change(d['change'].get('best'))} | {format_change(d['change'].get('lira'))} | {tpr} |")
        summary = noise["summary"][name]

        def spread(key):
            v = summary.get(key)
            return f"{v['mean']:+.3f} ± {v['sd']:.3f}" if v else "-"

        lines.append(f"| {name} | mean ± sd ({noise['seeds']}) | | | {spread('best')} | {spread('lira')} | "
                     f"{spread('lira_tpr@0.01')} |")
    return "\n".join(lines)


def format_attack_table(results: dict) -> str:
    """AUC of every attack (rows) under every defense (columns); the selection AUC decides the chosen one."""
    names = [r["defense"] for r in results["rows"]]
    attacks = []
    for r in results["rows"]:
        attacks += [a["attack"] for a in r["attacks"] if a["attack"] not in attacks]
    lines = ["| attack AUC | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for attack in attacks:
        cells = []
        for r in results["rows"]:
            hit = [a for a in r["attacks"] if a["attack"] == attack]
            cells.append(f"{hit[0]['auc']:.3f}" if hit else "same labels")
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_roc(results: dict, path: Path) -> Path:
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


def plot_phi_histograms(released: dict, path: Path, intervals: dict | None = None) -> Path:
    """phi of evaluation members vs non-members per defense (the paper's Figures 3-4), on one shared phi axis
    and bins, with each calibrated selection interval marked. Densities keep their own scale per panel:
    MemGuard's spike would flatten every other panel."""
    cols = min(3, len(released))
    rows = -(-len(released) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False, sharex=True)
    roles = (("eval_members", "tab:red"), ("eval_nonmembers", "tab:blue"))
    scores = {name: {role: phi(torch.log(torch.as_tensor(probs[role]).double().clamp_min(1e-300))).numpy()
                     for role, _ in roles} for name, probs in released.items()}
    point = {name: _one_value(s) for name, s in scores.items()}  # one-hot releases: phi is one huge value
    spread = [v for name, s in scores.items() if point[name] is None for v in s.values()]
    every = np.concatenate(spread or [v for s in scores.values() for v in s.values()])
    edges = np.histogram_bin_edges(every[np.isfinite(every)], bins=40)
    for ax in axes.flat[len(released):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, released):
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


def _html_table(markdown: str) -> str:
    rows = [line.strip("|").split("|") for line in markdown.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    notes = [line for line in markdown.splitlines() if line and not line.startswith("|")]

    def cells(r, tag):
        return "".join(f"<{tag}>{html.escape(c.strip())}</{tag}>" for c in r)
    table = ("<table><tr>" + cells(rows[0], "th") + "</tr>"
             + "".join("<tr>" + cells(r, "td") + "</tr>" for r in rows[1:]) + "</table>")
    return table + "".join(f"<p>{html.escape(n)}</p>" for n in notes)


def _settings_table(settings: dict) -> str:
    def show(value) -> str:  # nested tables in parentheses, lists in brackets, floats to 4 significant digits
        if isinstance(value, dict):
            return ", ".join(f"{k} ({show(v)})" if isinstance(v, dict) else f"{k} {show(v)}"
                             for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(map(show, value)) + "]"
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(show(v))}</td></tr>"
                   for k, v in settings.items())
    return f"<table class='settings'>{rows}</table>"


def canary_section(results: dict) -> str:
    """The canaries' own tables (the worst case, kept out of the rows above), or nothing without canaries."""
    canaries = results.get("canaries")
    if not canaries:
        return ""
    rows = {"rows": canaries["rows"]}
    shuffled = canaries.get("kind") == "shuffled_pixels"
    kind = CANARY_WORDS[canaries.get("kind", "flipped_labels")] + (" (out-of-distribution)" if shuffled else "")
    labels = "labels, which their shuffled images no longer show" if shuffled else "flipped labels"
    return (f"<h2>The canaries: {canaries['members']} {kind} members and {canaries['nonmembers']} "
            "non-members</h2><p>The most vulnerable records stand-in (Aerni, Zhang &amp; Tramer, CCS 2024): the same "
            "attacks, fitted and chosen on the attacker's records, scored on the canaries alone. Their \"test acc\" is "
            f"the accuracy on the canary non-members' {labels}, not the model's.</p>"
            f"{_html_table(format_table(rows))}{_html_table(format_change_table(rows))}")


def write_report(results: dict, released: dict, labels: dict, out_dir: Path) -> Path:
    """Write ``roc.png``, ``phi_histograms.png`` and a self-contained ``report.html`` to ``out_dir``."""
    out_dir = Path(out_dir)
    intervals = {name: (c["lo"], c["hi"]) for name, c in results.get("calibration", {}).items()}
    images = [plot_roc(results, out_dir / "roc.png"),
              plot_phi_histograms(released, out_dir / "phi_histograms.png", intervals)]
    pictures = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"</figure>" for p in images)
    calibration = "".join(f"<li>{html.escape(name)}: phi in [{c['lo']:.3f}, {c['hi']:.3f}]</li>"
                          for name, c in results.get("calibration", {}).items())
    m = results.get("machine", {})
    settings = results.get("settings", {})
    title = "Diffence evaluation" + (f": {settings['title']}" if settings.get("title") else "")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}}th{{background:#f4f4f4}}
table.settings td,table.settings th{{text-align:left;white-space:normal}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>95% bootstrap intervals in brackets. The chosen attack is the one with the highest AUC on the attacker's own
held-out records; it is then measured on the evaluation records. "n/a": the FPR is below the resolution
1 / non-members.</p>
{'<p><strong>' + html.escape(training_note(results)) + '</strong></p>' if training_note(results) else ''}
<h2>Results</h2>{_html_table(format_table(results))}
{'<h2>Utility of the released vectors</h2>' + _html_table(format_utility_table(results)) if format_utility_table(results) else ''}
<h2>Change from the undefended model, and the defense's own randomness</h2>{_html_table(format_change_table(results))}
{'<h2>The defense seed</h2>' + _html_table(format_seed_table(results)) if results.get('defense_seeds') else ''}
<h2>Every attack (AUC)</h2>{_html_table(format_attack_table(results))}
{canary_section(results)}
<h2>Curves and score distributions</h2>{pictures}
<h2>Calibration</h2><ul>{calibration}</ul>
<h2>Settings</h2>{_settings_table(results.get('settings', {}))}
<h2>Machine</h2>{_settings_table({k: v for k, v in m.items()})}
<p>Run time: {results.get('seconds', 0):.0f} s.</p></body></html>"""
    path = out_dir / "report.html"
    path.write_text(page)
    return path
