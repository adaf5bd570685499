"""Metrics and threshold attacks: the attacker's threshold comes from its own data, metrics from sklearn."""

from __future__ import annotations

import numpy as np
import pytest

from diffence_plugin.evaluation.metrics import (
    THRESHOLD_ATTACKS,
    accuracy,
    best_attack,
    fit_threshold,
    membership_metrics,
    threshold_attacks,
)


def test_perfectly_separable_scores_give_perfect_metrics():
    r = membership_metrics("x", np.array([2.0, 3.0]), np.array([0.0, 1.0]), np.ones(2), np.zeros(2))
    assert (r.auc, r.accuracy, r.tpr_at_low_fpr, r.tnr_at_low_fnr) == (1.0, 1.0, 1.0, 1.0)


def test_indistinguishable_scores_give_chance_auc():
    rng = np.random.default_rng(0)
    r = membership_metrics("x", rng.normal(size=4000), rng.normal(size=4000), np.ones(4000), np.zeros(4000))
    assert r.auc == pytest.approx(0.5, abs=0.03)
    assert r.tpr_at_low_fpr < 0.02


def test_threshold_is_fitted_on_known_data_only():
    threshold = fit_threshold(np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0, 3.0]))
    assert 3.0 < threshold <= 5.0


def probs_with_confidence(conf: np.ndarray, labels: np.ndarray, k: int = 3) -> np.ndarray:
    p = np.tile(((1 - conf) / (k - 1))[:, None], (1, k))
    p[np.arange(len(labels)), labels] = conf
    return p


def test_threshold_attacks_detect_confident_members():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    member = probs_with_confidence(rng.uniform(0.9, 1.0, 200), labels)
    nonmember = probs_with_confidence(rng.uniform(0.4, 0.95, 200), labels)
    results = threshold_attacks((member[:100], labels[:100]), (nonmember[:100], labels[:100]),
                                (member[100:], labels[100:]), (nonmember[100:], labels[100:]))
    by_name = {r.attack: r for r in results}
    assert set(by_name) == set(THRESHOLD_ATTACKS)
    for name in ("loss", "confidence", "entropy", "modified_entropy"):
        assert by_name[name].auc > 0.8 and by_name[name].accuracy > 0.7
    assert by_name["correctness"].auc == pytest.approx(0.5)
    assert best_attack(results).auc == max(r.auc for r in results)


def test_saturated_probabilities_do_not_tie():
    """p_y rounds to 1.0 in float64 for both sets; the attacks still rank them from the other entries."""
    labels = np.zeros(4, dtype=int)
    member = np.array([[1.0, 1e-30, 1e-30]] * 2 + [[1.0, 1e-25, 1e-25]] * 2)
    nonmember = np.array([[1.0, 1e-18, 1e-18]] * 4)
    results = threshold_attacks((member, labels), (nonmember, labels), (member, labels), (nonmember, labels),
                                attacks=["loss", "confidence", "modified_entropy"])
    assert all(r.auc == 1.0 for r in results)


def test_bad_attack_inputs_are_named():
    p = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="labels must have shape"):
        threshold_attacks((p, np.zeros(2)), (p, np.zeros(3)), (p, np.zeros(3)), (p, np.zeros(3)))
    with pytest.raises(ValueError, match="NaN"):
        accuracy(np.full((2, 2), np.nan), np.zeros(2))
    with pytest.raises(ValueError, match="same number of classes"):
        threshold_attacks((p, np.zeros(3)), (np.full((3, 3), 1 / 3), np.zeros(3)), (p, np.zeros(3)), (p, np.zeros(3)))
    with pytest.raises(ValueError, match="unknown threshold attack"):
        threshold_attacks(*[(p, np.zeros(3))] * 4, attacks=["lira"])
    with pytest.raises(ValueError, match="S > 0"):
        accuracy(np.zeros((0, 2)), np.zeros(0))
