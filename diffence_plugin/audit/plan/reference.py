"""The plan reference (``docs/plan-reference.md``), generated from the schema so that it cannot drift from it:
each section's description from the schema's docstring, and a table of its keys with their types and
defaults. ``python -m diffence_plugin.audit.plan.reference > docs/plan-reference.md`` rewrites it."""

from __future__ import annotations

import json
import re
import typing

from pydantic import BaseModel

from diffence_plugin.audit.plan import schema


def _section_text(section: str) -> str:
    """The schema docstring's bullet for ``[section]``, joined into one paragraph."""
    doc = schema.__doc__ or ""
    match = re.search(rf"^- ``\[{re.escape(section)}\]``: (.*?)(?=^- ``|\Z)", doc, re.S | re.M)
    return " ".join(match.group(1).split()) if match else ""


def _kind(annotation) -> str:
    """A field's type as a reader says it: ``int``, ``list[int]``, ``"a" | "b"``, a table."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in args)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    if args and typing.get_origin(annotation) not in (list, dict):  # X | None
        return _kind(args[0]) if len(args) == 1 else " \\| ".join(_kind(a) for a in args)
    return getattr(annotation, "__name__", str(annotation)) if not args else str(annotation).replace("typing.", "")


def _default(field) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "(none)"
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True)
    return f"`{json.dumps(value)}`"


def _constraints(field) -> str:
    found = []
    for item in field.metadata:
        for name, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(item, name, None) is not None:
                found.append(f"{sign} {getattr(item, name)}")
    return ", ".join(found)


def _table(model: type[BaseModel]) -> list[str]:
    lines = ["| key | type | default | bounds |", "|---|---|---|---|"]
    lines += [f"| `{key}` | {_kind(field.annotation)} | {_default(field)} | {_constraints(field)} |"
              for key, field in model.model_fields.items()]
    return lines


def plan_reference() -> str:
    """The Markdown plan reference."""
    intro = (schema.__doc__ or "").split("Sections and keys")[0].strip()
    lines = ["# Plan reference", "", "Generated from `diffence_plugin/audit/plan/schema.py` by",
             "`python -m diffence_plugin.audit.plan.reference`; a test fails when this file and the schema differ.",
             "", " ".join(intro.split()), "",
             f"Top-level keys: `name`, `description`, `format` (`{schema.FORMAT}`), and `[[defenses]]`.", ""]
    for section, model in schema.SECTION_MODELS.items():
        lines += [f"## [{section}]", "", _section_text(section), "", *_table(model), ""]
    lines += ["## [[defenses]]", "", _section_text("[defenses]"), "",
              "`name` may be one name or a list (a pipeline); `label` defaults to the names joined by `+`; "
              "`options` is the defense's keyword arguments, or for a pipeline a table per name.", "",
              "## Training recipes", "", "`[target.train]`:", "", *_table(schema.TrainingRecipe), "",
              "`[attacks].reference_recipe` (over the target's recipe):", "", *_table(schema.ReferenceRecipe)]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(plan_reference(), end="")
