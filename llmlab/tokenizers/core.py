"""llmlab's thin tokenizer wrapper around a Hugging Face `tokenizers` `Tokenizer` (a `tokenizer.json`).

Every llmlab tokenizer kind (byte-level BPE, WordPiece, Unigram and character-level) is stored as a plain
`tokenizer.json`, so all of them load the same way: `load_tokenizer(path)`. Which ids play the roles of
bos/eos/pad/unk/mask is written to a small sidecar `tokenizer_config.json` (the Hugging Face convention,
so `transformers.PreTrainedTokenizerFast.from_pretrained(dir)` reads it too). When only `tokenizer.json`
was copied somewhere, the roles are recovered from the special tokens' names (`<|endoftext|>` is eos, ...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from llmlab.io import (
    atomic_write_json,
    atomic_write_text,
    building_output,
    check_output_dir,
    check_output_file,
)

SPECIAL_ROLES: tuple[str, ...] = ("pad", "unk", "bos", "eos", "mask")
"""The special-token roles llmlab knows, in the order their ids are assigned (BPE, WordPiece, Unigram)."""

DEFAULT_SPECIAL_TOKENS: dict[str, str | None] = {
    "pad": "<|pad|>",
    "unk": "<|unk|>",
    "bos": "<|bos|>",
    "eos": "<|endoftext|>",
    "mask": None,
}
"""Default special tokens; a role set to None (or "") has no token."""

# Conventional names, used to recover roles when a tokenizer.json comes without its sidecar.
_KNOWN_NAMES: dict[str, tuple[str, ...]] = {
    "pad": ("<|pad|>", "<pad>", "[PAD]"),
    "unk": ("<|unk|>", "<unk>", "[UNK]"),
    "bos": ("<|bos|>", "<s>", "<|begin_of_text|>", "[CLS]"),
    "eos": ("<|endoftext|>", "</s>", "<|eos|>", "<|end_of_text|>", "[SEP]"),
    "mask": ("<|mask|>", "<mask>", "[MASK]"),
}
_MODEL_TO_KIND = {"BPE": "bpe", "WordPiece": "wordpiece", "Unigram": "unigram", "WordLevel": "char"}
SIDECAR_NAME = "tokenizer_config.json"


def _sidecar_path(path: Path) -> Path:
    return path.with_name(SIDECAR_NAME) if path.name == "tokenizer.json" else path.with_suffix(".config.json")


class Tokenizer:
    """A trained tokenizer: text <-> token ids, plus the ids of its special tokens.

    Args:
        backend: the `tokenizers.Tokenizer` doing the work (`tokenizer.backend` gives it back).
        kind: 'bpe', 'wordpiece', 'unigram' or 'char'.
        special_tokens: role -> token string (roles: pad, unk, bos, eos, mask; None = no such token).
    """

    def __init__(self, backend: HFTokenizer, kind: str, special_tokens: dict[str, str | None]) -> None:
        self.backend = backend
        self.kind = kind
        self.special_tokens: dict[str, str | None] = {role: special_tokens.get(role) or None for role in SPECIAL_ROLES}
        for role, tok in self.special_tokens.items():
            if tok is not None and backend.token_to_id(tok) is None:
                raise ValueError(f"special token {tok!r} ({role}) is not in the tokenizer's vocabulary")
        # Character tokenizers: a dict lookup per character gives the same ids as the backend, 20x faster.
        self._char_vocab: dict[str, int] | None = None
        if kind == "char":
            self._char_vocab = {t: i for t, i in backend.get_vocab().items() if len(t) == 1}
            self._specials_text = [t.content for t in backend.get_added_tokens_decoder().values()]

    # ---- ids of the special tokens -------------------------------------------------------------------------
    def _role_id(self, role: str) -> int | None:
        tok = self.special_tokens.get(role)
        return None if tok is None else self.backend.token_to_id(tok)

    bos_id = property(lambda self: self._role_id("bos"), doc="Id of the bos token (None when there is none).")
    eos_id = property(lambda self: self._role_id("eos"), doc="Id of the eos token (None when there is none).")
    pad_id = property(lambda self: self._role_id("pad"), doc="Id of the pad token (None when there is none).")
    unk_id = property(lambda self: self._role_id("unk"), doc="Id of the unk token (None when there is none).")
    mask_id = property(lambda self: self._role_id("mask"), doc="Id of the mask token (None when there is none).")

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (the model's embedding rows)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    # ---- text <-> ids ---------------------------------------------------------------------------------------
    def _encode_chars(self, text: str) -> list[int] | None:
        """Fast path for 'char': None when the backend must decide (special tokens or unknown characters)."""
        vocab = self._char_vocab
        if vocab is None or any(s in text for s in self._specials_text):
            return None
        try:
            return [vocab[c] for c in text]
        except KeyError:
            return None

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; no bos/eos is added (callers add them where they want them)."""
        ids = self._encode_chars(text)
        return ids if ids is not None else self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """Token ids of many texts at once (in parallel threads inside `tokenizers`)."""
        texts = list(texts)
        if self._char_vocab is not None:
            return [self.encode(t) for t in texts]
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids`. Special tokens are shown as their strings unless `skip_special_tokens`."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def tokens(self, text: str) -> list[str]:
        """The token strings of `text` (for inspection)."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, idx: int) -> str | None:
        return self.backend.id_to_token(idx)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        specials = {r: t for r, t in self.special_tokens.items() if t}
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, special_tokens={specials})"

    # ---- files ----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write `tokenizer.json` (+ the `tokenizer_config.json` sidecar) atomically; returns the json path.

        `path` is either a folder (the file becomes `path/tokenizer.json`) or a `.json` file path.
        """
        path = Path(path)
        if path.suffix != ".json":
            path = path / "tokenizer.json"
        atomic_write_text(path, self.backend.to_str(pretty=True))
        sidecar = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "llmlab_kind": self.kind,
            **{f"{role}_token": tok for role, tok in self.special_tokens.items() if tok},
        }
        atomic_write_json(_sidecar_path(path), sidecar)
        return path


def check_parent_folder(path: Path, flag: str = "--out") -> None:
    """One line naming the first existing ancestor of `path` that is a file rather than a folder."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{parent} is a file, so {path} cannot be created; choose another {flag}")
            return


def check_tokenizer_out(
    path: str | os.PathLike, *, overwrite: bool, sources: Iterable[str | os.PathLike] = (), flag: str = "--out"
) -> Path:
    """Check, before training, that `save_tokenizer_output` may write to `path` (a folder or a `.json` path).

    A folder follows llmlab's output-folder policy (`llmlab.io.check_output_dir`: only an llmlab-made folder
    is replaced, and only with ``--overwrite``); an existing `.json` file (`llmlab.io.check_output_file`) only
    with ``--overwrite`` and only when it holds a JSON object.

    Raises:
        ValueError: one line naming the path and what to do instead.
    """
    path = Path(path)
    check_parent_folder(path, flag)
    if path.suffix != ".json":
        return check_output_dir(path, overwrite=overwrite, sources=sources, flag=flag)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass a folder without the .json suffix or another {flag}")
    check_output_file(path, overwrite=overwrite, sources=sources, flag=flag, magic=b"{")  # a JSON object
    return path


def save_tokenizer_output(tok: Tokenizer, path: str | os.PathLike, verb: str = "tokenizer train") -> Path:
    """Save `tok` to a `.json` path, or as a new llmlab output folder published atomically (call
    `check_tokenizer_out` first); returns the tokenizer.json path."""
    path = Path(path)
    if path.suffix == ".json":
        return tok.save(path)
    with building_output(path, verb) as tmp:
        tok.save(tmp)
    return path / "tokenizer.json"


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer from a `tokenizer.json` file or from a folder that holds one.

    Raises:
        FileNotFoundError: no tokenizer.json there.
        ValueError: the file is not a valid `tokenizers` tokenizer.json.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer not found: {path} (train one with `llmlab tokenizer train`)")
    try:
        backend = HFTokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises a bare Exception
        raise ValueError(f"{path} is not a valid tokenizer.json: {str(e).splitlines()[0]}") from None
    backend.no_padding()  # a tokenizer.json may switch both on (all-MiniLM-L6-v2: pad/truncate to 128); llmlab's
    backend.no_truncation()  # `encode` returns the text's own tokens, callers pad and truncate explicitly
    model_type = json.loads(backend.to_str())["model"]["type"]
    kind = _MODEL_TO_KIND.get(model_type, model_type.lower())
    special: dict[str, str | None] = {}
    sidecar = _sidecar_path(path)
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        kind = meta.get("llmlab_kind", kind)
        for role in SPECIAL_ROLES:
            tok = meta.get(f"{role}_token")
            if isinstance(tok, dict):  # transformers writes AddedToken dicts
                tok = tok.get("content")
            special[role] = tok if tok and backend.token_to_id(tok) is not None else None
    else:
        added = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
        for role, names in _KNOWN_NAMES.items():
            special[role] = next((n for n in names if n in added), None)
    return Tokenizer(backend, kind, special)
