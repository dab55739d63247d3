"""The code-shape rules of docs/architecture.md: files in llmlab/ stay readable, CLI and decoding functions short."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llmlab"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80
SHORT_FUNCTION_PACKAGES = ("cli", "generate")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_file_is_at_most_450_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines; split it (max {MAX_FILE_LINES})"


@pytest.mark.parametrize(
    "path",
    [p for p in _sources() if p.relative_to(PACKAGE).parts[0] in SHORT_FUNCTION_PACKAGES],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_cli_and_generate_functions_are_short(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, (
                f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}() has {length} lines (max {MAX_FUNCTION_LINES})"
            )
