"""The demo pipeline and the command line, at tiny sizes."""

from __future__ import annotations

import json

import pytest

from diffence_plugin.cli import main
from diffence_plugin.recipes.demo import DemoSettings, run_demo
from diffence_plugin.evaluation.report import format_attack_table, format_table


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    settings = DemoSettings(members=150, defender=30, attacker=40, evaluation=60, target_epochs=30, ddpm_steps=20,
                            n=4, art_attacks=("bb_rf", "bb_loss_rf", "rule_based"))
    return run_demo(settings, out_dir=out, progress=False, log=lambda *a: None), out


def test_demo_writes_results_report_and_plots(demo_results):
    results, out = demo_results
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
    html = (out / "report.html").read_text()
    assert "scenario_1" in html and "data:image/png;base64," in html
    assert (out / "phi_histograms.png").stat().st_size > 1000


def test_demo_keeps_accuracy_identical_in_every_scenario(demo_results):
    rows = demo_results[0]["rows"]
    assert [r["defense"] for r in rows] == ["undefended", "scenario_1", "scenario_2", "scenario_3", "memguard",
                                           "diffence+memguard"]
    assert len({r["test_accuracy"] for r in rows}) == 1
    assert len({r["train_accuracy"] for r in rows}) == 1
    assert all(r["labels_kept"] == 1.0 for r in rows)
    attacks = {a["attack"] for a in rows[0]["attacks"]}
    assert {"loss", "confidence", "entropy", "modified_entropy", "correctness", "bb_rf", "rule_based"} <= attacks


def test_tables_have_one_line_per_defense_and_attack(demo_results):
    results = demo_results[0]
    assert len(format_table(results).splitlines()) == 2 + 6
    assert "same labels" in format_attack_table(results)


def test_cli_train_diffusion_saves_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "ddpm"
    assert main(["train-diffusion", "--steps", "2", "--batch-size", "8", "--out", str(out), "--no-progress"]) == 0
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    with pytest.raises(SystemExit, match="not empty"):
        main(["train-diffusion", "--steps", "1", "--batch-size", "8", "--out", str(out), "--no-progress"])


def test_cli_reports_bad_images_file(tmp_path, capsys):
    import numpy as np

    with pytest.raises(SystemExit, match="does not exist"):
        main(["train-diffusion", "--images", str(tmp_path / "none.npy"), "--out", str(tmp_path / "o")])
    np.save(tmp_path / "bad.npy", np.full((4, 1, 8, 8), 3.0, dtype=np.float32))
    assert main(["train-diffusion", "--images", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "o"),
                 "--steps", "1", "--no-progress"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
