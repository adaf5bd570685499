"""The README's and the docs' Python examples each run as written, alone, in a fresh namespace; the README
stays short; the plan reference is the one the schema generates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [(page, block) for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)]


def test_the_readme_and_the_docs_have_their_examples():
    assert sum(page == README for page, _ in BLOCKS) >= 2 and len(BLOCKS) >= 6, [str(p) for p, _ in BLOCKS]


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 210


def test_the_plan_reference_is_generated_from_the_schema():
    from diffence_plugin.audit.plan.reference import plan_reference

    assert (ROOT / "docs" / "plan-reference.md").read_text() == plan_reference(), \
        "docs/plan-reference.md is stale: python -m diffence_plugin.audit.plan.reference > docs/plan-reference.md"


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{p.relative_to(ROOT)}-{i}" for i, (p, _) in
                                                          enumerate(BLOCKS)])
def test_example_runs_alone(index, capsys):
    page, block = BLOCKS[index]
    namespace: dict = {"__name__": f"example_block_{index}"}
    exec(compile(block, f"{page}:block{index}", "exec"), namespace)
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
