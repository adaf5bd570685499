"""Adaptive attackers against a randomised release: what repeated, near-duplicate and label-only queries
take back from a defense.

- Repeated exact queries: M copies of each record. Only a defense without a deterministic mode answers
  them differently.
- Near-duplicate averaging: M copies of each record, each changed a little (``PERTURBATIONS``), and the
  released vectors averaged. Against a defense whose randomness changes with the query, the average
  converges to the defense's mean output and its randomness stops hiding membership.
- Flat-region queries: copy c moves the c-th flattest pixel of the record (smallest local contrast, or
  smallest input gradient of the classifier with ``relevance``) by one grey level. The classifier does not
  notice (its output barely moves), yet each copy is a new query: against a key that changes with it, each
  buys a fresh draw of the defense's noise and selection, and the average takes the randomness back.
- Label-only noise robustness (Choquette-Choo et al., ICML 2021, "Label-only membership inference
  attacks"): how often the label survives Gaussian noise. Diffence keeps every query's label by design, so
  this is what it cannot hide, whatever its randomness.

The scores these produce go through the same protocol as every other attack (fit, select, evaluation
records; ``families.evaluate_defense``); ``recovery`` compares an adaptive attack with the single query.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression

from diffence_plugin.attacks.lira import LiRA
from diffence_plugin.attacks.metrics import AttackResult, auc_difference, tpr_difference

PERTURBATIONS = {
    "exact": "the query itself, repeated",
    "zero_sign": "a random non-empty subset of the zero pixels set to -0.0",
    "ulp": "one random pixel moved by one float32 ulp",
    "grey_level": "one random pixel moved by +-size (default 1/255), kept in [0, 1]",
    "gaussian": "Gaussian noise of sd size (default 1/255) on every pixel, clipped to [0, 1]",
    "flat": "copy c moves the c-th flattest pixel (local contrast, or the given relevance) by +size (-size at 1); "
            "past the last pixel, again with 2 x size",
}
DEFAULT_SIZE = 1 / 255

Release = Callable[[np.ndarray], np.ndarray]  # (B, C, H, W) float32 queries -> (B, K) released probabilities


def perturbed_copies(x: np.ndarray, kind: str, copies: int, *, size: float = DEFAULT_SIZE, seed: int,
                     relevance: np.ndarray | None = None) -> np.ndarray:
    """(M, S, C, H, W) float32 near-duplicates of the images ``x`` (S, C, H, W) in [0, 1], of one ``kind``
    (a key of ``PERTURBATIONS``). Copy 0 is perturbed too: the attacker never sends the record itself.
    ``relevance`` (S, C*H*W), for ``"flat"`` only: the pixels' order (least relevant first) instead of their
    local contrast, e.g. ``input_relevance`` of the attacker's own model."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; choose from {sorted(PERTURBATIONS)}")
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    out = np.broadcast_to(x, (copies, *x.shape)).copy()
    flat = out.reshape(copies, x.shape[0], -1)
    pixels = flat.shape[-1]
    rows = np.arange(x.shape[0])
    if kind == "exact":
        return out
    if kind == "zero_sign":
        zero = flat == 0
        flip = zero & (rng.random(flat.shape) < 0.5)
        first = np.argmax(zero, axis=-1)  # at least one flipped zero per copy, where the record has one
        has_zero = zero.any(axis=-1)
        ci, si = np.nonzero(has_zero)
        flip[ci, si, first[ci, si]] = True
        flat[flip] = -0.0
    elif kind == "ulp":
        for c in range(copies):
            where = rng.integers(0, pixels, x.shape[0])
            values = flat[c, rows, where]
            flat[c, rows, where] = np.where(values < 1, np.nextafter(values, np.float32(2)),
                                            np.nextafter(values, np.float32(-1)))
    elif kind == "grey_level":
        for c in range(copies):
            where = rng.integers(0, pixels, x.shape[0])
            values = flat[c, rows, where]
            sign = np.where(rng.random(x.shape[0]) < 0.5, -1.0, 1.0)
            sign = np.where(values + sign * size > 1, -1.0, np.where(values + sign * size < 0, 1.0, sign))
            flat[c, rows, where] = np.clip(values + sign * size, 0, 1)
    elif kind == "flat":
        _flat_pixels(flat, x, size, rng, relevance)
    else:  # gaussian
        flat[:] = np.clip(flat + rng.normal(0.0, size, flat.shape), 0, 1)
    return out


def local_contrast(x: np.ndarray) -> np.ndarray:
    """(S, C*H*W) max - min of each pixel's 3x3 neighbourhood (in its channel): 0 in a flat region, such as a
    digit's background far from the strokes."""
    x = np.asarray(x, dtype=np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = x.shape[-2:]
    windows = np.stack([padded[..., i:i + h, j:j + w] for i in range(3) for j in range(3)])
    return (windows.max(axis=0) - windows.min(axis=0)).reshape(len(x), -1)


def input_relevance(model, x: np.ndarray, y: np.ndarray, batch: int = 256) -> np.ndarray:
    """(S, C*H*W) |d log p_y / d x|: how much each pixel moves the classifier's log-probability of the label,
    the generic (natural-image) choice of pixels the classifier ignores for ``kind="flat"``."""
    import torch

    out = []
    for start in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch], dtype=np.float32)).requires_grad_(True)
        yb = torch.from_numpy(np.asarray(y[start:start + batch], dtype=np.int64))
        logp = torch.log_softmax(model(xb).double(), -1)
        (grad,) = torch.autograd.grad(logp[torch.arange(len(yb)), yb].sum(), xb)
        out.append(grad.abs().reshape(len(xb), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, int(np.prod(x.shape[1:]))), dtype=np.float32)


def _flat_pixels(flat: np.ndarray, x: np.ndarray, size: float, rng: np.random.Generator,
                 relevance: np.ndarray | None) -> None:
    """Move, in copy c of each record, its c-th least relevant pixel (ties in random order) by one step."""
    copies, records, pixels = flat.shape
    score = local_contrast(x) if relevance is None else np.asarray(relevance, dtype=np.float64).reshape(records, -1)
    if score.shape != (records, pixels):
        raise ValueError(f"relevance must have one value per pixel, shape {(records, pixels)}, got {score.shape}")
    order = np.lexsort((rng.random(score.shape), score), axis=-1)  # flattest first, random among equals
    rows = np.arange(records)
    for c in range(copies):
        where = order[:, c % pixels]
        step = size * (1 + c // pixels)
        values = flat[c, rows, where]
        flat[c, rows, where] = np.where(values + step <= 1, values + step, np.clip(values - step, 0, 1))


def averaged_release(release: Release, copies: np.ndarray) -> np.ndarray:
    """(S, K) float64 mean over the M copies (M, S, ...) of what ``release`` answers on each copy."""
    m, s = copies.shape[:2]
    answers = np.asarray(release(copies.reshape(m * s, *copies.shape[2:])), dtype=np.float64)
    return answers.reshape(m, s, -1).mean(axis=0)


def label_survival(labels_of: Release, x: np.ndarray, y: np.ndarray, *, sigma: float, queries: int,
                   seed: int) -> np.ndarray:
    """(S,) fraction of ``queries`` Gaussian-noised copies (sd ``sigma``, clipped to [0, 1]) of each record
    whose released label (``labels_of``'s argmax) is its true label ``y``: the noise-robustness statistic.
    Members, fitted tightly, keep their label under larger noise than non-members."""
    noisy = perturbed_copies(x, "gaussian", queries, size=sigma, seed=seed)
    q, s = noisy.shape[:2]
    labels = np.asarray(labels_of(noisy.reshape(q * s, *noisy.shape[2:]))).argmax(-1).reshape(q, s)
    return (labels == np.asarray(y)[None]).mean(axis=0)


def survival_logit(survival: np.ndarray, queries: int) -> np.ndarray:
    """Smoothed logit ``log((c + 1/2) / (Q - c + 1/2))`` of survival counts c out of Q: finite at 0 and Q,
    and roughly Gaussian across models (LiRA's statistic for a count)."""
    c = np.asarray(survival, dtype=np.float64) * queries
    return np.log((c + 0.5) / (queries - c + 0.5))


def label_only_lira(target: np.ndarray, references: np.ndarray, in_mask: np.ndarray, queries: int,
                    online: bool = True) -> np.ndarray:
    """LiRA (global variance) on the survival statistic: ``target`` (S,) and ``references`` (R, S) survival
    fractions; higher = member. Survival saturates (most records keep their label under all Q queries), so
    the standard deviations are floored at half the statistic's last step, and the variance should be pooled
    over all the attacker's candidates at once (score them in one call)."""
    step = survival_logit(np.array([1.0]), queries)[0] - survival_logit(np.array([1 - 1 / queries]), queries)[0]
    lira = LiRA(online=online, global_variance=True, min_std=step / 2)
    return lira.score(survival_logit(target, queries), survival_logit(references, queries), in_mask)


def combine(fit_member: np.ndarray, fit_nonmember: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A logistic regression over several attacks' scores, fitted on the attacker's known records.

    ``fit_member`` / ``fit_nonmember``: (S, F) scores of F attacks. Returns a function from (S, F) scores
    to one combined score (the log-odds of membership).
    """
    features = np.concatenate([fit_member, fit_nonmember])
    truth = np.r_[np.ones(len(fit_member)), np.zeros(len(fit_nonmember))]
    mean, sd = features.mean(axis=0), features.std(axis=0) + 1e-12
    model = LogisticRegression().fit((features - mean) / sd, truth)
    return lambda scores: model.decision_function((np.asarray(scores) - mean) / sd)


def recovery(adaptive: AttackResult, single: AttackResult, *, seed: int = 0, bootstrap: int = 1000) -> dict:
    """What an adaptive attack takes back over the single query, on the same records: AUC and TPR at 1%
    FPR differences with paired bootstrap 95% intervals (TPR None below the FPR resolution)."""
    auc, auc_ci = auc_difference(adaptive, single, seed=seed, bootstrap=bootstrap)
    tpr = tpr_difference(adaptive, single, 0.01, seed=seed, bootstrap=bootstrap)
    return {"attack": adaptive.attack, "single_attack": single.attack, "auc_change": auc, "auc_ci": list(auc_ci),
            "tpr@0.01_change": None if tpr is None else tpr[0], "tpr@0.01_ci": None if tpr is None else list(tpr[1])}
