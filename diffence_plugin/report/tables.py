"""The report's tables, as Markdown text, from an audit's results (what the commands print)."""

from __future__ import annotations

from diffence_plugin.audit.results import Results

from diffence_plugin.attacks.metrics import format_change, resolvable


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


def _points(change: dict | None) -> str:
    """A TPR change in percentage points with its interval: "-0.7 points [-12.0, +4.0]"."""
    if not change or change.get("tpr@0.01_change") is None:
        return "n/a (1% FPR is below the resolution)"
    low, high = change["tpr_ci"]
    return f"{100 * change['tpr@0.01_change']:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}]"


def _direction(change: dict | None) -> str:
    """Whether a paired interval of an AUC change shows a decrease, an increase, or neither."""
    if not change:
        return "unknown"
    low, high = change["ci"]
    return "lower" if high < 0 else "higher" if low > 0 else "not measurably different"


def verdict(results: Results) -> list[str]:
    """One sentence per defended row, what a reader needs first: the change in the strongest attacker's AUC
    and TPR at 1% FPR against the undefended model and against labels only (the floor at no accuracy cost),
    and whether labels only would protect more. The intervals cover the evaluation records' sampling, for one
    draw of the defense's and the attacker's seeds."""
    rows = results["rows"]
    floor = next((d["label"] for d in results.get("plan", {}).get("defenses", []) if d["name"] == ["labels_only"]),
                 None)
    accuracy = {r["defense"]: r["test_accuracy"] for r in rows}
    side = {"lower": "leaks less than", "higher": "leaks more than", "not measurably different": "leaks about as "
            "much as"}
    lines = []
    for r in rows[1:]:
        change = (r.get("change") or {}).get("best")
        text = (f"{r['defense']}: the strongest attack's AUC changes by {format_change(change)} and its TPR at 1% FPR "
                f"by {_points(change)} against the undefended model")
        if r["defense"] == floor:
            text += "; this row is the floor, the released labels alone"
        elif (versus := (r.get("versus_labels") or {}).get("best")) is not None:
            text += (f"; against labels only, AUC {format_change(versus)} and TPR {_points(versus)}: it "
                     f"{side[_direction(versus)]} labels only"
                     + (", which keeps the same accuracy" if accuracy[r["defense"]] == accuracy[floor] else ""))
        lines.append(text + ".")
    return lines


def format_verdict(results: Results) -> str:
    """The verdict as the commands print it: a heading, one line per defense, and what the intervals cover."""
    lines = verdict(results)
    if not lines:
        return ""
    return "\n".join(["Verdict (95% intervals over the evaluation records; one draw of the defense's and the "
                      "attacker's seeds):", *[f"- {line}" for line in lines]])


def format_table(results: Results) -> str:
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


def format_change_table(results: Results) -> str:
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


def format_utility_table(results: Results) -> str:
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


def training_note(results: Results) -> str:
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


def format_seed_table(results: Results) -> str:
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


def format_attack_table(results: Results) -> str:
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


def summary_tables(results: Results, every_attack: bool = False) -> str:
    """What a command prints when an audit ends: the results, the changes, the utility, the defense seeds,
    every attack's AUC (``every_attack``) and the training note, those that have anything to show."""
    tables = [format_verdict(results), format_table(results), format_change_table(results), format_utility_table(results),
              format_seed_table(results), format_attack_table(results) if every_attack else "", training_note(results)]
    return "\n\n".join(t for t in tables if t)
