"""`llmlab.data.seq2seq`: JSONL reading, EOS + truncation, padding with -100 labels (loss on targets only),
the seeded resumable batch stream, and the trainer's token-mean loss."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from llmlab.data.seq2seq import (
    Seq2SeqBatchStream,
    Seq2SeqExample,
    collate_seq2seq,
    encode_seq2seq,
    read_seq2seq_jsonl,
)
from llmlab.models.t5 import T5


class CharTokenizer:
    """ids = code points (enough for these tests)."""

    def encode_batch(self, texts):
        return [[ord(c) for c in t] for t in texts]


def test_encode_truncates_and_ends_with_eos():
    records = [{"source": "abcdef", "target": "xyz"}]
    (ex,) = encode_seq2seq(
        records, CharTokenizer(), max_source_length=4, max_target_length=8, eos_id=1, source_prefix="> "
    )
    assert ex.source_ids == (ord(">"), ord(" "), ord("a"), 1)
    assert ex.target_ids == (ord("x"), ord("y"), ord("z"), 1)


def test_collate_pads_sources_and_ignores_padded_targets():
    batch = collate_seq2seq([Seq2SeqExample((5, 6, 1), (7, 1)), Seq2SeqExample((5, 1), (8, 9, 1))], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 1], [5, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 1, -100], [8, 9, 1]]


def test_loss_is_over_target_tokens_only():
    torch.manual_seed(0)
    model = T5.from_preset("t5-tiny").eval()
    batch = collate_seq2seq([Seq2SeqExample((5, 6, 1), (7, 1)), Seq2SeqExample((5, 1), (8, 9, 1))], pad_id=0)
    out = model(batch["input_ids"], batch["labels"], attention_mask=batch["attention_mask"])
    keep = batch["labels"] != -100
    manual = F.cross_entropy(out.logits[keep], batch["labels"][keep])  # 5 target tokens, padding skipped
    torch.testing.assert_close(out.loss, manual)


def test_stream_is_seeded_covers_every_example_and_resumes():
    examples = [Seq2SeqExample((i, 1), (i, 1)) for i in range(2, 12)]
    a = Seq2SeqBatchStream(examples, batch_size=4, pad_id=0, seed=3)
    first_epoch = [row for _ in range(2) for row in a.next_batch()["input_ids"][:, 0].tolist()]
    state = a.state_dict()
    rest = [a.next_batch()["input_ids"][:, 0].tolist() for _ in range(3)]
    assert len(set(first_epoch)) == 8  # no repeats within an epoch
    b = Seq2SeqBatchStream(examples, batch_size=4, pad_id=0, seed=3)
    b.load_state_dict(state)
    assert [b.next_batch()["input_ids"][:, 0].tolist() for _ in range(3)] == rest
    ranks = [
        Seq2SeqBatchStream(examples, 2, 0, 3, rank=r, world_size=2).next_batch()["input_ids"][:, 0].tolist()
        for r in (0, 1)
    ]
    assert sorted(ranks[0] + ranks[1]) == sorted(
        Seq2SeqBatchStream(examples, 4, 0, 3).next_batch()["input_ids"][:, 0].tolist()
    )


def test_bad_jsonl_lines_name_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"source": "a", "target": "b"}) + "\nnot json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"d.jsonl:2: not valid JSON"):
        read_seq2seq_jsonl(path)
    path.write_text(json.dumps({"source": "a", "target": ""}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"d.jsonl:1: expected"):
        read_seq2seq_jsonl(path)
    with pytest.raises(FileNotFoundError):
        read_seq2seq_jsonl(tmp_path / "none.jsonl")
