"""Metrics and threshold attacks: the attacker's thresholds come from its own data, metrics from sklearn,
intervals from a bootstrap, and no TPR below the FPR resolution."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from diffence_plugin.attacks.metrics import (
    FPR_LEVELS,
    _tpr_rows,
    accuracy,
    auc_difference,
    choose_best,
    fit_threshold,
    membership_metrics,
)
from diffence_plugin.attacks.threshold import (
    THRESHOLD_ATTACKS,
    fit_class_thresholds,
    threshold_attacks,
)


def test_perfectly_separable_scores_give_perfect_metrics():
    r = membership_metrics("x", np.arange(1000.0) + 2000, np.arange(1000.0), 1500.0)
    assert (r.auc, r.accuracy, r.tpr[0.01], r.tpr[0.001], r.tnr_at_low_fnr) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert r.ci["auc"] == (1.0, 1.0)


def test_indistinguishable_scores_give_chance_auc_inside_its_interval():
    rng = np.random.default_rng(0)
    r = membership_metrics("x", rng.normal(size=4000), rng.normal(size=4000), 0.0)
    assert r.auc == pytest.approx(0.5, abs=0.03)
    assert r.ci["auc"][0] <= 0.5 <= r.ci["auc"][1]
    assert r.tpr[0.001] < 0.01


def test_tpr_below_the_fpr_resolution_is_not_reported():
    rng = np.random.default_rng(1)
    r = membership_metrics("x", rng.normal(1, 1, 150), rng.normal(0, 1, 150), 0.5)
    assert r.fpr_resolution == pytest.approx(1 / 150)
    assert r.tpr[0.01] is not None and r.tpr[0.001] is None and r.ci["tpr@0.001"] is None
    assert r.tnr_at_low_fnr is None
    assert r.to_dict()["tpr"] == {"0.01": r.tpr[0.01], "0.001": None}


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_tpr_equals_sklearn_roc_with_every_threshold(seed):
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 20, 300).astype(float)  # many ties
    n = rng.integers(0, 18, 1200).astype(float)
    truth = np.r_[np.ones(m.size), np.zeros(n.size)]
    fpr, tpr, _ = roc_curve(truth, np.r_[m, n], drop_intermediate=False)
    for level in (*FPR_LEVELS, 0.05, 0.3):
        expected = tpr[fpr <= level].max()
        assert _tpr_rows(m[None], n[None], level)[0] == pytest.approx(expected)


def test_bootstrap_interval_covers_the_true_auc_about_95_percent_of_the_time():
    """Gaussian scores with a known AUC, Phi(d / sqrt(2)); the 95% interval should cover it ~95% of runs."""
    from scipy.stats import norm

    d, truth, covered = 0.6, norm.cdf(0.6 / np.sqrt(2)), 0
    for seed in range(60):
        rng = np.random.default_rng(100 + seed)
        r = membership_metrics("x", rng.normal(d, 1, 200), rng.normal(0, 1, 200), 0.3, bootstrap=300, seed=seed)
        covered += r.ci["auc"][0] <= truth <= r.ci["auc"][1]
    assert covered >= 50  # 95% nominal; binomial(60, 0.95) falls below 51 with probability < 1%


def test_paired_auc_difference_and_its_interval():
    rng = np.random.default_rng(2)
    m, n = rng.normal(1, 1, 500), rng.normal(0, 1, 500)
    before = membership_metrics("a", m, n, 0.5)
    after = membership_metrics("b", m * 0.2 + rng.normal(0, 1, 500), n * 0.2 + rng.normal(0, 1, 500), 0.5)
    diff, (low, high) = auc_difference(after, before, bootstrap=500)
    assert diff == pytest.approx(after.auc - before.auc)
    assert low < diff < high < 0
    same, (lo2, hi2) = auc_difference(before, before)
    assert same == 0 and lo2 == hi2 == 0


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
    fit = ((member[:50], labels[:50]), (nonmember[:50], labels[:50]))
    select = ((member[50:100], labels[50:100]), (nonmember[50:100], labels[50:100]))
    results = threshold_attacks(fit, select, ((member[100:], labels[100:]), (nonmember[100:], labels[100:])))
    by_name = {r.attack: r for r in results}
    assert set(by_name) == set(THRESHOLD_ATTACKS)
    for name in ("loss", "confidence", "entropy", "modified_entropy"):
        assert by_name[name].auc > 0.8 and by_name[name].accuracy > 0.7
        assert by_name[name].selection_auc > 0.8
    assert by_name["correctness"].auc == pytest.approx(0.5)
    best = choose_best(results)
    assert best.selection_auc == max(r.selection_auc for r in results)


def test_the_best_attack_is_chosen_on_selection_records_not_on_evaluation():
    rng = np.random.default_rng(3)
    lucky = membership_metrics("lucky", rng.normal(0.5, 1, 100), rng.normal(0, 1, 100), 0.0, selection_auc=0.50)
    steady = membership_metrics("steady", rng.normal(0.1, 1, 100), rng.normal(0, 1, 100), 0.0, selection_auc=0.60)
    assert choose_best([lucky, steady]).attack == "steady"
    with pytest.raises(ValueError, match="selection AUC"):
        choose_best([membership_metrics("x", np.ones(3), np.zeros(3), 0.5)])


def test_per_class_thresholds_fit_each_class_direction():
    """Class 0: members score high; class 1: members score low. One global threshold fails; per class works."""
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], 100)
    member = np.where(labels == 0, rng.normal(2, 0.5, 200), rng.normal(-2, 0.5, 200))
    nonmember = rng.normal(0, 0.5, 200)
    rule = fit_class_thresholds(member, labels, nonmember, labels)
    assert rule.direction == {0: 1.0, 1: -1.0}
    calibrated = np.r_[rule(member, labels), rule(nonmember, labels)]
    assert roc_auc_score(np.r_[np.ones(200), np.zeros(200)], calibrated) > 0.99
    few = fit_class_thresholds(member[:2], labels[:2], nonmember[:2], labels[:2])
    assert few.direction == {} and few.global_direction in (1.0, -1.0)


def test_saturated_probabilities_do_not_tie():
    """p_y rounds to 1.0 in float64 for both sets; the attacks still rank them from the other entries."""
    labels = np.zeros(4, dtype=int)
    member = np.array([[1.0, 1e-30, 1e-30]] * 2 + [[1.0, 1e-25, 1e-25]] * 2)
    nonmember = np.array([[1.0, 1e-18, 1e-18]] * 4)
    pair = ((member, labels), (nonmember, labels))
    results = threshold_attacks(pair, pair, pair, attacks=["loss", "confidence", "modified_entropy"])
    assert all(r.auc == 1.0 for r in results)


def test_bad_attack_inputs_are_named():
    p = np.full((3, 2), 0.5)
    good = ((p, np.zeros(3)), (p, np.zeros(3)))
    with pytest.raises(ValueError, match="labels must have shape"):
        threshold_attacks(((p, np.zeros(2)), (p, np.zeros(3))), good, good)
    with pytest.raises(ValueError, match="NaN"):
        accuracy(np.full((2, 2), np.nan), np.zeros(2))
    with pytest.raises(ValueError, match="same number of classes"):
        threshold_attacks(((p, np.zeros(3)), (np.full((3, 3), 1 / 3), np.zeros(3))), good, good)
    with pytest.raises(ValueError, match="unknown threshold attack"):
        threshold_attacks(good, good, good, attacks=["lira"])
    with pytest.raises(ValueError, match="NaN or infinite"):
        membership_metrics("x", np.array([np.nan]), np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="at least one member"):
        membership_metrics("x", np.zeros(0), np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="S > 0"):
        accuracy(np.zeros((0, 2)), np.zeros(0))
