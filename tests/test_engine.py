"""The one audit engine: the demo, the CPU preset and ``evaluate`` are plans of it, and reproduce the rows of the
three drivers it replaced (frozen at toy size in fixtures/engine_equivalence.json, from commit 257b7a8's
``run_demo``, ``reproduce`` with the CPU preset and ``run_audit``), and a plan run twice gives the same rows."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from diffence_plugin.audit.plan import (
    ConfigError,
    apply_overrides,
    load_plan,
    load_preset,
    read_config_file,
    resolve,
)
from diffence_plugin.audit.run import run_plan
from diffence_plugin.cli import main

ROOT = Path(__file__).resolve().parents[1]
FROZEN = json.loads((Path(__file__).parent / "fixtures" / "engine_equivalence.json").read_text())
DEMO_TOY = ["members.count=100", "roles.defender=10", "roles.attacker=10", "roles.evaluation=30",
            "roles.population=20", "target.train.epochs=5", "diffusion.steps=10", "attacks.references=2",
            "attacks.selection_draws=2", 'attacks.art=["bb_rf","shadow_models","rule_based"]', "run.bootstrap=50",
            "run.progress=false", "diffence.n=2"]


def summary(results: dict) -> list[dict]:
    return [{"defense": r["defense"], "best": r["best"]["attack"], "best_auc": r["best"]["auc"],
             "aucs": {a["attack"]: a["auc"] for a in r["attacks"]}, "reference_aware": r["reference_aware"],
             "labels_kept": r["labels_kept"], "test_accuracy": r["test_accuracy"], "spread": r.get("spread")}
            for r in results["rows"]]


# The fixtures were frozen on one host; another host of the same kind rounds the last bits of torch's and
# sklearn's floats differently (seen on 2026-12-02: shadow_models 0.525 against 0.469, bb_rf 0.4959 against
# 0.4953, one LiRA variant 0.4625 against 0.4650; the demo one fails alike at the commit before). So AUCs
# that only score the releases must agree to a few of the toy evaluation set's record pairs, and those of attacks that train their
# own models (ART's attack and shadow models, whose training the rounding steers) to 0.1; a logic change moves
# far more, and names, labels kept, accuracy and awareness must be exact.
SCORING_ABS, TRAINED_ABS = 0.005, 0.1
# MemGuard fitted after Diffence at toy size (10 + 10 records) is the one row whose AUCs a CPU of another kind
# moves by more: on a 2-core AMD EPYC with AVX-512 (2026-12-04) its best AUC came out +0.234 and the loss
# attack's -0.188 from the fixture (frozen on AVX2 hosts), every other row within the tolerances above. Its
# gradient search fits 20 reconstructed outputs whose last bits differ, and its branches turn on them. Its
# name, labels, accuracy and awareness are still checked exactly, and a rerun on one host is (the test below).
HOST_SENSITIVE = {"diffence+memguard"}
# The former drivers had no LiRA on the labels (``[attacks].labels``, added after them): the equivalence runs
# turn it off, so each row's attacks, chosen attack and spread are the ones they had.
FORMER = ["attacks.labels=false"]


def assert_rows_equal(rows: list[dict], frozen: list[dict]) -> None:
    assert [r["defense"] for r in rows] == [r["defense"] for r in frozen]
    for new, old in zip(rows, frozen):
        assert sorted(new["aucs"]) == sorted(old["aucs"]), new["defense"]
        assert (new["reference_aware"], new["labels_kept"], new["test_accuracy"]) == \
            (old["reference_aware"], old["labels_kept"], old["test_accuracy"])
        if new["defense"] in HOST_SENSITIVE:
            continue
        for attack, auc in old["aucs"].items():
            trained = attack.startswith("bb_") or attack == "shadow_models" or "memguard" in new["defense"]
            assert new["aucs"][attack] == pytest.approx(auc, abs=TRAINED_ABS if trained else SCORING_ABS), \
                (new["defense"], attack)
        assert new["best_auc"] == pytest.approx(old["best_auc"], abs=TRAINED_ABS), new["defense"]
        assert (new["spread"] is None) == (old["spread"] is None)
        if new["spread"]:
            for key, value in old["spread"].items():
                assert new["spread"][key] == pytest.approx(value, abs=SCORING_ABS), (new["defense"], key)


@pytest.fixture(scope="module")
def demo_twice(tmp_path_factory):
    """The toy demo run from its preset, then again from the record (config.json) the first run wrote."""
    base = tmp_path_factory.mktemp("engine")
    first = run_plan(load_preset("demo", DEMO_TOY + FORMER + [f"run.out={json.dumps(str(base / 'first'))}"]),
                     log=lambda *a: None)
    second = run_plan(load_plan(first.out / "config.json", [f"run.out={json.dumps(str(base / 'second'))}"]),
                      log=lambda *a: None)
    return first, second


def test_the_demo_preset_reproduces_the_former_demo_driver(demo_twice):
    assert_rows_equal(summary(demo_twice[0].results), FROZEN["demo"])


def test_the_same_plan_gives_the_same_rows(demo_twice):
    first, second = (r.results for r in demo_twice)
    assert first["rows"] == second["rows"]
    assert first["calibration"] == second["calibration"]
    assert {k: v.get("steps") for k, v in first["training"].items()} == \
        {k: v.get("steps") for k, v in second["training"].items()}


def test_a_run_keeps_its_record_owner_only_and_its_results_without_secrets(demo_twice):
    out = demo_twice[0].out
    mode = stat.S_IMODE((out / "config.json").stat().st_mode)
    assert mode == 0o600
    record = json.loads((out / "config.json").read_text())
    assert record["run"]["overwrite"] is False
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "diffence-results-v2" and results["settings"]["plan"] == "demo"
    assert (out / "report.html").is_file()
    # the second run came from this record (its secret seed included): the same rows
    assert demo_twice[1].results["rows"] == demo_twice[0].results["rows"]
    again = json.loads((demo_twice[1].out / "config.json").read_text())
    assert [d["options"] for d in again["defenses"]] == [d["options"] for d in record["defenses"]]


def test_compare_pairs_two_runs_of_the_same_records(demo_twice, tmp_path, capsys):
    from diffence_plugin.audit.results import load_results
    from diffence_plugin.report.compare import compare_results

    first, second = (load_results(r.out) for r in demo_twice)
    assert first["records"]["evaluation"] == second["records"]["evaluation"]
    same = compare_results(first, second, bootstrap=200)
    assert [r["defense"] for r in same["rows"]] == [r["defense"] for r in first["rows"]]
    for row in same["rows"]:  # the same releases: no change, and no interval around it
        assert row["best"]["auc_change"] == 0 and row["best"]["ci"] == [0, 0]
        assert row["lira"]["auc_change"] == 0 and row["lira"]["ci"] == [0, 0]
    # B's chosen attack with every score negated ranks the records backwards: AUC 1 - a, a change of 1 - 2a
    flipped = json.loads(json.dumps(second))
    row = flipped["rows"][0]
    entry = next(a for a in row["attacks"] if a["attack"] == row["best"]["attack"])
    entry["member_scores"] = [-v for v in entry["member_scores"]]
    entry["nonmember_scores"] = [-v for v in entry["nonmember_scores"]]
    entry["auc"] = 1 - entry["auc"]
    change = compare_results(first, flipped, bootstrap=200)["rows"][0]["best"]
    assert change["auc_change"] == pytest.approx(1 - 2 * row["best"]["auc"], abs=1e-9)
    assert change["ci"][0] <= change["auc_change"] <= change["ci"][1]
    # the command line prints the table
    assert main(["compare", str(demo_twice[0].out), str(demo_twice[1].out), "--json", str(tmp_path / "c.json")]) == 0
    table = capsys.readouterr().out
    assert "| undefended |" in table and "+0.000 [+0.000, +0.000]" in table
    assert json.loads((tmp_path / "c.json").read_text())["rows"][0]["defense"] == "undefended"
    # two named rows of one run: Scenario 1 against the undefended row is the run's own paired change
    own = compare_results(first, first, rows=("undefended", "scenario_1"))
    assert [r["defense"] for r in own["rows"]] == ["undefended -> scenario_1"]
    for pick in ("best", "lira"):
        theirs = next(r for r in first["rows"] if r["defense"] == "scenario_1")["change"][pick]
        assert own["rows"][0][pick]["auc_change"] == pytest.approx(theirs["auc_change"], abs=1e-12)
        assert own["rows"][0][pick]["ci"] == pytest.approx(theirs["ci"], abs=1e-12)
    with pytest.raises(ValueError, match="B has no row 'scenario_9'"):
        compare_results(first, first, rows=("undefended", "scenario_9"))
    assert main(["compare", str(demo_twice[0].out), str(demo_twice[0].out), "--rows", "memguard",
                 "diffence+memguard"]) == 0
    assert "| memguard -> diffence+memguard |" in capsys.readouterr().out


def test_compare_refuses_runs_of_other_records_and_files_that_are_no_results(demo_twice, tmp_path, capsys):
    from diffence_plugin.audit.results import load_results
    from diffence_plugin.report.compare import compare_results

    first = load_results(demo_twice[0].out)
    other = json.loads(json.dumps(first))
    other["records"]["evaluation"] = "0" * 16
    with pytest.raises(ValueError, match="different evaluation records"):
        compare_results(first, other)
    for run in (first, other):  # results without a digest: the split sections of the plans must agree
        run.pop("records")
    other["plan"]["roles"]["seed"] = 7
    with pytest.raises(ValueError, match="roles differ"):
        compare_results(first, other)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else", "rows": []}))
    for path in ("bad.json", "other.json", "missing.json"):
        assert main(["compare", str(demo_twice[0].out), str(tmp_path / path)]) == 1
        assert path in capsys.readouterr().err


def _cifar_files(folder: Path) -> None:
    """The CIFAR-format files the frozen CPU rows were made with (a fresh generator of seed 0)."""
    from .test_datasets import write_npz

    rng = np.random.default_rng(0)
    for name, n in (("train.npz", 200), ("test.npz", 20)):
        write_npz(folder / name, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10)


def test_the_cpu_preset_reproduces_the_former_cpu_driver(tmp_path):
    _cifar_files(tmp_path)
    toy = ["members.count=60", "roles.defender=10", "roles.attacker=10", "roles.evaluation=20", "roles.population=20",
           "target.train.epochs=2", "diffusion.steps=2", "diffusion.batch_size=8", "diffusion.width=8",
           "diffusion.t_choices=[20, 40]", "diffusion.max_timestep=40", "diffence.n=2", "attacks.references=4", "attacks.selection_draws=2",
           "attacks.defense_seeds=2", 'attacks.art=["bb_loss_rf"]', "attacks.attacker_ddpm_records=60",
           "run.device=\"cpu\"", "run.progress=false", "run.bootstrap=1000",
           f"data.folder={json.dumps(str(tmp_path))}", f"run.out={json.dumps(str(tmp_path / 'out'))}"]
    results = run_plan(load_preset("cifar10-cpu", toy + FORMER), log=lambda *a: None).results
    assert_rows_equal(summary(results), FROZEN["cifar10-cpu"])
    seeds = {k: [d["best_auc"] for d in v] for k, v in results["defense_seeds"]["rows"].items()}
    assert set(seeds) == set(FROZEN["cifar10-cpu-seeds"])
    for name, aucs in FROZEN["cifar10-cpu-seeds"].items():  # every further defense seed, reconstructed again
        assert seeds[name] == pytest.approx(aucs, abs=SCORING_ABS), name
    assert [r["t"] for r in results["calibration"]["scenario_1"]["extra"]["t_search"]] == [20, 40]
    assert set(results["target_accuracy"]) == {"train", "test"}


def test_evaluate_reproduces_the_former_audit_driver(tmp_path):
    runs = tmp_path / "runs"
    assert main(["train-target", "--epochs", "15", "--out", str(runs / "target"), "--no-progress"]) == 0
    assert main(["train-diffusion", "--steps", "30", "--batch-size", "32", "--max-timestep", "20",
                 "--out", str(runs / "ddpm"), "--no-progress"]) == 0
    raw = read_config_file(ROOT / "examples" / "audit-digits.toml")
    raw["target"]["weights"] = str(runs / "target" / "model.safetensors")
    for d in raw["defenses"]:
        if "path" in d.get("options", {}):
            d["options"].update(path=str(runs / "ddpm"), n=3, t=20, k=10, seed=12345678901)
    raw["roles"] = {"defender": 30, "attacker": 30, "evaluation": 40, "population": 40, "seed": 0}
    raw["attacks"].update(labels=False, references=2, attacker_ddpm_steps=20, selection_draws=2, art=["bb_rf"],
                          reference_recipe={"model": "digits_mlp", "epochs": 5, "batch_size": 64})
    raw["run"].update(out=str(runs / "audit"), bootstrap=100, progress=False, threads=1)
    results = run_plan(resolve(raw, runs), log=lambda *a: None).results
    assert_rows_equal(summary(results), FROZEN["evaluate"])


def test_overrides_reach_every_field_and_typos_are_named():
    plan = load_preset("demo", ["run.seed=3", "diffence.n=7", "defenses.memguard.epsilon=0.5",
                                "defenses.diffence+memguard.memguard.epochs=9"])
    assert plan.run.seed == 3
    assert {d.options["diffence"]["n"] for d in plan.diffences} == {7}
    assert plan.defenses[3].options["memguard"]["epsilon"] == 0.5
    assert plan.defenses[4].options["memguard"]["epochs"] == 9
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sed'\] in \[run\]"):
        load_preset("demo", ["run.sed=3"])
    with pytest.raises(ConfigError, match="LABEL one of"):
        apply_overrides({"defenses": [{"name": "memguard"}]}, ["defenses.memguar.epsilon=1"])
    with pytest.raises(ConfigError, match="unknown preset 'dem'"):
        load_preset("dem")


def test_a_training_defense_option_it_does_not_take_is_named_before_any_training():
    """A recipe's options reach its training defense's constructor at plan time, the target's and the
    references' (over the target's recipe), so a typo or a bad value never waits for a stage to fail."""
    relax = ['target.train.defense="relaxloss"']
    with pytest.raises(ConfigError, match=r"\[target.train\].options: 'relaxloss' does not take \['alpha', "
                                          r"'schedule'\].*valid options: \['alpha'\]"):
        load_preset("demo", relax + ['target.train.options={"alpha": 0.5, "schedule": "cosine"}'])
    with pytest.raises(ConfigError, match=r"\[target.train\].options: alpha must be > 0, got -1"):
        load_preset("demo", relax + ['target.train.options={"alpha": -1}'])
    with pytest.raises(ConfigError, match=r"\[attacks\].reference_recipe.options: 'relaxloss' does not take"):
        load_preset("demo", relax + ['target.train.options={"alpha": 0.5}',
                                     'attacks.reference_recipe={"options": {"epsilon": 1}}'])
    assert load_preset("demo", relax + ['target.train.options={"alpha": 0.5}']).target.train.options == \
        {"alpha": 0.5}


def test_dry_run_prints_the_work_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["demo", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "- Diffence n=50, t=100, k=20: 750 inputs x 50 reconstructions" in printed
    assert "- target: train digits_mlp for 60 epochs on 300 members" in printed
    assert not out.exists()


def test_a_stopped_run_resumes_without_retraining_and_gives_the_same_rows(demo_twice, tmp_path, monkeypatch):
    """Stopped in the attack stage, then started again with the same plan: the target, both DDPMs and the
    reference models are loaded from the run folder (no training call at all), and the rows are the same."""
    import diffence_plugin.audit.run as audit_run
    import diffence_plugin.defenses.training as training
    import diffence_plugin.diffusion as diffusion

    out = tmp_path / "stopped"
    plan = load_preset("demo", DEMO_TOY + FORMER + [f"run.out={json.dumps(str(out))}"])
    attack = audit_run.attack

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_run, "attack", stop)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, log=lambda *a: None)
    monkeypatch.setattr(audit_run, "attack", attack)
    assert (out / "config.json").is_file() and not (out / "results.json").exists()
    calls = {"target": 0, "ddpm": 0}
    train_target, train_diffusion = training.train_target, diffusion.train_diffusion

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(training, "train_target", counted("target", train_target))
    monkeypatch.setattr(diffusion, "train_diffusion", counted("ddpm", train_diffusion))
    again = run_plan(load_preset("demo", DEMO_TOY + FORMER + [f"run.out={json.dumps(str(out))}"]),
                     log=lambda *a: None)
    assert calls == {"target": 0, "ddpm": 0}
    assert again.results["rows"] == demo_twice[0].results["rows"]
    assert again.results["training"]["target"]["resumed"] is True


def test_the_run_folder_is_refused_resumed_or_cleared_as_it_should(demo_twice, tmp_path):
    from diffence_plugin.audit.store import claim_folder

    finished = demo_twice[0].out
    plan = load_preset("demo", DEMO_TOY + FORMER + [f"run.out={json.dumps(str(finished))}"])
    with pytest.raises(FileExistsError, match="holds a finished run"):
        claim_folder(plan)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a run of diffence"):
        claim_folder(load_preset("demo", [f"run.out={json.dumps(str(other))}"]))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((finished / "config.json").read_text())
    with pytest.raises(FileExistsError, match="unfinished run of another plan"):
        claim_folder(load_preset("demo", DEMO_TOY + FORMER + ["run.seed=5", f"run.out={json.dumps(str(unfinished))}"]))
    assert claim_folder(load_preset("demo", DEMO_TOY + FORMER + [f"run.out={json.dumps(str(unfinished))}"])) == "resume"
    # --overwrite clears the folder before anything is written: no old results beside a new record
    assert main(["demo", "--out", str(other), "--overwrite", "--dry-run"]) == 0
    assert (other / "notes.txt").is_file()  # a dry run touches nothing
    assert main(["demo", "--out", str(finished), "--no-progress"]) == 2  # refused, names the finished run


def test_every_plan_field_is_read_by_the_engine():
    """No dead keys: each key of the schema is read by a stage (the stages, the run, the store, the attack
    families), not only validated."""
    from diffence_plugin.audit.plan import SECTION_MODELS

    package = ROOT / "diffence_plugin"
    files = [*(package / "audit" / "stages").glob("*.py"), package / "audit" / "run.py", package / "audit" / "store.py",
             package / "audit" / "context.py", package / "audit" / "sweep.py",
             package / "attacks" / "families.py"]
    source = "".join(path.read_text() for path in files)
    unread = [f"[{section}].{key}" for section, model in SECTION_MODELS.items() for key in model.model_fields
              if f".{key}" not in source and f'"{key}"' not in source]
    assert not unread, f"plan keys no stage reads: {unread}"


def test_a_diffusion_model_for_other_images_is_refused_before_any_work(tmp_path, capsys):
    np.save(tmp_path / "images.npy", np.random.default_rng(0).random((8, 1, 16, 16), dtype=np.float32))
    assert main(["train-diffusion", "--images", str(tmp_path / "images.npy"), "--steps", "1", "--batch-size", "4",
                 "--width", "8", "--out", str(tmp_path / "ddpm16"), "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), "--no-progress",
                 "--set", f"defenses.scenario_1.path={json.dumps(str(tmp_path / 'ddpm16'))}"]) == 2
    assert "is for 1x16px images, the data are 1x8px" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["dual", "distill"])
def test_the_plan_trains_dualmd_and_distillmd_reconstructors(kind, tmp_path):
    """``[diffusion].kind``: DualMD's pair or DistillMD's student serves every Diffence defense; the attacker's
    own DDPM stays a single one; labels and accuracy are kept."""
    out = tmp_path / kind
    plan = load_preset("demo", DEMO_TOY + [f'diffusion.kind="{kind}"', "diffusion.split_seed=3",
                                           f"run.out={json.dumps(str(out))}"])
    plan.defenses = plan.defenses[:1]
    results = run_plan(plan, log=lambda *a: None).results
    rows = {r["defense"]: r for r in results["rows"]}
    assert rows["scenario_1"]["labels_kept"] == 1.0 and rows["scenario_1"]["reference_aware"] is True
    training = results["training"]["defender_ddpm"]
    if kind == "dual":
        assert training["kind"] == "dual" and len(training["models"]) == 2
        assert {m["split"]["seed"] for m in training["models"]} == {3}
    else:
        assert "targets" in training  # the student learned its teachers' predictions
    assert results["training"]["attacker_ddpm"]["steps"] == 10


def test_reconstruct_bf16_reconstructs_under_bf16_for_the_defender_and_the_attackers_copy(tmp_path):
    """``[run].reconstruct_bf16`` (an opt-in for CPUs with bf16 units) makes every Diffence defense and the
    attacker's copy of it reconstruct under bf16 autocast; labels are kept, and the reconstructions differ from
    float32 ones (the option changes the numbers, which is why it is off by default)."""
    import warnings

    import torch

    from diffence_plugin.audit.run import run_stages

    toy = DEMO_TOY + ['attacks.art=["bb_rf"]']
    staged = {}
    for flag in ("false", "true"):
        plan = load_preset("demo", toy + [f"run.reconstruct_bf16={flag}", f"run.out={json.dumps(str(tmp_path / flag))}"])
        plan.defenses = plan.defenses[:1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a CPU without bf16 units warns that it is slow
            staged[flag] = run_stages(plan, log=lambda *a: None)
    bf16, fp32 = (staged[f].defended.defenses["scenario_1"].diffence for f in ("true", "false"))
    assert bf16.autocast == torch.bfloat16 and fp32.autocast is None
    mine = next(iter(staged["true"].armed.copies.cache.values()))["mine"]
    assert mine.autocast == torch.bfloat16
    rel = {f: staged[f].defended.released[""]["scenario_1"] for f in ("true", "false")}
    members = {f: rel[f]["eval_members"] for f in rel}
    assert np.array_equal(members["true"].argmax(-1), members["false"].argmax(-1))
    assert not np.array_equal(members["true"], members["false"])


def test_channels_last_on_a_cpu_runs_the_whole_audit(tmp_path):
    """``[run].channels_last`` trains the target, the references and both DDPMs in channels-last format on a
    CPU (an opt-in speed-up): the audit runs, keeps every label, and records it."""
    plan = load_preset("demo", DEMO_TOY + ["run.channels_last=true", 'attacks.art=["bb_rf"]',
                                           f"run.out={json.dumps(str(tmp_path / 'cl'))}"])
    plan.defenses = plan.defenses[:1]
    results = run_plan(plan, log=lambda *a: None).results
    assert [r["defense"] for r in results["rows"]] == ["undefended", "scenario_1"]
    assert all(r["labels_kept"] == 1.0 for r in results["rows"]) and results["rows"][1]["lira"] is not None
    assert results["training"]["defender_ddpm"]["channels_last"] is True
    assert results["training"]["attacker_ddpm"]["channels_last"] is True


def test_every_row_that_keeps_its_labels_is_scored_by_lira_on_the_labels(tmp_path):
    """With ``[attacks].labels`` on (the default) every row is also attacked through its top-1 labels alone:
    on the undefended row that is, to the last digit, LiRA on the "labels only" row (the same labels, the
    same references reduced to labels), and a row that keeps every label (Diffence, MemGuard) scores the same,
    so no such row can report less exposure than "labels only" does for lack of the attack."""
    plan = load_preset("demo", DEMO_TOY + ["attacks.art=[]", f"run.out={json.dumps(str(tmp_path / 'out'))}"])
    rows = {r["defense"]: r for r in run_plan(plan, log=lambda *a: None).results["rows"]}
    aucs = {name: {a["attack"]: a["auc"] for a in r["attacks"]} for name, r in rows.items()}
    floor = {f"labels_{a}": auc for a, auc in aucs["labels_only"].items() if a.startswith("lira_")}
    assert len(floor) == 4
    for name, row in rows.items():
        assert {a: aucs[name][a] for a in floor} == pytest.approx(floor, abs=1e-12) or row["labels_kept"] < 1, name
        chosen = [a["selection_auc"] for a in row["attacks"] if a.get("selection_auc") is not None]
        assert row["best"]["selection_auc"] == pytest.approx(max(chosen)), name
