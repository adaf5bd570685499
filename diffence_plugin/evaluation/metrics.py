"""Membership-inference metrics and the paper's threshold attacks (Song & Mittal), without ART.

Protocol: the attacker fits its threshold on its OWN known members and non-members; it is scored on
disjoint evaluation sets. AUC, TPR at low FPR and TNR at low FNR are read off the ROC curve of the
attacker's scores on the evaluation sets (threshold-free by definition); attack accuracy uses the
attacker's fitted threshold. With m evaluation non-members the smallest non-zero FPR is 1/m, so
"TPR at 0.1% FPR" is the TPR at FPR = 0 whenever m < 1000.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

_EPS = 1e-30


@dataclass(frozen=True)
class AttackResult:
    """One attack's success against one defense."""

    attack: str
    auc: float
    accuracy: float
    tpr_at_low_fpr: float  # TPR at FPR <= 0.1 %
    tnr_at_low_fnr: float  # TNR at FNR <= 0.1 %

    def to_dict(self) -> dict:
        return asdict(self)


def check_probabilities(probs: np.ndarray, labels: np.ndarray, name: str = "probs") -> tuple[np.ndarray, np.ndarray]:
    """Validate (S, K) probability rows and (S,) integer labels (one-hot labels are accepted)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"{name} must have shape (S, K) with S > 0, got {probs.shape}")
    if labels.shape != (probs.shape[0],):
        raise ValueError(f"labels must have shape ({probs.shape[0]},), got {labels.shape}")
    if not np.isfinite(probs).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (labels < 0).any() or (labels >= probs.shape[1]).any():
        raise ValueError(f"labels must lie in [0, {probs.shape[1] - 1}]")
    return probs, labels.astype(np.int64)


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


def fit_threshold(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """Threshold (predict member when score >= threshold) that maximises balanced accuracy on known data."""
    scores = np.concatenate([member_scores, nonmember_scores])
    truth = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    fpr, tpr, thresholds = roc_curve(truth, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], np.max(scores) + 1.0))


def membership_metrics(attack: str, member_scores: np.ndarray, nonmember_scores: np.ndarray,
                       member_pred: np.ndarray, nonmember_pred: np.ndarray, low: float = 1e-3) -> AttackResult:
    """Metrics of an attack from its continuous scores and its hard decisions on the evaluation sets."""
    truth = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    scores = np.concatenate([member_scores, nonmember_scores]).astype(np.float64)
    decisions = np.concatenate([member_pred, nonmember_pred]).astype(np.float64)
    fpr, tpr, _ = roc_curve(truth, scores)
    auc = float(roc_auc_score(truth, scores))
    tpr_low = float(tpr[fpr <= low].max()) if (fpr <= low).any() else 0.0
    ok = tpr >= 1.0 - low
    tnr_low = float((1.0 - fpr[ok]).max()) if ok.any() else 0.0
    accuracy = float(np.mean(decisions == truth))
    return AttackResult(attack=attack, auc=auc, accuracy=accuracy, tpr_at_low_fpr=tpr_low, tnr_at_low_fnr=tnr_low)


def threshold_attacks(known_members: tuple[np.ndarray, np.ndarray], known_nonmembers: tuple[np.ndarray, np.ndarray],
                      eval_members: tuple[np.ndarray, np.ndarray], eval_nonmembers: tuple[np.ndarray, np.ndarray],
                      attacks: list[str] | None = None) -> list[AttackResult]:
    """Run the threshold attacks; each argument is (released probabilities (S, K), labels (S,))."""
    sets = [check_probabilities(*pair, name=name) for pair, name in zip(
        (known_members, known_nonmembers, eval_members, eval_nonmembers),
        ("known member probs", "known non-member probs", "evaluation member probs", "evaluation non-member probs"))]
    classes = {s[0].shape[1] for s in sets}
    if len(classes) != 1:
        raise ValueError(f"all probability sets must have the same number of classes, got {sorted(classes)}")
    results = []
    for name in attacks or list(THRESHOLD_ATTACKS):
        if name not in THRESHOLD_ATTACKS:
            raise ValueError(f"unknown threshold attack {name!r}; choose from {list(THRESHOLD_ATTACKS)}")
        score = THRESHOLD_ATTACKS[name]
        km, kn, em, en = (score(p, y) for p, y in sets)
        threshold = fit_threshold(km, kn)
        results.append(membership_metrics(name, em, en, em >= threshold, en >= threshold))
    return results


def best_attack(results: list[AttackResult]) -> AttackResult:
    """The worst case for the defender: highest AUC and accuracy over attacks (each maximised separately)."""
    if not results:
        raise ValueError("no attack results")
    return AttackResult(
        attack="best",
        auc=max(r.auc for r in results),
        accuracy=max(r.accuracy for r in results),
        tpr_at_low_fpr=max(r.tpr_at_low_fpr for r in results),
        tnr_at_low_fnr=max(r.tnr_at_low_fnr for r in results),
    )


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    probs, labels = check_probabilities(probs, labels)
    return float(np.mean(probs.argmax(axis=1) == labels))
