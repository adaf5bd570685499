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
