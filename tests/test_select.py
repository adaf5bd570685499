"""Selection rules: phi, uniform picks, intervals, label preservation (property test)."""

from __future__ import annotations

import math

import pytest
import torch

from diffence_plugin import Diffence
from diffence_plugin.select import ORIGINAL, label_matches, phi, pick_uniform, select, select_in_interval

from .conftest import LinearClassifier, make_reconstructor


def test_phi_is_logit_of_top_probability():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]], dtype=torch.float64)
    expected = torch.tensor([math.log(0.7 / 0.3), math.log(0.5 / 0.5)], dtype=torch.float64)
    torch.testing.assert_close(phi(probs.log()), expected)


def test_phi_stays_finite_and_ordered_when_probabilities_saturate():
    logits = torch.tensor([[60.0, 0.0, 0.0], [80.0, 0.0, 0.0]], dtype=torch.float64)
    scores = phi(torch.log_softmax(logits, -1))
    assert torch.isfinite(scores).all()
    assert scores[1] > scores[0]
    assert scores[0] == pytest.approx(60 - math.log(2), rel=1e-9)


def test_pick_uniform_picks_only_eligible_entries_and_covers_them():
    eligible = torch.tensor([[False, True, False, True], [False, False, False, False]])
    seen = set()
    for u in torch.linspace(0, 0.999, 50):
        index = pick_uniform(eligible, torch.tensor([u, u]))
        assert index[1] == ORIGINAL
        assert bool(eligible[0, index[0]])
        seen.add(int(index[0]))
    assert seen == {1, 3}


def test_interval_selection_random_inside_else_closest():
    scores = torch.tensor([[0.0, 1.5, 2.5, 9.0], [0.0, 1.0, 7.0, 8.0]], dtype=torch.float64)
    matches = torch.tensor([[True, True, True, True], [True, True, False, True]])
    picks = {int(select_in_interval(scores, matches, torch.tensor([u, u]), 1.0, 3.0)[0]) for u in (0.1, 0.9)}
    assert picks == {1, 2}
    row2 = select_in_interval(scores, matches, torch.tensor([0.5, 0.5]), 4.5, 5.0)[1]
    assert int(row2) == 3  # 7.0 does not keep the label; 8.0 (3.0 away) beats 1.0 (3.5 away)
    none = select_in_interval(scores, torch.zeros_like(matches), torch.tensor([0.5, 0.5]), 1.0, 3.0)
    assert none.tolist() == [ORIGINAL, ORIGINAL]


def test_original_released_when_no_reconstruction_keeps_label():
    original = torch.log(torch.tensor([[0.6, 0.3, 0.1]], dtype=torch.float64))
    candidates = torch.log(torch.tensor([[[0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]], dtype=torch.float64))
    for scenario in (1, 2, 3):
        out = select(scenario, original, candidates, torch.tensor([0.3], dtype=torch.float64), (0.0, 1.0))
        assert out.index.tolist() == [ORIGINAL]
        torch.testing.assert_close(out.probs, original.exp())


def test_mean_aggregation_averages_all_reconstructions():
    original = torch.log(torch.tensor([[0.6, 0.3, 0.1]], dtype=torch.float64))
    candidates = torch.log(torch.tensor([[[0.1, 0.8, 0.1], [0.5, 0.2, 0.3]]], dtype=torch.float64))
    out = select("mean", original, candidates, torch.tensor([0.3], dtype=torch.float64))
    torch.testing.assert_close(out.probs, torch.tensor([[0.3, 0.5, 0.2]], dtype=torch.float64))


def test_scenarios_1_and_2_need_an_interval():
    original = torch.zeros(1, 3, dtype=torch.float64).log_softmax(-1)
    with pytest.raises(ValueError, match="calibrated interval"):
        select(1, original, original.unsqueeze(1), torch.tensor([0.1]))


@pytest.mark.parametrize("trial", range(6))
def test_property_defended_argmax_equals_undefended_for_random_models(trial):
    """For random diffusion models, classifiers and inputs, scenarios 1-3 never change a label."""
    gen = torch.Generator().manual_seed(100 + trial)
    rec = make_reconstructor(seed=trial)
    model = LinearClassifier(classes=3 + trial, scale=float(torch.rand((), generator=gen) * 10), seed=trial).eval()
    x = torch.rand(12, 1, 8, 8, generator=gen)
    members, nonmembers = torch.rand(6, 1, 8, 8, generator=gen), torch.rand(6, 1, 8, 8, generator=gen)
    with torch.no_grad():
        labels = model(x).argmax(-1)
    t = [10, 20, 40, 60, 100, 200][trial]
    for scenario in (1, 2, 3):
        defense = Diffence(rec, n=5, t=t, k=10, scenario=scenario, seed=trial)
        if scenario in (1, 2):
            defense.calibrate(model, members, nonmembers if scenario == 1 else None, grid=8, bins=6)
        out = defense.defend_detailed(model, x)
        assert torch.equal(out.probs.argmax(-1), labels)
        assert torch.equal(out.labels, labels)
        torch.testing.assert_close(out.probs.sum(-1), torch.ones(12))


def test_label_matches_mask():
    original = torch.tensor([[0.0, 1.0]]).log_softmax(-1)
    candidates = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]]).log_softmax(-1)
    assert label_matches(original, candidates).tolist() == [[False, True]]
