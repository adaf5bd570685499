"""The threshold attacks of Song & Mittal (and the Diffence paper), with per-class thresholds.

Each attack turns a released probability vector and the record's true label into one score. The attacker
fits, for every class, the direction (are members above or below?) and the threshold on its own known
members and non-members; a class with too few known records uses the global fit. The per-class fit becomes
one continuous score, ``direction_c * score - threshold_c`` (member when >= 0), so AUC and TPR at low FPR
are read off one ROC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from diffence_plugin.attacks.metrics import (
    AttackResult,
    check_probabilities,
    fit_threshold,
    membership_metrics,
)

_EPS = 1e-30
MIN_PER_CLASS = 3  # known members and non-members a class needs for its own threshold


def _true_class(probs, labels):
    return probs[np.arange(len(labels)), labels]



def _log_true_and_rest(probs, labels):
    """log p_y and log(1 - p_y), the latter from the other classes' mass so that it stays exact near p_y = 1."""
    py = _true_class(probs, labels)
    others = probs.copy()
    others[np.arange(len(labels)), labels] = 0.0
    rest = others.sum(axis=1)
    log_rest = np.log(np.clip(rest, _EPS, None))
    log_true = np.where(py < 0.5, np.log(np.clip(py, _EPS, None)), np.log1p(-np.clip(rest, 0.0, 0.5)))
    return log_true, log_rest


def loss_score(probs, labels):
    """Negative cross-entropy: members have lower loss."""
    return _log_true_and_rest(probs, labels)[0]


def confidence_score(probs, labels):
    """Confidence in the true class on the logit scale of Carlini et al., log(p_y / (1 - p_y)).

    Rank-equivalent to p_y (so the same AUC in exact arithmetic) but free of ties where p_y rounds to 1.
    """
    log_true, log_rest = _log_true_and_rest(probs, labels)
    return log_true - log_rest


def entropy_score(probs, labels):
    """Negative prediction entropy: members get sharper predictions."""
    return np.sum(probs * np.log(np.clip(probs, _EPS, 1.0)), axis=1)


def modified_entropy_score(probs, labels):
    """Negative modified entropy of Song & Mittal (USENIX Security 2021)."""
    log_true, log_rest = _log_true_and_rest(probs, labels)
    log_1mp = np.log(np.clip(1.0 - probs, _EPS, 1.0))
    other = probs * log_1mp
    other[np.arange(len(labels)), labels] = 0.0
    mentr = -np.exp(log_rest) * log_true - other.sum(axis=1)
    return -mentr


def correctness_score(probs, labels):
    """1 where the prediction is correct: the gap attack of Yeom et al."""
    return (probs.argmax(axis=1) == labels).astype(np.float64)


THRESHOLD_ATTACKS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "loss": loss_score,
    "confidence": confidence_score,
    "entropy": entropy_score,
    "modified_entropy": modified_entropy_score,
    "correctness": correctness_score,
}


@dataclass(frozen=True)
class ClassThresholds:
    """Per-class direction (+1: members score higher) and threshold, with a global fallback."""

    direction: dict[int, float]
    threshold: dict[int, float]
    global_direction: float
    global_threshold: float

    def __call__(self, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        d = np.array([self.direction.get(int(c), self.global_direction) for c in labels])
        t = np.array([self.threshold.get(int(c), self.global_threshold) for c in labels])
        return d * scores - t


def _direction(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    truth = np.r_[np.ones(member_scores.size), np.zeros(nonmember_scores.size)]
    return 1.0 if roc_auc_score(truth, np.r_[member_scores, nonmember_scores]) >= 0.5 else -1.0


def fit_class_thresholds(member_scores: np.ndarray, member_labels: np.ndarray, nonmember_scores: np.ndarray,
                         nonmember_labels: np.ndarray, min_per_class: int = MIN_PER_CLASS) -> ClassThresholds:
    """Fit a direction and a balanced-accuracy threshold per class on known records."""
    gd = _direction(member_scores, nonmember_scores)
    gt = fit_threshold(gd * member_scores, gd * nonmember_scores)
    direction, threshold = {}, {}
    for c in np.union1d(member_labels, nonmember_labels):
        m, n = member_scores[member_labels == c], nonmember_scores[nonmember_labels == c]
        if m.size >= min_per_class and n.size >= min_per_class:
            d = _direction(m, n)
            direction[int(c)], threshold[int(c)] = d, fit_threshold(d * m, d * n)
    return ClassThresholds(direction, threshold, gd, gt)


Records = tuple[np.ndarray, np.ndarray]  # (released probabilities (S, K), labels (S,))


def threshold_attacks(fit: tuple[Records, Records], select: tuple[Records, Records],
                      evaluation: tuple[Records, Records], attacks: list[str] | None = None, *,
                      bootstrap: int = 1000, seed: int = 0) -> list[AttackResult]:
    """Run the threshold attacks: fit on ``fit``, AUC for choosing on ``select``, metrics on ``evaluation``.

    Each argument is (members, non-members), each of those (released probabilities, labels).
    """
    names = ("fit members", "fit non-members", "selection members", "selection non-members",
             "evaluation members", "evaluation non-members")
    sets = [check_probabilities(*pair, name=f"{name} probs") for pair, name in zip((*fit, *select, *evaluation), names)]
    classes = {s[0].shape[1] for s in sets}
    if len(classes) != 1:
        raise ValueError(f"all probability sets must have the same number of classes, got {sorted(classes)}")
    results = []
    for name in attacks or list(THRESHOLD_ATTACKS):
        if name not in THRESHOLD_ATTACKS:
            raise ValueError(f"unknown threshold attack {name!r}; choose from {list(THRESHOLD_ATTACKS)}")
        score = THRESHOLD_ATTACKS[name]
        raw = [score(p, y) for p, y in sets]
        rule = fit_class_thresholds(raw[0], sets[0][1], raw[1], sets[1][1])
        calibrated = [rule(s, y) for s, (_, y) in zip(raw, sets)]
        truth = np.r_[np.ones(calibrated[2].size), np.zeros(calibrated[3].size)]
        selection = float(roc_auc_score(truth, np.r_[calibrated[2], calibrated[3]]))
        results.append(membership_metrics(name, calibrated[4], calibrated[5], 0.0, selection_auc=selection,
                                          bootstrap=bootstrap, seed=seed))
    return results
