"""The scoring of the built-in attacks on one defense's releases, under the audit's protocol: fitted on the
attacker's first half of known records, chosen on its second half, measured on the evaluation records
(``scored_attack``); the row they make (``DefenseRow``) and its change from the undefended row
(``compare_to``). ``families`` puts them behind the one attack interface."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from diffence_plugin.attacks.attacker import AttackerView
from diffence_plugin.attacks.lira import LIRA_VARIANTS, logit_confidence
from diffence_plugin.attacks.metrics import (
    AttackResult,
    auc_difference,
    choose_best,
    fit_threshold,
    membership_metrics,
    tpr_difference,
)
from diffence_plugin.attacks.releases import Released
from diffence_plugin.attacks.rmia import RMIA, fit_offline_a
from diffence_plugin.attacks.roles import MembershipSplit
from diffence_plugin.attacks.threshold import threshold_attacks


@dataclass
class DefenseRow:
    """One line of the results table: the attacker's chosen attack, LiRA and RMIA, and every attack."""

    defense: str
    train_accuracy: float
    test_accuracy: float
    best: AttackResult
    attacks: list[AttackResult] = field(default_factory=list)
    labels_kept: float = 1.0
    reference_aware: bool | None = None  # None: no reference-model attacks were run
    spread: dict | None = None  # over the defense's selection draws: mean and sd per figure
    change: dict | None = None  # AUC change from the undefended row, with a paired interval
    versus_labels: dict | None = None  # the same change from the labels-only row, where the audit has one
    utility: dict | None = None  # ECE, NLL, Brier of the released vectors on evaluation non-members / members

    def attack(self, prefix: str) -> AttackResult | None:
        """The attack of this family (e.g. "lira", "rmia") the attacker would pick on its selection records."""
        family = [a for a in self.attacks if a.attack.startswith(prefix)]
        return choose_best(family) if family else None

    def to_dict(self, scores: bool = True) -> dict:
        lira, rmia, floor = self.attack("lira"), self.attack("rmia"), self.attack("correctness")
        return {"defense": self.defense, "train_accuracy": self.train_accuracy, "test_accuracy": self.test_accuracy,
                "labels_kept": self.labels_kept, "reference_aware": self.reference_aware,
                "best": self.best.to_dict(scores=False), "lira": lira.to_dict(scores=False) if lira else None,
                "rmia": rmia.to_dict(scores=False) if rmia else None,
                "correctness": floor.to_dict(scores=False) if floor else None,
                "spread": self.spread, "change": self.change, "versus_labels": self.versus_labels,
                "utility": self.utility,
                "attacks": [a.to_dict(scores=scores) for a in self.attacks]}


@dataclass(frozen=True)
class Sets:
    """The record sets every attack uses: fit, select (attacker's halves) and evaluation, plus population."""

    fit: tuple[np.ndarray, np.ndarray]
    select: tuple[np.ndarray, np.ndarray]
    evaluation: tuple[np.ndarray, np.ndarray]
    population: np.ndarray

    @classmethod
    def of(cls, split: MembershipSplit) -> "Sets":
        fit, select = split.attacker_halves()
        return cls(fit, select, (split.eval_members, split.eval_nonmembers), split.population)


def released_by_index(released: Released, split: MembershipSplit) -> dict[int, np.ndarray]:
    """Map each queried dataset index to its released vector (``gather`` reads it back in any order)."""
    table = {}
    for role, probs in released.items():
        for i, row in zip(getattr(split, role), probs):
            table[int(i)] = row
    return table


def gather(table: dict[int, np.ndarray], indices: np.ndarray) -> np.ndarray:
    """The (S, K) released vectors of dataset ``indices`` from a ``released_by_index`` table."""
    return np.stack([table[int(i)] for i in indices])


def lira_attacks(released: Released, y: np.ndarray, split: MembershipSplit, view: AttackerView, *,
                 flipped: tuple[Released, AttackerView] | None = None, seed: int = 0,
                 bootstrap: int = 1000) -> list[AttackResult]:
    """LiRA's four variants on the attacker's reference models (``view``).

    ``flipped`` holds the same releases and reference answers for horizontally flipped queries (``hflip``);
    with it, four more LiRA variants (``..._flip``) add the two views' log-likelihood ratios, as the LiRA
    paper does for natural images. The attacker chooses among all variants on its own records.
    """
    sets = Sets.of(split)
    table = released_by_index(released, split)
    flip_table = released_by_index(flipped[0], split) if flipped is not None else None
    results = []

    def lira_scores(lira, indices, both):
        pos = view.positions(indices)
        target = logit_confidence(gather(table, indices), y[indices])
        refs = logit_confidence(view.probs[:, pos], y[indices])
        if both:
            fpos = flipped[1].positions(indices)
            target = np.stack([target, logit_confidence(gather(flip_table, indices), y[indices])], axis=-1)
            refs = np.stack([refs, logit_confidence(flipped[1].probs[:, fpos], y[indices])], axis=-1)
        return lira.score(target, refs, view.in_mask[:, pos])

    for both in (False, True) if flipped is not None else (False,):
        for lira in LIRA_VARIANTS:
            results.append(scored_attack(lira.name + ("_flip" if both else ""),
                                         lambda idx, lira=lira, both=both: lira_scores(lira, idx, both), sets, seed,
                                         bootstrap))
    return results


def rmia_attacks(released: Released, y: np.ndarray, split: MembershipSplit, view: AttackerView, *, seed: int = 0,
                 bootstrap: int = 1000) -> list[AttackResult]:
    """RMIA online, and offline with ``a`` fitted on the attacker's references; none without population records."""
    sets = Sets.of(split)
    if not len(sets.population):
        return []
    table = released_by_index(released, split)
    zpos = view.positions(sets.population)
    target_z = _true_probs(gather(table, sets.population), y[sets.population])
    refs_z = _true_probs(view.probs[:, zpos], y[sets.population])
    in_z = view.in_mask[:, zpos]
    own = view.positions(np.concatenate([*sets.fit, *sets.select]))
    own_y = y[view.universe[own]]
    a = fit_offline_a(_true_probs(view.probs[:, own], own_y), view.in_mask[:, own], refs_z, in_z)
    results = []
    for rmia in (RMIA(), RMIA(offline_a=a)):
        def rmia_scores(indices, rmia=rmia):
            pos = view.positions(indices)
            return rmia.score(_true_probs(gather(table, indices), y[indices]),
                              _true_probs(view.probs[:, pos], y[indices]), view.in_mask[:, pos],
                              target_z, refs_z, in_z)
        results.append(scored_attack(rmia.name, rmia_scores, sets, seed, bootstrap))
    return results


def reference_attacks(released: Released, y: np.ndarray, split: MembershipSplit, view: AttackerView, *,
                      flipped: tuple[Released, AttackerView] | None = None, seed: int = 0,
                      bootstrap: int = 1000) -> list[AttackResult]:
    """LiRA (``lira_attacks``) and RMIA (``rmia_attacks``) on the same reference models."""
    return (lira_attacks(released, y, split, view, flipped=flipped, seed=seed, bootstrap=bootstrap)
            + rmia_attacks(released, y, split, view, seed=seed, bootstrap=bootstrap))


def _true_probs(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(..., S) probability of each record's true label from (..., S, K) probabilities."""
    return probs[..., np.arange(labels.size), labels]


def scored_attack(name: str, score, sets: Sets, seed: int = 0, bootstrap: int = 1000) -> AttackResult:
    """Threshold from the fit half, selection AUC from the select half, metrics on the evaluation records.

    ``score`` is called once, on all six record sets together: a score that pools over its candidates (LiRA's
    global variance) must not be pooled over members and non-members separately, or the two sides are
    scored on different scales.
    """
    groups = [*sets.fit, *sets.select, *sets.evaluation]
    scores = np.asarray(score(np.concatenate(groups)))
    if scores.shape != (sum(len(g) for g in groups),):
        raise ValueError(f"attack {name!r} returned scores of shape {scores.shape} for {sum(map(len, groups))} records")
    fm, fn, sm, sn, em, en = np.split(scores, np.cumsum([len(g) for g in groups])[:-1])
    selection = float(roc_auc_score(np.r_[np.ones(sm.size), np.zeros(sn.size)], np.r_[sm, sn]))
    return membership_metrics(name, em, en, fit_threshold(fm, fn), selection_auc=selection, seed=seed,
                              bootstrap=bootstrap)


def threshold_suite(released: Released, y: np.ndarray, split: MembershipSplit, *, seed: int = 0,
                    bootstrap: int = 1000) -> list[AttackResult]:
    """The threshold attacks on one defense's releases (fit / select / evaluation as in ``Sets``)."""
    sets, table = Sets.of(split), released_by_index(released, split)
    pairs = [tuple((gather(table, idx), y[idx]) for idx in pair) for pair in (sets.fit, sets.select, sets.evaluation)]
    return threshold_attacks(*pairs, seed=seed, bootstrap=bootstrap)


def plugin_suite(released: Released, y: np.ndarray, split: MembershipSplit, attacks: dict, *, seed: int = 0,
                 bootstrap: int = 1000) -> list[AttackResult]:
    """Plugins' attacks (``name -> object with score(released, labels)``) under the audit's protocol."""
    sets, table = Sets.of(split), released_by_index(released, split)
    return [scored_attack(name, lambda idx, a=attack: a.score(gather(table, idx), y[idx]), sets, seed, bootstrap)
            for name, attack in attacks.items()]


def compare_to(row: DefenseRow, baseline: DefenseRow, seed: int = 0) -> dict:
    """AUC change of the chosen best attack and of LiRA from ``baseline``, and the change of each one's TPR at 1%
    FPR (where 1% is resolvable), with paired bootstrap intervals."""
    out = {}
    for key, pick in (("best", lambda r: r.best), ("lira", lambda r: r.attack("lira"))):
        after, before = pick(row), pick(baseline)
        if after is None or before is None:
            continue
        diff, ci = auc_difference(after, before, seed=seed)
        out[key] = {"auc_change": diff, "ci": list(ci), "attack": after.attack, "baseline_attack": before.attack}
        tpr = tpr_difference(after, before, 0.01, seed=seed)
        if tpr is not None:
            out[key]["tpr@0.01_change"], out[key]["tpr_ci"] = tpr[0], list(tpr[1])
    return out
