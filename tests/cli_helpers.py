"""Running the `llmlab` command in-process, for the CLI tests: `from cli_helpers import run_cli` (a uniquely named
module: `tests/` has no `__init__.py`, and same-named helper modules in two folders would shadow each other)."""

from __future__ import annotations

import pytest

from llmlab.cli.main import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run `llmlab <args>` through the real entry point; returns (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err
