"""Training-time defenses: each trains, saves, loads, and runs through DiffenceClassifier and an ART attack."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffence_plugin.adapters import art_attacks
from diffence_plugin.adapters.art import DiffenceClassifier

from diffence_plugin import DefensePipeline, Diffence
from diffence_plugin.attacks.roles import membership_split
from diffence_plugin.cli import main
from diffence_plugin.data.cifar_models import DenseNet121, ResNet18
from diffence_plugin.defenses.hamp_output import HAMPOutput
from diffence_plugin.defenses.training import (
    build_model,
    load_target,
    save_target,
    to_plain_model,
    train_target,
)
from diffence_plugin.defenses.training.defenses import hamp_soft_label_confidence

from .conftest import make_reconstructor, onehot


@pytest.fixture(scope="module")
def data(digits):
    x, y = digits
    split = membership_split(len(x), 80, 10, 20, 20, seed=0)
    return x, y, split


DEFENSES = [
    ("none", {}, {}),
    ("dpsgd", {"epsilon": 5.0}, {"lr": 0.05}),
    ("relaxloss", {"alpha": 0.5}, {}),
    ("hamp", {"gamma": 0.7, "alpha": 0.01}, {}),
    ("selena", {"k": 3, "l": 1}, {}),
    ("advreg", {"lam": 1.0}, {}),
]


@pytest.mark.parametrize("name,options,overrides", DEFENSES, ids=[d[0] for d in DEFENSES])
def test_each_defense_trains_saves_loads_and_is_attacked_through_diffence(tmp_path, data, name, options, overrides):
    x, y, split = data
    kwargs = dict(epochs=4, batch_size=32, lr=1e-3, progress=False) | overrides
    target = train_target(x[split.members], y[split.members], defense=name, options=options,
                          test=(x[split.eval_nonmembers], y[split.eval_nonmembers]),
                          reference=(x[split.defender_nonmembers], y[split.defender_nonmembers]), **kwargs)
    assert 0 <= target.metrics["test_accuracy"] <= 1 and target.metrics["train_accuracy"] > 0.1
    save_target(target, tmp_path / name)
    loaded = load_target(tmp_path / name)
    batch = torch.from_numpy(x[split.eval_members])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(batch), target.model(batch))
    assert json.loads((tmp_path / name / "target.json").read_text())["defense"] == name
    art_model = art_attacks.probability_classifier(loaded.model, (1, 8, 8), 10)
    wrapped = DiffenceClassifier(art_model, Diffence(make_reconstructor(), n=2, scenario=3))
    km, kn, em, en = [art_attacks.AttackData(x[getattr(split, r)], onehot(y[getattr(split, r)])) for r in
                      ("attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers")]
    result = art_attacks.black_box(wrapped, "bb_loss_rf", (km, kn), (km, kn), (em, en))
    assert 0 <= result.auc <= 1
    assert wrapped.predict(em.x).argmax(1).tolist() == art_model.predict(em.x).argmax(1).tolist()


def test_dpsgd_reports_the_spent_epsilon_and_returns_a_plain_model(data):
    x, y, split = data
    target = train_target(x[split.members], y[split.members], defense="dpsgd", options={"epsilon": 3.0},
                          epochs=2, batch_size=32, lr=0.05, progress=False)
    assert 0 < target.metrics["epsilon"] <= 3.0 * 1.05
    assert target.opacus_compatible and target.metrics["delta"] == pytest.approx(1 / 160)
    for name, module in target.model.named_modules():
        hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
                 module._backward_pre_hooks)
        assert not any(hooks), f"submodule {name!r} keeps opacus hooks"
        assert not hasattr(module, "_module")
    art_model = art_attacks.probability_classifier(target.model, (1, 8, 8), 10)
    batch, labels = x[split.eval_members[:4]], onehot(y[split.eval_members[:4]])
    assert np.abs(art_model.loss_gradient(batch, labels)).sum() > 0  # raised IndexError with opacus' hooks left


def test_selena_sub_models_start_from_independent_initialisations():
    from diffence_plugin.data.models import reinitialised

    model = build_model("digits_mlp", 10, 1)
    a, b, again = reinitialised(model, 1), reinitialised(model, 2), reinitialised(model, 1)
    first = lambda m: next(m.parameters())  # noqa: E731
    assert not torch.equal(first(a), first(b)) and torch.equal(first(a), first(again))
    assert not torch.equal(first(a), first(model))


def test_opacus_models_load_as_plain_models_in_all_three_forms(data):
    """A GradSampleModule, its ``_module.``-prefixed state dict, or a plain state dict all give a plain model
    on which ART's predict, compute_loss and loss_gradient work."""
    from opacus import GradSampleModule

    x, y, split = data
    model = build_model("digits_cnn", 10, 1, opacus_compatible=True)
    private = GradSampleModule(model)
    forms = [private, private.state_dict(), model.state_dict()]
    assert any(k.startswith("_module.") for k in forms[1])
    batch, labels = x[:6], onehot(y[:6])
    for form in forms:
        plain = to_plain_model(form, lambda: build_model("digits_cnn", 10, 1, opacus_compatible=True))
        assert not hasattr(plain, "_module") and not plain._forward_hooks
        art = art_attacks.probability_classifier(plain, (1, 8, 8), 10)
        assert art.predict(batch).shape == (6, 10)
        assert art.compute_loss(batch, labels).shape == (6,)
        grad = art.loss_gradient(batch, labels)
        assert grad.shape == batch.shape and np.isfinite(grad).all()
    with pytest.raises(ValueError, match="weights do not fit"):
        to_plain_model({"bogus": torch.zeros(1)}, lambda: build_model("digits_cnn", 10, 1))
    with pytest.raises(TypeError, match="state dict"):
        to_plain_model("weights.pt", lambda: build_model("digits_cnn", 10, 1))


def test_cifar_architectures():
    resnet, densenet = ResNet18(), DenseNet121()
    assert sum(p.numel() for p in resnet.parameters()) == pytest.approx(11.17e6, rel=0.01)
    assert sum(p.numel() for p in densenet.parameters()) == pytest.approx(6.96e6, rel=0.01)
    x = torch.rand(2, 3, 32, 32)
    assert resnet.eval()(x).shape == (2, 10) and densenet.eval()(x).shape == (2, 10)
    small = build_model("resnet18", 10, 1, opacus_compatible=True)
    from opacus.validators import ModuleValidator

    assert ModuleValidator.validate(small, strict=False) == []
    assert small(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_relaxloss_keeps_training_loss_near_its_target(data):
    x, y, split = data
    xt, yt = torch.from_numpy(x[split.members]), torch.from_numpy(y[split.members])
    losses = {}
    for name, options in (("none", {}), ("relaxloss", {"alpha": 0.8})):
        model = train_target(xt.numpy(), yt.numpy(), defense=name, options=options, epochs=60, batch_size=32,
                             progress=False).model
        with torch.no_grad():
            losses[name] = float(torch.nn.functional.cross_entropy(model(xt), yt))
    assert losses["none"] < 0.05
    assert losses["relaxloss"] > 0.2


def test_hamp_soft_labels_have_the_requested_entropy():
    p = hamp_soft_label_confidence(10, 0.7)
    q = (1 - p) / 9
    entropy = -(p * np.log(p) + 9 * q * np.log(q))
    assert entropy == pytest.approx(0.7 * np.log(10), rel=1e-6)


def test_hamp_output_keeps_the_ranking(classifier, images):
    probs = torch.softmax(torch.randn(6, 10, generator=torch.Generator().manual_seed(0)) * 3, -1)
    hamp = HAMPOutput()
    with pytest.raises(ValueError, match="classifier"):
        hamp(images, probs)
    out = DefensePipeline(classifier, post=[hamp]).post[0](images, probs)
    assert torch.equal(out.argsort(-1), probs.double().argsort(-1))
    torch.testing.assert_close(out.sum(-1), torch.ones(6, dtype=torch.float64))
    again = hamp(images, probs)  # the same query gets the same answer; another query another one
    assert torch.equal(out, again)
    assert not torch.equal(hamp(images.flip(0), probs), out)


def test_training_errors_are_named(data, tmp_path):
    x, y, split = data
    with pytest.raises(ValueError, match="unknown training defense 'dp-sgd'"):
        train_target(x[:10], y[:10], defense="dp-sgd", progress=False)
    with pytest.raises(ValueError, match="reference non-member"):
        train_target(x[:10], y[:10], defense="advreg", epochs=1, progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg", 10, 1)
    with pytest.raises(ValueError, match="labels must have shape"):
        train_target(x[:10], y[:9], progress=False)
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        load_target(tmp_path)
    target = train_target(x[:20], y[:20], epochs=1, progress=False)
    save_target(target, tmp_path / "t")
    with pytest.raises(FileExistsError, match="not empty"):
        save_target(target, tmp_path / "t")
    (tmp_path / "t" / "target.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_target(tmp_path / "t")
    save_target(target, tmp_path / "t", overwrite=True)
    config = json.loads((tmp_path / "t" / "target.json").read_text())
    (tmp_path / "t" / "target.json").write_text(json.dumps(config | {"model_name": "digits_cnn"}))
    with pytest.raises(ValueError, match="do not match|could not be loaded"):
        load_target(tmp_path / "t")


def test_cli_train_target(tmp_path, capsys):
    out = tmp_path / "target"
    assert main(["train-target", "--defense", "relaxloss", "--option", "alpha=0.5", "--epochs", "2",
                 "--out", str(out), "--no-progress"]) == 0
    assert load_target(out).options == {"alpha": 0.5}
    assert "relaxloss" in capsys.readouterr().out


def test_cli_train_target_on_a_cifar_format_folder(tmp_path, capsys):
    from .test_datasets import images, write_npz

    write_npz(tmp_path / "train.npz", images(40), np.arange(40) % 10)
    write_npz(tmp_path / "test.npz", images(10), np.arange(10) % 10)
    out = tmp_path / "resnet"
    assert main(["train-target", "--dataset", "cifar10", "--data", str(tmp_path), "--members", "20",
                 "--model", "resnet18", "--epochs", "1", "--batch-size", "10", "--out", str(out), "--no-progress"]) == 0
    loaded = load_target(out)
    assert loaded.input_shape == (3, 32, 32) and loaded.model_name == "resnet18"
    assert main(["train-target", "--dataset", "svhn", "--out", str(tmp_path / "x")]) == 2
    assert "needs --data" in capsys.readouterr().err
