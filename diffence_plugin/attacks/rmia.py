"""RMIA: the relative membership inference attack of Zarifzadeh, Liu & Shokri (ICML 2024, "Low-cost
high-power membership inference attacks"), written from the paper.

``Pr(x | theta)`` is the model's probability of the record's true label. ``Pr(x)`` is its average over
reference models: all of them online, or, offline (OUT references only), the linear approximation
``Pr(x) = ((1 + a) * mean_OUT + (1 - a)) / 2``, with ``a`` fitted by using one reference model as a stand-in
target. Against population records z (never members of the target) the pairwise likelihood ratio is
``LR(x, z) = (Pr(x | theta) / Pr(x)) / (Pr(z | theta) / Pr(z))`` and the score of x is the share of z with
``LR(x, z) >= gamma``. Scoring is vectorised: one sort of the z ratios and a binary search per candidate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

_TINY = 1e-300


def _mean_views(p: np.ndarray, leading: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return p.mean(axis=-1) if p.ndim == leading + 1 else p


def marginal(references: np.ndarray, in_mask: np.ndarray | None, offline_a: float | None) -> np.ndarray:
    """Pr(x) of S records from (R, S) reference probabilities: online mean, or the offline approximation."""
    if offline_a is None:
        return references.mean(axis=0)
    if in_mask is None:
        raise ValueError("offline RMIA needs the IN/OUT mask of the references")
    out = ~np.asarray(in_mask, dtype=bool)
    count = out.sum(axis=0)
    if (count == 0).any():
        raise ValueError(f"{int((count == 0).sum())} records have no OUT reference model")
    mean_out = (references * out).sum(axis=0) / count
    return ((1 + offline_a) * mean_out + (1 - offline_a)) / 2


@dataclass(frozen=True)
class RMIA:
    """RMIA's scoring rule.

    Args:
        gamma: the likelihood-ratio threshold against each population record (the paper uses 1-2). At 1 the
            score is the rank of x's ratio among the population's, which never saturates at 0 or 1.
        offline_a: None for online RMIA (all references); a value in [0, 1] for the offline approximation.
    """

    gamma: float = 1.0
    offline_a: float | None = None

    @property
    def name(self) -> str:
        return "rmia_online" if self.offline_a is None else "rmia_offline"

    def score(self, target_x: np.ndarray, refs_x: np.ndarray, in_x: np.ndarray | None, target_z: np.ndarray,
              refs_z: np.ndarray, in_z: np.ndarray | None = None) -> np.ndarray:
        """Membership scores (higher = member) of S candidates.

        Args:
            target_x: (S,) or (S, A) target probability of each candidate's true label (A views, averaged).
            refs_x: (R, S) or (R, S, A) the same under R reference models; ``in_x`` (R, S) their IN mask.
            target_z, refs_z, in_z: the same for Z population records.
        """
        if self.gamma <= 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")
        tx, tz = _mean_views(target_x, 1), _mean_views(target_z, 1)
        rx, rz = _mean_views(refs_x, 2), _mean_views(refs_z, 2)
        if rx.shape[1:] != tx.shape or rz.shape[1:] != tz.shape or rx.shape[0] != rz.shape[0]:
            raise ValueError(f"shapes disagree: target_x {tx.shape}, refs_x {rx.shape}, target_z {tz.shape}, "
                             f"refs_z {rz.shape}")
        if tz.size == 0:
            raise ValueError("RMIA needs at least one population record z")
        for name, value in (("target_x", tx), ("refs_x", rx), ("target_z", tz), ("refs_z", rz)):
            if not np.isfinite(value).all() or (value < 0).any() or (value > 1).any():
                raise ValueError(f"{name} must hold probabilities in [0, 1]")
        ratio_x = tx / np.maximum(marginal(rx, in_x, self.offline_a), _TINY)
        ratio_z = np.sort(tz / np.maximum(marginal(rz, in_z, self.offline_a), _TINY))
        # LR(x, z) >= gamma  <=>  ratio_z <= ratio_x / gamma
        return np.searchsorted(ratio_z, ratio_x / self.gamma, side="right") / ratio_z.size


def fit_offline_a(refs_x: np.ndarray, in_x: np.ndarray, refs_z: np.ndarray, in_z: np.ndarray, *,
                  gamma: float = 1.0, grid: np.ndarray | None = None, stand_ins: int = 4,
                  default: float = 0.5) -> float:
    """Choose offline RMIA's ``a`` on the attacker's own models: each of ``stand_ins`` references in turn plays
    the target (its IN mask is the truth), the others are its references; the best mean AUC wins. With too
    few references for any stand-in (2, say) it warns and returns ``default``."""
    grid = np.linspace(0.0, 1.0, 11) if grid is None else np.asarray(grid, dtype=np.float64)
    rx, rz = _mean_views(refs_x, 2), _mean_views(refs_z, 2)
    in_x, in_z = np.asarray(in_x, dtype=bool), np.asarray(in_z, dtype=bool)
    if rx.shape[0] < 2:
        raise ValueError("fitting offline RMIA's a needs at least 2 reference models")
    aucs = np.zeros(grid.size)
    used = 0
    for r in range(min(stand_ins, rx.shape[0])):
        rest = np.arange(rx.shape[0]) != r
        # records the others can estimate offline (at least one OUT model), and population records that are
        # non-members of the stand-in
        xs = (~in_x[rest]).any(axis=0)
        zs = ~in_z[r] & (~in_z[rest]).any(axis=0)
        truth = in_x[r, xs]
        if truth.all() or not truth.any() or not zs.any():
            continue
        for i, a in enumerate(grid):
            s = RMIA(gamma, float(a)).score(rx[r, xs], rx[rest][:, xs], in_x[rest][:, xs], rz[r, zs],
                                            rz[rest][:, zs], in_z[rest][:, zs])
            aucs[i] += roc_auc_score(truth, s)
        used += 1
    if used == 0:
        warnings.warn(f"offline RMIA: no reference model can stand in for the target (with {rx.shape[0]} references "
                      f"no record is both IN for one and OUT for another); using a = {default}", stacklevel=2)
        return default
    return float(grid[int(np.argmax(aucs))])
