"""The results type: written and read through one schema, versioned, older versions read, others refused by name."""

from __future__ import annotations

import copy
import json

import pytest

from diffence_plugin.audit.results import RESULTS_FORMAT, checked, load_results, write_results_file
from diffence_plugin.report import format_table


def figure(attack: str, auc: float) -> dict:
    return {"attack": attack, "auc": auc, "accuracy": 0.5, "tpr": {"0.01": 0.02, "0.001": None},
            "ci": {"auc": [auc - 0.05, auc + 0.05], "tpr@0.01": [0.0, 0.06], "tpr@0.001": None},
            "members": 150, "nonmembers": 150, "fpr_resolution": 1 / 150, "selection_auc": auc}


def results() -> dict:
    row = {"defense": "undefended", "train_accuracy": 1.0, "test_accuracy": 0.94, "labels_kept": 1.0,
           "reference_aware": None, "best": figure("loss", 0.6), "lira": figure("lira_online_global", 0.65),
           "rmia": None, "attacks": [figure("loss", 0.6), figure("lira_online_global", 0.65)],
           "a_plugin_field": [1, 2]}
    return {"format": RESULTS_FORMAT, "settings": {"title": "toy"}, "plan": {"name": "toy"},
            "target_accuracy": {"train": 1.0, "test": 0.94}, "training": {}, "records": {"evaluation": "0" * 16},
            "calibration": {}, "rows": [row], "phi": {"undefended": {"eval_members": [1.0], "eval_nonmembers": [2.0]}},
            "timings": {"target_s": 1.5}, "seconds": 2.0, "machine": {"cpu": "test"}}


def test_results_are_written_and_read_back_unchanged_with_fields_the_schema_does_not_name(tmp_path):
    written = write_results_file(results(), tmp_path / "results.json")
    back = load_results(tmp_path)
    assert back == results() and back["rows"][0]["a_plugin_field"] == [1, 2] and written.is_file()
    assert "| undefended |" in format_table(back)


def test_a_results_file_of_the_previous_version_is_read(tmp_path):
    older = results()
    older["format"] = "diffence-results-v1"
    del older["phi"]  # v1 had no phi
    (tmp_path / "results.json").write_text(json.dumps(older))
    assert load_results(tmp_path)["format"] == "diffence-results-v1"


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(format="diffence-results-v9"), r"is results format 'diffence-results-v9'; this version reads"),
    (lambda r: r.pop("rows"), r"is not an audit's results"),
    (lambda r: r["rows"][0]["best"].pop("auc"), r"rows\.0\.best\.auc: Field required"),
    (lambda r: r["rows"][0].update(labels_kept="all"), r"rows\.0\.labels_kept: Input should be a valid number"),
])
def test_results_that_do_not_fit_are_refused_naming_the_field_or_version(tmp_path, change, message):
    bad = copy.deepcopy(results())
    change(bad)
    with pytest.raises(ValueError, match=message):
        checked(bad)
    (tmp_path / "results.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=message):
        load_results(tmp_path)
    with pytest.raises(ValueError, match=message):
        write_results_file(bad, tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists()
