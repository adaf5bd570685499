"""DualMD and DistillMD: disjoint halves, teacher targets, alternation, save/load, bad input, and the
membership attacks on the diffusion model itself (known answers first)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from diffence_plugin.adapters import art_attacks
from diffence_plugin.adapters.art import DiffenceClassifier, DiffencePreprocessor

from diffence_plugin import Diffence, DualReconstructor, Reconstructor, train_diffusion
from diffence_plugin.attacks.diffusion_attacks import (
    diffusion_audit,
    noise_errors,
    reconstruction_errors,
    secmi_errors,
)
from diffence_plugin.defenses.pipeline import DefensePipeline
from diffence_plugin.diffusion import (
    TeacherTargets,
    disjoint_halves,
    train_distilled,
    train_dual,
)

from .conftest import LinearClassifier

TINY = dict(steps=3, batch_size=8, max_timestep=60, progress=False)


@pytest.fixture(scope="module")
def data(digits):
    x, _ = digits
    return torch.from_numpy(x[:24])


@pytest.fixture(scope="module")
def pair(data):
    return train_dual(data, split_seed=5, seed=0, **TINY)


def test_halves_are_disjoint_cover_the_data_and_follow_the_seed():
    halves = disjoint_halves(101, seed=3)
    assert len(halves.a) == 51 and len(halves.b) == 50
    assert not set(halves.a) & set(halves.b)
    assert sorted(set(halves.a) | set(halves.b)) == list(range(101))
    again, other = disjoint_halves(101, seed=3), disjoint_halves(101, seed=4)
    assert np.array_equal(again.a, halves.a) and not np.array_equal(other.a, halves.a)
    assert halves.membership().sum() == 50 and halves.membership()[halves.b].all()
    with pytest.raises(ValueError, match="at least 2 records"):
        disjoint_halves(1, seed=0)


def test_each_model_records_its_half_and_trains_on_it_only(pair, data):
    first, second = pair.models
    a, b = first.training["split"], second.training["split"]
    assert (a["half"], b["half"]) == ("a", "b") and a["seed"] == b["seed"] == 5
    assert a["half_records"] + b["half_records"] == len(data) == a["records"]
    assert first.training["images"][0] == a["half_records"] and second.training["images"][0] == b["half_records"]
    assert first.fingerprint() != second.fingerprint()


def test_each_student_target_comes_from_the_teacher_that_never_saw_the_sample(pair, data):
    targets = TeacherTargets(pair, data)
    halves = disjoint_halves(len(data), 5)
    gen = torch.Generator().manual_seed(0)
    indices = torch.arange(len(data))
    noisy = torch.randn((len(data), 1, 8, 8), generator=gen)
    steps = torch.randint(0, 60, (len(data),), generator=gen)
    batched = targets(noisy, steps, indices)
    teacher = {"a": pair.models[0], "b": pair.models[1]}
    for i in range(len(data)):
        unseen = teacher["b"] if i in halves.a else teacher["a"]
        seen = teacher["a"] if i in halves.a else teacher["b"]
        with torch.no_grad():
            want = unseen.unet(noisy[i:i + 1], steps[i:i + 1]).sample
            other = seen.unet(noisy[i:i + 1], steps[i:i + 1]).sample
        torch.testing.assert_close(batched[i:i + 1], want, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(batched[i:i + 1], other, atol=1e-5)
    assert not batched.requires_grad


def test_the_student_is_an_ordinary_reconstructor_that_records_its_teachers(pair, data, tmp_path):
    student = train_distilled(data, pair, seed=0, **TINY)
    assert type(student) is Reconstructor
    record = student.training["targets"]
    assert record["teachers"] == {"a": pair.models[0].fingerprint(), "b": pair.models[1].fingerprint()}
    student.save_pretrained(tmp_path)
    loaded = Reconstructor.from_pretrained(tmp_path)
    assert type(loaded) is Reconstructor and loaded.fingerprint() == student.fingerprint()
    assert loaded.training["targets"] == json.loads(json.dumps(record))


def _calls(pair):
    order = []
    hooks = [model.unet.register_forward_hook(lambda *_, name=name: order.append(name))
             for name, model in zip(("first", "second"), pair.models)]
    return order, hooks


def test_alternation_calls_both_models_in_the_declared_order(pair, data):
    order, hooks = _calls(pair)
    try:
        pair.reconstruct(data[:2], 1, 60, 20, generator=torch.Generator().manual_seed(0))
        assert order == ["first", "second", "first"]
        order.clear()
        swapped = DualReconstructor(pair.models[1], pair.models[0])
        swapped.reconstruct(data[:2], 1, 40, 20, generator=torch.Generator().manual_seed(0))
        assert order == ["second", "first"]
    finally:
        for hook in hooks:
            hook.remove()


def test_keyed_mode_gives_each_reconstruction_to_one_model_by_its_noise(pair, data):
    keyed = DualReconstructor(*pair.models, mode="keyed")
    noise = torch.randn((len(data), 4, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    route = keyed.route(noise.reshape(-1, 1, 8, 8))
    assert 0 < int(route.sum()) < route.numel()  # both models are used
    assert torch.equal(route, keyed.route(noise.reshape(-1, 1, 8, 8).clone()))  # same draw, same model
    out = keyed.reconstruct(data, 4, 40, 20, noise=noise)
    flat = noise.reshape(-1, 1, 8, 8)
    x0 = (data * 2 - 1).unsqueeze(1).expand(-1, 4, -1, -1, -1).reshape(-1, 1, 8, 8)
    for model, rows in ((pair.models[0], ~route), (pair.models[1], route)):
        alone = model.denoise(model.add_noise(x0[rows], flat[rows], 40), 40, 20)
        torch.testing.assert_close(out.reshape(-1, 1, 8, 8)[rows], (alone.clamp(-1, 1) + 1) / 2)
    with pytest.raises(ValueError, match="keyed mode needs a route"):
        keyed.denoise(x0[:2], 40, 20)


def test_dual_pair_round_trips_and_loads_through_the_generic_loader(pair, data, tmp_path):
    pair.save_pretrained(tmp_path / "dual")
    loaded = Reconstructor.from_pretrained(tmp_path / "dual")
    assert isinstance(loaded, DualReconstructor) and loaded.mode == "alternate"
    assert loaded.fingerprint() == pair.fingerprint()
    noise = torch.randn((3, 2, 1, 8, 8), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(loaded.reconstruct(data[:3], 2, 60, 20, noise=noise),
                               pair.reconstruct(data[:3], 2, 60, 20, noise=noise))
    keyed = DualReconstructor.from_pretrained(tmp_path / "dual", mode="keyed")
    assert keyed.mode == "keyed" and keyed.fingerprint() != pair.fingerprint()
    with pytest.raises(FileExistsError, match="holds a dual pair"):  # would be shadowed by dual.json on load
        pair.models[0].save_pretrained(tmp_path / "dual")
    pair.models[0].save_pretrained(tmp_path / "single")
    with pytest.raises(FileExistsError, match="holds a single model"):
        pair.save_pretrained(tmp_path / "single")


def test_mismatched_or_incomplete_pairs_are_refused(pair, data, tmp_path):
    other = train_dual(data, split_seed=6, seed=0, **TINY)
    with pytest.raises(ValueError, match="different splits: seed"):
        DualReconstructor(pair.models[0], other.models[1])
    with pytest.raises(ValueError, match="both models were trained on half 'a'"):
        DualReconstructor(pair.models[0], other.models[0])
    plain = train_diffusion(data, **TINY)
    with pytest.raises(ValueError, match="no record of the disjoint half"):
        DualReconstructor(pair.models[0], plain)
    with pytest.raises(ValueError, match="unknown dual mode"):
        DualReconstructor(*pair.models, mode="mean")
    pair.save_pretrained(tmp_path / "dual")
    import shutil

    shutil.rmtree(tmp_path / "dual" / "second")
    with pytest.raises(FileNotFoundError, match="missing the second model folder"):
        Reconstructor.from_pretrained(tmp_path / "dual")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "dual.json").write_text('{"format": "diffence-dual-reconstructor", "mode": "x", "evil": 1}')
    with pytest.raises(ValueError, match="unknown key"):
        Reconstructor.from_pretrained(tmp_path / "bad")
    with pytest.raises(ValueError, match="halves of other data"):
        TeacherTargets(pair, data[:20])
    with pytest.raises(ValueError, match="different splits"):
        TeacherTargets((pair.models[0], other.models[1]), data)


def test_a_dual_reconstructor_works_in_diffence_the_art_adapters_and_pipelines(pair, data, tmp_path):
    model = LinearClassifier().eval()
    defense = Diffence(pair, n=3, t=40, k=20, scenario=3, seed=7, levels=16)
    x = data[:6]
    out = defense.defend(model, x)
    assert out.shape == (6, 10)
    with torch.no_grad():
        assert torch.equal(out.argmax(1), model(x).argmax(1))
    target = art_attacks.probability_classifier(model, (1, 8, 8), 10)
    np.testing.assert_allclose(DiffenceClassifier(target, defense).predict(x.numpy()), out.numpy(), atol=1e-5)
    art = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
                            clip_values=(0, 1), preprocessing_defences=[DiffencePreprocessor(defense, model)],
                            device_type="cpu")
    assert art.predict(x.numpy()).shape == (6, 10)
    torch.testing.assert_close(DefensePipeline(model, pre=[defense])(x), out)
    calibrated = Diffence(pair, n=3, t=40, k=20, scenario=1, seed=7)
    calibrated.calibrate(model, data[:12], data[12:], grid=4, bins=4)
    calibrated.save_pretrained(tmp_path / "defense")
    loaded = Diffence.from_pretrained(tmp_path / "defense")
    assert isinstance(loaded.reconstructor, DualReconstructor) and loaded.calibration is not None
    assert loaded.calibration.reconstructor == pair.fingerprint()
    single = Diffence(pair.models[0], n=3, t=40, k=20, scenario=1, seed=7)
    with pytest.raises(ValueError, match="reconstructor"):
        single.load_calibration(tmp_path / "defense" / "calibration.json")


def _zero_noise_model(seed: int = 0) -> Reconstructor:
    """A UNet whose output layer is zero: it predicts eps = 0 everywhere (answers known in closed form)."""
    from .conftest import make_reconstructor

    rec = make_reconstructor(seed=seed)
    with torch.no_grad():
        rec.unet.conv_out.weight.zero_()
        rec.unet.conv_out.bias.zero_()
    return rec


def test_noise_error_of_a_zero_predictor_is_the_mean_square_of_the_drawn_noise(data):
    rec = _zero_noise_model()
    errors = noise_errors(rec, data[:5], (10, 50), repeats=3, seed=4)
    from diffence_plugin.attacks.diffusion_attacks import _noise

    for j in range(2):
        want = np.mean([(_noise((5, 1, 8, 8), 4, 1000 * j + r) ** 2).flatten(1).mean(1).numpy() for r in range(3)], 0)
        np.testing.assert_allclose(errors[:, j], want, rtol=1e-5)


def test_secmi_error_of_a_zero_predictor_is_zero_and_positive_for_a_real_one(data):
    np.testing.assert_allclose(secmi_errors(_zero_noise_model(), data[:5], 60, 20), 0.0, atol=1e-10)
    assert (secmi_errors(train_diffusion(data, **TINY), data[:5], 60, 20) > 0).all()


def test_reconstruction_error_at_t_zero_is_zero(data):
    rec = train_diffusion(data, **TINY)
    np.testing.assert_allclose(reconstruction_errors(rec, data[:4], 0, 20), 0.0, atol=1e-12)
    assert (reconstruction_errors(rec, data[:4], 60, 20, n=2) > 0).all()


def test_attacks_find_an_overfit_ddpm_and_the_audit_chooses_on_attacker_records(digits):
    x, _ = digits
    members, nonmembers = torch.from_numpy(x[:32]), torch.from_numpy(x[400:432])
    overfit = train_diffusion(members, steps=400, batch_size=32, max_timestep=100, lr=2e-3, ema_decay=0.0,
                              progress=False)
    losses = noise_errors(overfit, torch.cat([members, nonmembers]), (10, 40), repeats=4, seed=0)
    assert losses[:32].mean() < losses[32:].mean()  # a memorised set is denoised better
    results = diffusion_audit(overfit, (members[:16], nonmembers[:16]), (members[16:], nonmembers[16:]),
                              timesteps=(10, 40), t=40, k=20, repeats=2, n=2, bootstrap=50)
    assert set(results) >= {"loss@10", "loss@40", "loss (best t)", "loss_trajectory", "secmi", "reconstruction",
                            "best"}
    assert all(r.selection_auc is not None and 0 <= r.auc <= 1 for r in results.values())
    assert results["best"].selection_auc == max(results[k].selection_auc for k in
                                                ("loss (best t)", "loss_trajectory", "secmi", "reconstruction"))
    assert results["loss (best t)"].auc > 0.5
    swapped = diffusion_audit(overfit, (nonmembers[:16], members[:16]), (nonmembers[16:], members[16:]),
                              timesteps=(10, 40), t=40, k=20, repeats=2, n=2, bootstrap=0)
    for name in ("loss@10", "loss@40"):  # "members" the model never saw: the attacker flips the score's sign
        assert swapped[name].selection_auc >= 0.5 and swapped[name].auc > 0.5
    with pytest.raises(ValueError, match="at least 4 records"):
        diffusion_audit(overfit, (members[:2], nonmembers[:16]), (members[16:], nonmembers[16:]))
