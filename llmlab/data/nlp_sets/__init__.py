"""Offline, seeded, deterministic labelled sets for the encoder / encoder-decoder tasks.

Each builder returns ``{"train": [...], "val": [...], "test": [...]}`` lists of JSON-ready dicts:

- `build_docstrings`: Python stdlib function source -> first docstring sentence (real data, split by module).
"""

from llmlab.data.nlp_sets.docstrings import build_docstrings

__all__ = ["build_docstrings"]
