"""Task data (`llmlab.data.tasks`, `llmlab.data.qa_features`): label alignment, entity markers, QA windows and
answer positions, collation — hand-checked on the packaged MiniLM WordPiece tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from llmlab.data.qa_features import answer_token_span, prepare_features
from llmlab.data.tasks import (
    IGNORE_INDEX,
    align_labels,
    collate_examples,
    encode_records,
    insert_entity_markers,
    label_names,
    read_task_records,
)


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    from llmlab.models.bert import minilm_path
    from llmlab.tokenizers.core import load_tokenizer

    return load_tokenizer(minilm_path() / "tokenizer.json")


def test_align_labels_first_subtoken_only() -> None:
    assert align_labels([None, 0, 0, 1, 2, 2, 2, None], [5, 6, 7]) == [-100, 5, -100, 6, 7, -100, -100, -100]


def test_token_classification_alignment(tokenizer) -> None:  # noqa: ANN001
    rec = {"tokens": ["Ada", "visited", "Tokyo", "unaffable"], "tags": ["B-PER", "O", "B-LOC", "O"]}
    labels = label_names("token_classification", [rec])
    assert labels == ["O", "B-LOC", "B-PER"]
    (ex,), dropped = encode_records("token_classification", [rec], tokenizer, labels, 32)
    pieces = [tokenizer.id_to_token(i) for i in ex.input_ids]
    assert pieces == ["[CLS]", "ada", "visited", "tokyo", "una", "##ffa", "##ble", "[SEP]"]
    assert ex.label == [IGNORE_INDEX, 2, 0, 1, 0, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert dropped == 0


def test_entity_markers(tokenizer) -> None:  # noqa: ANN001
    assert insert_entity_markers("Ada met Bob", [8, 11], [0, 3]) == "[E2] Ada [/E2] met [E1] Bob [/E1]"
    with pytest.raises(ValueError, match="overlap"):
        insert_entity_markers("Ada met Bob", [0, 5], [4, 7])
    rec = {"text": "Ada met Bob", "head": [0, 3], "tail": [8, 11], "label": "met"}
    (ex,), _ = encode_records("relation_classification", [rec], tokenizer, ["met", "none"], 32)
    tokens = [tokenizer.backend.id_to_token(i) for i in ex.input_ids]
    assert tokens == ["[CLS]", "[E1]", "ada", "[/E1]", "met", "[E2]", "bob", "[/E2]", "[SEP]"]
    assert ex.marker_positions == (1, 5) and ex.label == 0
    # a marker cut off by max_length: the record is dropped, and counted
    long = {"text": "x " * 40 + "Ada met Bob", "head": [80, 83], "tail": [88, 91], "label": "met"}
    kept, dropped = encode_records("relation_classification", [long], tokenizer, ["met"], 16)
    assert kept == [] and dropped == 1


def test_qa_answer_positions_and_windows_match_transformers(tokenizer) -> None:  # noqa: ANN001
    transformers = pytest.importorskip("transformers")
    from llmlab.models.bert import minilm_path

    context = "The quick brown fox jumps over the lazy dog and then runs away into the forest far away from here"
    rec = {"id": "1", "question": "Where does the fox run?", "context": context,
           "answers": {"text": ["the forest"], "answer_start": [context.index("the forest")]}}  # fmt: skip
    feats = prepare_features([rec], tokenizer, max_length=24, doc_stride=6)
    hf = transformers.AutoTokenizer.from_pretrained(str(minilm_path()))
    ref = hf(rec["question"], context, truncation="only_second", max_length=24, stride=6,
             return_overflowing_tokens=True, return_offsets_mapping=True)  # fmt: skip
    assert [f.input_ids for f in feats] == ref["input_ids"]
    assert len(feats) == 2
    assert feats[0].label == (0, 0)  # the answer is not in the first window: [CLS]
    s, e = feats[1].label
    assert tokenizer.decode(feats[1].input_ids[s : e + 1]) == "the forest"
    start, end = feats[1].offsets[s][0], feats[1].offsets[e][1]
    assert context[start:end] == "the forest"
    assert all(o is None for o in feats[1].offsets[:8])  # [CLS] question [SEP]


def test_answer_token_span_by_hand() -> None:
    offsets = [(0, 0), (0, 5), (0, 0), (0, 3), (4, 9), (10, 12), (0, 0)]
    seq = [None, 0, None, 1, 1, 1, None]
    assert answer_token_span(offsets, seq, 4, 12) == (4, 5)
    assert answer_token_span(offsets, seq, 5, 7) == (4, 4)  # inside one token
    assert answer_token_span(offsets, seq, 10, 20) is None  # runs past the window


def test_collate_pads_and_labels(tokenizer) -> None:  # noqa: ANN001
    recs = [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["a", "b", "c"], "tags": ["O", "B-X", "O"]}]
    examples, _ = encode_records("token_classification", recs, tokenizer, ["O", "B-X"], 16)
    b = collate_examples("token_classification", examples, pad_id=0)
    assert b["input_ids"].shape == (2, 5) and b["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert b["labels"].tolist() == [[-100, 0, -100, -100, -100], [-100, 0, 1, 0, -100]]
    mc = [{"question": "2+2?", "choices": ["4", "five", "3"], "label": 0}]
    examples, _ = encode_records("multiple_choice", mc, tokenizer, [], 16)
    b = collate_examples("multiple_choice", examples, 0)
    assert b["input_ids"].shape[:2] == (1, 3) and torch.equal(b["labels"], torch.tensor([0]))


def test_records_are_checked(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: 2 tokens but 1 tags"):
        read_task_records(path, "token_classification")
    path.write_text(json.dumps({"text": "hi"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: missing key\(s\) \['label'\]"):
        read_task_records(path, "sequence_classification")
    with pytest.raises(FileNotFoundError):
        read_task_records(tmp_path / "none.jsonl", "regression")
    with pytest.raises(ValueError, match="unknown task 'ner'"):
        read_task_records(path, "ner")
