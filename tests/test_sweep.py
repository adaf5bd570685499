"""Sweeps: one plan over a list of values, each variant in its own folder, sharing what the variants have in
common; the shipped studies (LiRA by number of references, the demo over seeds) run as sweeps at toy size."""

from __future__ import annotations

import json

import pytest

from diffence_plugin.audit.plan import ConfigError, load_preset
from diffence_plugin.audit.sweep import combinations, expand, load_sweep, variant_names
from diffence_plugin.cli import main

TOY = ["members.count=100", "roles.defender=10", "roles.attacker=10", "roles.evaluation=30", "roles.population=20",
       "target.train.epochs=5", "diffusion.steps=10", "attacks.selection_draws=0", "attacks.art=[]",
       "run.bootstrap=50", "run.progress=false"]


def test_the_variants_are_the_product_or_the_lists_in_step():
    assert combinations({"a.x": [1, 2], "b.y": ["p", "q"]}, False) == [
        {"a.x": 1, "b.y": "p"}, {"a.x": 1, "b.y": "q"}, {"a.x": 2, "b.y": "p"}, {"a.x": 2, "b.y": "q"}]
    assert combinations({"a.x": [1, 2], "b.y": ["p", "q"]}, True) == [{"a.x": 1, "b.y": "p"}, {"a.x": 2, "b.y": "q"}]
    with pytest.raises(ConfigError, match="every list needs the same length"):
        combinations({"a.x": [1, 2], "b.y": ["p"]}, True)
    with pytest.raises(ConfigError, match="non-empty list"):
        combinations({"a.x": []}, False)
    assert variant_names([{"run.seed": 0, "roles.seed": 0}, {"run.seed": 1, "roles.seed": 1}]) == ["seed=0", "seed=1"]
    assert variant_names([{"a.x": 1, "b.y": "p"}, {"a.x": 1, "b.y": "q"}]) == ["x=1_y=p", "x=1_y=q"]


def test_a_sweep_shares_one_secret_and_checks_every_variant_before_any_run(tmp_path):
    plan = load_preset("study-dualmd", TOY + ["diffence.n=2", "run.defense_seed=\"secret\"", f"run.out={json.dumps(str(tmp_path))}"])
    variants = expand(plan)
    assert [v.name for v in variants] == ["kind=single", "kind=dual", "kind=distill"]
    seeds = {d.options["diffence"]["seed"] for v in variants for d in v.plan.diffences}
    assert len(seeds) == 1  # one drawn secret: the variants differ only in what the sweep sets
    assert all(v.plan.run.cache == str(tmp_path / "cache") and v.plan.sweep is None for v in variants)
    plan.sweep.over = {"diffusion.kind": ["single", "triple"]}
    with pytest.raises(ConfigError, match=r"variant kind=triple: \[diffusion\].kind must be one of"):
        expand(plan)


def test_lira_by_number_of_references_runs_as_a_sweep_that_trains_the_target_once(tmp_path, capsys):
    out = tmp_path / "refs"
    args = ["evaluate", "study-lira-references", "--out", str(out), "--no-progress", "--over",
            "attacks.references=2,4", *sum((["--set", s] for s in TOY), [])]
    assert main(args + ["--dry-run"]) == 0
    assert "sweep: 2 variants" in capsys.readouterr().out and not out.exists()
    assert main(args) == 0
    printed = capsys.readouterr().out
    record, results = load_sweep(out)
    assert [v["name"] for v in record["variants"]] == ["references=2", "references=4"]
    assert [r["plan"]["attacks"]["references"] for r in results] == [2, 4]
    assert all([row["defense"] for row in r["rows"]] == ["undefended"] for r in results)
    targets = list((out / "cache" / "stages").glob("target-*.safetensors"))
    assert len(targets) == 1  # the second variant loaded the first one's target
    assert results[1]["training"]["target"]["resumed"] is True
    assert results[0]["target_accuracy"] == results[1]["target_accuracy"]
    assert (out / "sweep.md").read_text().count("| attacks.references=") == 2 and (out / "sweep.png").stat().st_size > 1000
    assert "| attacks.references=2 | undefended |" in printed
    assert main(args) == 2  # a finished sweep is not overwritten silently


def test_the_demo_over_seeds_runs_as_a_zipped_sweep(tmp_path):
    out = tmp_path / "seeds"
    toy = TOY + ["diffence.n=2", "attacks.references=2", "defenses.memguard.epochs=5", "defenses.memguard.max_iter=20",
                 "defenses.diffence+memguard.memguard.epochs=5", "defenses.diffence+memguard.memguard.max_iter=20"]
    assert main(["evaluate", "study-demo-seeds", "--out", str(out), "--no-progress", "--over", "run.seed=0,1",
                 "--over", "roles.seed=0,1", "--zip", *sum((["--set", s] for s in toy), [])]) == 0
    record, results = load_sweep(out)
    assert [v["values"] for v in record["variants"]] == [{"run.seed": 0, "roles.seed": 0},
                                                        {"run.seed": 1, "roles.seed": 1}]
    assert results[0]["records"] != results[1]["records"]  # another split per seed
    assert [row["defense"] for row in results[0]["rows"]] == ["undefended", "scenario_1", "scenario_2", "scenario_3",
                                                              "memguard", "diffence+memguard", "labels_only"]


def test_table3_runs_each_training_defense_as_a_variant(tmp_path):
    """The Table 3 study at toy size for two training defenses: every row keeps accuracy, and the references are
    trained with the target's own recipe (they know the training-time defense)."""
    from diffence_plugin.audit.sweep import run_sweep

    plan = load_preset("study-table3-digits", TOY + ["diffence.n=2", "attacks.references=2",
                                                     'attacks.art=["bb_rf"]', f"run.out={json.dumps(str(tmp_path))}"])
    plan.sweep.over = {key: values[3::2] for key, values in plan.sweep.over.items()}  # hamp and advreg
    record = run_sweep(plan, log=lambda *a: None)
    _, results = load_sweep(tmp_path)
    assert [v["name"] for v in record["variants"]] == ["defense=hamp", "defense=advreg"]
    for res, defense in zip(results, ("hamp", "advreg")):
        rows = res["rows"]
        assert [r["defense"] for r in rows] == ["undefended", "scenario_1", "scenario_2", "scenario_3"]
        assert len({r["test_accuracy"] for r in rows}) == 1 and all(r["labels_kept"] == 1.0 for r in rows)
        assert all(r["reference_aware"] for r in rows[1:])
        assert res["training"]["target"]["recipe"]["defense"] == defense


def test_repeats_redraw_the_defense_and_the_attacker_but_not_the_model(tmp_path):
    """``[run].draw`` swept: the target and the DDPMs are trained once; the undefended row's threshold attacks
    (no randomness but the records') are identical in every draw; Diffence's releases change (new noise); the
    repeats table gives each row's mean ± sd and an interval at least as wide as one draw's."""
    from diffence_plugin.audit.sweep import run_sweep
    from diffence_plugin.report.sweep import format_repeats_table, repeats_summary

    plan = load_preset("study-demo-repeats", TOY + ["diffence.n=2", "attacks.references=2",
                                                    f"run.out={json.dumps(str(tmp_path))}"])
    plan.defenses = [plan.defenses[0], plan.defenses[-1]]  # Scenario 1 and labels only
    plan.sweep.over = {"run.draw": [0, 1, 2]}
    record = run_sweep(plan, log=lambda *a: None)
    _, results = load_sweep(tmp_path)
    assert len(list((tmp_path / "cache" / "stages").glob("target-*.safetensors"))) == 1
    assert len(list((tmp_path / "cache" / "stages").glob("defender-ddpm-*"))) == 1  # one DDPM for every draw

    def auc(res, defense, attack):
        row = next(r for r in res["rows"] if r["defense"] == defense)
        return next(a["auc"] for a in row["attacks"] if a["attack"] == attack)
    assert len({auc(r, "undefended", "loss") for r in results}) == 1
    assert len({auc(r, "scenario_1", "loss") for r in results}) > 1
    summary = repeats_summary(record, results)
    lira = summary["scenario_1"]["lira"]["auc"]
    assert lira["sd"] > 0 and lira["ci"][0] <= lira["mean"] <= lira["ci"][1]
    single = next(r for r in results[0]["rows"] if r["defense"] == "scenario_1")["lira"]["ci"]["auc"]
    assert lira["ci"][1] - lira["ci"][0] >= 0.5 * (single[1] - single[0])
    assert "| scenario_1 | 3 |" in format_repeats_table(summary)


def test_a_draw_redraws_every_randomised_defense_and_the_attacker_and_draw_0_is_the_plan_itself():
    from diffence_plugin.audit.stages.defend import build_stage, defense_seed
    from diffence_plugin.randomness import experiment_seed

    plain, redrawn = load_preset("demo"), load_preset("demo", ["run.draw=2"])
    assert defense_seed(plain) == experiment_seed(0)  # the published demo's Diffence seed, unchanged
    assert defense_seed(redrawn) not in (None, defense_seed(plain))
    assert build_stage("memguard", {"seed": 0}, None, plain).seed == 0
    assert build_stage("memguard", {"seed": 0}, None, redrawn).seed not in (0, None)
    assert build_stage("hamp_output", {}, None, redrawn).seed != build_stage("hamp_output", {}, None, plain).seed
    assert (plain.attacker_draw_seed, plain.attacker_seed) == (1, 1)
    assert redrawn.attacker_draw_seed != redrawn.attacker_seed == 1  # its DDPM: trained once, from attacker_seed
    secret = load_preset("demo", ['run.defense_seed="secret"'])
    again = load_preset("demo", ['run.defense_seed="secret"', "run.draw=1"])
    assert defense_seed(secret) is None  # draw 0: the secret in the plan's own options
    assert defense_seed(again) is not None
