"""The demo pipeline and the command line, at tiny sizes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from diffence_plugin.attacks.metrics import membership_metrics
from diffence_plugin.audit.plan import load_preset
from diffence_plugin.audit.run import run_plan
from diffence_plugin.cli import main
from diffence_plugin.report import (
    format_attack_table,
    format_table,
    format_utility_table,
)


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    plan = load_preset("demo", ["members.count=150", "roles.defender=30", "roles.attacker=40", "roles.evaluation=60",
                                "roles.population=60", "target.train.epochs=30", "diffusion.steps=20", "diffence.n=4",
                                "attacks.references=2", "attacks.selection_draws=2", "run.bootstrap=200",
                                'attacks.art=["bb_rf", "bb_loss_rf", "shadow_models", "rule_based"]',
                                "run.progress=false", f"run.out={json.dumps(str(out))}"])
    return run_plan(plan, log=lambda *a: None).results, out


def test_demo_writes_results_report_and_plots(demo_results):
    results, out = demo_results
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
    html = (out / "report.html").read_text()
    assert "scenario_1" in html and "data:image/png;base64," in html
    assert "<title>Diffence evaluation: digits_mlp on digits</title>" in html
    assert "white-space:nowrap" in html  # an interval stays on one line
    assert (out / "phi_histograms.png").stat().st_size > 1000 and (out / "roc.png").stat().st_size > 1000


def test_demo_keeps_accuracy_identical_in_every_scenario(demo_results):
    rows = demo_results[0]["rows"]
    assert [r["defense"] for r in rows] == ["undefended", "scenario_1", "scenario_2", "scenario_3", "memguard",
                                           "diffence+memguard", "labels_only"]
    assert len({r["test_accuracy"] for r in rows}) == 1
    assert len({r["train_accuracy"] for r in rows}) == 1
    assert all(r["labels_kept"] == 1.0 for r in rows)
    attacks = {a["attack"] for a in rows[0]["attacks"]}
    assert {"loss", "confidence", "entropy", "modified_entropy", "correctness", "bb_rf", "rule_based",
            "lira_online_global", "lira_offline_per_example", "rmia_online", "rmia_offline", "shadow_models"} <= attacks
    for row in rows:  # the chosen attack is the one with the best selection AUC, never an evaluation maximum
        best = max((a for a in row["attacks"] if a["selection_auc"] is not None), key=lambda a: a["selection_auc"])
        assert row["best"]["attack"] == best["attack"]
        assert row["best"]["ci"]["auc"][0] <= row["best"]["auc"] <= row["best"]["ci"]["auc"][1]
    # one attacker rule: every defense is copied by the attacker, post-inference stages included
    assert all(r["reference_aware"] is True for r in rows[1:])
    floor = rows[-1]  # labels only: the one-hot top label, whose NLL pays the floor on every error
    assert floor["utility"]["nonmembers"]["nll"] > rows[0]["utility"]["nonmembers"]["nll"]
    assert floor["utility"]["nonmembers"]["ci"]["ece"][0] <= floor["utility"]["nonmembers"]["ci"]["ece"][1]
    assert rows[1]["spread"]["best_auc"]["draws"] == 2 and "auc_change" in rows[1]["change"]["best"]


def test_tables_have_one_line_per_defense_and_attack(demo_results):
    results = demo_results[0]
    assert len([line for line in format_table(results).splitlines() if line.startswith("| ")]) == 1 + 7
    assert len([line for line in format_utility_table(results).splitlines() if line.startswith("| ")]) == 1 + 7
    assert "FPR resolution 1/60 = 1.667%: TPR at 0.1% FPR is n/a." in format_table(results)
    assert "TPR@0.1%FPR" not in format_table(results)
    assert "same labels" in format_attack_table(results)


def test_table_reports_tpr_at_a_tenth_of_a_percent_where_the_nonmembers_resolve_it():
    # members score 1..2000 above every non-member (0..-1999): TPR is 100% at any FPR, 0.1% FPR = 2 false positives
    best = membership_metrics("loss", np.arange(1.0, 2001.0), -np.arange(2000.0), bootstrap=50).to_dict(scores=False)
    row = {"defense": "undefended", "test_accuracy": 0.5, "labels_kept": 1.0, "best": best, "lira": best,
           "rmia": None, "correctness": None}
    table = format_table({"rows": [row]})
    assert "| TPR@0.1%FPR | LiRA TPR@0.1%FPR |" in table
    assert table.splitlines()[2].count("100.0% [100.0, 100.0]") == 4
    assert "FPR resolution 1/2000 = 0.050%: TPR at 0.1% FPR rests on 2 false positives." in table


def test_cli_train_diffusion_saves_and_refuses_to_overwrite(tmp_path, capsys, monkeypatch):
    import diffence_plugin.diffusion

    out = tmp_path / "ddpm"
    assert main(["train-diffusion", "--steps", "2", "--batch-size", "8", "--out", str(out), "--no-progress"]) == 0
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    captured = capsys.readouterr()
    assert "ddpm: 2 steps in" in captured.err and "step 2 of 2" in captured.out  # logged even without a terminal
    assert (out / "training.json").is_file()
    before = sorted(p.name for p in out.rglob("*"))

    def never(*args, **kwargs):
        raise AssertionError("training started before the output folder was checked")

    with monkeypatch.context() as patch:
        patch.setattr(diffence_plugin.diffusion, "train_diffusion", never)
        assert main(["train-diffusion", "--steps", "1", "--batch-size", "8", "--out", str(out), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err and sorted(p.name for p in out.rglob("*")) == before
    assert main(["train-diffusion", "--steps", "1", "--batch-size", "8", "--out", str(out), "--no-progress",
                 "--overwrite"]) == 0


def test_cli_reports_bad_images_files(tmp_path, capsys):
    import numpy as np

    assert main(["train-diffusion", "--images", str(tmp_path / "none.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.full((4, 1, 8, 8), 3.0, dtype=np.float32))
    np.save(tmp_path / "nan.npy", np.full((4, 1, 8, 8), np.nan, dtype=np.float32))
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("not an array\n")
    for name, message in (("bad", "[0, 1]"), ("nan", "NaN"), ("objects", "pickled Python objects"),
                          ("text", "is not a numpy .npy or .npz file: it starts with b'not an a'")):
        out = tmp_path / f"out-{name}"  # a usage error (2) found before the output folder is made
        assert main(["train-diffusion", "--images", str(tmp_path / f"{name}.npy"), "--out", str(out),
                     "--steps", "1", "--no-progress"]) == 2
        assert message in capsys.readouterr().err and not out.exists()


def test_cli_validates_arguments_before_any_work(tmp_path, capsys):
    """Each of these fails at once with exit code 2 and a message naming the problem; nothing is trained."""
    cases = [
        (["demo", "-n", "0", "--out", str(tmp_path / "d")], "n (reconstructions per input) must be >= 1"),
        (["demo", "-t", "35", "--out", str(tmp_path / "d")], "t must be a multiple of k"),
        (["train-target", "--option", "alpah=0.5", "--defense", "relaxloss", "--out", str(tmp_path / "t")],
         "unknown --option ['alpah'] for defense 'relaxloss'; valid options: ['alpha']"),
        (["train-target", "--model", "vgg", "--out", str(tmp_path / "t")], "unknown --model 'vgg'"),
        (["train-target", "--dataset", "cifar10", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t")],
         "cifar-10-batches-py"),
        (["reproduce", "cifar10", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")], "train.npz"),
        (["train-target", "--epochs", "0", "--out", str(tmp_path / "t")], "--epochs must be > 0"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()


def test_cli_help_version_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and "diffence-plugin" in capsys.readouterr().out
    helps = {}
    for command in ("demo", "evaluate", "train-diffusion", "train-target", "reproduce"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        text = helps[command] = capsys.readouterr().out
        assert done.value.code == 0 and "example:" in text and f"diffence {command}" in text
        flat = " ".join(text.split())  # argparse wraps lines
        assert "(default: None)" not in flat and not re.search(r"\(default: [^)]*\) \(default:", flat), command
    for command, shown in {"train-diffusion": ["training steps (default: 2000)", "(default: tiny)",
                                               "learning rate (default: 0.0002)", "images per step (default: 128)",
                                               "the training's seed (default: 0)"],
                           "train-target": ["training epochs (default: 100)", "learning rate (default: 0.001)",
                                            "records per step (default: 64)", "training's seed (default: 0)"],
                           "demo": ["(the preset's: 0)", "torch threads (default: torch's choice)"]}.items():
        for text in shown:  # every option with a default shows it once
            assert text in " ".join(helps[command].split()), (command, text)
    with pytest.raises(SystemExit) as done:
        main(["demo", "--no-such-flag"])
    assert done.value.code == 2


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from diffence_plugin.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_demo_refuses_a_non_empty_folder_without_overwrite(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "keep.txt").read_text() == "mine"


def test_report_html_numbers_equal_results_json(demo_results):
    """Parse report.html's results table; every AUC, CI and TPR cell equals results.json's figures."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr":
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.tables[-1][-1].append(self.cell.strip())
                self.cell = None

    results, out = demo_results
    parser = Tables()
    parser.feed((out / "report.html").read_text())
    head, *body = parser.tables[0]
    assert head[:5] == ["defense", "test acc", "labels kept", "chosen attack", "AUC [95% CI]"]
    assert len(body) == len(results["rows"])
    for cells, row in zip(body, results["rows"]):
        best = row["best"]
        assert cells[0] == row["defense"] and cells[3] == best["attack"]
        low, high = best["ci"]["auc"]
        assert cells[4] == f"{best['auc']:.3f} [{low:.3f}, {high:.3f}]"
        assert float(cells[1]) == pytest.approx(row["test_accuracy"], abs=5e-5)
        lira = row["lira"]
        assert cells[6].split(" ")[0] == f"{lira['auc']:.3f}"
        tpr = lira["tpr"]["0.01"]
        assert cells[7].split(" ")[0] == ("n/a" if tpr is None else f"{100 * tpr:.1f}%")
    scores = results["rows"][0]["attacks"][0]
    assert len(scores["member_scores"]) == scores["members"]  # per-record scores, to redraw any curve


def test_ctrl_c_prints_one_line_keeps_the_folder_and_exits_1(tmp_path, capsys, monkeypatch):
    import diffence_plugin.audit.run as audit_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_run, "defend", interrupted)  # after the target and the DDPM are trained
    assert main(["demo", "--out", str(tmp_path / "out"), "--no-progress", "--ddpm-steps", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # the phase log lines, then one line for the interrupt
    assert "interrupted" in err[-1] and sum("interrupted" in line for line in err) == 1
    assert (tmp_path / "out" / "config.json").is_file()  # the folder and the run's record are kept


def test_channels_last_images_are_named_before_any_training(tmp_path, capsys):
    np.save(tmp_path / "hwc.npy", np.zeros((4, 8, 8, 1), dtype=np.float32))
    assert main(["train-diffusion", "--images", str(tmp_path / "hwc.npy"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "looks channels-last (N, H, W, C)" in err and "x.transpose(0, 3, 1, 2)" in err
    assert not (tmp_path / "o").exists()


def test_phi_histograms_keep_one_hot_releases_off_the_shared_axis(tmp_path):
    """Labels only releases one-hot vectors (phi infinite, clamped huge): its panel says so instead of stretching
    the shared phi axis until every other panel is one bar."""
    import matplotlib

    from diffence_plugin.audit.stages.write import released_phi
    from diffence_plugin.report.plots import _one_value, plot_phi_histograms

    rng = np.random.default_rng(0)
    soft = rng.dirichlet(np.ones(10), size=40)
    onehot = np.eye(10)[rng.integers(0, 10, 40)]
    released = {"undefended": {"eval_members": soft, "eval_nonmembers": soft[::-1].copy()},
                "labels_only": {"eval_members": onehot, "eval_nonmembers": onehot}}
    path = plot_phi_histograms(released_phi(released), tmp_path / "phi.png")
    assert path.stat().st_size > 1000 and matplotlib.get_backend().lower() == "agg"
    assert _one_value({"a": np.full(3, 7.0), "b": np.full(2, 7.0)}) == 7.0
    assert _one_value({"a": np.array([1.0, 2.0])}) is None
