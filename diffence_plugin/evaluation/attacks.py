"""Every attack against one defense's releases, under the audit's protocol: fitted on the attacker's first
half of known records, chosen on its second half, measured on the evaluation records (``evaluate_defense``),
with changes from the undefended row (``compare_to``) and the spread over Diffence's selection draws."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..data.models import reinitialised
from ..defense import Diffence
from ..outputs import Candidates
from .attacker import AttackerView, shadow_pool
from .lira import LIRA_VARIANTS, logit_confidence
from .metrics import (AttackResult, accuracy, auc_difference, choose_best, fit_threshold, membership_metrics,
                      tpr_difference)
from .protocol import MembershipSplit
from .releases import Released, onehot, release_all
from .rmia import RMIA, fit_offline_a
from .threshold import threshold_attacks
from .utility import utility_metrics


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
                "spread": self.spread, "change": self.change, "utility": self.utility,
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


def _by_index(released: Released, split: MembershipSplit) -> dict[int, np.ndarray]:
    """Map each queried dataset index to its released vector."""
    table = {}
    for role, probs in released.items():
        for i, row in zip(getattr(split, role), probs):
            table[int(i)] = row
    return table


def _gather(table: dict[int, np.ndarray], indices: np.ndarray) -> np.ndarray:
    return np.stack([table[int(i)] for i in indices])


def reference_attacks(released: Released, y: np.ndarray, split: MembershipSplit, view: AttackerView, *,
                      flipped: tuple[Released, AttackerView] | None = None, seed: int = 0,
                      bootstrap: int = 1000) -> list[AttackResult]:
    """LiRA (four variants) and RMIA (online, and offline with ``a`` fitted on the attacker's references).

    ``flipped`` holds the same releases and reference answers for horizontally flipped queries (``hflip``);
    with it, four more LiRA variants (``..._flip``) add the two views' log-likelihood ratios, as the LiRA
    paper does for natural images. The attacker chooses among all variants on its own records.
    """
    sets = Sets.of(split)
    table = _by_index(released, split)
    flip_table = _by_index(flipped[0], split) if flipped is not None else None
    results = []

    def lira_scores(lira, indices, both):
        pos = view.positions(indices)
        target = logit_confidence(_gather(table, indices), y[indices])
        refs = logit_confidence(view.probs[:, pos], y[indices])
        if both:
            fpos = flipped[1].positions(indices)
            target = np.stack([target, logit_confidence(_gather(flip_table, indices), y[indices])], axis=-1)
            refs = np.stack([refs, logit_confidence(flipped[1].probs[:, fpos], y[indices])], axis=-1)
        return lira.score(target, refs, view.in_mask[:, pos])

    for both in (False, True) if flipped is not None else (False,):
        for lira in LIRA_VARIANTS:
            results.append(scored_attack(lira.name + ("_flip" if both else ""),
                                   lambda idx, lira=lira, both=both: lira_scores(lira, idx, both), sets, seed,
                                   bootstrap))

    if len(sets.population):
        zpos = view.positions(sets.population)
        target_z = _true_probs(_gather(table, sets.population), y[sets.population])
        refs_z = _true_probs(view.probs[:, zpos], y[sets.population])
        in_z = view.in_mask[:, zpos]
        own = view.positions(np.concatenate([*sets.fit, *sets.select]))
        own_y = y[view.universe[own]]
        a = fit_offline_a(_true_probs(view.probs[:, own], own_y), view.in_mask[:, own], refs_z, in_z)
        for rmia in (RMIA(), RMIA(offline_a=a)):
            def rmia_scores(indices, rmia=rmia):
                pos = view.positions(indices)
                return rmia.score(_true_probs(_gather(table, indices), y[indices]),
                                  _true_probs(view.probs[:, pos], y[indices]), view.in_mask[:, pos],
                                  target_z, refs_z, in_z)
            results.append(scored_attack(rmia.name, rmia_scores, sets, seed, bootstrap))
    return results


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
    sets, table = Sets.of(split), _by_index(released, split)
    pairs = [tuple((_gather(table, idx), y[idx]) for idx in pair) for pair in (sets.fit, sets.select, sets.evaluation)]
    return threshold_attacks(*pairs, seed=seed, bootstrap=bootstrap)


def art_suite(released: Released, x: np.ndarray, y: np.ndarray, split: MembershipSplit, estimator, target, model,
              attacks: tuple[str, ...], defended: bool, shadow_answer=None, seed: int = 0) -> list[AttackResult]:
    """ART's attacks. ``estimator`` answers through the defense; ``target`` is the undefended ART classifier.

    The shadow-model attack trains shadows of the target's own architecture on ``shadow_pool``; they answer
    through ``shadow_answer`` (e.g. a ``ShadowDiffence``: defense-aware) or, when it is None, undefended.
    The rule-based attack sees labels only, which Diffence keeps: it is run on undefended rows.
    """
    from ..adapters import art_attacks

    sets, table = Sets.of(split), _by_index(released, split)
    nb_classes = target.nb_classes

    def data(idx):
        return art_attacks.AttackData(x[idx], onehot(y[idx], nb_classes), _gather(table, idx))

    fit, select, evaluation = ((data(a), data(b)) for a, b in (sets.fit, sets.select, sets.evaluation))
    results = []
    for attack in attacks:
        if attack in art_attacks.BLACK_BOX:
            results.append(art_attacks.black_box(estimator, attack, fit, select, evaluation, seed=seed))
        elif attack == "shadow_models":
            pool = shadow_pool(split, 2 * len(split.members))
            shadow = art_attacks.AttackData(x[pool], onehot(y[pool], nb_classes))
            template = art_attacks.probability_classifier(reinitialised(model, seed), target.input_shape,
                                                          nb_classes)
            results.append(art_attacks.shadow_models(estimator, template, shadow, select, evaluation,
                                                     answer=shadow_answer, seed=seed))
        elif attack == "rule_based" and not defended:
            results.append(art_attacks.rule_based(target, select, evaluation, seed=seed))
        elif attack not in ("rule_based",):
            raise ValueError(f"unknown ART attack {attack!r}; choose from {sorted(art_attacks.BLACK_BOX)}, "
                             "shadow_models, rule_based")
    return results


def plugin_suite(released: Released, y: np.ndarray, split: MembershipSplit, attacks: dict, *, seed: int = 0,
                 bootstrap: int = 1000) -> list[AttackResult]:
    """Plugins' attacks (``name -> object with score(released, labels)``) under the audit's protocol."""
    sets, table = Sets.of(split), _by_index(released, split)
    return [scored_attack(name, lambda idx, a=attack: a.score(_gather(table, idx), y[idx]), sets, seed, bootstrap)
            for name, attack in attacks.items()]


def evaluate_defense(name: str, released: Released, x: np.ndarray, y: np.ndarray, split: MembershipSplit, *,
                     view: AttackerView | None = None, flipped: tuple[Released, AttackerView] | None = None,
                     art: dict | None = None, kept: float = 1.0, seed: int = 0, bootstrap: int = 1000,
                     threshold: bool = True, plugins: dict | None = None) -> DefenseRow:
    """All attacks on one defense's releases; ``art`` holds ``art_suite``'s keyword arguments (or None), and
    ``flipped`` the releases and reference answers on flipped queries (see ``reference_attacks``);
    ``threshold`` False leaves out the threshold attacks (the label-only floor among them); ``plugins`` are
    plugins' attacks by name (``plugin_suite``)."""
    results = threshold_suite(released, y, split, seed=seed, bootstrap=bootstrap) if threshold else []
    if plugins:
        results += plugin_suite(released, y, split, plugins, seed=seed, bootstrap=bootstrap)
    if view is not None:
        results += reference_attacks(released, y, split, view, flipped=flipped, seed=seed, bootstrap=bootstrap)
    if art is not None:
        results += art_suite(released, x, y, split, seed=seed, **art)
    utility = {side: utility_metrics(released[role], y[getattr(split, role)], seed=seed, bootstrap=bootstrap)
               for side, role in (("nonmembers", "eval_nonmembers"), ("members", "eval_members"))}
    return DefenseRow(defense=name, train_accuracy=accuracy(released["eval_members"], y[split.eval_members]),
                      test_accuracy=accuracy(released["eval_nonmembers"], y[split.eval_nonmembers]),
                      best=choose_best(results), attacks=results, labels_kept=kept,
                      reference_aware=None if view is None else view.aware, utility=utility)


def compare_to(row: DefenseRow, baseline: DefenseRow, seed: int = 0) -> dict:
    """AUC change of the chosen best attack and of LiRA from ``baseline``, and the change of LiRA's TPR at 1%
    FPR (where 1% is resolvable), with paired bootstrap intervals."""
    out = {}
    for key, pick in (("best", lambda r: r.best), ("lira", lambda r: r.attack("lira"))):
        after, before = pick(row), pick(baseline)
        if after is None or before is None:
            continue
        diff, ci = auc_difference(after, before, seed=seed)
        out[key] = {"auc_change": diff, "ci": list(ci), "attack": after.attack, "baseline_attack": before.attack}
        if key == "lira":
            tpr = tpr_difference(after, before, 0.01, seed=seed)
            if tpr is not None:
                out[key]["tpr@0.01_change"], out[key]["tpr_ci"] = tpr[0], list(tpr[1])
    return out


def selection_spread(defense: Diffence, cands: dict[str, Candidates], y: np.ndarray, split: MembershipSplit,
                     view: AttackerView | None, draws: int, seed: int = 0, post=None) -> dict:
    """Mean and sd, over ``draws`` fresh selection draws (reconstructions fixed), of the chosen attack's AUC
    and of LiRA's AUC and TPR at 1% FPR (threshold, LiRA and RMIA attacks; no intervals inside).

    ``post(role, probs)``, if given, is applied to every release, for a post-processing defense stacked on
    Diffence (e.g. HAMP's output modification).
    """
    figures: dict[str, list[float]] = {"best_auc": [], "lira_auc": [], "lira_tpr@0.01": []}
    for draw in range(draws):
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, draw]).generate_state(1)[0]))
        released = release_all(defense, {r: c.redraw(gen) for r, c in cands.items()})
        if post is not None:
            released = {r: post(r, p) for r, p in released.items()}
        row = evaluate_defense("draw", released, None, y, split, view=view, seed=seed, bootstrap=0)
        figures["best_auc"].append(row.best.auc)
        lira = row.attack("lira")
        if lira is not None:
            figures["lira_auc"].append(lira.auc)
            if lira.tpr.get(0.01) is not None:
                figures["lira_tpr@0.01"].append(lira.tpr[0.01])
    return {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "draws": len(v)}
            for k, v in figures.items() if v}
