"""Every example in examples/ runs, at a small size, with the real ART, diffusers and sklearn."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_art_quickstart_runs_and_reports_an_auc_per_estimator(capsys):
    aucs = _load("art_quickstart").main(epochs=5, ddpm_steps=5, n=2)
    assert set(aucs) == {"undefended", "diffence"}
    assert all(0.0 <= auc <= 1.0 for auc in aucs.values())
    out = capsys.readouterr().out
    assert "undefended: attack AUC" in out and "diffence: attack AUC" in out


def test_table3_runs_each_training_defense_through_the_engine(tmp_path, capsys):
    """HAMP (its output modification in every column, copied by the attacker) and AdvReg (its own non-members)
    at toy size; every row keeps accuracy, and the references know the training-time defense."""
    toy = ["members.count=100", "roles.defender=10", "roles.attacker=10", "roles.evaluation=30",
           "roles.population=20", "target.train.epochs=3", "diffusion.steps=5", "diffence.n=2", "run.bootstrap=50"]
    table = _load("table3_digits").main(["--out", str(tmp_path), "--references", "2", "--draws", "2",
                                         "--only", "hamp", "advreg", *sum((["--set", o] for o in toy), [])])
    assert [entry["defense"] for entry in table] == ["hamp", "advreg"]
    hamp, advreg = (entry["rows"] for entry in table)
    assert [r["defense"] for r in hamp] == ["hamp_output", "scenario_1", "scenario_2", "scenario_3"]
    assert [r["defense"] for r in advreg] == ["undefended", "scenario_1", "scenario_2", "scenario_3"]
    for rows in (hamp, advreg):
        assert len({r["test_accuracy"] for r in rows}) == 1 and all(r["labels_kept"] == 1.0 for r in rows)
        assert all(r["reference_aware"] for r in rows[1:])
    assert hamp[0]["reference_aware"] is True  # the attacker applies its own HAMP output to its references
    assert "| hamp |" in capsys.readouterr().out
