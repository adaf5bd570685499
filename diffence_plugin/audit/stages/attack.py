"""Stage 4, attack: every attack family on every release, the attacker's choice made on its own records,
changes with paired intervals, selection-draw spread, the canaries, and the spread over further defense seeds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from diffence_plugin.attacks.families import (
    SPREAD_FAMILIES,
    evaluate_defense,
    plan_families,
    selection_spread,
)
from diffence_plugin.attacks.releases import labels_kept
from diffence_plugin.attacks.roles import CANARY_ROLES, CANARY_WORDS, MembershipSplit
from diffence_plugin.attacks.scoring import compare_to
from diffence_plugin.audit.plan import Plan
from diffence_plugin.audit.stages.arm import Armed
from diffence_plugin.audit.stages.defend import (
    Defended,
    Defense,
    Reconstructions,
    _release_fast,
    build_defense,
    tune_t,
)
from diffence_plugin.audit.stages.prepare import Prepared
if TYPE_CHECKING:
    from diffence_plugin.audit.context import RunContext
from diffence_plugin.progress import phase


class Attacks:
    """The attack families a plan turns on (``families.plan_families``), built once, and the attacker's views
    and shadows they use on each release."""

    def __init__(self, plan: Plan, prep: Prepared, armed: Armed) -> None:
        self.plan, self.prep, self.armed = plan, prep, armed
        self.families = plan_families(plan.attacks)
        self.spread_families = [f for f in self.families if f.name in SPREAD_FAMILIES]

    def row(self, label: str, released: dict, flipped: dict | None, kept: float, defense: Defense | None,
            split: MembershipSplit | None = None):
        """One defense's row: every attack on ``released`` (and ``flipped`` queries), with intervals, scored on
        the evaluation records of ``split`` (default: the audit's)."""
        run, prep = self.plan.run, self.prep
        view = self.armed.views.get("", {}).get(label)
        flip = None
        if flipped is not None and view is not None:
            flip = (flipped, self.armed.views["flip"][label])
        return evaluate_defense(label, released, prep.x, prep.y, split or prep.split, view=view, flipped=flip,
                                families=self.families, kept=kept, seed=run.seed, bootstrap=run.bootstrap,
                                pipeline=defense.pipeline if defense is not None else None, model=prep.model,
                                nb_classes=prep.nb_classes, shadow_answer=self.armed.shadows.get(label))


def attack(ctx: RunContext, prep: Prepared, defended: Defended, suite: Attacks) -> list:
    """Stage 4: every attack on every release; changes from the undefended row; selection-draw spread."""
    plan, log, timings = ctx.plan, ctx.log, ctx.timings
    draws, seed = plan.attacks.selection_draws, plan.run.seed
    with phase("[5/6] attacking every defense (threshold, LiRA, RMIA, ART)", timings, "attacks_s", log):
        armed = suite.armed
        released = defended.released[""]
        kept = labels_kept(released)
        rows = []
        for label, probs in released.items():
            defense = defended.defenses.get(label)
            flipped = defended.released["flip"][label] if "flip" in defended.released else None
            row = suite.row(label, probs, flipped, kept[label], defense)
            if defense is not None and defense.plain_diffence and draws > 1:
                row.spread = selection_spread(defense.diffence, defense.candidates, prep.y, prep.split,
                                              armed.views.get("", {}).get(label), draws, seed=seed,
                                              families=suite.spread_families)
            if rows:
                row.change = compare_to(row, rows[0], seed=seed)
            rows.append(row)
            log(f"      {label}: {row.best.attack} AUC {row.best.auc:.3f}")
        versus_labels_only(plan, rows, seed)
    return rows


def versus_labels_only(plan: Plan, rows: list, seed: int) -> None:
    """Each defended row's change from the labels-only row (the floor at no accuracy cost), where there is one."""
    floor = next((d.label for d in plan.defenses if d.name == ["labels_only"]), None)
    baseline = next((r for r in rows if r.defense == floor), None)
    if baseline is None:
        return
    for row in rows[1:]:
        if row is not baseline:
            row.versus_labels = compare_to(row, baseline, seed=seed)


def as_evaluation(released: dict) -> dict:
    """A release with its canaries in place of its evaluation records (read with ``canary_split``)."""
    out = {r: p for r, p in released.items() if r not in CANARY_ROLES}
    out["eval_members"], out["eval_nonmembers"] = released["canary_members"], released["canary_nonmembers"]
    return out


def attack_canaries(ctx: RunContext, prep: Prepared, defended: Defended, suite: Attacks) -> list:
    """Stage 4b: every attack on every release again, scored on the canaries alone (the worst case), fitted
    and chosen on the attacker's records as in the average case; changes from the undefended canary row.
    Empty without ``[roles].canaries``."""
    plan, log, timings = ctx.plan, ctx.log, ctx.timings
    if not len(prep.split.canary_members):
        return []
    split, seed = prep.split.canary_split(), plan.run.seed
    kind = CANARY_WORDS[plan.roles.canary_kind]
    with phase(f"[5/6] the canaries: {len(split.eval_members)} {kind} members and as many non-members",
               timings, "canaries_s", log):
        released, rows = defended.released[""], []
        kept = labels_kept(released)
        for label, probs in released.items():
            flipped = as_evaluation(defended.released["flip"][label]) if "flip" in defended.released else None
            row = suite.row(label, as_evaluation(probs), flipped, kept[label], defended.defenses.get(label), split)
            if rows:
                row.change = compare_to(row, rows[0], seed=seed)
            rows.append(row)
            lira = row.attack("lira")
            log(f"      {label} on the canaries: {row.best.attack} AUC {row.best.auc:.3f}"
                + (f", LiRA TPR@1%FPR {lira.tpr[0.01]:.3f}" if lira is not None and lira.tpr.get(0.01) is not None
                   else ""))
    return rows


def defense_seed_spread(ctx: RunContext, prep: Prepared, defended: Defended, suite: Attacks,
                        rows: list) -> dict | None:
    """Every plain Diffence row under ``[attacks].defense_seeds - 1`` further defense seeds, each reconstructing,
    calibrating (and choosing t) again, against the same attacker: per seed the chosen t, the chosen attack's
    AUC and the changes; over all seeds the mean and sd of each change."""
    plan, log, timings = ctx.plan, ctx.log, ctx.timings
    seeds, seed = plan.attacks.defense_seeds, plan.run.seed
    names = [label for label, d in defended.defenses.items() if d.plain_diffence]
    if seeds < 2 or not names:
        return None
    by_label = {r.defense: r for r in rows}
    per_seed = {n: [{"draw": 0, "t": defended.defenses[n].diffence.config.t, "best_auc": by_label[n].best.auc,
                     "best_attack": by_label[n].best.attack, "change": by_label[n].change}] for n in names}
    with phase(f"[5b/6] the defense's own noise: {seeds - 1} more defense seeds", timings, "defense_seeds_s", log):
        specs = {d.label: d for d in plan.defenses}
        for draw in range(1, seeds):
            recon = Reconstructions(prep, {"": prep.x}, defended.recon.executor, plan.run.shard_size)
            tuned, _ = tune_t(plan, prep, recon, draw)
            fresh = {n: build_defense(specs[n], prep, plan, draw, tuned) for n in names}
            released = {n: _release_fast(fresh[n], prep, recon, {"": prep.x})[""] for n in names}
            kept = labels_kept({"undefended": defended.released[""]["undefended"], **released})
            for n in names:
                row = suite.row(n, released[n], None, kept[n], fresh[n])
                per_seed[n].append({"draw": draw, "t": fresh[n].diffence.config.t, "best_auc": row.best.auc,
                                    "best_attack": row.best.attack, "change": compare_to(row, rows[0], seed=seed)})
                log(f"      defense seed {draw}, {n}: {row.best.attack} AUC {row.best.auc:.3f}")
    return {"seeds": seeds, "rows": per_seed, "summary": {n: _seed_summary(d) for n, d in per_seed.items()}}


def _seed_summary(draws: list[dict]) -> dict:
    figures = {"best": [d["change"]["best"]["auc_change"] for d in draws]}
    if all("lira" in d["change"] for d in draws):
        figures["lira"] = [d["change"]["lira"]["auc_change"] for d in draws]
        if all("tpr@0.01_change" in d["change"]["lira"] for d in draws):
            figures["lira_tpr@0.01"] = [d["change"]["lira"]["tpr@0.01_change"] for d in draws]
    return {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "seeds": len(v)} for k, v in figures.items()}
