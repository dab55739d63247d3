"""The layering in docs/architecture.md, checked on the source (imports inside functions count too).

1. A module imports only from its own layer or below, and never `transformers`.
2. Packages of the same layer do not import each other in a cycle (e.g. `tokenizers` <-> `data`).
3. No module inside the package imports the package root (`from llmlab import x`, `import llmlab`): name the
   subpackage (`from llmlab.peft import ...`), so the import graph stays visible and checkable.
4. The CLI only parses and dispatches: `llmlab/cli` imports `llmlab.recipes`, `llmlab.config`, itself, the
   standard library, typer and rich — nothing else.
5. LAYERS lists only packages that exist, and every package has a layer.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llmlab"

LAYERS = {
    "io": 1,
    "config": 1,
    "nn": 2,
    "models": 3,
    "peft": 4,
    "compress": 4,
    "tokenizers": 5,
    "data": 5,
    "generate": 5,
    "eval": 5,
    "hub": 5,
    "embeddings": 5,
    "train": 6,
    "align": 6,
    "apps": 6,
    "recipes": 7,
    "serve": 7,
    "cli": 8,
}

CLI_ALLOWED_LLMLAB = ("cli", "recipes", "config")
CLI_ALLOWED_THIRD_PARTY = ("typer", "rich", "click")  # click: typer's own base, for its exceptions


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in `path`; `from x import y` also yields `x.y` (y may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


def _package_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def _llmlab_package(module: str) -> str | None:
    """The llmlab subpackage `module` belongs to, '' for the package root itself, None outside llmlab."""
    parts = module.split(".")
    if parts[0] != "llmlab":
        return None
    return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_layer() -> None:
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert subpackages <= set(LAYERS), f"give these a layer in docs/architecture.md: {subpackages - set(LAYERS)}"


def test_layers_list_only_existing_packages() -> None:
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = set(LAYERS) - subpackages
    assert not missing, f"LAYERS lists packages that do not exist (add them when they do): {sorted(missing)}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_imports(path: Path) -> None:
    own = LAYERS[_package_of(path)]
    for lineno, module in _imports(path):
        assert module.split(".")[0] != "transformers", f"{path.name}:{lineno} imports transformers (only tests may)"
        target = _llmlab_package(module)
        if target in LAYERS:
            assert LAYERS[target] <= own, (
                f"{path.relative_to(PACKAGE)}:{lineno} imports {module} (layer {LAYERS[target]}) from layer {own}"
            )


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_of_the_package_root(path: Path) -> None:
    for lineno, module in _imports(path):
        target = _llmlab_package(module)
        assert target != "", (
            f"{path.relative_to(PACKAGE)}:{lineno} imports the package root ({module}); "
            "import from the subpackage instead (from llmlab.<package> import ...)"
        )
        # `from llmlab import peft` yields ("llmlab", "llmlab.peft"): the first is caught above


def _same_layer_edges() -> dict[str, dict[str, str]]:
    """package -> {imported package of the same layer: 'file:line' of one such import}."""
    edges: dict[str, dict[str, str]] = defaultdict(dict)
    for path in _sources():
        own = _package_of(path)
        for lineno, module in _imports(path):
            target = _llmlab_package(module)
            if target and target != own and target in LAYERS and LAYERS[target] == LAYERS.get(own):
                edges[own].setdefault(target, f"{path.relative_to(PACKAGE)}:{lineno}")
    return edges


def _cycles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in edges.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_no_cycles_between_packages_of_a_layer() -> None:
    edges = _same_layer_edges()
    problems = []
    for component in _cycles(edges):
        members = set(component)
        via = [f"{a} -> {b} ({where})" for a in component for b, where in sorted(edges[a].items()) if b in members]
        problems.append(f"cycle {' <-> '.join(component)}: " + "; ".join(via))
    assert not problems, "packages of one layer import each other in a cycle:\n" + "\n".join(problems)


def test_cycle_detection_finds_a_planted_cycle() -> None:
    edges = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:1"}, "c": {"a": "c.py:1"}, "d": {"a": "d.py:1"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def _third_party_or_stdlib_allowed(top: str) -> bool:
    return top in sys.stdlib_module_names or top in CLI_ALLOWED_THIRD_PARTY


@pytest.mark.parametrize("path", sorted((PACKAGE / "cli").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_cli_imports_only_recipes_and_config(path: Path) -> None:
    bad = []
    for lineno, module in _imports(path):
        target = _llmlab_package(module)
        if target is None:
            if not _third_party_or_stdlib_allowed(module.split(".")[0]):
                bad.append(f"{lineno}: {module}")
        elif target != "" and target not in CLI_ALLOWED_LLMLAB:  # the root itself is test_no_import_of_the_package_root
            bad.append(f"{lineno}: {module}")
    # `from x import y` yields `x` and `x.y`: report `x.y` only when `x` itself is fine
    shown = [entry for entry in bad if entry.rpartition(".")[0] not in bad]
    assert not bad, (
        f"cli/{path.name} imports beyond llmlab.recipes/llmlab.config (move the logic into a recipe): "
        + ", ".join(dict.fromkeys(shown))
    )
