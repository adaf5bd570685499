"""The ART adapters against ART's real estimators and membership-inference attacks, on small real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from diffence_plugin.adapters import art_attacks
from diffence_plugin.adapters.art import DiffenceClassifier, DiffencePreprocessor

from diffence_plugin import Diffence, train_diffusion
from diffence_plugin.attacks.roles import membership_split
from diffence_plugin.data import DigitsMLP
from diffence_plugin.defenses.training import train_classifier

from .conftest import onehot


@pytest.fixture(scope="module")
def setup(digits):
    """A real overfit MLP on digits, a briefly trained real DDPM, and a calibrated defense (small N)."""
    x, y = digits
    split = membership_split(len(x), 120, 20, 30, 30, seed=0)
    torch.manual_seed(0)
    model = train_classifier(DigitsMLP(hidden=128), x[split.members], y[split.members], epochs=40, progress=False)
    rec = train_diffusion(torch.from_numpy(x[split.members]), steps=30, max_timestep=40, progress=False)
    defense = Diffence(rec, n=4, t=40, k=10, scenario=1, seed=0)
    defense.calibrate(model, torch.from_numpy(x[split.defender_members]),
                      torch.from_numpy(x[split.defender_nonmembers]), grid=8, bins=8)
    target = art_attacks.probability_classifier(model, (1, 8, 8), 10)
    return x, y, split, model, defense, target


def sets(x, y, split, names):
    return [art_attacks.AttackData(x[getattr(split, n)], onehot(y[getattr(split, n)])) for n in names]


def test_preprocessor_inside_pytorch_classifier(setup):
    x, y, split, model, defense, _ = setup
    pre = DiffencePreprocessor(defense, model, nb_classes=10)
    art = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
                            clip_values=(0, 1), preprocessing_defences=[pre], device_type="cpu")
    batch = x[split.eval_members[:10]].astype(np.float64)  # ART passes float64 straight through
    defended = art.predict(batch)
    assert defended.dtype == np.float32 and defended.shape == (10, 10)
    with torch.no_grad():
        labels = model(torch.from_numpy(batch).float()).argmax(-1).numpy()
    np.testing.assert_array_equal(defended.argmax(-1), labels)
    grad = art.loss_gradient(batch.astype(np.float32), onehot(y[split.eval_members[:10]]))
    assert grad.shape == batch.shape and np.isfinite(grad).all() and np.abs(grad).sum() > 0


def test_preprocessor_set_params_rejects_unknown_keys(setup):
    _, _, _, model, defense, _ = setup
    pre = DiffencePreprocessor(defense, model)
    with pytest.raises(ValueError, match="unknown parameter"):
        pre.set_params(cutof=0.9)
    pre.set_params(nb_classes=10)
    assert pre.nb_classes == 10
    assert pre.apply_fit is False and pre.apply_predict is True


def test_classifier_predict_is_the_defense_and_loss_follows_it(setup):
    x, y, split, model, defense, target = setup
    wrapped = DiffenceClassifier(target, defense)
    batch = x[split.eval_nonmembers[:12]]
    probs = wrapped.predict(batch)
    expected = defense.defend(model, torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    labels = y[split.eval_nonmembers[:12]]
    loss = wrapped.compute_loss(batch, onehot(labels))
    np.testing.assert_allclose(loss, -np.log(probs[np.arange(12), labels]), rtol=1e-5)
    assert wrapped.compute_loss(batch, labels, reduction="mean") == pytest.approx(loss.mean(), rel=1e-5)
    assert np.argmax(probs, 1).tolist() == np.argmax(target.predict(batch), 1).tolist()


def test_classifier_rejects_postprocessing_on_the_inner_estimator_and_double_defense(setup):
    from art.defences.postprocessor import HighConfidence

    _, _, _, model, defense, _ = setup
    inner = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
                              postprocessing_defences=[HighConfidence(0.1)])
    with pytest.raises(ValueError, match="postprocessing defences"):
        DiffenceClassifier(inner, defense)
    double = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
                               preprocessing_defences=[DiffencePreprocessor(defense, model)])
    with pytest.raises(ValueError, match="already applies"):
        DiffenceClassifier(double, defense)
    with pytest.raises(TypeError, match="ART classifier"):
        DiffenceClassifier(model, defense)


def test_classifier_applies_its_own_postprocessing_after_selection(setup):
    from art.defences.postprocessor import Rounded

    x, _, split, _, defense, target = setup
    wrapped = DiffenceClassifier(target, defense, postprocessing_defences=[Rounded(decimals=1)])
    probs = wrapped.predict(x[split.eval_members[:5]])
    np.testing.assert_allclose(probs, np.round(probs, 1))


@pytest.mark.parametrize("name", sorted(art_attacks.BLACK_BOX))
def test_black_box_attacks_run_against_the_wrapper(setup, name):
    x, y, split, _, defense, target = setup
    wrapped = DiffenceClassifier(target, defense)
    km, kn, em, en = sets(x, y, split, ["attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers"])
    half = [art_attacks.AttackData(d.x[: len(d.x) // 2], d.y[: len(d.y) // 2]) for d in (km, kn)]
    rest = [art_attacks.AttackData(d.x[len(d.x) // 2 :], d.y[len(d.y) // 2 :]) for d in (km, kn)]
    result = art_attacks.black_box(wrapped, name, tuple(half), tuple(rest), (em, en))
    assert 0.0 <= result.auc <= 1.0 and 0.0 <= result.accuracy <= 1.0
    assert 0.0 <= result.selection_auc <= 1.0 and result.ci["auc"][0] <= result.auc <= result.ci["auc"][1]


def test_loss_attack_sees_the_defended_loss(setup):
    """ART's loss-based attack computes its features from DiffenceClassifier.compute_loss, i.e. the defense."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox

    x, y, split, _, defense, target = setup
    wrapped = DiffenceClassifier(target, defense)
    batch, labels = x[split.eval_members[:8]], onehot(y[split.eval_members[:8]])
    calls = []
    original = wrapped.compute_loss
    wrapped.compute_loss = lambda *a, **k: calls.append(1) or original(*a, **k)
    attack = MembershipInferenceBlackBox(wrapped, input_type="loss", attack_model_type="rf")
    attack.fit(batch, labels, x[split.eval_nonmembers[:8]], onehot(y[split.eval_nonmembers[:8]]))
    assert len(calls) == 2
    assert attack.infer(batch, labels).shape == (8, 1)


def test_rule_based_attack_runs_against_the_wrapper(setup):
    x, y, split, _, defense, target = setup
    km, kn, em, en = sets(x, y, split, ["attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers"])
    defended = art_attacks.rule_based(DiffenceClassifier(target, defense), (km, kn), (em, en))
    undefended = art_attacks.rule_based(target, (km, kn), (em, en))
    assert defended.auc == pytest.approx(undefended.auc)  # labels are preserved, so the gap attack is unchanged


def test_decision_boundary_attack_runs_against_the_wrapper(setup):
    x, y, split, _, defense, target = setup
    wrapped = DiffenceClassifier(target, defense.with_config(scenario=3, n=2))
    km, kn, em, en = [art_attacks.AttackData(d.x[:4], d.y[:4]) for d in
                      sets(x, y, split, ["attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers"])]
    result = art_attacks.decision_boundary(wrapped, (km, kn), (em, en), max_iter=1, max_eval=10, init_eval=2)
    assert 0.0 <= result.auc <= 1.0


def test_shadow_models_attack_runs_against_the_wrapper(setup):
    x, y, split, _, defense, target = setup
    wrapped = DiffenceClassifier(target, defense)
    rest = np.setdiff1d(np.arange(len(x)), split.members)[200:400]
    shadow = art_attacks.AttackData(x[rest], onehot(y[rest]))
    template = art_attacks.probability_classifier(DigitsMLP(hidden=64), (1, 8, 8), 10)
    km, kn, em, en = sets(x, y, split, ["attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers"])
    result = art_attacks.shadow_models(wrapped, template, shadow, (km, kn), (em, en), num_shadow_models=2,
                                       nb_epochs=3)
    assert 0.0 <= result.auc <= 1.0


@pytest.mark.parametrize("scenario", [1, 2, 3])
def test_shadow_models_answer_through_the_attackers_diffence(setup, scenario):
    """Defense-aware shadows: every shadow answer is the attacker's Diffence release on that shadow (labels kept,
    probabilities changed), calibrated on that shadow's own training records for scenarios 1 and 2."""
    from diffence_plugin.attacks.attacker import ShadowDiffence

    x, y, split, _, defense, target = setup
    rest = np.setdiff1d(np.arange(len(x)), split.members)[200:240]
    outside = np.setdiff1d(np.arange(len(x)), split.members)[240:250]
    attacker = defense.with_config(scenario=scenario, seed=7, output="logits")
    shadow = ShadowDiffence(attacker, x[rest], attacker.reconstructions(torch.from_numpy(x[rest])), x[outside],
                            attacker.reconstructions(torch.from_numpy(x[outside])))
    calls = []

    def answer(module, queries, trained_on):
        out = shadow(module, queries, trained_on)
        with torch.no_grad():
            plain = module(torch.from_numpy(queries)).numpy()
        calls.append((module, queries, trained_on, out, plain))
        return out

    template = art_attacks.probability_classifier(DigitsMLP(hidden=64), (1, 8, 8), 10)
    km, kn, em, en = sets(x, y, split, ["attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers"])
    result = art_attacks.shadow_models(DiffenceClassifier(target, defense), template,
                                       art_attacks.AttackData(x[rest], onehot(y[rest])), (km, kn), (em, en),
                                       answer=answer, num_shadow_models=2, nb_epochs=3)
    assert 0.0 <= result.auc <= 1.0
    assert len(calls) == 4 and len({id(c[0]) for c in calls}) == 2  # each shadow: its members, its non-members
    for module, queries, trained_on, out, plain in calls:
        np.testing.assert_array_equal(out.argmax(-1), plain.argmax(-1))
        np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-6)
        assert not np.allclose(out, plain, atol=1e-4)
        assert len(trained_on) == 20  # ART trains each shadow on a random half of the records
    if scenario != 3:
        assert len(shadow._calibrated) == 2 and all(d.calibration is not None for d in shadow._calibrated.values())
    with pytest.raises(ValueError, match="not reconstructed"):
        shadow(calls[0][0], x[outside[:2]], calls[0][2])


def test_opacus_trained_model_works_through_the_wrapper(setup):
    """A model trained with opacus DP-SGD, loaded back into a plain module, is defended and attacked via ART."""
    from opacus import PrivacyEngine

    x, y, split, _, defense, _ = setup
    torch.manual_seed(0)
    model = DigitsMLP(hidden=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    data = torch.utils.data.TensorDataset(torch.from_numpy(x[split.members]), torch.from_numpy(y[split.members]))
    loader = torch.utils.data.DataLoader(data, batch_size=32)
    private, optimizer, loader = PrivacyEngine().make_private(module=model, optimizer=optimizer, data_loader=loader,
                                                              noise_multiplier=1.0, max_grad_norm=1.0)
    for xb, yb in loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(private(xb), yb).backward()
        optimizer.step()
    plain = DigitsMLP(hidden=64)
    plain.load_state_dict({k.removeprefix("_module."): v for k, v in private.state_dict().items()})
    target = art_attacks.probability_classifier(plain.eval(), (1, 8, 8), 10)
    fresh = defense.with_config(scenario=3)
    wrapped = DiffenceClassifier(target, fresh)
    em, en = sets(x, y, split, ["eval_members", "eval_nonmembers"])
    result = art_attacks.black_box(wrapped, "bb_rf", (em, en), (em, en), (em, en))
    assert 0.0 <= result.auc <= 1.0
    assert wrapped.predict(em.x).argmax(1).tolist() == target.predict(em.x).argmax(1).tolist()


def test_an_art_estimator_can_stand_for_its_model_and_anything_else_is_named():
    """``Diffence.calibrate(art_classifier, ...)`` and every other classifier argument accept an ART estimator
    (its torch module is used); a non-callable object is a TypeError that says what to pass."""
    from diffence_plugin.adapters.art_attacks import probability_classifier

    from diffence_plugin.classify import as_classifier

    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    art = probability_classifier(module, (1, 8, 8), 10)
    assert as_classifier(art) is art.model and as_classifier(module) is module
    with pytest.raises(TypeError, match="for an ART estimator pass its .model"):
        as_classifier(object())
