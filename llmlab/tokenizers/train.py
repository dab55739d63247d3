"""Train a tokenizer of one of four kinds with the Hugging Face `tokenizers` library.

Kinds (all chosen so that `decode(encode(s)) == s` exactly, whitespace and newlines included):

- `bpe` — byte-level BPE as in GPT-2 (Radford et al. 2019, https://cdn.openai.com/better-language-models/
  language_models_are_unsupervised_multitask_learners.pdf; BPE: Sennrich et al. 2016,
  https://arxiv.org/abs/1508.07909). Text is first mapped to bytes, and all 256 bytes are in the vocabulary,
  so it never needs an unknown token, even for characters it never saw (emoji, rare CJK).
- `wordpiece` — WordPiece (Schuster & Nakajima 2012; used by BERT, https://arxiv.org/abs/1810.04805).
  BERT's own pre-tokenizer throws whitespace away, so here spaces are kept as a `▁` prefix of the next
  word (Metaspace), newlines/tabs are tokens of their own, and the decoder removes the `##` continuation
  marks and turns `▁` back into spaces.
- `unigram` — the Unigram language model of SentencePiece (Kudo 2018, https://arxiv.org/abs/1804.10959;
  Kudo & Richardson 2018, https://arxiv.org/abs/1808.06226) with the Metaspace `▁` space marker.
  `prepend_scheme="never"` (no `▁` added in front of the text) keeps the round trip exact for any text.
- `char` — one token per Unicode character, as in nanoGPT's shakespeare_char: the vocabulary is the
  sorted set of characters seen, followed by the special tokens, so on tinyshakespeare the character ids
  are exactly nanoGPT's (0..64). Stored as a `tokenizers` WordLevel model over single characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from llmlab.tokenizers.core import DEFAULT_SPECIAL_TOKENS, SPECIAL_ROLES, Tokenizer

TOKENIZER_KINDS: tuple[str, ...] = ("bpe", "wordpiece", "unigram", "char")

# Newlines, tabs and other non-space whitespace become tokens of their own (WordPiece, Unigram).
_NON_SPACE_WHITESPACE = Regex(r"[^\S ]+")
# Every single character, newlines included (character-level tokenizer).
_ANY_CHAR = Regex(r"[\s\S]")


def resolve_special_tokens(special_tokens: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """Fill in llmlab's defaults for the roles not given; "" or None means the role has no token.

    Raises:
        ValueError: an unknown role, or two roles sharing one token string.
    """
    merged = dict(DEFAULT_SPECIAL_TOKENS)
    for role, tok in (special_tokens or {}).items():
        if role not in SPECIAL_ROLES:
            raise ValueError(f"unknown special-token role '{role}'; choose from: {', '.join(SPECIAL_ROLES)}")
        merged[role] = tok or None
    present = [t for t in merged.values() if t]
    if len(present) != len(set(present)):
        raise ValueError(f"special tokens must be distinct, got {merged}")
    return merged


def check_training_args(kind: str, vocab_size: int, min_frequency: int = 0) -> None:
    """Raise a one-line ValueError for an unknown kind, a negative vocabulary size or min_frequency.

    Cheap checks that callers run before reading any text ('char' ignores vocab_size; the other kinds check
    their minimum size when training starts).
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown tokenizer kind '{kind}'; choose one of: {', '.join(TOKENIZER_KINDS)}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 0:
        raise ValueError(f"vocab_size must be a positive number of ids, got {vocab_size}; pass e.g. --vocab-size 4096")
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 0:
        raise ValueError(f"min_frequency must be 0 or more, got {min_frequency}; pass e.g. --min-frequency 2")


def _check_vocab_size(kind: str, vocab_size: int, n_special: int) -> None:
    if kind == "char":
        return  # the character set decides the size
    minimum = 256 + n_special if kind == "bpe" else n_special + 2
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size {vocab_size} is too small for a {kind} tokenizer (needs at least {minimum}"
            + (": 256 bytes + special tokens" if kind == "bpe" else "")
            + ")"
        )


def _build_char(texts: Iterable[str], specials: list[str], unk: str | None) -> HFTokenizer:
    chars: set[str] = set()
    for text in texts:
        chars.update(text)
    chars.difference_update(specials)
    if not chars:
        raise ValueError("cannot train a char tokenizer on empty text")
    vocab = {ch: i for i, ch in enumerate(sorted(chars))}
    for tok in specials:  # special tokens come after the characters
        vocab[tok] = len(vocab)
    backend = HFTokenizer(models.WordLevel(vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Split(_ANY_CHAR, behavior="isolated")
    backend.decoder = decoders.Fuse()
    return backend


def _metaspace_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
            pre_tokenizers.Split(_NON_SPACE_WHITESPACE, behavior="isolated"),
        ]
    )


def _add_both_character_forms(backend: HFTokenizer, specials: list[str], unk: str) -> None:
    """Give WordPiece both forms, `c` and `##c`, of every character it learned.

    The trainer only learns `##c` for characters it saw inside words, so a character seen only at the start
    of words (e.g. a Chinese character after punctuation) could not be spelled after `▁` later and would
    become [UNK]. With both forms every seen character can be spelled anywhere; the vocabulary may grow
    past `vocab_size` by at most the number of distinct characters.
    """
    vocab: dict[str, int] = json.loads(backend.to_str())["model"]["vocab"]
    chars = {t.removeprefix("##") for t in vocab if len(t.removeprefix("##")) == 1 and t not in specials}
    next_id = max(vocab.values()) + 1
    for c in sorted(chars):
        for form in (c, "##" + c):
            if form not in vocab:
                vocab[form] = next_id
                next_id += 1
    backend.model = models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=1_000_000)


def train_tokenizer_from_iterator(
    kind: str,
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: Mapping[str, str | None] | None = None,
    *,
    min_frequency: int = 0,
) -> Tokenizer:
    """Train a tokenizer of `kind` on an iterable of texts (see the module docstring for the kinds).

    Args:
        kind: 'bpe', 'wordpiece', 'unigram' or 'char'.
        texts: the training texts (documents); iterated once.
        vocab_size: target vocabulary size, special tokens included (ignored by 'char').
        special_tokens: role -> token string for pad/unk/bos/eos/mask; missing roles take
            `DEFAULT_SPECIAL_TOKENS`, None/"" switches a role off.
        min_frequency: BPE/WordPiece only: merges must occur at least this often.

    Raises:
        ValueError: unknown kind, too small a vocabulary, negative min_frequency, bad special tokens or no text.
    """
    check_training_args(kind, vocab_size, min_frequency)
    specials_by_role = resolve_special_tokens(special_tokens)
    specials = [specials_by_role[r] for r in SPECIAL_ROLES if specials_by_role[r]]
    unk = specials_by_role["unk"]
    _check_vocab_size(kind, vocab_size, len(specials))

    seen = {"chars": 0}

    def counted(it: Iterable[str]) -> Iterator[str]:
        for text in it:
            seen["chars"] += len(text)
            yield text

    if kind == "char":
        backend = _build_char(counted(texts), specials, unk)
    else:
        if kind == "bpe":
            backend = HFTokenizer(models.BPE())
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
            backend.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                special_tokens=specials,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: never unknown
                show_progress=False,
            )
        elif kind == "wordpiece":
            # BERT maps words of over 100 chars to [UNK]; runs of CJK text are long "words", hence the large limit.
            backend = HFTokenizer(models.WordPiece(unk_token=unk or "[UNK]", max_input_chars_per_word=1_000_000))
            backend.pre_tokenizer = pre_tokenizers.Sequence(
                [_metaspace_pre_tokenizer(), pre_tokenizers.Punctuation(behavior="isolated")]
            )
            backend.decoder = decoders.Sequence(
                [decoders.Replace("##", ""), decoders.Metaspace(replacement="▁", prepend_scheme="never")]
            )
            trainer = trainers.WordPieceTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False
            )
        else:  # unigram
            backend = HFTokenizer(models.Unigram())
            backend.pre_tokenizer = _metaspace_pre_tokenizer()
            backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
            trainer = trainers.UnigramTrainer(
                vocab_size=vocab_size, special_tokens=specials, unk_token=unk, show_progress=False
            )
        backend.train_from_iterator(counted(texts), trainer=trainer)
        if seen["chars"] == 0:
            raise ValueError(f"cannot train a {kind} tokenizer on empty text")
        if kind == "wordpiece":
            _add_both_character_forms(backend, specials, unk or "[UNK]")
    backend.add_special_tokens(specials)  # marks them special: never split, matched before pre-tokenizing
    # Use the tokenizer exactly as `tokenizer.json` will hold it: a freshly trained Unigram model breaks ties
    # between equal-score segmentations differently from the same model read back from its JSON (seen on 1 of
    # ~10k code snippets), so training on the in-memory one would not match the saved one.
    backend = HFTokenizer.from_str(backend.to_str())
    return Tokenizer(backend, kind, specials_by_role)
