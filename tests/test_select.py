"""Selection rules: phi, uniform picks, intervals, label preservation (property test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare, kstest

from diffence_plugin import Diffence
from diffence_plugin.select import (
    ORIGINAL,
    label_matches,
    phi,
    pick_eligible,
    pick_stable,
    pick_uniform,
    priorities,
    select,
    select_in_interval,
)

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


def test_priorities_are_independent_uniforms_that_do_not_depend_on_n():
    u = torch.rand(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    prio = priorities(u, 8)
    assert prio.shape == (4000, 8) and prio.dtype == torch.float64
    torch.testing.assert_close(priorities(u, 3), prio[:, :3], rtol=0, atol=0)  # Candidates.first(3)
    torch.testing.assert_close(priorities(u.clone(), 8), prio, rtol=0, atol=0)  # a function of u alone
    for j in range(8):
        assert kstest(prio[:, j].numpy(), "uniform").pvalue > 1e-3
    corr = np.corrcoef(np.c_[u.numpy(), prio.numpy()].T)
    assert np.abs(corr[np.triu_indices(9, 1)]).max() < 0.08  # 4,000 rows: |r| of independent pairs < 0.06 mostly


@pytest.mark.parametrize("pick", ["rank", "stable"])
def test_both_picks_are_uniform_among_the_eligible_entries(pick):
    eligible = torch.tensor([[True, False, True, True, False, True, False, True]]).expand(20000, 8)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    index = pick_eligible(eligible, u, pick)
    assert bool(eligible[0, index].all())
    counts = np.bincount(index.numpy(), minlength=8)[[0, 2, 3, 5, 7]]
    assert chisquare(counts).pvalue > 1e-3, counts
    assert pick_eligible(torch.zeros(2, 8, dtype=torch.bool), u[:2], pick).tolist() == [ORIGINAL, ORIGINAL]
    with pytest.raises(ValueError, match="pick must be one of"):
        pick_eligible(eligible[:1], u[:1], "first")


def test_the_stable_pick_moves_only_when_the_pick_or_an_entry_that_outranks_it_changes():
    """Flip one entry's eligibility (a near-duplicate query whose candidate crossed an interval edge): the
    stable pick stays unless that entry was the pick or outranks it; the rank pick also moves whenever the
    entry lies before the pick."""
    gen = torch.Generator().manual_seed(2)
    eligible = torch.rand(3000, 16, generator=gen) < 0.5
    u = torch.rand(3000, generator=gen, dtype=torch.float64)
    prio = priorities(u, 16)
    before, ranked = pick_stable(eligible, u), pick_uniform(eligible, u)
    moved = {"stable": 0, "rank": 0}
    for j in range(16):
        flipped = eligible.clone()
        flipped[:, j] = ~flipped[:, j]
        after = pick_stable(flipped, u)
        has = before >= 0
        outranks = prio[:, j] < prio.gather(1, before.clamp_min(0).unsqueeze(1)).squeeze(1)
        may_move = ~has | (before == j) | (~eligible[:, j] & outranks)
        assert torch.equal(after[~may_move], before[~may_move]), j
        joins_first = ~eligible[:, j] & (~has | outranks)
        assert bool((after[joins_first] == j).all()), j  # a joining entry that outranks the pick is picked
        left = (before == j) & flipped.any(dim=1)  # the pick left: the runner-up, ranked below it
        runner = after[left]
        assert bool((runner != j).all() and flipped[left].gather(1, runner.unsqueeze(1)).all()), j
        assert bool((prio[left].gather(1, runner.unsqueeze(1)).squeeze(1) > prio[left, j]).all()), j
        moved["stable"] += int((after != before).sum())
        moved["rank"] += int((pick_uniform(flipped, u) != ranked).sum())
    assert moved["stable"] < 0.4 * moved["rank"], moved  # measured: 12.6% against 37.5% of the flips


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
        defense = Diffence(rec, n=5, t=t, k=10, scenario=scenario, seed=trial, pick=("rank", "stable")[trial % 2])
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
