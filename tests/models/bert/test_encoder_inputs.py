"""`llmlab.tokenizers.encoder`: encoder batches equal transformers' tokenizer output (ids, types, masks, offsets,
word ids, overflowing windows), RoBERTa and template-less tokenizers, one-line errors."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers, processors, trainers

from llmlab.models.bert import minilm_path
from llmlab.tokenizers import Tokenizer, load_tokenizer, train_tokenizer_from_iterator
from llmlab.tokenizers.encoder import encode_rows, encode_texts, pad_rows, special_ids

TEXTS = [
    "Hello world, this is a test.",
    "今天天气很好，我们去公园散步吧。",
    "short",
    "Tokenizers split un-common words.",
]
PAIRS = ["a second text that is long enough to be cut " * 3, "第二句话", "x", "and a pair"]


@pytest.fixture(scope="module")
def minilm_tokenizers():
    from transformers import AutoTokenizer

    return load_tokenizer(minilm_path()), AutoTokenizer.from_pretrained(minilm_path())


def test_single_texts_equal_transformers(minilm_tokenizers) -> None:
    ours, theirs = minilm_tokenizers
    enc = encode_texts(ours, TEXTS, max_length=12, return_offsets=True, return_word_ids=True)
    ref = theirs(TEXTS, max_length=12, truncation=True, padding=True, return_offsets_mapping=True)
    assert enc.input_ids.tolist() == ref["input_ids"]
    assert enc.attention_mask.tolist() == ref["attention_mask"] and enc.token_type_ids.tolist() == ref["token_type_ids"]
    assert enc.offsets == [[tuple(o) for o in row] for row in ref["offset_mapping"]]
    assert enc.word_ids == [ref.word_ids(i) for i in range(len(TEXTS))]
    assert enc.input_ids[0, 0] == special_ids(ours).cls and enc.overflow_to_sample is None


@pytest.mark.parametrize("truncation", ["longest_first", "only_second"])
def test_pairs_equal_transformers(minilm_tokenizers, truncation: str) -> None:
    ours, theirs = minilm_tokenizers
    enc = encode_texts(ours, TEXTS, PAIRS, max_length=24, truncation=truncation)
    ref = theirs(TEXTS, PAIRS, max_length=24, truncation=truncation, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(getattr(enc, key), ref[key]), key
    assert enc.sequence_ids is None


def test_overflowing_windows_equal_transformers(minilm_tokenizers) -> None:
    ours, theirs = minilm_tokenizers
    args = dict(max_length=30, truncation="only_second")
    enc = encode_texts(ours, TEXTS, PAIRS, stride=5, return_offsets=True, **args)
    ref = theirs(
        TEXTS, PAIRS, stride=5, return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, **args
    )
    assert enc.input_ids.tolist() == ref["input_ids"] and enc.token_type_ids.tolist() == ref["token_type_ids"]
    assert enc.overflow_to_sample == ref["overflow_to_sample_mapping"] and enc.overflow_to_sample.count(0) > 1
    assert enc.offsets == [[tuple(o) for o in row] for row in ref["offset_mapping"]]
    assert enc.sequence_ids == [ref.sequence_ids(i) for i in range(len(ref["input_ids"]))]


def test_rows_then_padding_equal_encode_texts(minilm_tokenizers) -> None:
    ours, _ = minilm_tokenizers
    rows = encode_rows(ours, TEXTS, PAIRS, max_length=24)
    batch, enc = pad_rows(rows, special_ids(ours).pad), encode_texts(ours, TEXTS, PAIRS, max_length=24)
    assert [len(ids) for ids, _ in rows] == enc.attention_mask.sum(1).tolist()  # unpadded
    assert min(len(ids) for ids, _ in rows) < 24
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(getattr(batch, key), getattr(enc, key)), key


def test_roberta_style_tokenizer() -> None:
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend.train_from_iterator(
        ["hello world, a test of roberta style inputs"] * 20,
        trainers.BpeTrainer(vocab_size=300, special_tokens=specials),
    )
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok = Tokenizer(backend, "bpe", {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "mask": "<mask>"})
    assert (special_ids(tok).cls, special_ids(tok).sep) == (0, 2)
    assert (special_ids(tok).pad, special_ids(tok).mask) == (1, 4)
    enc = encode_texts(tok, ["hello world", "a"], ["a test", "b"])
    first = [0, *tok.encode("hello world"), 2, 2, *tok.encode("a test"), 2]
    assert enc.input_ids[0].tolist() == first
    assert enc.input_ids[1].tolist()[-1] == 1 and enc.token_type_ids.sum() == 0  # pad = 1; one token type


def test_tokenizer_without_template_gets_bert_template() -> None:
    tok = train_tokenizer_from_iterator("wordpiece", ["some words to learn from here"] * 10, vocab_size=80)
    ids = special_ids(tok)
    assert ids.cls == tok.bos_id and ids.sep == tok.eos_id  # no [CLS]/[SEP]: bos/eos play them
    enc = encode_texts(tok, ["some words"], ["here"])
    assert enc.input_ids[0].tolist() == [ids.cls, *tok.encode("some words"), ids.sep, *tok.encode("here"), ids.sep]
    assert enc.token_type_ids[0].tolist() == [0] * (len(tok.encode("some words")) + 2) + [1] * (
        len(tok.encode("here")) + 1
    )


def test_errors_are_one_line(minilm_tokenizers) -> None:
    ours, _ = minilm_tokenizers
    with pytest.raises(ValueError, match="2 texts but 1 pairs"):
        encode_texts(ours, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="unknown truncation 'middle'"):
        encode_texts(ours, ["a"], truncation="middle")
    with pytest.raises(ValueError, match="stride must be in"):
        encode_texts(ours, ["a"], max_length=8, stride=8)
    with pytest.raises(ValueError, match="use a smaller stride"):
        encode_texts(ours, [TEXTS[1]], [PAIRS[0]], max_length=20, truncation="only_second", stride=5)
    with pytest.raises(ValueError, match="padding=False"):
        encode_texts(ours, TEXTS, padding=False)
    with pytest.raises(ValueError, match="not a str"):
        encode_texts(ours, [1])  # type: ignore[list-item]
