"""Packaging: every subpackage ships, and adapters install as diffence_plugin.adapters (never top-level)."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "diffence_plugin").rglob("__init__.py")}
    found |= {"diffence_plugin.adapters"}
    assert found <= listed, f"not shipped: {sorted(found - listed)}"
    assert "adapters" not in listed
    assert config["package-dir"]["diffence_plugin.adapters"] == "adapters"


def test_art_plugins_entry_point_is_declared():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["entry-points"]["diffence_plugin"]["art"] == "diffence_plugin.adapters.art_plugins"
    assert config["project"]["scripts"]["diffence"] == "diffence_plugin.cli:main"
