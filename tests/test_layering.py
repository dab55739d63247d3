"""The layering in docs/architecture.md: a module imports only from its own layer or below."""

import ast
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
    "losses": 5,
    "generate": 5,
    "eval": 5,
    "hub": 5,
    "interpret": 5,
    "safety": 5,
    "train": 6,
    "recipes": 7,
    "serve": 7,
    "cli": 8,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


def test_every_package_has_a_layer() -> None:
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert subpackages <= set(LAYERS), f"give these a layer in docs/architecture.md: {subpackages - set(LAYERS)}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_imports(path: Path) -> None:
    own = LAYERS[path.relative_to(PACKAGE).parts[0]]
    for lineno, module in _imports(path):
        parts = module.split(".")
        assert parts[0] != "transformers", f"{path.name}:{lineno} imports transformers (only tests may)"
        if parts[0] == "llmlab" and len(parts) > 1 and parts[1] in LAYERS:
            assert LAYERS[parts[1]] <= own, (
                f"{path.relative_to(PACKAGE)}:{lineno} imports {module} (layer {LAYERS[parts[1]]}) from layer {own}"
            )
