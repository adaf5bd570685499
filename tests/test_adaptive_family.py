"""The adaptive attacker as a registered family, selected in the plan: a deterministic release answers repeated
queries alike, so averaging them gives LiRA's figures exactly; the family is refused with a named field when
misspelt."""

from __future__ import annotations

import json

import pytest

from diffence_plugin.attacks.adaptive_family import AdaptiveFamily
from diffence_plugin.audit.plan import ConfigError, load_preset
from diffence_plugin.audit.run import run_plan

TOY = ["members.count=100", "roles.defender=10", "roles.attacker=10", "roles.evaluation=30", "roles.population=20",
       "target.train.epochs=5", "diffusion.steps=10", "attacks.references=2", "attacks.selection_draws=0",
       "attacks.art=[]", "run.bootstrap=50", "run.progress=false", "diffence.n=2"]


def test_repeated_queries_to_a_deterministic_release_give_lira_exactly_and_label_noise_is_scored(tmp_path):
    plan = load_preset("demo", TOY + ['attacks.adaptive=["repeat", "label_noise"]', "attacks.adaptive_copies=3",
                                      f"run.out={json.dumps(str(tmp_path))}"])
    plan.defenses = [plan.defenses[0], plan.defenses[-1]]  # Scenario 1 (deterministic by default), labels only
    rows = run_plan(plan, log=lambda *a: None).results["rows"]
    assert [r["defense"] for r in rows] == ["undefended", "scenario_1", "labels_only"]
    for row in rows:
        auc = {a["attack"]: a["auc"] for a in row["attacks"]}
        lira = sorted(name for name in auc if name.startswith("lira_"))
        assert len(lira) == 4
        for name in lira:  # three identical answers average to the one answer
            assert auc[f"repeat3_{name}"] == auc[name], (row["defense"], name)
        assert 0.0 <= auc["label_noise"] <= 1.0


def test_the_family_and_its_plan_keys_refuse_what_they_do_not_know():
    with pytest.raises(ValueError, match=r"unknown adaptive attack\(s\) \['twice'\]"):
        AdaptiveFamily(kinds=("twice",))
    with pytest.raises(ValueError, match="copies must be >= 1"):
        AdaptiveFamily(copies=0)
    with pytest.raises(ConfigError, match=r"\[attacks\].adaptive.0 must be one of \['repeat', 'average', 'label_noise'\]"):
        load_preset("demo", ['attacks.adaptive=["avg"]'])
    with pytest.raises(ConfigError, match=r"'adaptive' is built in; it is turned on by \[attacks\].adaptive"):
        load_preset("demo", ['attacks.plugins=["adaptive"]'])
