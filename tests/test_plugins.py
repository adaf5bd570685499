"""The plugin system: built-ins, entry points (a real distribution's metadata), the allow-list, and loud
failure for a misspelled hook."""

from __future__ import annotations

from pathlib import Path

import pluggy
import pytest
import torch

from diffence_plugin import DefensePipeline, get_defenses, get_plugin_manager, hookimpl
from diffence_plugin.registry import LOAD_PLUGINS_ENV

from .conftest import make_reconstructor

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin-example"


def install_distribution(root: Path, name: str, module: str, source: str | None = None) -> None:
    """What pip leaves behind: a dist-info with METADATA and entry_points.txt, and the module itself."""
    info = root / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[diffence_plugin]\n{name.split('-')[-1]} = {module}\n")
    if source is not None:
        (root / f"{module}.py").write_text(source)


@pytest.fixture()
def example_installed(tmp_path, monkeypatch):
    install_distribution(tmp_path, "diffence-plugin-example", "diffence_plugin_example",
                         (EXAMPLE / "diffence_plugin_example.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    return tmp_path


def test_builtin_and_art_defenses_are_registered(monkeypatch):
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    registry = get_defenses()
    assert registry["diffence"].stage == "pre_inference"
    assert registry["memguard"].stage == "post_inference"
    for name in ("high_confidence", "reverse_sigmoid", "rounded", "gaussian_noise", "class_labels"):
        assert registry[name].stage == "post_inference"


def test_allow_list_restricts_other_distributions_entry_points(example_installed, monkeypatch):
    """The built-ins and diffence-plugin's own adapters (entry points art, art_attacks, ray) always load; the
    allow-list filters every other distribution's plugins by entry-point name."""
    from diffence_plugin.registry import get_attacks, get_executors

    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    builtins = {"diffence", "memguard", "hamp_output", "labels_only", "none", "dpsgd", "relaxloss", "hamp", "selena",
                "advreg"}
    art = {"high_confidence", "reverse_sigmoid", "rounded", "gaussian_noise", "class_labels"}
    assert set(get_defenses()) == builtins | art
    assert "art" in get_attacks() and "ray" in get_executors()
    names = {name for name, _ in get_plugin_manager().list_name_plugin()}
    assert names == {"diffence_plugin.builtin", "art", "art_attacks", "ray"}
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "example")
    assert "temperature" in get_defenses()


def test_third_party_plugin_is_found_and_usable_by_name(example_installed, classifier, images):
    registry = get_defenses()
    assert registry["temperature"].stage == "post_inference"
    pipeline = DefensePipeline.from_names(
        "diffence", "temperature", classifier=classifier,
        options={"diffence": {"reconstructor": make_reconstructor(), "n": 3, "scenario": 3},
                 "temperature": {"temperature": 8.0}})
    out = pipeline(images)
    with torch.no_grad():
        plain = torch.softmax(classifier(images), -1)
    assert torch.equal(out.argmax(-1), plain.argmax(-1))
    assert float(out.max()) < float(plain.max())  # flattened by the plugin


def test_misspelled_hook_implementation_fails_loudly(tmp_path, monkeypatch):
    source = ("from diffence_plugin import hookimpl\n\n@hookimpl\n"
              "def diffence_register_post_inferense(register):\n    register('oops', object)\n")
    install_distribution(tmp_path, "diffence-plugin-typo", "diffence_plugin_typo", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    with pytest.raises(pluggy.PluginValidationError, match="diffence_register_post_inferense"):
        get_plugin_manager()


def test_duplicate_names_are_refused(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    pm = get_plugin_manager()

    class Again:
        @hookimpl
        def diffence_register_pre_inference(self, register):
            register("diffence", object)

    pm.register(Again())
    with pytest.raises(ValueError, match="'diffence' registered twice"):
        get_defenses(pm)


def test_call_hooks_run_in_order_around_every_pipeline(monkeypatch, classifier, images):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    pm = get_plugin_manager()
    calls = []

    class First:
        @hookimpl(tryfirst=True)
        def diffence_post_inference(self, x, probs):
            calls.append("first")
            return probs * 0 + 1.0 / probs.shape[-1]

    class Second:
        @hookimpl
        def diffence_post_inference(self, x, probs):
            calls.append("second")
            assert torch.allclose(probs, torch.full_like(probs, 0.1))  # sees First's output
            return None

        @hookimpl
        def diffence_pre_inference(self, x):
            calls.append("pre")
            return x.flip(-1)

    pm.register(Second())
    pm.register(First())
    out = DefensePipeline(classifier, plugin_manager=pm)(images)
    assert calls == ["pre", "first", "second"]
    torch.testing.assert_close(out, torch.full((6, 10), 0.1))


def test_from_names_errors_are_named(monkeypatch, classifier):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    with pytest.raises(ValueError, match="unknown defense 'memgaurd'"):
        DefensePipeline.from_names("memgaurd", classifier=classifier)
    with pytest.raises(ValueError, match="options given for defenses not in the pipeline"):
        DefensePipeline.from_names("memguard", classifier=classifier, options={"diffence": {}})
    with pytest.raises(ValueError, match="exactly one of reconstructor"):
        DefensePipeline.from_names("diffence", classifier=classifier)
    with pytest.raises(TypeError, match="defend"):
        DefensePipeline(classifier, pre=[object()])


def test_a_plugins_attack_and_executor_are_looked_up_by_name(monkeypatch, tmp_path):
    """An attack registered through ``diffence_register_attacks`` appears in every row of an audit, scored
    under the audit's protocol; executors come from the registry too (local, and ray from its adapter)."""
    import json

    from diffence_plugin.audit.plan import ConfigError, load_preset
    from diffence_plugin.audit.run import run_plan
    from diffence_plugin.registry import get_attacks, get_executors, manager

    assert {"local", "ray"} <= set(get_executors())
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", manager.DEFAULT_PLUGINS + ("tests.attack_plugin",))
    assert "max_probability" in get_attacks()
    toy = ["members.count=100", "roles.defender=10", "roles.attacker=10", "roles.evaluation=30",
           "roles.population=20", "target.train.epochs=3", "diffusion.steps=5", "diffence.n=2",
           "attacks.references=0", "attacks.art=[]", "attacks.selection_draws=0", "run.bootstrap=20",
           'attacks.plugins=["max_probability", "true_label_probability", "needs_references"]', "run.progress=false",
           f"run.out={json.dumps(str(tmp_path / 'a'))}"]
    plan = load_preset("demo", toy)
    plan.defenses = plan.defenses[:1]
    rows = run_plan(plan, log=lambda *a: None).results["rows"]
    for row in rows:
        for name in ("max_probability", "true_label_probability"):
            hit = [a for a in row["attacks"] if a["attack"] == name]
            assert hit and 0.0 <= hit[0]["auc"] <= 1.0 and hit[0]["selection_auc"] is not None
        assert not [a for a in row["attacks"] if a["attack"] == "needs_references"]  # its needs are not met
    with pytest.raises(ConfigError, match="'lira' is built in"):
        load_preset("demo", ['attacks.plugins=["lira"]'])
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", manager.DEFAULT_PLUGINS[:-1])
    with pytest.raises(ConfigError, match="no plugin registers an attack 'max_probability'"):
        load_preset("demo", ['attacks.plugins=["max_probability"]'])


def test_a_plugins_dataset_and_zoo_model_are_audited_by_name(monkeypatch, tmp_path, capsys):
    """A dataset and a zoo model registered through ``diffence_register_datasets``/``_models`` are named in
    a plan like the built-ins: the target and the attacker's references are built from the plugin's model,
    ``diffence plugins`` lists both, and without the plugin the plan names what is registered."""
    import json

    from diffence_plugin.audit.plan import ConfigError, load_preset
    from diffence_plugin.audit.run import run_plan
    from diffence_plugin.cli import main
    from diffence_plugin.registry import get_datasets, get_models, manager

    assert {"digits", "cifar10", "cifar100", "svhn"} <= set(get_datasets())
    assert {"digits_mlp", "cifar_cnn", "resnet18"} <= set(get_models())
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", manager.DEFAULT_PLUGINS + ("tests.data_plugin",))
    toy = ['data.dataset="stripes"', 'target.model="stripes_mlp"', "members.count=120", "roles.defender=20",
           "roles.attacker=20", "roles.evaluation=80", "roles.population=40", "target.train.epochs=5",
           "diffusion.steps=5", "attacks.references=4", "attacks.art=[]", "attacks.selection_draws=0",
           "run.bootstrap=20", "run.progress=false", f"run.out={json.dumps(str(tmp_path / 'a'))}"]
    plan = load_preset("demo", toy)
    plan.defenses = plan.defenses[-1:]  # labels only: the data and the model are what is tested
    results = run_plan(plan, log=lambda *a: None).results
    assert results["target_accuracy"]["test"] > 0.5  # the plugin's test split, 4 classes: chance is 0.25
    assert [row["defense"] for row in results["rows"]] == ["undefended", "labels_only"]
    for row in results["rows"]:  # the references were built from the plugin's model, by its name
        assert {"loss", "lira_online_global", "rmia_online"} <= {a["attack"] for a in row["attacks"]}
    assert main(["plugins"]) == 0
    listed = capsys.readouterr().out
    assert "stripes_mlp" in listed and "stripes" in listed.split("datasets ([data].dataset):")[1]
    assert main(["train-target", "--dataset", "stripes", "--model", "stripes_mlp", "--epochs", "2", "--no-progress",
                 "--out", str(tmp_path / "t")]) == 0  # half the 400 training images are members
    from diffence_plugin.defenses.training import load_target

    assert load_target(tmp_path / "t").model[1].in_features == 64  # rebuilt from the plugin's factory by name
    assert main(["train-target", "--dataset", "cifar10", "--data", str(tmp_path / "t"), "--model", "cifar_cnn",
                 "--out", str(tmp_path / "never")]) == 2
    assert "holds none of its files" in capsys.readouterr().err and not (tmp_path / "never").exists()
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", manager.DEFAULT_PLUGINS[:-1])
    with pytest.raises(ConfigError, match=r"\[data\].dataset must be one of .*'digits'.*got 'stripes'"):
        load_preset("demo", toy)


def test_every_attack_family_is_registered_by_name_and_declares_its_needs():
    from diffence_plugin.attacks.families import Needs, as_family
    from diffence_plugin.registry import get_attacks

    registry = get_attacks()
    assert {"threshold", "lira", "rmia", "art"} <= set(registry)
    assert registry["threshold"]().needs == Needs()
    assert registry["lira"]().needs == Needs(references=True)
    assert registry["rmia"]().needs == Needs(references=True, population=True)
    assert registry["art"](attacks=("bb_rf", "rule_based")).needs == Needs(records=True)
    with pytest.raises(ValueError, match="unknown attack 'bb_magic'"):
        registry["art"](attacks=("bb_magic",))
    with pytest.raises(TypeError, match="neither run.context. nor score"):
        as_family("broken", object())
