"""The utility of what a defense releases: calibration (ECE), negative log-likelihood and Brier score.

A defense that keeps every label could release labels only; the reason to release a probability vector is
its use, so every audit row reports how good the released vectors are as probabilities, on the evaluation
non-members (the deployment case) and members, with 95% bootstrap intervals over the records.

- ECE: expected calibration error with 15 equal-width confidence bins (Guo et al., 2017), the measure the
  Diffence paper reports next to accuracy.
- NLL: mean -log p(true label), with probabilities floored at ``NLL_FLOOR`` so that a one-hot release that is
  wrong costs -log(1e-12) = 27.6 nats instead of infinity (labels only pays this on every error).
- Brier: mean over records of sum_k (p_k - 1[k = y])^2, between 0 and 2.
"""

from __future__ import annotations

import numpy as np

from diffence_plugin.attacks.metrics import BOOTSTRAP, _interval, check_probabilities

ECE_BINS = 15
NLL_FLOOR = 1e-12
UTILITY_METRICS = ("ece", "nll", "brier")


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of each confidence in (0, 1]: bin b holds (b/bins, (b+1)/bins], the lowest also 0."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


def _ece_rows(bin_index: np.ndarray, confidence: np.ndarray, correct: np.ndarray, bins: int) -> np.ndarray:
    """ECE of each row of (B, S) bin indices, confidences and correctness: sum_b |B_b|/S |acc_b - conf_b|."""
    rows, size = bin_index.shape
    flat = (np.arange(rows)[:, None] * bins + bin_index).ravel()
    conf = np.bincount(flat, weights=confidence.ravel(), minlength=rows * bins).reshape(rows, bins)
    hits = np.bincount(flat, weights=correct.ravel(), minlength=rows * bins).reshape(rows, bins)
    return np.abs(hits - conf).sum(axis=1) / size


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width confidence bins (the top-1 probability against top-1 correctness)."""
    probs, labels = check_probabilities(probs, labels)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    return float(_ece_rows(_bin_of(confidence, bins)[None], confidence[None], correct[None], bins)[0])


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true label), probabilities floored at ``NLL_FLOOR``."""
    probs, labels = check_probabilities(probs, labels)
    return float(-np.log(np.maximum(probs[np.arange(labels.size), labels], NLL_FLOOR)).mean())


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance between the released vector and the one-hot label."""
    probs, labels = check_probabilities(probs, labels)
    return float(_per_record(probs, labels)["brier"].mean())


def _per_record(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    index = np.arange(labels.size)
    truth = np.zeros_like(probs)
    truth[index, labels] = 1.0
    return {"nll": -np.log(np.maximum(probs[index, labels], NLL_FLOOR)),
            "brier": ((probs - truth) ** 2).sum(axis=1),
            "confidence": probs.max(axis=1),
            "correct": (probs.argmax(axis=1) == labels).astype(np.float64)}


def utility_metrics(probs: np.ndarray, labels: np.ndarray, *, bins: int = ECE_BINS, bootstrap: int = BOOTSTRAP,
                    seed: int = 0) -> dict:
    """ECE, NLL and Brier of released ``probs`` with 95% percentile-bootstrap intervals (0 resamples: none)."""
    probs, labels = check_probabilities(probs, labels)
    rec = _per_record(probs, labels)
    bin_index = _bin_of(rec["confidence"], bins)
    out: dict = {"records": int(labels.size), "ece": expected_calibration_error(probs, labels, bins),
                 "nll": float(rec["nll"].mean()), "brier": float(rec["brier"].mean()), "ci": {}}
    if bootstrap:
        pick = np.random.default_rng(seed).integers(0, labels.size, (bootstrap, labels.size))
        ece = _ece_rows(bin_index[pick], rec["confidence"][pick], rec["correct"][pick], bins)
        out["ci"] = {"ece": list(_interval(ece)), "nll": list(_interval(rec["nll"][pick].mean(axis=1))),
                     "brier": list(_interval(rec["brier"][pick].mean(axis=1)))}
    return out
