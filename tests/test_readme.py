"""The README's Python examples each run as written, alone, in a fresh namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs_alone(index, capsys):
    namespace: dict = {"__name__": f"readme_block_{index}"}
    exec(compile(BLOCKS[index], f"{README}:block{index}", "exec"), namespace)
    out = capsys.readouterr().out
    if "flagged as members" in out:  # the ART block prints both rates, members and non-members
        rates = re.findall(r"([0-9.]+) of (?:members|non-members)", out)
        assert len(rates) == 2 and all(0.0 <= float(r) <= 1.0 for r in rates)
    if "classifier" in namespace and hasattr(namespace["classifier"], "predict"):
        assert namespace["classifier"].predict(namespace["x"][:2]).shape == (2, 10)
    if "pipeline" in namespace:
        torch = namespace["torch"]
        x = torch.from_numpy(namespace["x"][:6])
        with torch.no_grad():
            labels = namespace["model"](x).argmax(1)
        assert namespace["pipeline"](x).argmax(1).tolist() == labels.tolist()  # the stacked pipeline keeps labels
    if "LiRA AUC" in out:
        assert 0.5 < float(out.split("LiRA AUC")[1].split()[0]) <= 1.0


def test_readme_commands_match_ci():
    ci = (README.parent / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q" in README.read_text()
    assert "python -m pytest -q" in ci


def test_readme_lists_every_command():
    from diffence_plugin.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in commands:
        assert f"`diffence {name}" in README.read_text(), name
