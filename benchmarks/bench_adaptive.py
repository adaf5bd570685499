"""Adaptive attackers against Diffence on the demo setting: near-duplicate averaging per perturbation kind and
number of copies M, under the old key (raw float32 bytes) and the new ones (quantised, LSH); repeated exact
queries without the deterministic mode; the recovery curve beyond the quantisation radius; and the label-only
noise-robustness attack, alone and combined with the soft-label LiRA.

    python benchmarks/bench_adaptive.py --out runs/adaptive          # about 40 minutes on 2 CPU cores
    python benchmarks/bench_adaptive.py --out runs/adaptive-smoke --quick

Every figure is scored on the demo's 150 + 150 evaluation records; attacks are fitted on the attacker's
known records (which it queries the same adaptive way) and chosen on its held-out half. LiRA uses the
attacker's defense-aware references answering single queries. RMIA is left out (it would need the
population records queried M times too). Reconstructions are computed once per distinct (reconstructed
input, key) pair: copies that share both get the identical candidates (checked against a direct run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffence_plugin import Diffence, train_diffusion, tiny_unet_config
from diffence_plugin.data import digits_images
from diffence_plugin.evaluation.adaptive import (combine, label_only_lira, label_survival, perturbed_copies,
                                                 recovery)
from diffence_plugin.evaluation.lira import LiRA, logit_confidence
from diffence_plugin.evaluation.references import ReferenceRecipe, train_references
from diffence_plugin.evaluation.report import machine
from diffence_plugin.evaluation.attacker import attacker_universe, diffence_view, undefended_view
from diffence_plugin.evaluation.attacks import Sets, scored_attack
from diffence_plugin.evaluation.families import evaluate_defense
from diffence_plugin.outputs import Candidates
from diffence_plugin.randomness import experiment_seed
from demo_sizes import DemoSizes

ROLES4 = ("attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers")
DEFENSES = ("undefended", "scenario_1", "scenario_3")


class Releases:
    """Every defense's answer on batches of queries, for one Diffence key mode; reconstructions of the
    original records are kept, so a copy with the same reconstructed input and key reuses them."""

    def __init__(self, base: Diffence, model, defender: tuple[np.ndarray, np.ndarray]) -> None:
        self.base, self.model = base, model
        self.s1 = base.with_config(scenario=1)
        cm, cn = (base.candidates(model, torch.from_numpy(d)) for d in defender)
        self.s1.calibrate_from_candidates(cm, cn)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/adaptive")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the numbers")
    parser.add_argument("--table", help="only print the tables of an adaptive.json this script wrote")
    parser.add_argument("--condensed", action="store_true",
                        help="with --table: one row per perturbation, size and M; keys and scenarios as columns")
    args = parser.parse_args()
    if args.table:
        (print_condensed if args.condensed else print_tables)(json.loads(Path(args.table).read_text()))
        return
    start = time.perf_counter()
    s = DemoSizes.of(seed=args.seed)
    if args.quick:
        s = dataclasses.replace(s, ddpm_steps=40, n=6, references=4, target_epochs=30)
    x, y = digits_images()
    split = s.split(len(x))
    records = np.concatenate([getattr(split, r) for r in ROLES4])
    quiet = dataclasses.replace(split, population=np.zeros(0, dtype=np.int64))  # no RMIA: see the docstring
    recipe = ReferenceRecipe.from_training("digits_mlp", 10, 1, epochs=s.target_epochs, batch_size=64)
    model = recipe.train(x[split.members], y[split.members], s.seed)
    unet = tiny_unet_config(8, 1, width=s.ddpm_width)
    ddpm = train_diffusion(torch.from_numpy(x[split.members]), unet_config=unet, steps=s.ddpm_steps,
                           max_timestep=s.ddpm_max_timestep, seed=s.seed, progress=False)
    universe = attacker_universe(split, 2 * s.members)
    refs = train_references(recipe, x[universe], y[universe], s.references, seed=s.seed + 1, progress=False)
    attacker_ddpm = train_diffusion(torch.from_numpy(x[split.attacker_pool]), unet_config=unet, steps=s.ddpm_steps,
                                    max_timestep=s.ddpm_max_timestep, seed=s.seed + 1, progress=False)
    attacker = Diffence(attacker_ddpm, n=s.n, t=s.t, k=s.k, scenario=3, seed=experiment_seed(s.seed + 1),
                        output="logits", levels=16)
    images = attacker.reconstructions(torch.from_numpy(x[universe]))
    views = {"undefended": undefended_view(refs, x, universe)}
    views |= {f"scenario_{k}": diffence_view(refs, attacker.with_config(scenario=k), x, universe, images, split)
              for k in (1, 3)}
    print(f"setup {time.perf_counter() - start:.0f} s", flush=True)

    def evaluate(answers: dict[str, np.ndarray]) -> dict:
        return {d: evaluate_defense(d, released_roles(answers[d], split, records), None, y, quiet, view=views[d],
                                    seed=s.seed) for d in DEFENSES}

    big = 8 if args.quick else 64
    copies_of = {"raw": {"zero_sign": 8, "ulp": 8, "grey_level": 8, "gaussian": 8},  # M = 64: 1 h more of CPU
                 "quantised": {k: big for k in ("zero_sign", "ulp", "grey_level", "gaussian")},
                 "lsh": {k: big for k in ("zero_sign", "ulp", "grey_level", "gaussian")}}
    beyond = {"quantised": [1 / 16], "lsh": [1 / 16, 4 / 16]}  # one and four grey levels: past the quantum
    table, checks = [], {}
    defender = (x[split.defender_members], x[split.defender_nonmembers])
    for mode in ("raw", "quantised", "lsh"):
        base = Diffence(ddpm, n=s.n, t=s.t, k=s.k, scenario=3, seed=experiment_seed(s.seed), output="logits",
                        key=mode, levels=16)
        releases = Releases(base, model, defender)
        releases.remember(x[records])
        single = evaluate(releases(x[records]))
        runs = [(kind, 1 / 255, m) for kind, m in copies_of[mode].items()]
        runs += [("grey_level", size, 8) for size in beyond.get(mode, [])]
        for kind, size, most in runs:
            copies = perturbed_copies(x[records], kind, most, size=size, seed=s.seed + 7)
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
                                  **summarise(rows[d], single[d], s.seed)})
            print(f"{mode} {kind} size {size:.4f} M<={most}: {releases.reconstructed - before} reconstructions, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            save(args.out, {"settings": dataclasses.asdict(s), "rows": table, "checks": checks, "partial": True})

    # repeated exact queries without the deterministic mode (fresh noise per query)
    fresh = Releases(Diffence(ddpm, n=s.n, t=s.t, k=s.k, scenario=3, seed=experiment_seed(s.seed),
                              output="logits", deterministic=False, levels=16), model, defender)
    single = evaluate(fresh(x[records]))
    answers = [fresh(x[records]) for _ in range(8)]
    for m in (1, 8):
        rows = evaluate({d: np.mean([a[d] for a in answers[:m]], axis=0) for d in DEFENSES})
        for d in DEFENSES:
            table.append({"mode": "non-deterministic", "kind": "exact", "size": 0.0, "copies": m, "defense": d,
                          **summarise(rows[d], single[d], s.seed)})
    print(f"non-deterministic exact repeats: {time.perf_counter() - start:.0f} s", flush=True)

    label_only = label_only_attacks(model, refs, views, x, y, quiet, universe, records, s, evaluate,
                                    Releases(Diffence(ddpm, n=s.n, t=s.t, k=s.k, scenario=3,
                                                      seed=experiment_seed(s.seed), output="logits", levels=16),
                                             model, defender), checks, quick=args.quick)
    result = {"settings": dataclasses.asdict(s), "rows": table, "label_only": label_only, "checks": checks,
              "seconds": time.perf_counter() - start, "machine": machine()}
    save(args.out, result)
    print_tables(result)


def save(folder: str, result: dict) -> None:
    """Write ``adaptive.json`` (after every step, so a long run that is stopped keeps what it measured)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adaptive.json").write_text(json.dumps(result, indent=2, default=float))


def label_only_attacks(model, refs, views, x, y, quiet, universe, records, s, evaluate, releases, checks,
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
        candidates[sigma] = (scored_attack(f"survival_count@{sigma}", count, sets, s.seed),
                             scored_attack(f"survival_lira@{sigma}", lira, sets, s.seed), lira)
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
                                 sets, s.seed)
        out["combined"][d] = {"auc": combined.auc, "auc_ci": list(combined.ci["auc"]),
                              "tpr@0.01": combined.tpr.get(0.01), "soft_lira_auc": soft.auc,
                              "recovery_over_soft": recovery(combined, soft, seed=s.seed)}
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
    """Two markdown tables (chosen attack's AUC recovery; LiRA's TPR@1%FPR recovery in points), one row per
    perturbation, size and M, one column per key and Diffence scenario."""
    modes = [m for m in ("raw", "quantised", "lsh", "non-deterministic") if any(r["mode"] == m for r in result["rows"])]
    columns = [(m, d) for m in modes for d in ("scenario_1", "scenario_3")]
    cells = {(r["mode"], r["kind"], r["size"], r["copies"], r["defense"]): r for r in result["rows"]}
    keys = sorted({(r["kind"], r["size"], r["copies"]) for r in result["rows"]},
                  key=lambda k: (["exact", "zero_sign", "ulp", "grey_level", "gaussian"].index(k[0]), k[1], k[2]))
    header = "| perturbation | size | M | " + " | ".join(f"{m} {d[-1] and 'S' + d[-1]}" for m, d in columns) + " |"
    for title, cell in (
            ("chosen attack: AUC(averaged M copies) - AUC(single query) [95% CI]",
             lambda r: f"{r['best']['recovery']['auc_change']:+.3f} [{r['best']['recovery']['auc_ci'][0]:+.3f}, "
                       f"{r['best']['recovery']['auc_ci'][1]:+.3f}]"),
            ("LiRA: TPR@1%FPR(averaged) - TPR@1%FPR(single), points [95% CI]",
             lambda r: "n/a" if r["lira"]["recovery"]["tpr@0.01_change"] is None else
             f"{100 * r['lira']['recovery']['tpr@0.01_change']:+.1f} [{100 * r['lira']['recovery']['tpr@0.01_ci'][0]:+.1f},"
             f" {100 * r['lira']['recovery']['tpr@0.01_ci'][1]:+.1f}]")):
        print(f"\n{title}\n\n{header}\n|" + "---|" * (3 + len(columns)))
        for kind, size, m in keys:
            row = [cell(cells[(mode, kind, size, m, d)]) if (mode, kind, size, m, d) in cells else "-"
                   for mode, d in columns]
            print(f"| {kind} | {size:.4f} | {m} | " + " | ".join(row) + " |")
    base = {(r["mode"], r["defense"]): r for r in result["rows"] if r["copies"] == 1 and r["kind"] == "zero_sign"}
    print("\nsingle-query chosen-attack AUC per key: " + "; ".join(
        f"{m} {d}: {r['best']['auc'] - r['best']['recovery']['auc_change']:.3f}" for (m, d), r in base.items()))


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
