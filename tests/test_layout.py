"""The package layout: no import cycles between modules, and no recipe importing another recipe."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "diffence_plugin"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "adapters":  # installed as diffence_plugin.adapters
        parts.insert(0, "diffence_plugin")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of diffence_plugin that ``path`` imports at module level (function-level imports are lazy)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("diffence_plugin"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("diffence_plugin"))
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in [*PACKAGE.rglob("*.py"), *(ROOT / "adapters").glob("*.py")]}
    return {name: {t for t in _imports(path) if t in files and t != name} for name, path in files.items()}


def test_no_import_cycles_between_modules():
    graph = _graph()
    # a package's __init__ re-exporting its own modules is not a cycle of concerns: drop parent -> child edges
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles}"


def test_the_pipeline_steps_sit_at_the_top_of_the_package():
    for step in ("reconstruct", "classify", "select", "calibrate", "defense", "outputs", "config", "validation"):
        assert (PACKAGE / f"{step}.py").is_file(), step
    for wing in ("defenses", "plugins", "evaluation", "data", "diffusion"):
        assert (PACKAGE / wing / "__init__.py").is_file(), wing
    for preset in ("demo", "cifar10-cpu", "cifar10-gpu", "cifar10-frontier", "cifar10-canaries",
                   "cifar10-public", "cifar10-stacking"):  # presets are data, not drivers
        assert (PACKAGE / "presets" / f"{preset}.toml").is_file(), preset


def test_the_core_and_the_evaluation_wing_never_import_the_adapters():
    """Not even lazily inside a function: ART's attacks and the Ray executor reach the engine through the plugin
    registries, so evaluation -> adapters -> evaluation is no cycle, hidden or not."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "cli.py":  # the command line may name the adapters it lists
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any("adapters" in name.split(".") for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"imports of the adapters: {offenders}"


def test_no_function_in_the_package_is_much_longer_than_80_lines():
    """Functions say one thing each: none in the package or the adapters over 90 lines, docstring included."""
    long = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "adapters").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 90:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, f"functions over 90 lines: {long}"
