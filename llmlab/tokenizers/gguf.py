"""Rebuild a Hugging Face `tokenizers.Tokenizer` from the tokenizer a GGUF file describes in its metadata.

A GGUF file has no `tokenizer.json`; llama.cpp stores the tokenizer as metadata instead
(https://github.com/ggml-org/ggml/blob/master/docs/gguf.md#tokenizer):

- `tokenizer.ggml.model`: `"gpt2"` = byte-level BPE (GPT-2, Radford et al. 2019; BPE: Sennrich et al. 2016,
  https://arxiv.org/abs/1508.07909), `"llama"` = SentencePiece BPE with byte fallback (Kudo & Richardson 2018,
  https://arxiv.org/abs/1808.06226).
- `tokenizer.ggml.tokens` (id -> string), `tokenizer.ggml.merges` ("a b" strings, BPE merge ranks),
  `tokenizer.ggml.scores` (SentencePiece piece scores), `tokenizer.ggml.token_type` (1 normal, 2 unknown,
  3 control, 4 user-defined, 5 unused, 6 byte).
- `tokenizer.ggml.pre`: the name of the pre-tokenizer (the regex that splits text into words before BPE,
  e.g. `"smollm"`, `"gpt-2"`, `"llama-bpe"`). llama.cpp keeps the regex per name in `llama-vocab.cpp`;
  we keep the equivalent Hugging Face pre-tokenizers here.
- `tokenizer.ggml.{bos,eos,unknown,padding}_token_id`, `tokenizer.ggml.add_{bos,eos}_token`.

Example:
    >>> tok = load_gguf_tokenizer("SmolLM2-135M-Instruct.Q4_1.gguf")   # llmlab Tokenizer
    >>> tok.encode("<|im_start|>user\\nHi")
    [1, 4093, 198, 26843]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from llmlab.io.gguf import read_gguf
from llmlab.tokenizers.core import Tokenizer as LlmlabTokenizer

TOKEN_TYPE_NORMAL, TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED = 1, 2, 3, 4

# Pre-tokenizer regexes, as in the models' own tokenizer.json files (llama.cpp's `llama-vocab.cpp` rewrites
# some of them for its own regex engine; these are the originals it was checked against).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _gpt2_pre() -> pre_tokenizers.PreTokenizer:
    # GPT-2's regex: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _digits_then_gpt2_pre() -> pre_tokenizers.PreTokenizer:
    # StarCoder / SmolLM: every digit is its own word, then the GPT-2 regex (llama.cpp: "\p{N}" + GPT-2 regex).
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )


def _split_pre(regex: str) -> Callable[[], pre_tokenizers.PreTokenizer]:
    def build() -> pre_tokenizers.PreTokenizer:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(regex), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )

    return build


# `tokenizer.ggml.pre` value -> pre-tokenizer (names as llama.cpp's converter writes them).
PRE_TOKENIZERS: dict[str, Callable[[], pre_tokenizers.PreTokenizer]] = {
    **dict.fromkeys(["default", "gpt-2", "gpt2", "phi-2", "roberta-bpe", "mpt", "olmo", "jais"], _gpt2_pre),
    **dict.fromkeys(
        ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"], _digits_then_gpt2_pre
    ),
    **dict.fromkeys(["llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe", "falcon3"], _split_pre(_LLAMA3_SPLIT)),
    **dict.fromkeys(["qwen2", "stablelm2", "deepseek-r1-qwen"], _split_pre(_QWEN2_SPLIT)),
    **dict.fromkeys(["gpt-4o", "llama4"], _split_pre(_GPT4O_SPLIT)),
}
# Pre-tokenizers whose vocabularies look a whole word up before merging (Llama-3's `ignore_merges`:
# a word that is itself a token is never split, even if the merges would not rebuild it).
IGNORE_MERGES: frozenset[str] = frozenset({"llama-bpe", "llama3", "llama-v3", "falcon3", "gpt-4o", "llama4"})


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (bytes that print as themselves keep their char)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _byte_level_bpe(metadata: Mapping[str, Any]) -> Tokenizer:
    """`tokenizer.ggml.model == "gpt2"`: byte-level BPE with the merges from the file."""
    if "tokenizer.ggml.merges" not in metadata:
        raise ValueError("GGUF byte-level BPE tokenizer has no tokenizer.ggml.merges; the file is incomplete")
    pre = metadata.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"unknown GGUF pre-tokenizer {pre!r}; llmlab knows: {', '.join(sorted(PRE_TOKENIZERS))}")
    alphabet = _bytes_to_unicode()
    spelled = set(alphabet.values())
    vocab: dict[str, int] = {}
    for i, tok in enumerate(metadata["tokenizer.ggml.tokens"]):
        # Real tokens are spelled in the byte alphabet; a few files store some tokens as raw text.
        key = tok if set(tok) <= spelled else "".join(alphabet[b] for b in tok.encode("utf-8"))
        vocab.setdefault(key, i)
    merges = [tuple(m.split(" ")) for m in metadata["tokenizer.ggml.merges"]]
    bpe = models.BPE(
        vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False, ignore_merges=pre in IGNORE_MERGES
    )
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = PRE_TOKENIZERS[pre]()
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece_bpe(metadata: Mapping[str, Any]) -> Tokenizer:
    """`tokenizer.ggml.model == "llama"`: SentencePiece BPE (Llama-1/2, Mistral-v1) with byte fallback.

    SentencePiece BPE has no merge list: it merges the adjacent pair whose result has the highest score.
    That is the same as BPE whose merge ranks are the pieces sorted by score, which is what we build.
    """
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    scores: list[float] = metadata.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    candidates = []
    for piece, score in zip(tokens, scores, strict=False):
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                candidates.append((-score, vocab[left], vocab[right], left, right))
    candidates.sort()
    merges = [(c[3], c[4]) for c in candidates]
    unk_id = metadata.get("tokenizer.ggml.unknown_token_id", 0)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=tokens[unk_id], fuse_unk=True, byte_fallback=True))
    # llama.cpp puts a space in front of every text fragment (also one that already starts with spaces:
    # " Hi" -> "▁▁Hi"), then spells spaces as "▁". `Metaspace` would not double the space, a normalizer does.
    add_prefix = metadata.get("tokenizer.ggml.add_space_prefix", True)
    steps = [normalizers.Prepend("▁")] if add_prefix else []
    tok.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "▁")])
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tok.decoder = decoders.Sequence(steps)
    return tok


def tokenizer_from_gguf_metadata(metadata: Mapping[str, Any]) -> Tokenizer:
    """Build a `tokenizers.Tokenizer` equivalent to llama.cpp's from a GGUF file's metadata.

    Control tokens (`token_type` 3, e.g. `<|im_start|>`) become special added tokens, matched whole and
    never split; user-defined tokens (4) become plain added tokens. If `tokenizer.ggml.add_bos_token`
    (or `add_eos_token`) is set, the post-processor adds BOS (EOS) when `add_special_tokens=True`.

    Args:
        metadata: `read_gguf(path).metadata`.

    Returns:
        The tokenizer.

    Raises:
        ValueError: no tokenizer in the metadata, or a model/pre-tokenizer type llmlab does not know.
    """
    kind = metadata.get("tokenizer.ggml.model")
    if kind is None or "tokenizer.ggml.tokens" not in metadata:
        raise ValueError("this GGUF file has no tokenizer (no tokenizer.ggml.model / tokenizer.ggml.tokens)")
    if kind == "gpt2":
        tok = _byte_level_bpe(metadata)
    elif kind == "llama":
        tok = _sentencepiece_bpe(metadata)
    else:
        raise ValueError(f"GGUF tokenizer model {kind!r} is not supported; llmlab reads 'gpt2' (BPE) and 'llama' (SPM)")

    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    types: list[int] = metadata.get("tokenizer.ggml.token_type") or []
    vocab = tok.get_vocab()
    control = [
        AddedToken(t, special=True, normalized=False)
        for t, ty in zip(tokens, types, strict=False)
        if ty == TOKEN_TYPE_CONTROL and t in vocab
    ]
    user = [
        AddedToken(t, special=False, normalized=False)
        for t, ty in zip(tokens, types, strict=False)
        if ty == TOKEN_TYPE_USER_DEFINED and t in vocab
    ]
    tok.add_special_tokens(control)
    tok.add_tokens(user)

    # llama.cpp adds BOS for SentencePiece vocabularies unless the file says otherwise.
    add_bos = metadata.get("tokenizer.ggml.add_bos_token", kind == "llama")
    add_eos = metadata.get("tokenizer.ggml.add_eos_token", False)
    bos_id, eos_id = metadata.get("tokenizer.ggml.bos_token_id"), metadata.get("tokenizer.ggml.eos_token_id")
    single, pair, specials = ["$A"], ["$A", "$B"], []
    if add_bos and bos_id is not None:
        single, pair = [tokens[bos_id], *single], [tokens[bos_id], "$A", tokens[bos_id], "$B"]
        specials.append((tokens[bos_id], bos_id))
    if add_eos and eos_id is not None:
        single, pair = [*single, tokens[eos_id]], [*pair, tokens[eos_id]]
        specials.append((tokens[eos_id], eos_id))
    if specials:
        tok.post_processor = processors.TemplateProcessing(
            single=" ".join(single), pair=" ".join(pair), special_tokens=sorted(set(specials))
        )
    return tok


def gguf_special_tokens(metadata: Mapping[str, Any]) -> dict[str, str | None]:
    """Role -> token string (`bos`, `eos`, `pad`, `unk`) from `tokenizer.ggml.*_token_id`."""
    tokens = metadata["tokenizer.ggml.tokens"]
    keys = {"bos": "bos_token_id", "eos": "eos_token_id", "pad": "padding_token_id", "unk": "unknown_token_id"}
    out: dict[str, str | None] = {}
    for role, key in keys.items():
        idx = metadata.get(f"tokenizer.ggml.{key}")
        out[role] = tokens[idx] if idx is not None and 0 <= idx < len(tokens) else None
    return out


def load_gguf_tokenizer(source: str | os.PathLike | Mapping[str, Any]) -> LlmlabTokenizer:
    """llmlab `Tokenizer` (with bos/eos/pad/unk roles) for a GGUF file or its already-read metadata."""
    metadata = source if isinstance(source, Mapping) else read_gguf(source).metadata
    backend = tokenizer_from_gguf_metadata(metadata)
    return LlmlabTokenizer(backend, "bpe", gguf_special_tokens(metadata))  # both kinds are BPE models
