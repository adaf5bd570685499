"""Dataset loaders on small synthetic files in each format (no downloads, no real data in the repository)."""

from __future__ import annotations

import hashlib
import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from diffence_plugin.data.datasets import (
    load_cifar10_batches,
    load_cifar10_npz,
    load_cifar100,
    load_dataset,
    load_svhn,
    paper_split,
)

RNG = np.random.default_rng(0)


def images(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def write_npz(path, pictures, labels):
    blobs = []
    for img in pictures:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=95)
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    np.savez(path, jpeg=np.concatenate(blobs), offsets=offsets, labels=labels.astype(np.uint8))


def test_cifar10_npz_decodes_and_checks_the_manifest(tmp_path):
    write_npz(tmp_path / "train.npz", images(6), np.arange(6) % 10)
    write_npz(tmp_path / "test.npz", images(3), np.arange(3))
    data = load_cifar10_npz(tmp_path)
    assert data.x_train.shape == (6, 3, 32, 32) and data.x_train.dtype == np.float32
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert data.y_test.tolist() == [0, 1, 2] and data.nb_classes == 10
    train_sha = hashlib.sha256((tmp_path / "train.npz").read_bytes()).hexdigest()
    decoded = (data.x_train.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    manifest = {"files": {"train.npz": {"sha256": train_sha,
                                        "decoded_uint8_sha256": hashlib.sha256(decoded.tobytes()).hexdigest()}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert load_cifar10_npz(tmp_path).x_train.shape == (6, 3, 32, 32)
    manifest["files"]["train.npz"]["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_cifar10_npz(tmp_path)


def write_batch(path, pictures, labels, label_key="labels"):
    data = pictures.transpose(0, 3, 1, 2).reshape(len(pictures), -1)
    with open(path, "wb") as fh:
        pickle.dump({b"data": data, label_key.encode(): list(labels)}, fh)


def test_cifar10_python_batches(tmp_path):
    pics = images(12)
    for i in range(5):
        write_batch(tmp_path / f"data_batch_{i + 1}", pics[2 * i : 2 * i + 2], [i, i])
    write_batch(tmp_path / "test_batch", pics[10:], [7, 8])
    data = load_dataset("cifar10", tmp_path)
    assert data.x_train.shape == (10, 3, 32, 32)
    np.testing.assert_array_equal((data.x_train[0] * 255).round().astype(np.uint8), pics[0].transpose(2, 0, 1))
    assert data.y_train.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and data.y_test.tolist() == [7, 8]


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for i in range(5):
        write_batch(tmp_path / f"data_batch_{i + 1}", images(1), [0])
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": [0]}, fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        load_cifar10_batches(tmp_path)


def test_cifar100_and_svhn(tmp_path):
    write_batch(tmp_path / "train", images(4), [0, 50, 99, 3], "fine_labels")
    write_batch(tmp_path / "test", images(2), [1, 2], "fine_labels")
    c100 = load_cifar100(tmp_path)
    assert c100.nb_classes == 100 and c100.y_train.tolist() == [0, 50, 99, 3]
    pics = images(5)
    savemat(tmp_path / "train_32x32.mat", {"X": pics.transpose(1, 2, 3, 0), "y": np.array([[10], [1], [2], [3], [4]])})
    savemat(tmp_path / "test_32x32.mat", {"X": pics[:2].transpose(1, 2, 3, 0), "y": np.array([[5], [10]])})
    svhn = load_svhn(tmp_path)
    assert svhn.y_train.tolist() == [0, 1, 2, 3, 4] and svhn.y_test.tolist() == [5, 0]
    np.testing.assert_array_equal((svhn.x_train[1] * 255).round().astype(np.uint8), pics[1].transpose(2, 0, 1))


@pytest.mark.parametrize("loader,expected", [
    (load_cifar10_npz, "train.npz, test.npz"),
    (load_cifar10_batches, "data_batch_1"),
    (load_cifar100, "train, test"),
    (load_svhn, "train_32x32.mat"),
])
def test_missing_files_are_named(tmp_path, loader, expected):
    with pytest.raises(FileNotFoundError, match=expected) as caught:
        loader(tmp_path)
    assert str(caught.value).count(expected) == 1  # the list once, not twice
    (tmp_path / "train.npz").write_bytes(b"")
    (tmp_path / "train").write_bytes(b"")
    (tmp_path / "data_batch_1").write_bytes(b"")
    (tmp_path / "train_32x32.mat").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is missing (test|data_batch_2)"):
        loader(tmp_path)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_an_empty_data_folder_names_the_layouts_it_may_hold(tmp_path, name):
    from diffence_plugin.data.datasets import LAYOUTS, load_dataset

    with pytest.raises(FileNotFoundError, match="is empty") as caught:
        load_dataset(name, tmp_path)
    assert LAYOUTS[name] in str(caught.value)


def test_paper_split_is_seeded_and_disjoint():
    a, b = paper_split(50_000, seed=1), paper_split(50_000, seed=1)
    assert len(a.members) == 25_000 and len(a.reference) == 25_000
    assert np.array_equal(a.members, b.members)
    assert not np.intersect1d(a.members, a.reference).size
    with pytest.raises(ValueError, match="members must lie"):
        paper_split(100, members=100)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist", ".")


def test_gpu_preset_runs_the_full_audit_at_toy_size(tmp_path):
    """The GPU preset through the same engine on a CPU: synthetic CIFAR-format files, tiny UNet, a few steps;
    LiRA, RMIA, the utility columns and the report, like every run."""
    import json

    from diffence_plugin.audit.plan import load_preset
    from diffence_plugin.audit.run import run_plan

    write_npz(tmp_path / "train.npz", images(200), np.arange(200) % 10)
    write_npz(tmp_path / "test.npz", images(20), np.arange(20) % 10)
    plan = load_preset("cifar10-gpu", [
        "members.count=60", "roles.defender=10", "roles.attacker=10", "roles.evaluation=20", "roles.population=20",
        "target.train.epochs=1", "target.train.batch_size=32", "diffusion.steps=3", "diffusion.batch_size=8",
        'diffusion.unet="tiny"', "diffusion.width=8", "diffusion.max_timestep=20", "diffence.n=2", "diffence.t=20",
        "attacks.references=2", "attacks.selection_draws=2", 'attacks.art=["bb_rf", "bb_loss_rf"]',
        "attacks.attacker_ddpm_records=60", 'run.device="cpu"', "run.progress=false",
        f"data.folder={json.dumps(str(tmp_path))}", f"run.out={json.dumps(str(tmp_path / 'out'))}"])
    assert plan.target.model == "resnet18" and plan.run.max_batch == 8192
    results = run_plan(plan, log=lambda *a: None).results
    rows = {r["defense"]: r for r in results["rows"]}
    assert list(rows) == ["undefended", "scenario_1", "scenario_2", "scenario_3", "labels_only"]
    assert len({r["test_accuracy"] for r in rows.values()}) == 1 and all(r["labels_kept"] == 1.0 for r in rows.values())
    assert rows["scenario_1"]["lira"] is not None and rows["scenario_1"]["rmia"] is not None
    assert rows["scenario_1"]["reference_aware"] and rows["labels_only"]["reference_aware"]
    assert all(set(r["utility"]["nonmembers"]) >= {"ece", "nll", "brier", "ci"} for r in rows.values())
    assert results["training"]["defender_ddpm"]["steps"] == 3 and results["training"]["attacker_ddpm"]["steps"] == 3
    assert results["settings"]["plan"] == "cifar10-gpu"
    assert (tmp_path / "out" / "results.json").is_file() and (tmp_path / "out" / "report.html").is_file()


def test_the_frontier_preset_is_the_cpu_preset_at_three_reconstruction_costs(tmp_path):
    """presets/cifar10-frontier.toml differs from the CPU preset only in its defenses (Scenario 1 at n x T/k =
    40, 8 and 4 UNet calls per input, T = 100, and labels only), its fixed T and its output folder; at toy size
    it runs through the engine with LiRA and a paired change for every setting."""
    import json

    from diffence_plugin.audit.plan import load_preset
    from diffence_plugin.audit.run import run_plan

    write_npz(tmp_path / "train.npz", images(200), np.arange(200) % 10)
    write_npz(tmp_path / "test.npz", images(20), np.arange(20) % 10)
    folder = [f"data.folder={json.dumps(str(tmp_path))}"]
    cpu, frontier = load_preset("cifar10-cpu", folder).to_dict(), load_preset("cifar10-frontier", folder).to_dict()
    for section in ("data", "members", "roles", "target", "attacks"):
        assert frontier[section] == cpu[section], section
    assert {k: v for k, v in frontier["diffusion"].items() if k != "t_choices"} == \
        {k: v for k, v in cpu["diffusion"].items() if k != "t_choices"}
    assert frontier["diffusion"]["t_choices"] == [] and cpu["diffusion"]["t_choices"] == [40, 60, 100]
    settings = [(d["options"]["diffence"]["n"], d["options"]["diffence"]["t"] // d["options"]["diffence"]["k"])
                for d in frontier["defenses"] if d["name"] == ["diffence"]]
    assert settings == [(8, 5), (8, 1), (4, 1)]
    assert all(d["options"]["diffence"]["scenario"] == 1 and d["options"]["diffence"]["t"] == 100
               for d in frontier["defenses"] if d["name"] == ["diffence"])

    plan = load_preset("cifar10-frontier", [
        "members.count=60", "roles.defender=10", "roles.attacker=10", "roles.evaluation=20", "roles.population=20",
        "target.train.epochs=1", "diffusion.steps=3", "diffusion.batch_size=8", "diffusion.width=8",
        "attacks.references=2", "attacks.selection_draws=2", 'attacks.art=["bb_rf"]',
        "attacks.attacker_ddpm_records=60", "run.progress=false", "run.bootstrap=50",
        f"data.folder={json.dumps(str(tmp_path))}", f"run.out={json.dumps(str(tmp_path / 'out'))}"])
    rows = {r["defense"]: r for r in run_plan(plan, log=lambda *a: None).results["rows"]}
    assert list(rows) == ["undefended", "n8_steps5", "n8_steps1", "n4_steps1", "labels_only"]
    for label in ("n8_steps5", "n8_steps1", "n4_steps1"):
        assert rows[label]["labels_kept"] == 1.0 and rows[label]["reference_aware"]
        assert set(rows[label]["change"]["lira"]) >= {"auc_change", "ci"}


def test_the_canaries_preset_is_the_cpu_preset_with_canaries_and_runs_at_toy_size(tmp_path):
    """presets/cifar10-canaries.toml is the CPU preset with 500 + 500 flipped-label canaries (members grown by
    500, so the average-case roles keep their sizes) and the rows undefended, Scenarios 1 and 3 (the frontier's
    one DDIM step at T = 100) and labels only; at toy size, with RelaxLoss training as the issue's training-time defense, it writes canary rows."""
    import json

    from diffence_plugin.audit.plan import load_preset
    from diffence_plugin.audit.run import run_plan

    write_npz(tmp_path / "train.npz", images(200), np.arange(200) % 10)
    write_npz(tmp_path / "test.npz", images(20), np.arange(20) % 10)
    folder = [f"data.folder={json.dumps(str(tmp_path))}"]
    cpu, canaries = load_preset("cifar10-cpu", folder).to_dict(), load_preset("cifar10-canaries", folder).to_dict()
    assert canaries["roles"] == {**cpu["roles"], "canaries": 500}
    assert canaries["members"]["count"] == cpu["members"]["count"] + 500
    for section in ("data", "target", "attacks"):
        assert canaries[section] == cpu[section], section
    assert {**canaries["diffusion"], "t_choices": cpu["diffusion"]["t_choices"]} == cpu["diffusion"]
    assert [d["label"] for d in canaries["defenses"]] == ["scenario_1", "scenario_3", "labels_only"]
    assert [(d["options"]["diffence"]["n"], d["options"]["diffence"]["t"], d["options"]["diffence"]["k"])
            for d in canaries["defenses"] if d["name"] == ["diffence"]] == [(8, 100, 100)] * 2  # the frontier's one step

    plan = load_preset("cifar10-canaries", [
        "members.count=70", "roles.defender=10", "roles.attacker=10", "roles.evaluation=20", "roles.population=20",
        "roles.canaries=10", "target.train.epochs=1", 'target.train.defense="relaxloss"',
        'target.train.options={"alpha": 0.5}', "diffusion.steps=3", "diffusion.batch_size=8", "diffusion.width=8",
        "attacks.references=2", "attacks.selection_draws=2", 'attacks.art=["bb_rf"]',
        "attacks.attacker_ddpm_records=60", "run.progress=false", "run.bootstrap=50",
        f"data.folder={json.dumps(str(tmp_path))}", f"run.out={json.dumps(str(tmp_path / 'out'))}"])
    results = run_plan(plan, log=lambda *a: None).results
    assert [r["defense"] for r in results["rows"]] == ["undefended", "scenario_1", "scenario_3", "labels_only"]
    assert results["rows"][0]["best"]["nonmembers"] == 20
    assert [r["defense"] for r in results["canaries"]["rows"]] == [r["defense"] for r in results["rows"]]
    assert results["canaries"]["rows"][1]["lira"] is not None
    assert results["training"]["target"]["recipe"]["defense"] == "relaxloss"



def test_the_stacking_preset_has_the_public_presets_records_and_runs_a_training_defense_under_each_output_defense(
        tmp_path):
    """presets/cifar10-stacking.toml is the public preset's members-only comparison (same roles, members, target
    recipe, attacks and DDPMs on members) with the rows Scenario 1, MemGuard and HAMP's output modification
    each alone and after Scenario 1, and labels only; at toy size, with AdvReg as the training defense (the
    attacker's references trained with it too), every row is defense-aware and keeps the labels."""
    import json

    from diffence_plugin.audit.plan import load_preset
    from diffence_plugin.audit.run import run_plan

    write_npz(tmp_path / "train.npz", images(400), np.arange(400) % 10)
    write_npz(tmp_path / "test.npz", images(20), np.arange(20) % 10)
    folder = [f"data.folder={json.dumps(str(tmp_path))}"]
    public = load_preset("cifar10-public", folder + ['diffusion.data="members"']).to_dict()
    stacking = load_preset("cifar10-stacking", folder).to_dict()
    for section in ("data", "members", "roles", "target", "attacks", "diffusion"):
        assert stacking[section] == public[section], section
    assert [d["label"] for d in stacking["defenses"]] == ["scenario_1", "memguard", "diffence+memguard",
                                                          "hamp_output", "diffence+hamp_output", "labels_only"]
    s1 = stacking["defenses"][0]["options"]["diffence"]
    assert s1 == public["defenses"][0]["options"]["diffence"]
    assert all(stacking["defenses"][i]["options"]["diffence"] == s1 for i in (2, 4))

    plan = load_preset("cifar10-stacking", folder + [
        "members.count=60", "roles.defender=10", "roles.attacker=10", "roles.evaluation=20", "roles.population=20",
        "roles.public=150", "target.train.epochs=1", 'target.train.defense="advreg"', "target.train.options={}",
        "diffusion.steps=3", "diffusion.batch_size=8", "diffusion.width=8", "attacks.references=2",
        "attacks.selection_draws=2", 'attacks.art=["bb_rf"]', "attacks.attacker_ddpm_records=60",
        "run.progress=false", "run.bootstrap=50", f"run.out={json.dumps(str(tmp_path / 'out'))}"])
    results = run_plan(plan, log=lambda *a: None).results
    rows = {r["defense"]: r for r in results["rows"]}
    assert list(rows) == ["undefended", "scenario_1", "memguard", "diffence+memguard", "hamp_output",
                          "diffence+hamp_output", "labels_only"]
    assert all(rows[k]["reference_aware"] and rows[k]["labels_kept"] == 1.0 for k in list(rows)[1:])
    for k in ("diffence+memguard", "diffence+hamp_output"):
        assert set(rows[k]["change"]["lira"]) >= {"auc_change", "ci"}
    assert results["training"]["target"]["recipe"]["defense"] == "advreg"
    assert results["training"]["defender_ddpm"]["data"] == "members"
    # HAMP's output keeps every label: LiRA on its labels is labels only's LiRA, so it never reports below it
    floor = {a["attack"]: a["auc"] for a in rows["labels_only"]["attacks"] if a["attack"].startswith("lira_")}
    for k in ("hamp_output", "diffence+hamp_output"):
        labels = {a["attack"][len("labels_"):]: a["auc"] for a in rows[k]["attacks"] if a["attack"].startswith("labels_")}
        assert labels == floor, k

def test_on_device_keeps_the_models_answers():
    """OnDevice (the GPU preset's wrapper) in channels-last on a CPU gives the plain model's logits, on the input's
    device; bf16 on a CPU is refused."""
    import torch

    from diffence_plugin.data import build_model
    from diffence_plugin.data.models import OnDevice

    torch.manual_seed(0)
    net = build_model("cifar_cnn", 10, 3).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        plain = net(x)
        wrapped = OnDevice(net, "cpu", channels_last=True)(x)
    assert wrapped.dtype == torch.float32 and wrapped.device == x.device
    torch.testing.assert_close(wrapped, plain, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="bf16 on a CPU"):
        OnDevice(net, "cpu", bf16=True)


def test_reproduce_refuses_impossible_settings_before_any_work(tmp_path, capsys):
    """The CPU preset itself runs in tests/test_engine.py (row for row against the former driver); here the
    command line's checks, each before any folder is made."""
    from diffence_plugin.cli import main

    write_npz(tmp_path / "train.npz", images(20), np.arange(20) % 10)
    write_npz(tmp_path / "test.npz", images(20), np.arange(20) % 10)
    cases = [(["--preset", "cpu", "--members", "100"], "the member roles need 5000 members"),
             (["--preset", "cpu", "--defense-seeds", "0"], "--defense-seeds must be > 0"),
             (["--preset", "cpu", "--t-choices", "40", "50"], "t must be a multiple of k, got t=50, k=20"),
             (["--t-choices", "45"], "t must be a multiple of k, got t=45, k=10"),
             (["--preset", "cpu", "--set", "diffence.t=40"], "t is chosen by calibration among"),
             (["--preset", "cpu", "--set", "diffusion.max_timestep=60"], "t = 100 but the diffusion model is trained on "
                                                                          "timesteps <= 60")]
    for flags, message in cases:
        assert main(["reproduce", "cifar10", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *flags]) == 2
        assert message in capsys.readouterr().err, flags
        assert not (tmp_path / "o").exists()


def test_the_public_preset_is_the_cpu_preset_with_its_ddpms_on_public_data_and_runs_at_toy_size(tmp_path):
    """presets/cifar10-public.toml is the CPU preset with 30,000 public records, both DDPMs trained on the
    public data, and the rows undefended, Scenarios 1 and 3 and the mean of all candidates (the frontier's one
    DDIM step at T = 100) and labels only; at toy size (the mean's row) both DDPMs train on every record that is
    no evaluation, canary or attacker record."""
    import json

    from diffence_plugin.audit.plan import load_preset
    from diffence_plugin.audit.run import run_plan
    from diffence_plugin.audit.stages.prepare import build_split

    write_npz(tmp_path / "train.npz", images(400), np.arange(400) % 10)
    write_npz(tmp_path / "test.npz", images(20), np.arange(20) % 10)
    folder = [f"data.folder={json.dumps(str(tmp_path))}"]
    cpu, public = load_preset("cifar10-cpu", folder).to_dict(), load_preset("cifar10-public", folder).to_dict()
    assert public["roles"] == {**cpu["roles"], "public": 30000} and public["members"] == cpu["members"]
    for section in ("data", "target", "attacks"):
        assert public[section] == cpu[section], section
    assert public["diffusion"] == {**cpu["diffusion"], "t_choices": [], "data": "public"}
    assert [(d["label"], d["options"]["diffence"]["scenario"], d["options"]["diffence"]["k"])
            for d in public["defenses"] if d["name"] == ["diffence"]] == \
        [("scenario_1", 1, 100), ("scenario_3", 3, 100), ("mean", "mean", 100)]

    plan = load_preset("cifar10-public", folder + [
        "members.count=60", "roles.defender=10", "roles.attacker=10", "roles.evaluation=20", "roles.population=20",
        "roles.public=150", "target.train.epochs=1", "diffusion.steps=3", "diffusion.batch_size=8",
        "diffusion.width=8", "attacks.references=2", "attacks.selection_draws=2", 'attacks.art=["bb_rf"]',
        "run.progress=false", "run.bootstrap=50", f"run.out={json.dumps(str(tmp_path / 'out'))}"])
    plan.defenses = plan.defenses[2:3]  # the mean only, the new row: Scenarios 1 and 3 run in other tests
    split = build_split(plan, 400)
    results = run_plan(plan, log=lambda *a: None).results
    assert [r["defense"] for r in results["rows"]] == ["undefended", "mean"]
    training = results["training"]
    assert (training["defender_ddpm"]["data"], training["defender_ddpm"]["records"]) == ("public", 150 + 20 + 20)
    assert (training["attacker_ddpm"]["data"], training["attacker_ddpm"]["records"]) == ("public", 190)
    assert len(split.public_data) == 190
    assert 0 < results["rows"][1]["labels_kept"] <= 1
