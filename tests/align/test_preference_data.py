"""Preference and prompt data (`llmlab.data.preference`): rendering, truncation, errors, batching, streams."""

from __future__ import annotations

import json

import pytest
import torch
from align_helpers import toy_pairs, toy_prompts, write_jsonl

from llmlab.data.preference import (
    PairStream,
    PreferencePair,
    PromptStream,
    collate_pairs,
    load_preference_pairs,
    load_prompt_records,
    split_held_out,
)
from llmlab.tokenizers.chat import apply_chat_template


def test_string_pairs_plain_template(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", toy_pairs(5))
    pairs = load_preference_pairs(path, tokenizer, template="plain")
    assert len(pairs) == 5 and [p.line for p in pairs] == [1, 2, 3, 4, 5]
    row = toy_pairs(5)[0]
    p = pairs[0]
    assert p.prompt_ids == tokenizer.encode(row["prompt"])
    assert p.chosen_ids == tokenizer.encode(row["chosen"]) + [tokenizer.eos_id]
    assert p.rejected_ids == tokenizer.encode(row["rejected"]) + [tokenizer.eos_id]
    assert p.margin == 0.0
    no_eos = load_preference_pairs(path, tokenizer, template="plain", add_eos=False)
    assert no_eos[0].chosen_ids == tokenizer.encode(row["chosen"])


def test_chat_template_and_messages_agree(tmp_path, tokenizer):
    """A string prompt under template=chat equals the same pair written as conversation messages."""
    strings = [{"prompt": "hello", "chosen": "good", "rejected": "bad", "margin": 2}]
    convo = [{
        "prompt": [{"role": "user", "content": "hello"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
        "margin": 2.0,
    }]  # fmt: skip
    a = load_preference_pairs(write_jsonl(tmp_path / "a.jsonl", strings), tokenizer, template="chat")[0]
    b = load_preference_pairs(write_jsonl(tmp_path / "b.jsonl", convo), tokenizer, template="plain")[0]
    assert a == b and a.margin == 2.0
    msgs = [{"role": "user", "content": "hello"}]
    assert a.prompt_ids == tokenizer.encode(apply_chat_template(msgs, "chatml", add_generation_prompt=True))
    full = apply_chat_template([*msgs, {"role": "assistant", "content": "good"}], "chatml", add_generation_prompt=False)
    assert full.endswith("good<|im_end|>\n")
    assert a.chosen_ids == tokenizer.encode("good<|im_end|>\n") + [tokenizer.eos_id]


def test_alpaca_templates(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Say hi", "chosen": "hi", "rejected": "no"}])
    for template, marker in (("alpaca", "### Response:"), ("alpaca-zh", "### 输出:")):
        p = load_preference_pairs(path, tokenizer, template=template)[0]
        text = tokenizer.decode(p.prompt_ids)
        assert "Say hi" in text and text.rstrip().endswith(marker)


def test_truncation_keeps_prompt_end_and_cuts_responses(tmp_path, tokenizer):
    long_prompt = " ".join(f"w{i}" for i in range(60)) + " END"
    row = {"prompt": long_prompt, "chosen": " great " * 40, "rejected": " bad"}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    p = load_preference_pairs(path, tokenizer, template="plain", max_length=40, max_prompt_length=10)[0]
    full = tokenizer.encode(long_prompt)
    assert len(full) > 10 and p.prompt_ids == full[-10:]
    assert len(p.prompt_ids) + len(p.chosen_ids) == 40
    assert p.chosen_ids == tokenizer.encode(row["chosen"])[:30]
    assert p.rejected_ids[-1] == tokenizer.eos_id  # short responses keep their EOS


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not valid JSON"),
        (json.dumps({"prompt": "a", "chosen": "b"}), "line 2: missing 'rejected' field"),
        (json.dumps({"prompt": "a", "chosen": "", "rejected": "c"}), "line 2: 'chosen' is empty"),
        (json.dumps({"prompt": "a", "chosen": 3, "rejected": "c"}), "line 2: 'chosen' must be a non-empty string"),
        (json.dumps({"prompt": "a", "chosen": "b", "rejected": "c", "margin": "x"}), "line 2: .margin. must be a"),
        (json.dumps({"prompt": [{"role": "user"}], "chosen": "b", "rejected": "c"}), "line 2: 'prompt' message 0"),
        (json.dumps(["a", "b"]), "line 2: expected a JSON object"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, tokenizer, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(toy_pairs(1)[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message) as e:
        load_preference_pairs(path, tokenizer)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_and_empty_files(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_preference_pairs(tmp_path / "nope.jsonl", tokenizer)
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no pairs"):
        load_preference_pairs(tmp_path / "empty.jsonl", tokenizer)
    with pytest.raises(ValueError, match="holds no prompts"):
        load_prompt_records(tmp_path / "empty.jsonl", tokenizer)


def test_identical_pairs_warn(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "same", "rejected": "same"}])
    with pytest.warns(UserWarning, match="1 pair"):
        assert len(load_preference_pairs(path, tokenizer)) == 1


def test_collate_pairs_chosen_first_right_padded():
    pairs = [PreferencePair([1, 2], [3], [4, 5, 6], 1.5, 1), PreferencePair([7], [8, 9], [10], 0.0, 2)]
    b = collate_pairs(pairs, pad_id=0)
    assert b["input_ids"].tolist() == [[1, 2, 3, 0, 0], [7, 8, 9, 0, 0], [1, 2, 4, 5, 6], [7, 10, 0, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert b["response_mask"].tolist() == [[0, 0, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert torch.equal(b["margin"], torch.tensor([1.5, 0.0]))


def test_prompt_records_keep_fields(tmp_path, tokenizer):
    rows = toy_prompts(4) + [{"prompt": [{"role": "user", "content": "hi there"}], "answer": "7"}]
    recs = load_prompt_records(write_jsonl(tmp_path / "q.jsonl", rows), tokenizer, template="plain")
    assert [r.line for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0].prompt_ids == tokenizer.encode(rows[0]["prompt"]) and recs[0].text == rows[0]["prompt"]
    assert recs[0].record == rows[0] and recs[4].record["answer"] == "7" and recs[4].text == "hi there"
    cut = load_prompt_records(write_jsonl(tmp_path / "r.jsonl", rows), tokenizer, template="plain",
                              max_prompt_length=2)  # fmt: skip
    assert cut[0].prompt_ids == tokenizer.encode(rows[0]["prompt"])[-2:]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"answer": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: missing 'prompt'"):
        load_prompt_records(tmp_path / "bad.jsonl", tokenizer)


def test_split_held_out():
    items = list(range(50))
    train, val = split_held_out(items, 0.2, seed=3)
    assert len(val) == 10 and sorted(train + val) == items and not set(train) & set(val)
    assert split_held_out(items, 0.2, seed=3) == (train, val) and split_held_out(items, 0.2, seed=4) != (train, val)
    assert split_held_out(items, 0.0, seed=0) == (items, [])
    with pytest.raises(ValueError, match="held-out fraction"):
        split_held_out(items, 1.0, seed=0)


def test_streams_epochs_ranks_and_exact_resume():
    items = list(range(10))
    s = PairStream(items, batch_size=3, seed=1)
    batches = [s.next_batch() for _ in range(10)]
    flat = [x for b in batches for x in b]
    assert sorted(flat[:10]) == items and sorted(flat[10:20]) == items  # every epoch is a permutation
    assert flat[:10] != flat[10:20]
    # two ranks together see what one process with the global batch sees
    one = PromptStream(items, batch_size=4, seed=5)
    r0, r1 = PromptStream(items, 2, 5, rank=0, world_size=2), PromptStream(items, 2, 5, rank=1, world_size=2)
    for _ in range(6):
        assert one.next_batch() == r0.next_batch() + r1.next_batch()
    # resume: a stream restored from a saved state continues identically
    a = PairStream(items, batch_size=3, seed=1)
    for _ in range(4):
        a.next_batch()
    state = a.state_dict()
    b = PairStream(items, batch_size=3, seed=1)
    b.load_state_dict(state)
    assert [b.next_batch() for _ in range(6)] == batches[4:]
    with pytest.raises(ValueError, match="saved over 10 items"):
        PairStream(items[:5], 3, 1).load_state_dict(state)
