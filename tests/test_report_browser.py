"""The report as a reader sees it: rendered by headless Chromium at 1,366 pixels, its verdict comes first, no
table is wider than the page and every image loads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from diffence_plugin.report import write_report

LABELS = ["undefended", "scenario_1", "scenario_2", "scenario_3", "memguard", "diffence+memguard", "labels_only"]
CHECK = """<script>window.addEventListener('load', () => {
  const page = document.documentElement.clientWidth;
  const tables = [...document.querySelectorAll('table')].map(t => Math.ceil(t.getBoundingClientRect().right));
  const images = [...document.querySelectorAll('img')].map(i => i.complete && i.naturalWidth > 0);
  const headings = [...document.querySelectorAll('h2')].map(h => h.textContent);
  document.body.setAttribute('data-check', JSON.stringify({page, tables, images, headings,
    scroll: document.documentElement.scrollWidth}));
});</script></body>"""


def _browser() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


def _figure(attack: str, auc: float, rng) -> dict:
    members, nonmembers = rng.normal(auc - 0.5, 1, 150), rng.normal(0, 1, 150)
    return {"attack": attack, "auc": auc, "accuracy": 0.55, "tpr": {"0.01": 0.027, "0.001": None},
            "ci": {"auc": [auc - 0.061, auc + 0.058], "tpr@0.01": [0.0, 0.14], "tpr@0.001": None},
            "members": 150, "nonmembers": 150, "fpr_resolution": 1 / 150, "selection_auc": auc,
            "member_scores": members.tolist(), "nonmember_scores": nonmembers.tolist()}


def _results() -> dict:
    """A results record shaped like the demo's: seven rows, the longest attack names, every table filled."""
    rng = np.random.default_rng(0)
    paired = {"auc_change": -0.066, "ci": [-0.135, 0.001], "attack": "lira_offline_per_example",
              "baseline_attack": "rmia_offline", "tpr@0.01_change": -0.007, "tpr_ci": [-0.12, 0.04]}
    change = {"best": paired, "lira": paired}
    rows = []
    for i, label in enumerate(LABELS):
        best = _figure("lira_offline_per_example", 0.6 - 0.01 * i, rng)
        rows.append({"defense": label, "train_accuracy": 1.0, "test_accuracy": 0.94, "labels_kept": 1.0,
                     "reference_aware": True, "best": best, "lira": best, "rmia": _figure("rmia_offline", 0.6, rng),
                     "correctness": _figure("correctness", 0.554, rng),
                     "spread": {"best_auc": {"mean": 0.542, "sd": 0.029, "draws": 10}} if i else None,
                     "change": change if i else None, "versus_labels": change if 0 < i < 6 else None,
                     "utility": {"nonmembers": {"records": 150, "ece": 0.04, "nll": 0.208, "brier": 0.096,
                                                "ci": {"ece": [0.019, 0.077], "nll": [0.088, 0.352],
                                                       "brier": [0.04, 0.159]}},
                                 "members": {"records": 150, "ece": 0.003, "nll": 0.003, "brier": 0.001}},
                     "attacks": [best, _figure("modified_entropy", 0.55, rng)]})
    phi = {label: {"eval_members": rng.normal(3, 1, 150).tolist(), "eval_nonmembers": rng.normal(2, 1, 150).tolist()}
           for label in LABELS}
    plan = {"defenses": [{"label": label, "name": ["labels_only"] if label == "labels_only" else [label]}
                         for label in LABELS[1:]]}
    return {"format": "diffence-results-v2", "settings": {"title": "digits_mlp on digits", "defense memguard":
            {"memguard": {"seed": 0, "epsilon": 1.0}}}, "plan": plan, "target_accuracy": {"train": 1.0, "test": 0.94},
            "training": {}, "calibration": {"scenario_1": {"lo": 1.0, "hi": 4.0}}, "rows": rows, "phi": phi,
            "timings": {}, "seconds": 225.0, "machine": {"cpu": "test"}}


def test_the_report_opens_with_its_verdict_and_fits_a_1366_pixel_screen(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no headless Chromium (Debian's chromium package; .ci/run installs it)")
    page = write_report(_results(), tmp_path)
    checked = tmp_path / "check.html"
    checked.write_text(page.read_text().replace("</body>", CHECK))
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1366,900",
                          "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-check="([^"]*)"', out)
    assert found, out[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["headings"][0] == "Verdict"
    assert check["scroll"] <= check["page"], check  # no horizontal scrolling
    assert max(check["tables"]) <= check["page"], check
    assert check["images"] and all(check["images"]), check
    html = page.read_text()
    assert html.index("Verdict") < html.index("<h2>Results</h2>")
    assert "memguard (seed 0, epsilon 1)" in html  # a defense's seed is a setting where it is not the secret
    verdict = html[html.index("Verdict"):html.index("<h2>Results</h2>")]
    assert "scenario_1: the strongest attack&#x27;s AUC changes by -0.066 [-0.135, +0.001] and its TPR at 1% FPR by " \
           "-0.7 points [-12.0, +4.0] against the undefended model; against labels only" in verdict
    assert "labels_only: " in verdict and "this row is the floor" in verdict
