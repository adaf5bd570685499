"""The package layout: one folder per concern, data flowing one way.

Every import counts, function-level ones included: no cycle between modules, no module importing a wing
ranked above its own, the adapters reached only through the registry, no module over about 500 lines and no
function over about 80.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "diffence_plugin"

# The wings from the bottom up: a module may import its own wing and the wings below it, never one above.
# The registry sits just above the core because it imports no domain code: every wing may look names up in
# it. ``builtin`` registers what the wings below it provide, so it sits above them all but the CLI.
WINGS = ("core", "registry", "diffusion", "data", "defenses", "attacks", "audit", "report", "builtin", "cli",
         "adapters")
CORE = ("__init__", "config", "validation", "randomness", "reconstruct", "classify", "select", "calibrate", "defense",
        "outputs", "progress")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "adapters":  # installed as diffence_plugin.adapters
        parts.insert(0, "diffence_plugin")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _files() -> dict[str, Path]:
    return {_module_name(p): p for p in [*PACKAGE.rglob("*.py"), *(ROOT / "adapters").glob("*.py")]}


def _imports(path: Path, lazy: bool = True) -> set[str]:
    """Modules of diffence_plugin that ``path`` imports, at module level and (with ``lazy``) inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found = set()
    for node in (ast.walk(tree) if lazy else tree.body):
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


def _graph(lazy: bool = True) -> dict[str, set[str]]:
    files = _files()
    return {name: {t for t in _imports(path, lazy) if t in files and t != name} for name, path in files.items()}


def wing(module: str) -> str:
    """The wing a module belongs to: its first package part below diffence_plugin, the core for top modules."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    if parts[1] == "adapters":
        return "adapters"
    if len(parts) == 2 and parts[1] in CORE:
        return "core"
    return parts[1]


def test_every_module_belongs_to_a_known_wing():
    unknown = sorted(m for m in _files() if wing(m) not in WINGS)
    assert not unknown, f"modules outside the known wings {WINGS}: {unknown}"


def test_no_import_cycles_between_modules_function_level_imports_included():
    graph = _graph(lazy=True)
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


def test_no_module_imports_a_wing_above_its_own():
    rank = {w: i for i, w in enumerate(WINGS)}
    upward = []
    for module, targets in _graph(lazy=True).items():
        for target in targets:
            if target == "diffence_plugin":  # the package itself: its version string
                continue
            if rank[wing(target)] > rank[wing(module)]:
                upward.append(f"{module} ({wing(module)}) -> {target} ({wing(target)})")
    assert not upward, "imports of a wing above: " + "; ".join(sorted(upward))


def test_the_registry_imports_no_domain_code():
    for module, targets in _graph(lazy=True).items():
        if wing(module) == "registry":
            assert all(wing(t) == "registry" for t in targets), (module, targets)


def test_the_wings_and_presets_are_where_their_names_say():
    for step in ("reconstruct", "classify", "select", "calibrate", "defense", "outputs", "config", "validation"):
        assert (PACKAGE / f"{step}.py").is_file(), step
    for folder in ("registry", "diffusion", "data", "defenses", "attacks", "audit", "audit/plan", "audit/stages",
                   "report", "cli"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    for stage in ("prepare", "defend", "arm", "attack", "write"):
        assert (PACKAGE / "audit" / "stages" / f"{stage}.py").is_file(), stage
    for preset in ("demo", "cifar10-cpu", "cifar10-gpu", "cifar10-frontier", "cifar10-canaries",
                   "cifar10-public", "cifar10-stacking"):  # presets are data, not drivers
        assert (PACKAGE / "presets" / f"{preset}.toml").is_file(), preset


def test_the_order_of_the_stages_is_known_to_one_short_module():
    run = PACKAGE / "audit" / "run.py"
    assert len(run.read_text().splitlines()) <= 120
    for path in (PACKAGE / "audit" / "stages").glob("*.py"):
        assert "diffence_plugin.audit.run" not in _imports(path), path


def test_nothing_but_the_plugin_manager_names_a_module_by_string_and_only_the_built_ins():
    """The adapters are entry points (pyproject.toml), never imported or named by the package."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if "adapters." in text.replace("diffence_plugin.adapters.art_family", "") and path.name != "manager.py":
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                        "diffence_plugin.adapters" in node.value:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        for target in _imports(path):
            if wing(target) == "adapters":
                offenders.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not offenders, f"the package reaches the adapters directly: {offenders}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    for module in ("art_plugins", "attack_plugin", "ray_plugin"):
        assert f'"diffence_plugin.adapters.{module}"' in pyproject, module


def test_no_module_is_much_longer_than_500_lines():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in [*PACKAGE.rglob("*.py"), *(ROOT / "adapters").glob("*.py")]
            if (n := len(p.read_text().splitlines())) > 520]
    assert not long, f"modules over 520 lines: {long}"


def test_no_function_in_the_package_is_much_longer_than_80_lines():
    """Functions say one thing each: none in the package or the adapters over 90 lines, docstring included."""
    long = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "adapters").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 90:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, f"functions over 90 lines: {long}"
