"""The plan reference (``docs/plan-reference.md``), generated from the schema so that it cannot drift from it:
each section's description from the schema's docstring, and a table of its keys with their types and
defaults. ``python -m diffence_plugin.audit.plan.reference > docs/plan-reference.md`` rewrites it."""

from __future__ import annotations

import json
import re

from diffence_plugin.audit.plan import schema


def _section_text(section: str) -> str:
    """The schema docstring's bullet for ``[section]``, joined into one paragraph."""
    doc = schema.__doc__ or ""
    match = re.search(rf"^- ``\[{re.escape(section)}\]``: (.*?)(?=^- ``|\Z)", doc, re.S | re.M)
    return " ".join(match.group(1).split()) if match else ""


def _kind(kind) -> str:
    return kind.__name__ if isinstance(kind, type) else " | ".join(k.__name__ for k in kind)


def _default(section: str, key: str) -> str:
    defaults = schema.DEFAULTS.get(section, {})
    return f"`{json.dumps(defaults[key])}`" if key in defaults else "(none)"


def plan_reference() -> str:
    """The Markdown plan reference."""
    intro = (schema.__doc__ or "").split("Sections and keys")[0].strip()
    lines = ["# Plan reference", "", "Generated from `diffence_plugin/audit/plan/schema.py` by",
             "`python -m diffence_plugin.audit.plan.reference`; a test fails when this file and the schema differ.",
             "", " ".join(intro.split()), "",
             "Top-level keys: `name`, `description`, `format` (`" + schema.FORMAT + "`), and `[[defenses]]`.", ""]
    for section, fields in schema.SECTIONS.items():
        lines += [f"## [{section}]", "", _section_text(section), "", "| key | type | default |", "|---|---|---|"]
        lines += [f"| `{key}` | {_kind(kind)} | {_default(section, key)} |" for key, kind in fields.items()]
        lines.append("")
    lines += ["## [[defenses]]", "", _section_text("[defenses]") or _section_text("defenses"), "",
              "| key | type | default |", "|---|---|---|", "| `name` | str \\| list | (required) |",
              "| `label` | str | the name, or the names joined by `+` |", "| `options` | dict | `{}` |", "",
              "## Training recipes", "", "`[target.train]` and `[attacks].reference_recipe` take these keys:", "",
              "| key | type |", "|---|---|"]
    lines += [f"| `{key}` | {_kind(kind)} |" for key, kind in schema.RECIPE_KEYS.items()]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(plan_reference(), end="")
