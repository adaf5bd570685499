"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "members flagged:" in out
    assert 0.0 <= float(out.split("members flagged:")[1].split()[0]) <= 1.0
    assert namespace["classifier"].predict(namespace["x"][:2]).shape == (2, 10)
    x = namespace["torch"].from_numpy(namespace["x"][:6])
    with namespace["torch"].no_grad():
        labels = namespace["model"](x).argmax(1)
    assert namespace["pipeline"](x).argmax(1).tolist() == labels.tolist()  # the stacked pipeline keeps labels


def test_readme_commands_match_ci():
    ci = (README.parent / ".ci" / "run").read_text()
    assert '.venv/bin/python -m pytest -q' in README.read_text()
    assert "python -m pytest -q" in ci
