"""LiRA: the likelihood-ratio attack of Carlini et al. (S&P 2022, "Membership inference attacks from first
principles"), written from the paper.

The statistic of a model on a record (x, y) is the logit-scaled confidence of the true class,
``phi = log p_y - log(1 - p_y)``, computed from float64 log-probabilities so that it stays finite near 1.
For each candidate record the attacker has the statistic under reference models that trained on it (IN) and
that did not (OUT), and fits a Gaussian to each:

- online: ``score = log N(phi_target; mu_in, s_in^2) - log N(phi_target; mu_out, s_out^2)``;
- offline (OUT references only): the one-sided test ``score = log P(Z <= phi_target)``, Z ~ N(mu_out, s_out^2).

Variances are either per example or global (one variance per side, pooled over candidates; better with few
references). With augmented queries (several views of each record) the per-view log-likelihoods are added.
Everything is vectorised over candidates, references and views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

_MIN_STD = 1e-6


def logit_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """phi = log(p_y / (1 - p_y)) of (..., S, K) probabilities at (S,) labels, in float64.

    ``1 - p_y`` is the mass of the other classes, so the score stays exact where p_y rounds to 1.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    onehot = np.zeros(probs.shape[-2:], dtype=bool)
    onehot[np.arange(labels.size), labels] = True
    p_true = np.where(onehot, probs, 0.0).sum(axis=-1)
    rest = np.where(onehot, 0.0, probs).sum(axis=-1)
    log_true = np.where(p_true < 0.5, np.log(np.clip(p_true, 1e-300, None)), np.log1p(-np.clip(rest, 0.0, 0.5)))
    return log_true - np.log(np.clip(rest, 1e-300, None))


def _as_views(values: np.ndarray, leading: int) -> np.ndarray:
    """Add a trailing views axis of length 1 when the input has none."""
    values = np.asarray(values, dtype=np.float64)
    return values[..., None] if values.ndim == leading else values


def _moments(ref: np.ndarray, mask: np.ndarray, global_variance: bool,
             min_std: float = _MIN_STD) -> tuple[np.ndarray, np.ndarray]:
    """Per-candidate mean and std of ``ref`` (R, S, A) over references where ``mask`` (R, S) holds."""
    w = mask[..., None].astype(np.float64)
    count = w.sum(axis=0)
    if (count == 0).any():
        raise ValueError(f"{int((count[:, 0] == 0).sum())} candidates have no reference model on this side "
                         "(IN or OUT); train more reference models")
    mean = (w * ref).sum(axis=0) / count
    sq = (w * (ref - mean) ** 2).sum(axis=0)
    if global_variance:
        dof = np.maximum((count - 1).clip(min=0).sum(axis=0, keepdims=True), 1.0)
        var = np.broadcast_to(sq.sum(axis=0, keepdims=True) / dof, mean.shape)
    else:
        var = sq / np.maximum(count - 1, 1)
    return mean, np.sqrt(np.maximum(var, min_std ** 2))


@dataclass(frozen=True)
class LiRA:
    """LiRA's scoring rule.

    Args:
        online: use IN and OUT references (True) or OUT references only (False).
        global_variance: one variance per side pooled over all candidates (True) or one per candidate.
        min_std: floor of the fitted standard deviations: for a discrete statistic (a count) set it to about
            half its smallest step, or identical references make the Gaussians degenerate.
    """

    online: bool = True
    global_variance: bool = True
    min_std: float = _MIN_STD

    @property
    def name(self) -> str:
        return f"lira_{'online' if self.online else 'offline'}_{'global' if self.global_variance else 'per_example'}"

    def score(self, target: np.ndarray, references: np.ndarray, in_mask: np.ndarray) -> np.ndarray:
        """Membership scores (higher = member) of S candidates.

        Args:
            target: (S,) or (S, A) statistic phi of the target model (A augmented views).
            references: (R, S) or (R, S, A) the same statistic under R reference models.
            in_mask: (R, S) bool, True where reference r trained on candidate s.
        """
        target = _as_views(target, 1)
        references = _as_views(references, 2)
        in_mask = np.asarray(in_mask, dtype=bool)
        if references.shape[1:] != target.shape or in_mask.shape != references.shape[:2]:
            raise ValueError(f"shapes disagree: target {target.shape}, references {references.shape}, "
                             f"in_mask {in_mask.shape}")
        if not (np.isfinite(target).all() and np.isfinite(references).all()):
            raise ValueError("LiRA statistics contain NaN or infinite values")
        mu_out, s_out = _moments(references, ~in_mask, self.global_variance, self.min_std)
        if not self.online:
            return norm.logcdf(target, mu_out, s_out).sum(axis=-1)
        mu_in, s_in = _moments(references, in_mask, self.global_variance, self.min_std)
        return (norm.logpdf(target, mu_in, s_in) - norm.logpdf(target, mu_out, s_out)).sum(axis=-1)


LIRA_VARIANTS = (LiRA(True, True), LiRA(True, False), LiRA(False, True), LiRA(False, False))
