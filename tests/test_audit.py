"""``diffence evaluate``: config validation with named errors, and a tiny end-to-end audit that reruns exactly."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffence_plugin.audit.plan import ConfigError, read_config_file, resolve
from diffence_plugin.audit.run import run_plan as run_audit
from diffence_plugin.audit.stages.prepare import (
    build_split,
    check_target,
    load_data,
    load_target,
    nb_classes_of,
)
from diffence_plugin.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits target and a DDPM, trained by the CLI at tiny sizes (the example config's files)."""
    runs = tmp_path_factory.mktemp("audit") / "runs"
    assert main(["train-target", "--epochs", "15", "--out", str(runs / "target"), "--no-progress"]) == 0
    assert main(["train-diffusion", "--steps", "30", "--batch-size", "32", "--max-timestep", "20",
                 "--out", str(runs / "ddpm"), "--no-progress"]) == 0
    return runs


def _config(runs: Path, **changes) -> dict:
    """The shipped example config, shrunk to test size, with its paths pointed at ``runs``."""
    raw = read_config_file(ROOT / "examples" / "audit-digits.toml")
    raw["target"]["weights"] = str(runs / "target" / "model.safetensors")
    for d in raw["defenses"]:
        if "path" in d.get("options", {}):
            d["options"].update(path=str(runs / "ddpm"), n=3, t=20, k=10)
    raw["roles"] = {"defender": 30, "attacker": 30, "evaluation": 40, "population": 40, "seed": 0}
    raw["attacks"].update(references=2, attacker_ddpm_steps=20, selection_draws=2, art=["bb_rf"],
                          reference_recipe={"model": "digits_mlp", "epochs": 5, "batch_size": 64})
    raw["run"].update(out=str(runs / "audit"), bootstrap=100, progress=False)
    for section, values in changes.items():
        raw.setdefault(section, {}).update(values)
    return raw


def test_example_config_is_valid_as_shipped():
    raw = read_config_file(ROOT / "examples" / "audit-digits.toml")
    with pytest.raises(ConfigError, match=r"\[target\].weights: file .* does not exist"):
        resolve(raw, ROOT / "examples")  # its weights come from train-target; everything else parses


def test_tiny_audit_runs_and_reruns_from_its_own_record(trained):
    cfg = resolve(_config(trained), trained)
    first = run_audit(cfg, log=lambda *a: None)
    rows = first.results["rows"]
    assert [r["defense"] for r in rows] == ["undefended", "diffence_s1", "diffence_s3", "memguard"]
    assert len({r["test_accuracy"] for r in rows}) == 1 and all(r["labels_kept"] == 1.0 for r in rows)
    # MemGuard is copied by the attacker (fitted on its own records), like Diffence: both defense-aware
    assert rows[1]["reference_aware"] is True and rows[3]["reference_aware"] is True
    names = {a["attack"] for a in rows[0]["attacks"]}
    assert {"loss", "lira_online_global", "rmia_online", "rmia_offline", "bb_rf"} <= names
    assert rows[1]["spread"]["best_auc"]["draws"] == 2
    settings = first.results["settings"]  # every defense's settings, its defaults and the DDPM's training
    assert settings["title"] == "digits_mlp on digits"
    assert settings["defense diffence_s1"]["diffence"]["levels"] == 16
    assert settings["defense diffence_s1"]["diffence"]["key"] == "quantised"
    assert settings["defense diffence_s1"]["diffence"]["diffusion model"] == "30 steps on 300 images, t <= 20"
    assert "seed" not in settings["defense diffence_s1"]["diffence"]  # the secret stays in config.json
    assert settings["defense memguard"]["memguard"]["epsilon"] == 1.0
    assert settings["diffusion"].startswith("not trained")
    html = (first.out / "report.html").read_text()
    assert "levels 16" in html and "diffusion model 30 steps" in html
    record = json.loads((first.out / "config.json").read_text())
    assert (first.out / "report.html").is_file() and record["run"]["overwrite"] is False
    with pytest.raises(FileExistsError, match="holds a finished run"):
        run_audit(resolve(record, trained), log=lambda *a: None)  # the same folder is refused, not replaced
    record["run"]["out"] = str(trained / "audit-again")
    again = run_audit(resolve(record, trained), log=lambda *a: None)
    for a, b in zip(rows, again.results["rows"]):
        assert a["best"]["auc"] == b["best"]["auc"] and a["attacks"] == b["attacks"]


def test_audit_with_flipped_queries_and_defense_aware_shadows(trained):
    """``augment``: LiRA also scores flipped queries (four more variants); ART's shadows answer through the
    attacker's Diffence on Diffence rows."""
    raw = _config(trained, attacks={"augment": True, "art": ["shadow_models"], "selection_draws": 0},
                  run={"out": str(trained / "audit-flip")})
    raw["defenses"] = raw["defenses"][1:2]
    run = run_audit(resolve(raw, trained), log=lambda *a: None)
    for row in run.results["rows"]:
        names = [a["attack"] for a in row["attacks"]]
        assert {"lira_online_global_flip", "lira_offline_per_example_flip", "shadow_models"} <= set(names)
        flip, plain = (next(a for a in row["attacks"] if a["attack"] == n)
                       for n in ("lira_online_global_flip", "lira_online_global"))
        assert flip["member_scores"] != plain["member_scores"]


@pytest.mark.parametrize("change, message", [
    ({"target": {"colour": "red"}}, r"unknown key\(s\) \['colour'\] in \[target\]"),
    ({"target": {"weights": "missing.safetensors"}}, r"\[target\].weights: file .* does not exist"),
    ({"target": {"nb_classes": "ten"}}, r"\[target\].nb_classes must be int"),
    ({"target": {"nb_classes": 5}}, r"nb_classes = 5 but the labels reach 9"),
    ({"target": {"model": "digits_cnn"}}, r"\[target\].weights do not fit \[target\].model 'digits_cnn'"),
    ({"target": {"model": "nowhere.module:make"}}, r"\[target\].model: cannot import"),
    ({"data": {"dataset": "imagenet"}}, r"\[data\].dataset must be one of"),
    ({"data": {"dataset": "cifar10"}}, r"\[data\].folder is required for dataset 'cifar10': a folder holding either"),
    ({"members": {"count": 5000}}, r"\[members\].count must lie in"),
    ({"roles": {"evaluation": 400}}, r"\[roles\]: the member roles need"),
    ({"attacks": {"references": 3}}, r"\[attacks\].references must be 0 or an even number"),
    ({"attacks": {"art": ["bb_magic"]}}, r"\[attacks\].art: unknown attack 'bb_magic'"),
    ({"attacks": {"augment": True, "references": 0}}, r"\[attacks\].augment adds flipped queries"),
    ({"colour": {}}, r"unknown config section"),
])
def test_bad_fields_are_named(trained, change, message):
    raw = _config(trained, **{k: v for k, v in change.items() if k != "colour"})
    if "colour" in change:
        raw["colour"] = {}
    with pytest.raises(ConfigError, match=message):
        cfg = resolve(raw, trained)
        x, y, _ = load_data(cfg)
        build_split(cfg, len(x))
        classes = nb_classes_of(cfg, y)
        check_target(load_target(cfg, x, classes), x, classes)


def test_data_files_are_checked(trained, tmp_path):
    np.savez(tmp_path / "no_y.npz", x=np.zeros((4, 1, 8, 8), dtype=np.float32))
    raw = _config(trained)
    raw["data"] = {"npz": str(tmp_path / "no_y.npz")}
    with pytest.raises(ConfigError, match=r"lacks array\(s\) \['y'\]"):
        load_data(resolve(raw, trained))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    raw = _config(trained)
    raw["members"] = {"indices": str(tmp_path / "objects.npy")}
    cfg = resolve(raw, trained)
    with pytest.raises(ConfigError, match="pickled objects"):
        build_split(cfg, 1797)
    np.save(tmp_path / "outside.npy", np.array([0, 5000]))
    cfg.members.indices = str(tmp_path / "outside.npy")
    with pytest.raises(ConfigError, match="reach 5000 but the data has 1797"):
        build_split(cfg, 1797)


def test_a_dataset_folder_without_its_files_is_named(trained, tmp_path):
    raw = _config(trained, data={"dataset": "cifar10", "folder": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"\[data\] dataset 'cifar10': data folder .* is empty; cifar10 is read"):
        load_data(resolve(raw, trained))
    (tmp_path / "train.npz").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"\[data\] dataset 'cifar10': CIFAR-10 \(npz\): .* is missing test.npz"):
        load_data(resolve(raw, trained))


def test_cli_evaluate_refuses_a_bad_config_with_exit_code_2(trained, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[target]\nmodel = "digits_mlp"\nweights = "nope.safetensors"\n[data]\ndataset = "digits"\n'
                   '[members]\ncount = 300\n')
    assert main(["evaluate", str(bad)]) == 2
    assert "[target].weights" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "audit", ignore_errors=True)


@pytest.mark.ray
def test_cli_evaluate_on_ray_gives_the_local_numbers(trained, tmp_path, monkeypatch):
    """``diffence evaluate RECORD --executor ray`` (a local Ray instance) reproduces a local run's every
    attack figure, and ``RAY_ADDRESS`` is honoured when no ``--address`` is given."""
    ray = pytest.importorskip("ray")
    cfg = _config(trained, run={"out": str(tmp_path / "local")}, attacks={"art": []})
    cfg["defenses"] = cfg["defenses"][:1]  # Diffence (its reconstructions and references go to Ray); MemGuard stays local
    local = run_audit(resolve(cfg, trained), log=lambda *a: None)
    record = tmp_path / "local" / "config.json"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    try:
        assert main(["evaluate", str(record), "--executor", "ray", "--out", str(tmp_path / "ray"),
                     "--no-progress"]) == 0
    finally:
        ray.shutdown()
    remote = json.loads((tmp_path / "ray" / "results.json").read_text())
    written = json.loads((tmp_path / "ray" / "config.json").read_text())
    assert written["run"]["executor"] == "ray"
    for a, b in zip(local.results["rows"], remote["rows"]):
        assert a["defense"] == b["defense"] and a["attacks"] == b["attacks"]


def test_a_label_beyond_the_models_classes_is_named_as_such(trained, tmp_path):
    """A label of 10 for a 10-class model is a data problem, said as one (not as an output-shape mismatch)."""
    from diffence_plugin.data import digits_images

    x, y = digits_images()
    y = y.copy()
    y[5] = 10
    np.savez(tmp_path / "bad_labels.npz", x=x, y=y)
    raw = _config(trained)
    raw["data"] = {"npz": str(tmp_path / "bad_labels.npz")}
    cfg = resolve(raw, trained)
    x, y, _ = load_data(cfg)
    classes = nb_classes_of(cfg, y)
    with pytest.raises(ConfigError, match=r"built for 11 classes because \[data\] y reaches 10: labels must lie"):
        load_target(cfg, x, classes)  # a zoo model is built for the labels' count: its weights do not fit
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # a model of its own: it scores 10
    with pytest.raises(ConfigError, match=r"\[data\] y reaches 10 but \[target\].model scores 10 classes"):
        check_target(module, x, classes)


def _bad_data(tmp_path: Path, kind: str) -> str:
    """A digits npz made bad in one way: NaN, a label beyond the classes, channels-last images, or text."""
    from diffence_plugin.data import digits_images

    if kind == "text":
        (tmp_path / "text.npz").write_text("x,y\n0.5,1\n")  # numpy alone calls this "pickled (object) data"
        return str(tmp_path / "text.npz")
    x, y = digits_images()
    x, y = x.copy(), y.copy()
    if kind == "nan":
        x[3, 0, 2, 2] = np.nan
    elif kind == "label":
        y[5] = 10
    elif kind == "nhwc":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    path = tmp_path / f"{kind}.npz"
    np.savez(path, x=x, y=y)
    return str(path)


def _bad_change(case: str, tmp_path: Path, runs: Path) -> dict:
    """The plan sections that make ``case`` bad."""
    if case in ("nan", "label", "nhwc", "text"):
        return {"data": {"npz": _bad_data(tmp_path, case)}}
    if case == "a custom target without a reference recipe":  # references need a way to train such a model
        return {"target": {"model": "diffence_plugin.data.models:DigitsMLP"}, "attacks": {"reference_recipe": {}}}
    if case == "a DDPM of another image size":
        from diffence_plugin.diffusion import train_diffusion

        train_diffusion(torch.rand(8, 1, 16, 16), steps=1, max_timestep=20, progress=False).save_pretrained(
            tmp_path / "ddpm16")
        return {"defenses": [{"name": "diffence", "options": {"path": str(tmp_path / "ddpm16"), "n": 2, "t": 20,
                                                              "k": 10}}]}
    if case == "members outside the data":
        np.save(tmp_path / "outside.npy", np.r_[np.arange(299), 5000])
        return {"members": {"indices": str(tmp_path / "outside.npy")}}
    if case == "corrupt weights":
        (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
        return {"target": {"weights": str(tmp_path / "bad.safetensors")}}
    defense = {"a misspelled defense": {"name": "memguardd"},
               "a misspelled option": {"name": "memguard", "options": {"scenaro": 1}},
               "k that does not divide t": {"name": "diffence",
                                            "options": {"path": str(runs / "ddpm"), "n": 2, "t": 20, "k": 30}},
               "a missing DDPM folder": {"name": "diffence",
                                         "options": {"path": str(tmp_path / "nowhere"), "n": 2, "t": 20, "k": 10}},
               "t above the DDPM's max_timestep": {"name": "diffence",  # the fixture's DDPM: max_timestep 20
                                                   "options": {"path": str(runs / "ddpm"), "n": 2, "t": 40, "k": 10}}}
    return {"defenses": [defense[case]]}


BAD_INPUTS = {"nan": r"NaN", "label": r"\[data\] y reaches 10", "nhwc": r"\(N, C, H, W\)",
              "members outside the data": r"reach 5000", "corrupt weights": r"weights",
              "a misspelled defense": r"memguardd", "a misspelled option": r"scenaro",
              "k that does not divide t": r"k=30|k = 30", "a missing DDPM folder": r"nowhere' is not a folder",
              "text": r"is not a numpy \.npz archive \(np\.savez\): it starts with b'x,y",
              "a custom target without a reference recipe": r"reference_recipe needs factory",
              "a DDPM of another image size": r"is for 1x16px images, the data are 1x8px",
              "t above the DDPM's max_timestep": r"t = 40 but the diffusion model is trained on timesteps <= 20"}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_exit_2_before_any_work_and_touch_no_output_folder(trained, tmp_path, capsys, case):
    """Each bad input is a usage error (exit 2) naming its problem, found before a folder is made: a new output
    folder is never created, and a finished run's folder, even with --overwrite, keeps every byte."""
    message, change = BAD_INPUTS[case], _bad_change(case, tmp_path, trained)
    raw = _config(trained)
    for section in ("data", "members", "target", "attacks"):  # data and members replace the example's (one
        if section in change:                                   # source each); target and attacks amend it
            raw[section] = {**(raw[section] if section in ("target", "attacks") else {}), **change[section]}
    if "defenses" in change:
        raw["defenses"] = change["defenses"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(raw))
    fresh = tmp_path / "fresh"
    for dry in ([], ["--dry-run"]):  # a dry run finds each of them too
        assert main(["evaluate", str(plan), "--out", str(fresh), "--no-progress", *dry]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and re.search(message, err), err
        assert not fresh.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    for name, text in (("results.json", "{}"), ("report.html", "<html></html>"), ("notes.txt", "mine")):
        (kept / name).write_text(text)
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    assert main(["evaluate", str(plan), "--out", str(kept), "--overwrite", "--no-progress"]) == 2
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before


def test_an_overwrite_stopped_by_ctrl_c_leaves_no_old_results_and_its_rerun_resumes(trained, tmp_path, capsys,
                                                                                   monkeypatch):
    """``--overwrite`` clears the folder before writing the new record, so a run stopped by Ctrl-C leaves its own
    config.json and finished stages but none of the old run's results; the same command without ``--overwrite``
    resumes it, and every stage logs a timestamped start line and its duration."""
    import diffence_plugin.audit.run as audit_run

    out = tmp_path / "run"
    out.mkdir()
    for name in ("results.json", "report.html", "roc.png", "notes.txt"):
        (out / name).write_text("an earlier run's")
    plan = tmp_path / "plan.json"
    raw = _config(trained, attacks={"art": []})
    raw["defenses"] = raw["defenses"][:1]
    plan.write_text(json.dumps(raw))
    attack = audit_run.attack

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_run, "attack", ctrl_c)
    argv = ["evaluate", str(plan), "--out", str(out), "--no-progress"]
    assert main(argv + ["--overwrite"]) == 1
    assert "interrupted; what was finished is kept" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "reference-cache", "stages"]  # no old results
    monkeypatch.setattr(audit_run, "attack", attack)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "resuming the unfinished run" in err and (out / "results.json").is_file()
    for stage in ("[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"):
        assert re.search(rf"^\d\d:\d\d:\d\d {re.escape(stage)} ", err, re.M), (stage, err)
    assert len(re.findall(r"^\d\d:\d\d:\d\d +done in \d+\.\d s$", err, re.M)) >= 4, err
    # a warning is one timestamped line, once, without the library's source line that raised it
    assert len(re.findall(r"^\d\d:\d\d:\d\d warning: offline RMIA", err, re.M)) == 1, err
    assert "UserWarning" not in err and ".py:" not in err, err
