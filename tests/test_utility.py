"""The utility metrics of released vectors against cases whose answer is known in closed form."""

import math

import numpy as np
import pytest
import torch

from diffence_plugin.attacks.utility import (
    NLL_FLOOR,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    utility_metrics,
)
from diffence_plugin.defenses import LabelsOnly


def test_a_correct_one_hot_release_is_perfectly_calibrated():
    y = np.array([0, 1, 2, 1])
    probs = np.eye(3)[y]
    assert expected_calibration_error(probs, y) == 0.0
    assert negative_log_likelihood(probs, y) == 0.0
    assert brier_score(probs, y) == 0.0


def test_constant_confidence_gives_the_gap_to_accuracy():
    # every row says 0.7 for its top class; 6 of 10 are right: ECE = |0.6 - 0.7| = 0.1 (one bin)
    y = np.array([0] * 6 + [1] * 4)
    probs = np.tile([0.7, 0.3], (10, 1))
    assert expected_calibration_error(probs, y) == pytest.approx(0.1)
    assert negative_log_likelihood(probs, y) == pytest.approx(-(6 * math.log(0.7) + 4 * math.log(0.3)) / 10)
    # Brier: right rows (0.3^2 + 0.3^2), wrong rows (0.7^2 + 0.7^2)
    assert brier_score(probs, y) == pytest.approx((6 * 0.18 + 4 * 0.98) / 10)


def test_ece_weights_each_bin_by_its_records():
    # bin of 0.95 (2 rows, both right: gap 0.05) and bin of 0.55 (2 rows, one right: gap 0.05) -> 0.05
    y = np.array([0, 0, 0, 1])
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    assert expected_calibration_error(probs, y) == pytest.approx(0.05)


def test_uniform_release_has_nll_log_k():
    y = np.arange(10) % 4
    assert negative_log_likelihood(np.full((10, 4), 0.25), y) == pytest.approx(math.log(4))


def test_a_wrong_one_hot_release_costs_the_floor():
    assert negative_log_likelihood(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(NLL_FLOOR))


def test_intervals_contain_the_estimate_and_shrink_with_records():
    rng = np.random.default_rng(0)

    def sample(n):
        logits = rng.normal(size=(n, 5)) * 2
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return probs, np.array([rng.choice(5, p=p) for p in probs])

    small, large = utility_metrics(*sample(200), seed=1), utility_metrics(*sample(5000), seed=1)
    for key in ("ece", "nll", "brier"):
        low, high = small["ci"][key]
        if key != "ece":  # ECE is biased upwards under resampling; its interval need not hold the estimate
            assert low <= small[key] <= high
        assert large["ci"][key][1] - large["ci"][key][0] < high - low
    # labels drawn from the released vectors: calibrated, so the large sample's ECE is small
    assert large["ece"] < 0.03
    assert utility_metrics(*sample(50), bootstrap=0)["ci"] == {}


def test_utility_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        utility_metrics(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="labels"):
        utility_metrics(np.array([[0.5, 0.5]]), np.array([2]))


def test_labels_only_releases_the_one_hot_top_label():
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]], dtype=torch.float64)
    out = LabelsOnly()(None, probs)
    assert out.dtype == torch.float64
    assert torch.equal(out, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="labels_only"):
        LabelsOnly()(None, torch.zeros(0, 3))


def test_labels_only_is_a_registered_post_inference_defense():
    from diffence_plugin.defenses.pipeline import DefensePipeline

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    pipeline = DefensePipeline.from_names("labels_only", classifier=model)
    x = torch.rand(5, 1, 4, 4)
    out = pipeline(x)
    assert torch.equal(out.argmax(1), model(x).argmax(1))
    assert torch.all(out.sum(1) == 1) and set(out.unique().tolist()) <= {0.0, 1.0}
