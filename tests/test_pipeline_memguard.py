"""DefensePipeline with Diffence and MemGuard, and what ART's attacks see of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffence_plugin.adapters import art_attacks
from diffence_plugin.adapters.art import DefendedClassifier
from diffence_plugin.adapters.art_plugins import OneHotLabels

from diffence_plugin import DefensePipeline, Diffence, MemGuard
from diffence_plugin.defenses.memguard import sorted_features

from .conftest import LinearClassifier, make_reconstructor


def separable_probs(seed: int = 0, n: int = 150):
    gen = torch.Generator().manual_seed(seed)
    members = torch.softmax(torch.randn(n, 10, generator=gen) * 6, -1)
    nonmembers = torch.softmax(torch.randn(n, 10, generator=gen) * 1.5, -1)
    return members, nonmembers


@pytest.fixture(scope="module")
def memguard():
    members, nonmembers = separable_probs()
    return MemGuard(epochs=200, max_iter=100).fit_probabilities(members, nonmembers)


def test_memguard_keeps_labels_and_pushes_its_attack_model_to_one_half(memguard):
    members, nonmembers = separable_probs(seed=1, n=60)
    queries = torch.cat([members, nonmembers])
    out = memguard.perturb(queries)
    assert torch.equal(out.probs.argmax(-1), queries.argmax(-1))
    assert out.probs.dtype == torch.float64
    assert (out.probs.sum(-1) - 1).abs().max() < 1e-12  # normalised in float64 by construction
    assert out.found.float().mean() > 0.5
    with torch.no_grad():
        g = torch.sigmoid(memguard._h(torch.softmax(torch.log(out.probs.float().clamp_min(1e-30)), -1)))
        g0 = torch.sigmoid(memguard._h(queries))
    released = out.released_noisy
    assert released.any()
    assert (g[released] - 0.5).abs().mean() < (g0[released] - 0.5).abs().mean()
    assert bool(((g[released] - 0.5).abs() < 0.1).float().mean() > 0.8)
    untouched = ~out.released_noisy
    kept = queries[untouched].double()  # released as given, renormalised in float64 (float32 sums miss 1 by ~1e-7)
    torch.testing.assert_close(out.probs[untouched], kept / kept.sum(-1, keepdim=True))


def test_memguard_answers_a_repeated_query_the_same_way_and_follows_the_c3_schedule(memguard):
    members, nonmembers = separable_probs(seed=3, n=40)
    queries = torch.cat([members, nonmembers])
    first, second = memguard(None, queries), memguard(None, queries)
    assert torch.equal(first, second)
    shuffled = memguard(None, queries.flip(0)).flip(0)
    torch.testing.assert_close(first, shuffled, atol=1e-5, rtol=0)  # per query, not per position or call
    assert MemGuard(c3=0.1).rounds == 7  # 0.1, 1, ..., 1e5 as in the authors' code
    assert MemGuard(c3=0.1, max_c3=10.0).rounds == 3 and MemGuard(rounds=2).rounds == 2


def test_memguard_budget_limits_how_often_noise_is_released(memguard):
    members, nonmembers = separable_probs(seed=2, n=60)
    queries = torch.cat([members, nonmembers])
    generous = MemGuard(epsilon=10.0, epochs=1)
    generous.attack = memguard.attack
    tight = MemGuard(epsilon=1e-3, epochs=1)
    tight.attack = memguard.attack
    assert generous.perturb(queries).released_noisy.sum() > tight.perturb(queries).released_noisy.sum()


def test_memguard_errors_are_named():
    with pytest.raises(ValueError, match="fitted"):
        MemGuard().perturb(torch.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        MemGuard(epsilon=0)
    with pytest.raises(ValueError, match="same K"):
        MemGuard().fit_probabilities(torch.rand(3, 4), torch.rand(3, 5))
    with pytest.raises(ValueError, match="non-members"):
        MemGuard().fit(lambda x: x, torch.rand(2, 1, 8, 8), None)


def test_sorted_features_are_descending():
    f = sorted_features(torch.tensor([[0.1, 0.7, 0.2]]))
    assert f.tolist() == [[pytest.approx(0.7), pytest.approx(0.2), pytest.approx(0.1)]]


def test_argmax_unchanged_through_diffence_then_memguard():
    gen = torch.Generator().manual_seed(0)
    model = LinearClassifier(scale=6.0).eval()
    diffence = Diffence(make_reconstructor(), n=4, scenario=1)
    pipeline = DefensePipeline(model, pre=[diffence], post=[MemGuard(epochs=50, max_iter=50)])
    pipeline.fit(torch.rand(20, 1, 8, 8, generator=gen), torch.rand(20, 1, 8, 8, generator=gen))
    assert diffence.calibration is not None and pipeline.post[0].attack is not None
    x = torch.rand(16, 1, 8, 8, generator=gen)
    with torch.no_grad():
        labels = model(x).argmax(-1)
    assert torch.equal(pipeline(x).argmax(-1), labels)


def test_memguard_after_diffence_is_fitted_on_diffence_outputs():
    gen = torch.Generator().manual_seed(0)
    model = LinearClassifier().eval()
    seen = []

    class Recorder(MemGuard):
        def fit_probabilities(self, member_probs, nonmember_probs):
            seen.append(member_probs)
            return super().fit_probabilities(member_probs, nonmember_probs)

    diffence = Diffence(make_reconstructor(), n=3, scenario=3)
    xm, xn = torch.rand(5, 1, 8, 8, generator=gen), torch.rand(5, 1, 8, 8, generator=gen)
    DefensePipeline(model, pre=[diffence], post=[Recorder(epochs=5)]).fit(xm, xn)
    torch.testing.assert_close(seen[0].float(), diffence.defend(model, xm))


def test_art_attacks_see_post_processing_in_predictions_and_losses(digits):
    """Prediction- and loss-based ART attacks both get the post-processed output (ART's compute_loss alone
    would skip postprocessing)."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox

    x, y = digits
    model = LinearClassifier().eval()
    target = art_attacks.probability_classifier(model, (1, 8, 8), 10)
    wrapped = DefendedClassifier(target, DefensePipeline(post=[OneHotLabels()]))
    batch, labels = x[:40], np.eye(10, dtype=np.float32)[y[:40]]
    predictions = wrapped.predict(batch)
    assert set(np.unique(predictions)) == {0.0, 1.0}
    losses = wrapped.compute_loss(batch, labels)
    assert set(np.round(np.unique(losses), 3)) <= {0.0, round(-np.log(1e-12), 3)}
    received = []
    for method in ("predict", "compute_loss"):
        original = getattr(wrapped, method)
        setattr(wrapped, method, lambda *a, _o=original, _m=method, **k: received.append((_m, _o(*a, **k))) or
                received[-1][1])
    for input_type in ("prediction", "loss"):
        attack = MembershipInferenceBlackBox(wrapped, input_type=input_type, attack_model_type="rf")
        attack.fit(batch[:20], labels[:20], batch[20:], labels[20:])
        assert attack.infer(batch[:5], labels[:5]).shape == (5, 1)
    assert {m for m, _ in received} == {"predict", "compute_loss"}
    allowed = {0.0, 1.0, round(-np.log(1e-12), 3)}
    assert all(set(np.round(np.unique(r), 3)) <= allowed for _, r in received)
