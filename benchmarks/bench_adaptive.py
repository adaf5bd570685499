"""Adaptive attackers against Diffence on the demo setting: near-duplicate averaging per perturbation kind and
number of copies M, under the old key (raw float32 bytes) and the new ones (quantised, LSH); flat-region
queries (one grey level on the flattest pixels, references queried the same way); repeated exact queries
without the deterministic mode; the recovery curve beyond the quantisation radius; and the label-only
noise-robustness attack, alone and combined with the soft-label LiRA.

    python benchmarks/bench_adaptive.py --out runs/adaptive          # about 40 minutes on 2 CPU cores
    python benchmarks/bench_adaptive.py --out runs/adaptive-flat --only flat --flat-copies 64
    python benchmarks/bench_adaptive.py --out runs/adaptive-flat-stable --only flat --flat-modes lsh \\
        --flat-pick stable [--flat-relevance gradient]
    python benchmarks/bench_adaptive.py --out runs/adaptive-smoke --quick
    python benchmarks/bench_adaptive.py --out runs/adaptive-flat-cifar --only flat --preset cifar10-cpu \\
        --data ../shared/data/cifar10 --flat-modes lsh --flat-pick stable    # about 14 h on 2 CPU cores

The target, the defender's DDPM, the attacker's references, its own DDPM and its copy of each scenario come
from the audit engine's first three stages on the preset, the demo by default (``audit.run.run_stages``; kept
in ``OUT/engine``, so a rerun trains nothing again). Every figure is scored on the preset's evaluation records (the demo's 150 +
150); attacks are fitted on the attacker's known records (which it queries the same adaptive way) and chosen
on its held-out half. LiRA uses the attacker's defense-aware references: answering single queries for the
near-duplicate kinds, and the same M copies through its own Diffence for the flat-region attack. RMIA is left
out (it would need the population records queried M times too). Reconstructions are computed once per distinct
(reconstructed input, key) pair: copies that share both get the identical candidates (checked against a direct
run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffence_plugin import Diffence
from diffence_plugin.attacks.adaptive import (
    combine,
    input_relevance,
    label_only_lira,
    label_survival,
    perturbed_copies,
    recovery,
)
from diffence_plugin.attacks.attacker import (
    AttackerView,
    diffence_view,
    reference_candidates,
    undefended_view,
)
from diffence_plugin.attacks.families import evaluate_defense
from diffence_plugin.attacks.lira import LiRA, logit_confidence
from diffence_plugin.attacks.scoring import Sets, scored_attack
from diffence_plugin.audit.plan import load_preset
from diffence_plugin.audit.run import run_stages
from diffence_plugin.outputs import Candidates
from diffence_plugin.audit.machine import machine

ROLES4 = ("attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers")
DEFENSES = ("undefended", "scenario_1", "scenario_2", "scenario_3")


class Releases:
    """Every defense's answer on batches of queries, for one Diffence key mode; reconstructions of the
    original records are kept, so a copy with the same reconstructed input and key reuses them."""

    def __init__(self, base: Diffence, model, defender: tuple[np.ndarray, np.ndarray]) -> None:
        self.base, self.model = base, model
        self.s1, self.s2 = base.with_config(scenario=1), base.with_config(scenario=2)
        cm, cn = (base.candidates(model, torch.from_numpy(d)) for d in defender)
        self.s1.calibrate_from_candidates(cm, cn)
        self.s2.calibrate_from_candidates(cm, None)
        self.cache: dict[bytes, torch.Tensor] = {}
        self.reconstructed = 0

    def _group(self, q: torch.Tensor) -> list[bytes]:
        inputs = self.base._reconstruction_input(q).numpy()
        return [a.tobytes() + b for a, b in zip(inputs, self.base.keys(q))]

    def remember(self, x: np.ndarray) -> None:
        q = torch.from_numpy(x)
        images = self.base.reconstructions(q)
        self.reconstructed += len(q)
        if self.base.config.deterministic:
            self.cache.update(zip(self._group(q), images))

    def candidates(self, x: np.ndarray) -> Candidates:
        q = torch.from_numpy(np.ascontiguousarray(x))
        if not self.base.config.deterministic:
            self.reconstructed += len(q)
            return self.base.candidates(self.model, q)
        groups = self._group(q)
        missing = [i for i, g in enumerate(groups) if g not in self.cache]
        images = torch.empty((len(q), self.base.config.n, *q.shape[1:]))
        if missing:
            images[missing] = self.base.reconstructions(q[missing])
            self.reconstructed += len(missing)
        hit = [i for i in range(len(q)) if i not in set(missing)]
        for i in hit:
            images[i] = self.cache[groups[i]]
        return self.base.candidates_from_reconstructions(self.model, q, images)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        cands = self.candidates(x)
        return {"undefended": cands.original_log_probs.exp().numpy(),
                "scenario_1": self.s1.release(cands).probs.numpy(),
                "scenario_2": self.s2.release(cands).probs.numpy(),
                "scenario_3": self.base.release(cands).probs.numpy()}


def released_roles(answers: np.ndarray, split, records: np.ndarray) -> dict[str, np.ndarray]:
    """Role -> rows of ``answers`` (aligned with ``records``)."""
    where = {int(i): p for p, i in enumerate(records)}
    return {r: answers[[where[int(i)] for i in getattr(split, r)]] for r in ROLES4}


def summarise(row, single, seed: int) -> dict:
    lira, lira_single = row.attack("lira"), single.attack("lira")
    return {"best": {"attack": row.best.attack, "auc": row.best.auc, "auc_ci": list(row.best.ci["auc"]),
                     "tpr@0.01": row.best.tpr.get(0.01), "recovery": recovery(row.best, single.best, seed=seed)},
            "lira": {"attack": lira.attack, "auc": lira.auc, "auc_ci": list(lira.ci["auc"]),
                     "tpr@0.01": lira.tpr.get(0.01), "recovery": recovery(lira, lira_single, seed=seed)}}


def engine_plan(args: argparse.Namespace) -> dict:
    """The preset (default the demo) with Scenarios 1-3 only, no ART attacks and no selection draws, in
    ``OUT/engine``."""
    overrides = [f"run.seed={args.seed}", f"roles.seed={args.seed}", "attacks.art=[]", "attacks.selection_draws=0",
                 "run.progress=false", f"run.out={json.dumps(str(Path(args.out) / 'engine'))}"]
    if args.data:
        overrides.append(f"data.folder={json.dumps(str(Path(args.data).resolve()))}")
    if args.quick:
        overrides += ["diffusion.steps=40", "attacks.references=4", "target.train.epochs=30"]
    plan = load_preset(args.preset, overrides + list(args.set))
    plan.defenses = [d for d in plan.defenses if d.label in DEFENSES]
    if args.quick:
        for d in plan.defenses:
            d.options["diffence"]["n"] = 6
    return plan


class ReferenceCopies:
    """The attacker's references answering the same perturbed copies the target is sent, through its own
    Diffence (one reconstruction per copy of each queried record, shared by the references and scenarios)."""

    def __init__(self, staged, attacker: Diffence, records: np.ndarray) -> None:
        self.refs, self.universe, self.attacker = staged.armed.references, staged.armed.copies.universe, attacker
        self.x, self.split, self.records = staged.prep.x, staged.prep.split, records
        self.base_images = attacker.reconstructions(torch.from_numpy(self.x[self.universe]))  # under its own key
        self.positions = {int(i): p for p, i in enumerate(self.universe)}
        self.at = np.array([self.positions[int(i)] for i in records])

    def views(self, copy: np.ndarray) -> dict[str, AttackerView]:
        """Each defense's view when every record in ``records`` is replaced by its ``copy``."""
        xc = self.x.copy()
        xc[self.records] = copy
        images = self.base_images.clone()
        images[torch.from_numpy(self.at)] = self.attacker.reconstructions(torch.from_numpy(xc[self.records]))
        cands = reference_candidates(self.refs, self.attacker, xc, self.universe, images)
        views = {"undefended": undefended_view(self.refs, xc, self.universe)}
        views |= {f"scenario_{k}": diffence_view(self.refs, self.attacker.with_config(scenario=k), xc, self.universe,
                                                  images, self.split, cands) for k in (1, 2, 3)}
        return views


def averaged_views(total: dict[str, np.ndarray], count: int, like: dict[str, AttackerView]) -> dict:
    return {d: AttackerView(total[d] / count, v.in_mask, v.universe, aware=v.aware) for d, v in like.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/adaptive")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the numbers")
    parser.add_argument("--preset", default="demo",
                        help="the engine preset (a preset other than the demo runs with --only flat, e.g. "
                             "cifar10-cpu with --data)")
    parser.add_argument("--data", help="the dataset folder of a preset that reads one (CIFAR-10)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a plan override, as `diffence reproduce --set` (repeatable)")
    parser.add_argument("--only", choices=("all", "flat"), default="all",
                        help="flat: only the flat-region attack (quantised and LSH keys, and fresh noise)")
    parser.add_argument("--flat-copies", type=int, default=64, help="the most copies M of the flat-region attack")
    parser.add_argument("--flat-modes", default="quantised,lsh", help="keys the flat-region attack is run against")
    parser.add_argument("--flat-pick", default="rank", choices=("rank", "stable"),
                        help="the selection's pick rule for the flat-region attack (target and attacker's copy)")
    parser.add_argument("--flat-relevance", default="contrast", choices=("contrast", "gradient"),
                        help="the flat pixels: smallest 3x3 local contrast, or smallest input gradient of the "
                             "attacker's first reference model (the generic, natural-image choice)")
    parser.add_argument("--table", help="only print the tables of an adaptive.json this script wrote")
    parser.add_argument("--condensed", action="store_true",
                        help="with --table: one row per perturbation, size and M; keys and scenarios as columns")
    args = parser.parse_args()
    if args.table:
        (print_condensed if args.condensed else print_tables)(json.loads(Path(args.table).read_text()))
        return
    if args.preset != "demo" and args.only != "flat":
        parser.error("a preset other than the demo runs the flat-region attack only: add --only flat")
    start = time.perf_counter()
    plan = engine_plan(args)
    staged = run_stages(plan, log=lambda line: print(line, flush=True))
    prep, seed = staged.prep, args.seed
    x, y, split, model = prep.x, prep.y, prep.split, prep.model
    records = np.concatenate([getattr(split, r) for r in ROLES4])
    quiet = dataclasses.replace(split, population=np.zeros(0, dtype=np.int64))  # no RMIA: see the docstring
    s3 = staged.defended.defenses["scenario_3"].diffence
    views = {d: staged.armed.views[""][d] for d in DEFENSES}
    settings = {"plan": plan.name, "flat_pick": args.flat_pick, "flat_relevance": args.flat_relevance,
                "n": s3.config.n, "t": s3.config.t, "k": s3.config.k,
                "levels": s3.config.levels, "references": plan.attacks.references, "seed": seed,
                "ddpm_steps": plan.diffusion.steps, "target_epochs": plan.target.train.epochs}
    print(f"setup {time.perf_counter() - start:.0f} s", flush=True)

    def evaluate(answers: dict[str, np.ndarray], against: dict | None = None) -> dict:
        return {d: evaluate_defense(d, released_roles(answers[d], split, records), None, y, quiet,
                                    view=(against or views)[d], seed=seed) for d in DEFENSES}

    table, checks = [], {}
    defender = (x[split.defender_members], x[split.defender_nonmembers])
    result = {"settings": settings, "rows": table, "checks": checks, "partial": True}
    if args.only == "all":
        near_duplicates(s3, model, defender, x, records, seed, evaluate, table, checks, args, result, start)
    mine = staged.armed.copies.get(s3)["mine"]
    relevance = None
    if args.flat_relevance == "gradient":  # the attacker's own model, on the labels it knows
        relevance = input_relevance(staged.armed.references.models[0], x[records], y[records])
    for mode in args.flat_modes.split(","):
        releases = Releases(s3.with_config(key=mode, pick=args.flat_pick), model, defender)
        copy = mine.with_config(key=mode, scenario=3, pick=args.flat_pick)
        label = mode + ("" if args.flat_pick == "rank" else f"+{args.flat_pick}") + \
            ("" if relevance is None else "+gradient")
        flat_region(releases, ReferenceCopies(staged, copy, records), label, x, records, seed, evaluate, table,
                    8 if args.quick else args.flat_copies, args, result, start, relevance=relevance)
    if args.only == "all":
        repeated_fresh(Releases(s3.with_config(deterministic=False), model, defender), x, records, seed, evaluate,
                       table)
        print(f"non-deterministic exact repeats: {time.perf_counter() - start:.0f} s", flush=True)
        result["label_only"] = label_only_attacks(model, staged.armed.references, views, x, y, quiet,
                                                  staged.armed.copies.universe, records, seed, evaluate,
                                                  Releases(s3, model, defender), checks, quick=args.quick)
    result.update(seconds=time.perf_counter() - start, machine=machine(), partial=False)
    save(args.out, result)
    print_tables(result)


def repeated_fresh(fresh: Releases, x, records, seed, evaluate, table) -> None:
    """Repeated exact queries without the deterministic mode: each answer a fresh draw."""
    single = evaluate(fresh(x[records]))
    answers = [fresh(x[records]) for _ in range(8)]
    for m in (1, 8):
        rows = evaluate({d: np.mean([a[d] for a in answers[:m]], axis=0) for d in DEFENSES})
        for d in DEFENSES:
            table.append({"mode": "non-deterministic", "kind": "exact", "size": 0.0, "copies": m, "defense": d,
                          **summarise(rows[d], single[d], seed)})


def near_duplicates(s3: Diffence, model, defender, x, records, seed, evaluate, table, checks, args, result,
                    start) -> None:
    """Averaged near-duplicates (sub-quantum kinds, and one and four grey levels) per key; references answer
    single queries."""
    big = 8 if args.quick else 64
    copies_of = {"raw": {"zero_sign": 8, "ulp": 8, "grey_level": 8, "gaussian": 8},  # M = 64: 1 h more of CPU
                 "quantised": {k: big for k in ("zero_sign", "ulp", "grey_level", "gaussian")},
                 "lsh": {k: big for k in ("zero_sign", "ulp", "grey_level", "gaussian")}}
    beyond = {"quantised": [1 / 16], "lsh": [1 / 16, 4 / 16]}  # one and four grey levels: past the quantum
    for mode in ("raw", "quantised", "lsh"):
        base = s3.with_config(key=mode)
        releases = Releases(base, model, defender)
        releases.remember(x[records])
        single = evaluate(releases(x[records]))
        runs = [(kind, 1 / 255, m) for kind, m in copies_of[mode].items()]
        runs += [("grey_level", size, 8) for size in beyond.get(mode, [])]
        for kind, size, most in runs:
            copies = perturbed_copies(x[records], kind, most, size=size, seed=seed + 7)
            if mode == "quantised" and kind == "gaussian":  # the cache must equal a direct run
                direct = base.candidates(model, torch.from_numpy(copies[0, :20]))
                cached = releases.candidates(copies[0, :20])
                checks["cached_equals_direct_max_abs"] = float(
                    (direct.candidate_log_probs - cached.candidate_log_probs).abs().max())
            before = releases.reconstructed
            answers = [releases(c) for c in copies]
            for m in sorted({1, 8, most} & set(range(1, most + 1))):
                averaged = {d: np.mean([a[d] for a in answers[:m]], axis=0) for d in DEFENSES}
                rows = evaluate(averaged)
                for d in DEFENSES:
                    table.append({"mode": mode, "kind": kind, "size": size, "copies": m, "defense": d,
                                  **summarise(rows[d], single[d], seed)})
            print(f"{mode} {kind} size {size:.4f} M<={most}: {releases.reconstructed - before} reconstructions, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            save(args.out, result)


def flat_region(releases: Releases, refs: ReferenceCopies, mode: str, x, records, seed, evaluate, table,
                most: int, args, result, start, relevance: np.ndarray | None = None) -> None:
    """The flat-region attack: copy c raises the c-th flattest pixel (by ``relevance`` when given) by one grey
    level (1/16 on digits); the target and the attacker's references are sent the same copies, and both
    averages go to the attacks."""
    single = evaluate(releases(x[records]), refs.views(x[records]))  # the references under the same key
    step = 1 / releases.base.config.levels  # one grey level
    copies = perturbed_copies(x[records], "flat", most, size=step, seed=seed + 7, relevance=relevance)
    totals, views_total = None, None
    checkpoints = sorted({1, 4, 16, 32, most} & set(range(1, most + 1)))
    for c, copy in enumerate(copies, 1):
        answer, views = releases(copy), refs.views(copy)
        totals = answer if totals is None else {d: totals[d] + answer[d] for d in DEFENSES}
        views_total = {d: v.probs for d, v in views.items()} if views_total is None else \
            {d: views_total[d] + views[d].probs for d in DEFENSES}
        if c in checkpoints:
            rows = evaluate({d: totals[d] / c for d in DEFENSES}, averaged_views(views_total, c, views))
            for d in DEFENSES:
                table.append({"mode": mode, "kind": "flat", "size": step, "copies": c, "defense": d,
                              **summarise(rows[d], single[d], seed)})
            print(f"{mode} flat M={c}: {time.perf_counter() - start:.0f} s", flush=True)
            save(args.out, result)


def save(folder: str, result: dict) -> None:
    """Write ``adaptive.json`` (after every step, so a long run that is stopped keeps what it measured)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adaptive.json").write_text(json.dumps(result, indent=2, default=float))


def label_only_attacks(model, refs, views, x, y, quiet, universe, records, seed: int, evaluate, releases, checks,
                       quick: bool) -> dict:
    """Choquette-Choo's noise robustness: survival counts scored directly and by LiRA, with sigma chosen on
    the attacker's selection records; then combined with the single-query soft-label LiRA."""
    queries = 16 if quick else 64
    sets = Sets.of(quiet)

    def labels(m):
        def run(batch):
            with torch.no_grad():
                return torch.softmax(m(torch.from_numpy(batch)).double(), -1).numpy()
        return run

    # Diffence releases each noisy query with the model's own label on it: check on a sample
    noisy = perturbed_copies(x[records[:40]], "gaussian", 1, size=0.2, seed=3)[0]
    kept = releases(noisy)
    checks["label_only_labels_equal_model"] = bool(all((kept[d].argmax(-1) == kept["undefended"].argmax(-1)).all()
                                                      for d in DEFENSES))
    positions = {int(i): p for p, i in enumerate(universe)}
    candidates = {}
    for sigma in (0.05, 0.1, 0.2, 0.3):
        target = label_survival(labels(model), x[universe], y[universe], sigma=sigma, queries=queries, seed=11)
        ref = np.stack([label_survival(labels(r), x[universe], y[universe], sigma=sigma, queries=queries, seed=11)
                        for r in refs.models])

        def count(idx, target=target):
            return target[[positions[int(i)] for i in idx]]

        pooled = label_only_lira(target, ref, refs.in_mask, queries)  # variance pooled over the whole universe

        def lira(idx, pooled=pooled):
            return pooled[[positions[int(i)] for i in idx]]
        candidates[sigma] = (scored_attack(f"survival_count@{sigma}", count, sets, seed),
                             scored_attack(f"survival_lira@{sigma}", lira, sets, seed), lira)
    sigma = max(candidates, key=lambda g: max(candidates[g][0].selection_auc, candidates[g][1].selection_auc))
    count_result, lira_result, lira_fn = candidates[sigma]
    out = {"sigma": sigma, "queries": queries,
           "count": {"auc": count_result.auc, "auc_ci": list(count_result.ci["auc"]),
                     "tpr@0.01": count_result.tpr.get(0.01)},
           "lira": {"auc": lira_result.auc, "auc_ci": list(lira_result.ci["auc"]), "tpr@0.01": lira_result.tpr.get(0.01)},
           "combined": {}}
    single = evaluate(releases(x[records]))
    for d in DEFENSES:
        soft = next(a for a in single[d].attacks if a.attack == "lira_online_global")
        soft_fn = soft_scores(views[d], releases, x, y, records, d)
        fit_m, fit_n = sets.fit
        score = combine(np.stack([lira_fn(fit_m), soft_fn(fit_m)], -1), np.stack([lira_fn(fit_n), soft_fn(fit_n)], -1))
        combined = scored_attack("survival_lira+soft_lira", lambda idx: score(np.stack([lira_fn(idx), soft_fn(idx)], -1)),
                                 sets, seed)
        out["combined"][d] = {"auc": combined.auc, "auc_ci": list(combined.ci["auc"]),
                              "tpr@0.01": combined.tpr.get(0.01), "soft_lira_auc": soft.auc,
                              "recovery_over_soft": recovery(combined, soft, seed=seed)}
    return out


def soft_scores(view, releases, x, y, records, defense):
    """LiRA (online, global variance) on the single-query release of ``defense``, scored once over all the
    attacker's and evaluation records (one pooled variance), then looked up by record."""
    answers = releases(x[records])[defense]
    pos = view.positions(records)
    pooled = LiRA().score(logit_confidence(answers, y[records]), logit_confidence(view.probs[:, pos], y[records]),
                          view.in_mask[:, pos])
    where = {int(i): p for p, i in enumerate(records)}
    return lambda idx: pooled[[where[int(i)] for i in idx]]


def print_condensed(result: dict) -> None:
    """Three markdown tables (the chosen attack's and LiRA's AUC recovery; LiRA's TPR@1%FPR recovery in points),
    one row per perturbation, size and M, one column per key (as the rows name it) and Diffence scenario."""
    modes = list(dict.fromkeys(r["mode"] for r in result["rows"]))
    columns = [(m, d) for m in modes for d in ("scenario_1", "scenario_2", "scenario_3")
               if any(r["mode"] == m and r["defense"] == d for r in result["rows"])]
    cells = {(r["mode"], r["kind"], r["size"], r["copies"], r["defense"]): r for r in result["rows"]}
    keys = sorted({(r["kind"], r["size"], r["copies"]) for r in result["rows"]},
                  key=lambda k: (["exact", "zero_sign", "ulp", "grey_level", "gaussian", "flat"].index(k[0]), k[1], k[2]))
    header = "| perturbation | size | M | " + " | ".join(f"{m} {d[-1] and 'S' + d[-1]}" for m, d in columns) + " |"
    for title, cell in (
            ("chosen attack: AUC(averaged M copies) - AUC(single query) [95% CI]",
             lambda r: f"{r['best']['recovery']['auc_change']:+.3f} [{r['best']['recovery']['auc_ci'][0]:+.3f}, "
                       f"{r['best']['recovery']['auc_ci'][1]:+.3f}]"),
            ("LiRA: AUC(averaged M copies) - AUC(single query) [95% CI]",
             lambda r: f"{r['lira']['recovery']['auc_change']:+.3f} [{r['lira']['recovery']['auc_ci'][0]:+.3f}, "
                       f"{r['lira']['recovery']['auc_ci'][1]:+.3f}]"),
            ("LiRA: TPR@1%FPR(averaged) - TPR@1%FPR(single), points [95% CI]",
             lambda r: "n/a" if r["lira"]["recovery"]["tpr@0.01_change"] is None else
             f"{100 * r['lira']['recovery']['tpr@0.01_change']:+.1f} [{100 * r['lira']['recovery']['tpr@0.01_ci'][0]:+.1f},"
             f" {100 * r['lira']['recovery']['tpr@0.01_ci'][1]:+.1f}]")):
        print(f"\n{title}\n\n{header}\n|" + "---|" * (3 + len(columns)))
        for kind, size, m in keys:
            row = [cell(cells[(mode, kind, size, m, d)]) if (mode, kind, size, m, d) in cells else "-"
                   for mode, d in columns]
            print(f"| {kind} | {size:.4f} | {m} | " + " | ".join(row) + " |")
    base = {(r["mode"], r["kind"], r["defense"]): r for r in result["rows"]
            if r["copies"] == 1 and r["kind"] in ("zero_sign", "flat")}
    print("\nsingle-query chosen-attack AUC per key (the zero_sign and flat runs' own single queries): " + "; ".join(
        f"{m} {k} {d}: {r['best']['auc'] - r['best']['recovery']['auc_change']:.3f}" for (m, k, d), r in base.items()))


def print_tables(result: dict) -> None:
    def ci(c):
        return f"[{c[0]:+.3f}, {c[1]:+.3f}]"

    def band(c):
        return f"[{c[0]:.3f}, {c[1]:.3f}]"

    def tpr(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    print("\n| key | perturbation | size | M | defense | chosen attack AUC | change [95% CI] | TPR@1%FPR change "
          "[95% CI] | LiRA AUC | LiRA change [95% CI] | LiRA TPR@1%FPR change [95% CI] |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def tpr_change(rec):
        if rec["tpr@0.01_change"] is None:
            return "n/a"
        lo, hi = rec["tpr@0.01_ci"]
        return f"{100 * rec['tpr@0.01_change']:+.1f} pt [{100 * lo:+.1f}, {100 * hi:+.1f}]"

    for r in result["rows"]:
        b, lira = r["best"], r["lira"]
        print(f"| {r['mode']} | {r['kind']} | {r['size']:.4f} | {r['copies']} | {r['defense']} | {b['auc']:.3f} "
              f"({b['attack']}) | {b['recovery']['auc_change']:+.3f} {ci(b['recovery']['auc_ci'])} | "
              f"{tpr_change(b['recovery'])} | {lira['auc']:.3f} | "
              f"{lira['recovery']['auc_change']:+.3f} {ci(lira['recovery']['auc_ci'])} | {tpr_change(lira['recovery'])} |")
    lo = result.get("label_only")
    if lo is None:
        print("\n(partial run: no label-only results)")
        return
    print(f"\nlabel-only (sigma {lo['sigma']}, {lo['queries']} queries; identical under every defense that keeps "
          f"labels): survival count AUC {lo['count']['auc']:.3f} {band(lo['count']['auc_ci'])}, TPR@1% "
          f"{tpr(lo['count']['tpr@0.01'])}; survival LiRA AUC {lo['lira']['auc']:.3f} {band(lo['lira']['auc_ci'])}, "
          f"TPR@1% {tpr(lo['lira']['tpr@0.01'])}")
    for d, c in lo["combined"].items():
        print(f"  combined with soft LiRA on {d}: AUC {c['auc']:.3f} {band(c['auc_ci'])} (soft alone {c['soft_lira_auc']:.3f},"
              f" change {c['recovery_over_soft']['auc_change']:+.3f} {ci(c['recovery_over_soft']['auc_ci'])})")
    print(f"\nchecks: {result['checks']}; {result['seconds']:.0f} s on {result['machine']}")


if __name__ == "__main__":
    main()
