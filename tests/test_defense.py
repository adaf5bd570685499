"""The Diffence object: determinism, shared candidates, memory bound, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffence_plugin import Diffence, DiffenceConfig

from .conftest import LinearClassifier, make_reconstructor


@pytest.fixture(scope="module")
def rec():
    return make_reconstructor()


def test_deterministic_mode_answers_repeated_queries_identically(rec, classifier, images):
    defense = Diffence(rec, n=6, scenario=3, seed=11)
    first = defense.defend(classifier, images)
    again = defense.defend(classifier, images)
    shuffled = defense.defend(classifier, images[[5, 4, 3, 2, 1, 0]])
    alone = defense.defend(classifier, images[2:3])
    torch.testing.assert_close(first, again)
    torch.testing.assert_close(first, shuffled[[5, 4, 3, 2, 1, 0]])
    torch.testing.assert_close(first[2:3], alone)
    other_secret = Diffence(rec, n=6, scenario=3, seed=12).defend(classifier, images)
    assert not torch.allclose(first, other_secret)


def test_random_mode_varies_between_queries_but_is_seeded(rec, classifier, images):
    a = Diffence(rec, n=6, scenario=3, deterministic=False, seed=1)
    b = Diffence(rec, n=6, scenario=3, deterministic=False, seed=1)
    first = a.defend(classifier, images)
    torch.testing.assert_close(first, b.defend(classifier, images))
    assert not torch.allclose(first, a.defend(classifier, images))


def test_one_reconstruction_serves_every_scenario(rec, classifier, images):
    gen = torch.Generator().manual_seed(0)
    members, nonmembers = torch.rand(8, 1, 8, 8, generator=gen), torch.rand(8, 1, 8, 8, generator=gen)
    base = Diffence(rec, n=6, scenario=3)
    candidates = base.candidates(classifier, images)
    for scenario in (1, 2, 3, "mean"):
        defense = base.with_config(scenario=scenario)
        if scenario in (1, 2):
            defense.calibrate(classifier, members, nonmembers, grid=6, bins=5)
        torch.testing.assert_close(defense.release(candidates).probs.float(), defense.defend(classifier, images))


def test_batches_never_exceed_max_batch(rec, classifier):
    x = torch.rand(9, 1, 8, 8)
    sizes = {"unet": [], "classifier": []}
    h = rec.unet.register_forward_pre_hook(lambda m, a: sizes["unet"].append(a[0].shape[0]))
    g = classifier.register_forward_pre_hook(lambda m, a: sizes["classifier"].append(a[0].shape[0]))
    try:
        Diffence(rec, n=10, scenario=3, max_batch=16).defend(classifier, x)
    finally:
        h.remove()
        g.remove()
    assert max(sizes["unet"]) <= 16 and max(sizes["classifier"]) <= 16


def test_purify_returns_selected_images_that_keep_labels(rec, classifier, images):
    out = Diffence(rec, n=4, scenario=3).defend_detailed(classifier, images, return_images=True)
    with torch.no_grad():
        relabelled = classifier(out.images).argmax(-1)
    assert torch.equal(relabelled, out.labels)
    assert out.images.shape == images.shape


def test_probability_outputs_are_detected(rec, images):
    logits_model = LinearClassifier().eval()
    probs_model = torch.nn.Sequential(logits_model, torch.nn.Softmax(dim=1))
    a = Diffence(rec, n=4, scenario=3, seed=5).defend(logits_model, images)
    b = Diffence(rec, n=4, scenario=3, seed=5).defend(probs_model, images)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_float64_and_numpy_inputs_are_converted(rec, classifier, images):
    defense = Diffence(rec, n=3, scenario=3)
    expected = defense.defend(classifier, images)
    torch.testing.assert_close(defense.defend(classifier, images.double()), expected)
    torch.testing.assert_close(defense.defend(classifier, images.numpy()), expected)


@pytest.mark.parametrize("bad,error,message", [
    (torch.full((2, 1, 8, 8), float("nan")), ValueError, "NaN"),
    (torch.full((2, 1, 8, 8), float("inf")), ValueError, "infinite"),
    (torch.rand(1, 8, 8), ValueError, "rank 3"),
    (torch.rand(2, 3, 8, 8), ValueError, "3 channel"),
    (torch.rand(2, 1, 9, 9), ValueError, "spatial size"),
    (torch.rand(2, 1, 8, 8) * 255, ValueError, r"\[0, 1\]"),
    (torch.rand(2, 1, 8, 8) - 0.5, ValueError, r"\[0, 1\]"),
    (torch.rand(0, 1, 8, 8), ValueError, "empty batch"),
    (torch.randint(0, 255, (2, 1, 8, 8)), TypeError, "dtype torch.int64"),
    (torch.ones(2, 1, 8, 8, dtype=torch.bool), TypeError, "dtype torch.bool"),
    ([[0.5]], TypeError, "list"),
])
def test_bad_inputs_are_named(rec, classifier, bad, error, message):
    with pytest.raises(error, match=message):
        Diffence(rec, n=2, scenario=3).defend(classifier, bad)


def test_classifier_problems_are_named(rec, images):
    defense = Diffence(rec, n=2, scenario=3)
    with pytest.raises(ValueError, match="returned 10 classes, expected 7"):
        defense.defend(LinearClassifier(), images, nb_classes=7)
    with pytest.raises(ValueError, match="shape"):
        defense.defend(lambda x: torch.zeros(x.shape[0]), images)
    with pytest.raises(TypeError, match="torch.Tensor"):
        defense.defend(lambda x: np.zeros((x.shape[0], 3)), images)
    with pytest.raises(ValueError, match="NaN"):
        defense.defend(lambda x: torch.full((x.shape[0], 3), float("nan")), images)
    with pytest.raises(ValueError, match="at least 2 classes"):
        defense.defend(lambda x: torch.zeros(x.shape[0], 1), images)


def test_calibrated_defense_refuses_a_classifier_with_other_classes(rec, classifier, images):
    defense = Diffence(rec, n=2, scenario=2)
    defense.calibrate(classifier, images)
    with pytest.raises(ValueError, match="returned 4 classes, expected 10"):
        defense.defend(LinearClassifier(classes=4), images)


@pytest.mark.parametrize("kwargs,message", [
    (dict(t=45, k=10), "multiple of k"),
    (dict(n=0), "n .* must be >= 1"),
    (dict(k=0), "k .* must be >= 1"),
    (dict(scenario=4), "scenario must be one of"),
    (dict(output="logprobs"), "output must be one of"),
    (dict(max_batch=0), "max_batch"),
])
def test_bad_configuration_is_named(rec, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Diffence(rec, **kwargs)


def test_config_types_are_checked():
    with pytest.raises(TypeError, match="n must be an int"):
        DiffenceConfig(n=2.5)
    with pytest.raises(TypeError, match="reconstructor must be a Reconstructor"):
        Diffence("unet")


def test_digits_cnn_is_a_valid_classifier_for_the_defense(rec):
    from diffence_plugin.data import DigitsCNN

    model = DigitsCNN().eval()
    x = torch.rand(3, 1, 8, 8)
    out = Diffence(rec, n=2, scenario=3).defend(model, x)
    with torch.no_grad():
        assert torch.equal(out.argmax(-1), model(x).argmax(-1))
