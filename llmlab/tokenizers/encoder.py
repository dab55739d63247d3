"""Encoder inputs the way Hugging Face builds them: `[CLS] a [SEP] (b [SEP])` (`<s> a </s></s> b </s>` for
RoBERTa), token types, truncation (longest_first / only_second, with a stride for overflowing windows), right
padding to the longest row, and optional character offsets / word ids / sequence ids.

    enc = encode_texts(tokenizer, ["a sentence", "another one"])
    enc.input_ids        # (B, T) long
    enc.attention_mask   # (B, T) long, 1 = real token
    enc.token_type_ids   # (B, T) long, 0 = first segment, 1 = second

The special tokens come from the tokenizer's own post-processor (`tokenizer.json`'s `post_processor`, as
transformers' fast tokenizers use it), so the ids equal `transformers.AutoTokenizer(...)(texts, pairs)`.
A tokenizer without one (e.g. a WordPiece trained by `llmlab tokenizer train`) gets BERT's template from its
`[CLS]`/`[SEP]` (or `<s>`/`</s>`, or bos/eos) tokens.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.processors import TemplateProcessing

TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
_CLS_NAMES = ("[CLS]", "<s>")
_SEP_NAMES = ("[SEP]", "</s>")


@dataclass(frozen=True)
class SpecialIds:
    """Ids of an encoder tokenizer's special tokens (None where the tokenizer has no such token)."""

    cls: int | None
    sep: int | None
    pad: int | None
    mask: int | None
    unk: int | None


@dataclass
class EncodedBatch:
    """A padded batch of encoder inputs (right padding; pad rows have mask 0, type 0, offset (0, 0)).

    Attributes:
        input_ids: (B, T) token ids.
        attention_mask: (B, T) 1 for real tokens, 0 for padding.
        token_type_ids: (B, T) segment ids (0 first text, 1 the pair).
        offsets: per row, (start, end) character offsets into the row's own text (first or pair) when asked.
        word_ids: per row, the word index of each token (None for special/pad tokens) when asked.
        sequence_ids: per row, 0 / 1 for tokens of the first text / the pair, None for special and pad tokens
            (filled whenever offsets or word ids are asked for, or with a stride).
        overflow_to_sample: with `stride` > 0 (or truncation that overflows), the input index of each row
            (a long text gives several rows); None when every row is its own input.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    offsets: list[list[tuple[int, int]]] | None = None
    word_ids: list[list[int | None]] | None = None
    sequence_ids: list[list[int | None]] | None = None
    overflow_to_sample: list[int] | None = None

    def to(self, device: torch.device | str) -> EncodedBatch:
        """The same batch with its tensors on `device`."""
        return EncodedBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.token_type_ids.to(device),
            self.offsets,
            self.word_ids,
            self.sequence_ids,
            self.overflow_to_sample,
        )


_BACKENDS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], HFTokenizer]] = weakref.WeakKeyDictionary()
_SPECIALS: weakref.WeakKeyDictionary[Any, SpecialIds] = weakref.WeakKeyDictionary()


def _first_known(backend: HFTokenizer, names: tuple[str, ...]) -> int | None:
    return next((backend.token_to_id(n) for n in names if backend.token_to_id(n) is not None), None)


def _post_processor_ids(backend: HFTokenizer) -> tuple[int | None, int | None]:
    """(cls, sep) ids named by the tokenizer.json post-processor, or (None, None) without one."""
    proc = json.loads(backend.to_str()).get("post_processor")
    if not isinstance(proc, dict):
        return None, None
    if proc.get("type") == "Sequence":  # e.g. ByteLevel + TemplateProcessing
        proc = next((p for p in proc.get("processors", []) if p.get("type") != "ByteLevel"), {})
    if "cls" in proc and "sep" in proc:  # BertProcessing / RobertaProcessing: [token, id]
        return int(proc["cls"][1]), int(proc["sep"][1])
    specials = [s["SpecialToken"]["id"] for s in proc.get("single", []) if "SpecialToken" in s]
    if specials:  # TemplateProcessing: the first special is the classifier token, the last the separator
        return backend.token_to_id(specials[0]), backend.token_to_id(specials[-1])
    return None, None


def special_ids(tokenizer: Any) -> SpecialIds:
    """The cls / sep / pad / mask / unk ids of an encoder tokenizer (an llmlab `Tokenizer`).

    cls and sep come from the post-processor, else from the conventional names `[CLS]`/`<s>`, `[SEP]`/`</s>`,
    else from the tokenizer's bos/eos roles.
    """
    if tokenizer in _SPECIALS:
        return _SPECIALS[tokenizer]
    backend = tokenizer.backend
    cls, sep = _post_processor_ids(backend)
    cls = cls if cls is not None else _first_known(backend, _CLS_NAMES)
    sep = sep if sep is not None else _first_known(backend, _SEP_NAMES)
    cls = cls if cls is not None else tokenizer.bos_id
    sep = sep if sep is not None else tokenizer.eos_id
    pad = tokenizer.pad_id
    mask = tokenizer.mask_id if tokenizer.mask_id is not None else _first_known(backend, ("[MASK]", "<mask>"))
    unk = tokenizer.unk_id if tokenizer.unk_id is not None else _first_known(backend, ("[UNK]", "<unk>"))
    ids = SpecialIds(cls, sep, pad, mask, unk)
    _SPECIALS[tokenizer] = ids
    return ids


def _configured_backend(tokenizer: Any, max_length: int | None, truncation: str, stride: int) -> HFTokenizer:
    """A copy of the tokenizer's backend with this truncation, no padding and a BERT template if it had none."""
    key = (max_length, truncation, stride)
    per_tokenizer = _BACKENDS.setdefault(tokenizer, {})
    if key in per_tokenizer:
        return per_tokenizer[key]
    backend = HFTokenizer.from_str(tokenizer.backend.to_str())
    backend.no_padding()
    if json.loads(backend.to_str()).get("post_processor") is None:
        ids = special_ids(tokenizer)
        if ids.cls is None or ids.sep is None:
            raise ValueError(
                "the tokenizer has no [CLS]/[SEP] (or <s>/</s>, bos/eos) tokens, so encoder inputs cannot be built; "
                "train it with special tokens or use an encoder's tokenizer.json"
            )
        c, s = backend.id_to_token(ids.cls), backend.id_to_token(ids.sep)
        backend.post_processor = TemplateProcessing(
            single=f"{c}:0 $A:0 {s}:0", pair=f"{c}:0 $A:0 {s}:0 $B:1 {s}:1", special_tokens=[(c, ids.cls), (s, ids.sep)]
        )
    if max_length is None:
        backend.no_truncation()
    else:
        backend.enable_truncation(max_length, stride=stride, strategy=truncation)
    per_tokenizer[key] = backend
    return backend


def _check_args(texts: list[str], pairs: list[str] | None, max_length: int | None, truncation: str, stride: int) -> None:
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("encode_texts takes a list of strings; got an element that is not a str")
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"encode_texts: {len(texts)} texts but {len(pairs)} pairs; pass one pair per text")
    if truncation not in TRUNCATION_STRATEGIES:
        raise ValueError(f"unknown truncation {truncation!r}; choose one of: {', '.join(TRUNCATION_STRATEGIES)}")
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be at least 2 (room for the special tokens), got {max_length}")
    if stride < 0 or (max_length is not None and stride >= max_length):
        raise ValueError(f"stride must be in [0, max_length), got {stride}")


def encode_texts(
    tokenizer: Any,
    texts: list[str],
    pairs: list[str] | None = None,
    *,
    max_length: int | None = 512,
    truncation: str = "longest_first",
    padding: bool = True,
    return_offsets: bool = False,
    return_word_ids: bool = False,
    stride: int = 0,
) -> EncodedBatch:
    """Tokenize texts (and optional second texts) into a padded encoder batch, as transformers does.

    Args:
        tokenizer: an llmlab `Tokenizer` (its `.backend` is the `tokenizers.Tokenizer`).
        texts: B first texts.
        pairs: B second texts (token type 1), or None.
        max_length: truncate every row to this many tokens, special tokens included (None: no truncation).
        truncation: 'longest_first' (trim the longer text token by token), 'only_first' or 'only_second'
            (only that text is trimmed, as for QA contexts).
        padding: pad rows to the longest (True); False: every row must already have the same length.
        return_offsets: fill `offsets` (character spans into each row's own text).
        return_word_ids: fill `word_ids`.
        stride: with truncation, the overflowing tokens come back as extra rows that overlap the previous
            row by `stride` tokens (HF `return_overflowing_tokens`); `overflow_to_sample` maps rows to inputs.

    Returns:
        EncodedBatch.

    Raises:
        ValueError: mismatched pairs, an unknown truncation, a bad max_length/stride, or unpadded rows of
            different lengths.
    """
    texts = list(texts)
    pairs = list(pairs) if pairs is not None else None
    _check_args(texts, pairs, max_length, truncation, stride)
    strategy = truncation if pairs is not None else "longest_first"
    backend = _configured_backend(tokenizer, max_length, strategy, stride)
    inputs: list[Any] = list(zip(texts, pairs)) if pairs is not None else texts
    try:
        encodings = backend.encode_batch(inputs, add_special_tokens=True) if inputs else []
    except BaseException as e:  # tokenizers raises a pyo3 PanicException (a BaseException) for a too-large stride
        if type(e).__name__ != "PanicException":
            raise
        raise ValueError(f"encode_texts: {str(e).splitlines()[0]}; use a smaller stride or a larger max_length") from None
    rows, sample = [], []
    for i, e in enumerate(encodings):
        for part in (e, *(e.overflowing if stride > 0 else ())):
            rows.append(part)
            sample.append(i)
    lengths = [len(r.ids) for r in rows]
    width = max(lengths, default=0)
    if not padding and len(set(lengths)) > 1:
        raise ValueError("encode_texts(padding=False) needs rows of one length; pass padding=True")
    pad_id = special_ids(tokenizer).pad
    pad_id = 0 if pad_id is None else pad_id
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (row, n) in enumerate(zip(rows, lengths)):
        ids[r, :n] = torch.tensor(row.ids, dtype=torch.long)
        mask[r, :n] = 1
        types[r, :n] = torch.tensor(row.type_ids, dtype=torch.long)
    detailed = return_offsets or return_word_ids or stride > 0
    pad = [width - n for n in lengths]
    return EncodedBatch(
        ids,
        mask,
        types,
        offsets=[list(r.offsets) + [(0, 0)] * p for r, p in zip(rows, pad)] if return_offsets else None,
        word_ids=[list(r.word_ids) + [None] * p for r, p in zip(rows, pad)] if return_word_ids else None,
        sequence_ids=[list(r.sequence_ids) + [None] * p for r, p in zip(rows, pad)] if detailed else None,
        overflow_to_sample=sample if stride > 0 else None,
    )
