"""Two audits of the same evaluation records, compared row by row with paired intervals.

An audit's own changes (``change`` in results.json) are paired against its undefended row. Comparing two runs
(a DDPM on public data against one on the members, one training recipe against another) needs the same
pairing across runs: both must score the same members and non-members in the same order, so that one
bootstrap resample of the records serves both and the records' own variance drops out of the difference.
``compare_results`` checks that (the runs' ``records`` digests, or for older results their split sections),
then gives, for every row both runs have, the change of the chosen attack's AUC, LiRA's AUC and LiRA's TPR at
1% FPR from run A to run B, and both runs' accuracy, labels kept and utility.
"""

from __future__ import annotations

from diffence_plugin.audit.results import Results, Row

import numpy as np

from diffence_plugin.attacks.metrics import (
    BOOTSTRAP,
    AttackResult,
    auc_difference,
    format_change,
    tpr_difference,
)

SPLIT_SECTIONS = ("data", "members", "roles")  # what fixes the evaluation records, for results without a digest


def same_records(a: dict, b: dict) -> str:
    """How the two runs were found to score the same evaluation records; raises ValueError where they do not."""
    da, db = (r.get("records", {}).get("evaluation") for r in (a, b))
    if da and db:
        if da != db:
            raise ValueError(f"the two runs score different evaluation records (digests {da} and {db})")
        return f"evaluation records digest {da}"
    differ = [s for s in SPLIT_SECTIONS if a.get("plan", {}).get(s) != b.get("plan", {}).get(s)]
    if differ or not all(s in a.get("plan", {}) for s in SPLIT_SECTIONS):
        raise ValueError("cannot show that the two runs score the same evaluation records: no records digest in "
                         f"both, and their plans' {', '.join(differ) or 'split sections'} differ")
    return f"the same plan sections {', '.join(SPLIT_SECTIONS)} (no records digest in both)"


def _attack(row: dict, pick: str) -> AttackResult | None:
    """The row's ``pick`` attack ("best" or "lira") with its evaluation scores, rebuilt from results.json."""
    if not row.get(pick):
        return None
    name = row[pick]["attack"]
    entry = next((a for a in row.get("attacks", []) if a.get("attack") == name), None)
    if entry is None or "member_scores" not in entry:
        raise ValueError(f"row {row['defense']!r}: results.json holds no evaluation scores for attack {name!r}")
    m, n = (np.asarray(entry[k], dtype=np.float64) for k in ("member_scores", "nonmember_scores"))
    return AttackResult(attack=name, auc=float(entry["auc"]), accuracy=float(entry["accuracy"]), tpr={},
                        tnr_at_low_fnr=None, ci={}, members=m.size, nonmembers=n.size, member_scores=m,
                        nonmember_scores=n)


def compare_rows(row_a: Row, row_b: Row, *, bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Row B against row A on the same records: AUC changes of the chosen attack and LiRA, LiRA's TPR change at
    1% FPR, each with its paired 95% interval, and both rows' accuracy, labels kept and non-member utility."""
    out: dict = {"defense": row_a["defense"]}
    for pick in ("best", "lira"):
        a, b = _attack(row_a, pick), _attack(row_b, pick)
        if a is None or b is None:
            continue
        change, ci = auc_difference(b, a, bootstrap=bootstrap, seed=seed)
        out[pick] = {"attacks": [a.attack, b.attack], "auc": [a.auc, b.auc], "auc_change": change, "ci": list(ci)}
        tpr = tpr_difference(b, a, 0.01, bootstrap=bootstrap, seed=seed) if pick == "lira" else None
        if tpr is not None:
            out[pick]["tpr@0.01_change"], out[pick]["tpr_ci"] = tpr[0], list(tpr[1])
    for key in ("test_accuracy", "labels_kept"):
        out[key] = [row_a.get(key), row_b.get(key)]
    out["utility"] = [(r.get("utility") or {}).get("nonmembers") for r in (row_a, row_b)]
    return out


def compare_results(a: Results, b: Results, *, rows: tuple[str, str] | None = None, bootstrap: int = BOOTSTRAP,
                    seed: int = 0) -> dict:
    """Every row (and canary row) both runs have, B against A, after checking they score the same records.

    ``rows = (row_a, row_b)`` pairs one named row of A with one named row of B instead, e.g. MemGuard alone
    against MemGuard after Diffence in the same run (A and B may be one results.json)."""
    how = same_records(a, b)
    out: dict = {"same_records": how, "rows": [], "canaries": []}
    for section, get in (("rows", lambda r: r.get("rows", [])),
                         ("canaries", lambda r: (r.get("canaries") or {}).get("rows", []))):
        rows_a, rows_b = ({r["defense"]: r for r in get(run)} for run in (a, b))
        if rows is None:
            pairs = [(name, name) for name in rows_a if name in rows_b]
        else:
            missing = [f"{which} has no row {name!r} (it has {', '.join(have) or 'none'})"
                       for which, name, have in (("A", rows[0], rows_a), ("B", rows[1], rows_b)) if name not in have]
            if missing and section == "rows":
                raise ValueError("; ".join(missing))
            pairs = [] if missing else [rows]
        for name_a, name_b in pairs:
            pair = compare_rows(rows_a[name_a], rows_b[name_b], bootstrap=bootstrap, seed=seed)
            pair["defense"] = name_a if name_a == name_b else f"{name_a} -> {name_b}"
            out[section].append(pair)
    if not out["rows"]:
        raise ValueError("the two runs have no row (defense label) in common")
    return out


def _pair(values: list, fmt: str = "{:.4f}") -> str:
    return " / ".join("-" if v is None else fmt.format(v) for v in values)


def format_comparison(comparison: dict, names: tuple[str, str] = ("A", "B")) -> str:
    """A markdown table of a ``compare_results`` answer: B's change from A per row."""
    a, b = names
    lines = [f"B = {b} against A = {a}; paired over {comparison['same_records']}", "",
             "| row | accuracy A / B | labels kept A / B | chosen AUC A / B | chosen AUC change [95% CI] | "
             "LiRA AUC A / B | LiRA AUC change [95% CI] | LiRA TPR@1%FPR change [95% CI] | ECE non-members A / B | "
             "NLL non-members A / B |", "|" + "---|" * 10]
    for section in ("rows", "canaries"):
        for r in comparison[section]:
            ece = [u and u.get("ece") for u in r["utility"]]
            nll = [u and u.get("nll") for u in r["utility"]]
            label = r["defense"] if section == "rows" else f"canaries: {r['defense']}"
            lines.append(f"| {label} | {_pair(r['test_accuracy'])} | {_pair(r['labels_kept'])} | "
                         f"{_pair(r.get('best', {}).get('auc', [None, None]), '{:.3f}')} | {format_change(r.get('best'))} | "
                         f"{_pair(r.get('lira', {}).get('auc', [None, None]), '{:.3f}')} | {format_change(r.get('lira'))} | "
                         f"{format_change(r.get('lira'), key='tpr@0.01_change', ci='tpr_ci')} | {_pair(ece, '{:.3f}')} | "
                         f"{_pair(nll, '{:.3f}')} |")
    return "\n".join(lines)
