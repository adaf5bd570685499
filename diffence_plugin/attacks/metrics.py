"""Membership-inference metrics with bootstrap confidence intervals, and the choice of the best attack.

Every attack produces a continuous membership score per record (higher = member). AUC and TPR at a fixed
FPR are read off the ROC of the scores on the evaluation records (sklearn's ``roc_curve`` with
``drop_intermediate=False``); attack accuracy uses the threshold the attacker fitted on its own data.

Statistics: 95% percentile-bootstrap intervals, resampling members and non-members separately. With m
evaluation non-members the smallest non-zero FPR is 1/m: a TPR at an FPR below that resolution is not a
measurement and is reported as ``None`` ("n/a"), never as a number.

The best attack is chosen on the attacker's own held-out known records (``selection_auc``), never on the
evaluation records: choosing the maximum on the evaluation set inflates it (11 attacks on 150 + 150 null
records give an expected best AUC of about 0.54).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

FPR_LEVELS = (0.01, 0.001)  # TPR is reported at these FPRs
FNR_LEVEL = 0.001  # TNR is reported at this FNR
BOOTSTRAP = 1000


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


def _check_scores(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(member_scores, dtype=np.float64).reshape(-1)
    n = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
    if m.size == 0 or n.size == 0:
        raise ValueError(f"need at least one member and one non-member score, got {m.size} and {n.size}")
    if not (np.isfinite(m).all() and np.isfinite(n).all()):
        raise ValueError("membership scores contain NaN or infinite values")
    return m, n


def roc(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of the scores, every threshold kept (``drop_intermediate=False``)."""
    m, n = _check_scores(member_scores, nonmember_scores)
    truth = np.r_[np.ones(m.size), np.zeros(n.size)]
    fpr, tpr, _ = roc_curve(truth, np.r_[m, n], drop_intermediate=False)
    return fpr, tpr


def resolvable(level: float, count: int) -> bool:
    """Whether a rate of ``level`` can be measured with ``count`` negatives (it must be at least 1/count)."""
    return level * count >= 1.0 - 1e-9


def _auc_rows(m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """AUC of each row pair (Mann-Whitney with mid-ranks for ties): m (B, M), n (B, N) -> (B,)."""
    ranks = rankdata(np.concatenate([m, n], axis=1), axis=1)
    nm, nn = m.shape[1], n.shape[1]
    return (ranks[:, :nm].sum(axis=1) - nm * (nm + 1) / 2) / (nm * nn)


def _tpr_rows(m: np.ndarray, n: np.ndarray, level: float) -> np.ndarray:
    """Largest TPR with FPR <= level, per row: members above the (j+1)-th highest non-member, j = floor(level N)."""
    j = math.floor(level * n.shape[1] + 1e-9)
    if j >= n.shape[1]:
        return np.ones(m.shape[0])
    cut = -np.partition(-n, j, axis=1)[:, j]
    return (m > cut[:, None]).mean(axis=1)


def _tnr_rows(m: np.ndarray, n: np.ndarray, level: float) -> np.ndarray:
    """Largest TNR with FNR <= level (the mirror image of ``_tpr_rows``)."""
    return _tpr_rows(-n, -m, level)


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class AttackResult:
    """One attack's success against one defense, on the evaluation records, with 95% bootstrap intervals.

    ``tpr`` maps an FPR level (e.g. 0.01) to the TPR there, ``None`` where the level is below the FPR
    resolution 1 / non-members. ``selection_auc`` is the attack's AUC on the attacker's own held-out
    records, the only figure used to choose the best attack.
    """

    attack: str
    auc: float
    accuracy: float
    tpr: dict[float, float | None]
    tnr_at_low_fnr: float | None
    ci: dict[str, tuple[float, float] | None]
    members: int
    nonmembers: int
    selection_auc: float | None = None
    member_scores: np.ndarray | None = field(default=None, repr=False)
    nonmember_scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def fpr_resolution(self) -> float:
        return 1.0 / self.nonmembers

    def to_dict(self, scores: bool = True) -> dict:
        out = {"attack": self.attack, "auc": self.auc, "accuracy": self.accuracy,
               "tpr": {f"{level:g}": value for level, value in self.tpr.items()},
               "tnr_at_low_fnr": self.tnr_at_low_fnr, "ci": {k: list(v) if v else None for k, v in self.ci.items()},
               "members": self.members, "nonmembers": self.nonmembers, "fpr_resolution": self.fpr_resolution,
               "selection_auc": self.selection_auc}
        if scores and self.member_scores is not None:
            out["member_scores"] = self.member_scores.tolist()
            out["nonmember_scores"] = self.nonmember_scores.tolist()
        return out


def membership_metrics(attack: str, member_scores, nonmember_scores, threshold: float | None = None, *,
                       selection_auc: float | None = None, bootstrap: int = BOOTSTRAP, seed: int = 0) -> AttackResult:
    """Metrics of an attack from its scores on the evaluation members and non-members.

    Args:
        threshold: the attacker's decision threshold (member when score >= threshold), fitted on its own
            data; None uses the balanced-accuracy threshold of the scores themselves (an oracle, labelled so
            by the caller).
        bootstrap: resamples for the 95% intervals (0 disables them).
    """
    m, n = _check_scores(member_scores, nonmember_scores)
    truth = np.r_[np.ones(m.size), np.zeros(n.size)]
    scores = np.r_[m, n]
    auc = float(roc_auc_score(truth, scores))
    cut = fit_threshold(m, n) if threshold is None else threshold
    acc = float(np.mean((scores >= cut) == truth))
    tpr = {level: float(_tpr_rows(m[None], n[None], level)[0]) if resolvable(level, n.size) else None
           for level in FPR_LEVELS}
    tnr = float(_tnr_rows(m[None], n[None], FNR_LEVEL)[0]) if resolvable(FNR_LEVEL, m.size) else None
    ci: dict[str, tuple[float, float] | None] = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        bm = m[rng.integers(0, m.size, (bootstrap, m.size))]
        bn = n[rng.integers(0, n.size, (bootstrap, n.size))]
        ci["auc"] = _interval(_auc_rows(bm, bn))
        ci["accuracy"] = _interval(((bm >= cut).sum(1) + (bn < cut).sum(1)) / (m.size + n.size))
        for level, value in tpr.items():
            ci[f"tpr@{level:g}"] = _interval(_tpr_rows(bm, bn, level)) if value is not None else None
        ci["tnr_at_low_fnr"] = _interval(_tnr_rows(bm, bn, FNR_LEVEL)) if tnr is not None else None
    return AttackResult(attack=attack, auc=auc, accuracy=acc, tpr=tpr, tnr_at_low_fnr=tnr, ci=ci, members=m.size,
                        nonmembers=n.size, selection_auc=selection_auc, member_scores=m, nonmember_scores=n)


def over_draws(pairs: list[tuple[np.ndarray, np.ndarray]], level: float = 0.01, *, bootstrap: int = BOOTSTRAP,
               seed: int = 0) -> dict:
    """One attack over several draws of the randomness that is not the records' (the defense's, the attacker's):
    ``pairs`` holds each draw's (member, non-member) scores on the same evaluation records. Returns the mean and
    sd of the AUC and of the TPR at FPR ``level`` over the draws, and 95% intervals that cover both the records'
    sampling and the draws: the percentiles of every draw's bootstrap replicates pooled."""
    if not pairs:
        raise ValueError("over_draws needs at least one draw's scores")
    aucs, tprs, pooled_auc, pooled_tpr = [], [], [], []
    for m, n in (_check_scores(*pair) for pair in pairs):
        aucs.append(float(_auc_rows(m[None], n[None])[0]))
        tprs.append(float(_tpr_rows(m[None], n[None], level)[0]) if resolvable(level, n.size) else None)
        rng = np.random.default_rng(seed)  # the same record resamples for every draw: only the draws differ
        bm, bn = m[rng.integers(0, m.size, (bootstrap, m.size))], n[rng.integers(0, n.size, (bootstrap, n.size))]
        pooled_auc.append(_auc_rows(bm, bn))
        if tprs[-1] is not None:
            pooled_tpr.append(_tpr_rows(bm, bn, level))
    sd = (lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
    out = {"draws": len(pairs), "auc": {"mean": float(np.mean(aucs)), "sd": sd(aucs),
                                        "ci": list(_interval(np.concatenate(pooled_auc)))}}
    if all(v is not None for v in tprs):
        out[f"tpr@{level:g}"] = {"mean": float(np.mean(tprs)), "sd": sd(tprs),
                                 "ci": list(_interval(np.concatenate(pooled_tpr)))}
    return out


def auc_difference(after: AttackResult, before: AttackResult, *, bootstrap: int = BOOTSTRAP,
                   seed: int = 0) -> tuple[float, tuple[float, float]]:
    """AUC(after) - AUC(before) on the same records, with a paired bootstrap 95% interval.

    Both results must score the same members and non-members in the same order, so that one resample of
    the records serves both (the pairing removes the records' own variance from the difference).
    """
    if (after.members, after.nonmembers) != (before.members, before.nonmembers):
        raise ValueError("the two results score different record sets")
    rng = np.random.default_rng(seed)
    im = rng.integers(0, after.members, (bootstrap, after.members))
    inn = rng.integers(0, after.nonmembers, (bootstrap, after.nonmembers))
    diff = (_auc_rows(after.member_scores[im], after.nonmember_scores[inn])
            - _auc_rows(before.member_scores[im], before.nonmember_scores[inn]))
    return after.auc - before.auc, _interval(diff)


def tpr_difference(after: AttackResult, before: AttackResult, level: float = 0.01, *, bootstrap: int = BOOTSTRAP,
                   seed: int = 0) -> tuple[float, tuple[float, float]] | None:
    """TPR at ``level`` FPR of ``after`` minus ``before`` on the same records, with a paired bootstrap 95%
    interval; None when ``level`` is below the FPR resolution (1 / non-members)."""
    if (after.members, after.nonmembers) != (before.members, before.nonmembers):
        raise ValueError("the two results score different record sets")
    if not resolvable(level, after.nonmembers):
        return None
    rng = np.random.default_rng(seed)
    im = rng.integers(0, after.members, (bootstrap, after.members))
    inn = rng.integers(0, after.nonmembers, (bootstrap, after.nonmembers))
    diff = (_tpr_rows(after.member_scores[im], after.nonmember_scores[inn], level)
            - _tpr_rows(before.member_scores[im], before.nonmember_scores[inn], level))
    point = (_tpr_rows(after.member_scores[None], after.nonmember_scores[None], level)
             - _tpr_rows(before.member_scores[None], before.nonmember_scores[None], level))
    return float(point[0]), _interval(diff)


def format_change(change: dict | None, empty: str = "-", key: str = "auc_change", ci: str = "ci") -> str:
    """A change with its 95% interval, as the tables print it: "-0.020 [-0.027, -0.013]"; ``key`` and ``ci``
    name another change of the same entry (e.g. "tpr@0.01_change" and "tpr_ci")."""
    if not change or change.get(key) is None:
        return empty
    return f"{change[key]:+.3f} [{change[ci][0]:+.3f}, {change[ci][1]:+.3f}]"


def fit_threshold(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """Threshold (member when score >= threshold) that maximises balanced accuracy on known records."""
    m, n = _check_scores(member_scores, nonmember_scores)
    truth = np.r_[np.ones(m.size), np.zeros(n.size)]
    scores = np.r_[m, n]
    fpr, tpr, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], np.max(scores) + 1.0))


def choose_best(results: list[AttackResult]) -> AttackResult:
    """The attack the attacker would pick: highest AUC on its own held-out records (``selection_auc``).

    Raises:
        ValueError: when no result carries a selection AUC (the choice would have to look at evaluation data).
    """
    candidates = [r for r in results if r.selection_auc is not None]
    if not candidates:
        raise ValueError("no attack has a selection AUC on the attacker's held-out records")
    return max(candidates, key=lambda r: (r.selection_auc, -results.index(r)))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    probs, labels = check_probabilities(probs, labels)
    return float(np.mean(probs.argmax(axis=1) == labels))
