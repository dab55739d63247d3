"""SFT data: template rendering, loss masking, padding, packing (no cross-attention), mixing, JSONL errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from finetune_helpers import tiny_gpt, tiny_llama, toy_records, write_jsonl

from llmlab.data.sft import (
    IGNORE_INDEX,
    MixtureSampler,
    SFTBatchStream,
    SFTCollator,
    SFTExample,
    block_causal_mask,
    collate_rows,
    load_sft_examples,
    pack_examples,
    read_sft_records,
    tokenize_segments,
)
from llmlab.data.templates import render_record
from llmlab.train.sft_loop import sft_logits

ALPACA = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
ALPACA_NO_INPUT = {"instruction": "Say hi.", "input": "", "output": "hi"}


# ---------------------------------------------------------------------------------------------- templates
def test_alpaca_template_exact() -> None:
    assert render_record(ALPACA, "auto", "alpaca", None) == [
        (
            "Below is an instruction that describes a task, paired with an input that provides further context. "
            "Write a response that appropriately completes the request.\n\n"
            "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n",
            False,
        ),
        ("5", True),
    ]
    assert render_record(ALPACA_NO_INPUT, "auto", "alpaca", None) == [
        (
            "Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.\n\n"
            "### Instruction:\nSay hi.\n\n### Response:\n",
            False,
        ),
        ("hi", True),
    ]


def test_chinese_template_exact_and_input_omitted_when_empty() -> None:
    rec = {"instruction": "翻译成英文", "input": "你好", "output": "Hello"}
    assert render_record(rec, "auto", "alpaca-zh", None) == [
        ("### 指令:\n翻译成英文\n\n### 输入:\n你好\n\n### 输出:\n", False),
        ("Hello", True),
    ]
    rec = {"instruction": "写一句问候", "output": "你好"}  # no input key at all
    assert render_record(rec, "auto", "alpaca-zh", None) == [
        ("### 指令:\n写一句问候\n\n### 输出:\n", False),
        ("你好", True),
    ]


def test_chat_template_marks_assistant_turns_as_response() -> None:
    rec = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Bye!"},
        ]
    }
    segs = render_record(rec, "auto", "alpaca", "chatml")  # messages always use the chat template
    assert segs == [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello!<|im_end|>\n", True),
        ("<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n", False),
        ("Bye!<|im_end|>\n", True),
    ]
    # An Alpaca record through the chat template: user = instruction + blank line + input.
    segs = render_record(ALPACA, "auto", "chat", "zh")
    assert segs == [("用户: Add the numbers.\n\n2 and 3\n助手: ", False), ("5\n", True)]


def test_prompt_completion_plain() -> None:
    assert render_record({"prompt": "Q: 1+1=", "completion": " 2"}, "auto", "plain", None) == [
        ("Q: 1+1=", False),
        (" 2", True),
    ]


# ---------------------------------------------------------------------------------------------- masking
def test_loss_only_on_response_and_first_response_token_predicted_from_last_prompt_token(tokenizer) -> None:
    segs = render_record(ALPACA, "auto", "alpaca", None)
    prompt_ids, response_ids = tokenizer.encode(segs[0][0]), tokenizer.encode(segs[1][0])
    ex = tokenize_segments(segs, tokenizer, max_length=512)
    n = len(prompt_ids)
    assert ex.input_ids == prompt_ids + response_ids + [tokenizer.eos_id]
    assert ex.prompt_len == n
    # Positions 0 .. n-2 predict prompt tokens: ignored.
    assert all(lab == IGNORE_INDEX for lab in ex.labels[: n - 1])
    # The last prompt position predicts the first response token; the last response position predicts EOS.
    assert ex.labels[n - 1] == response_ids[0]
    assert ex.labels[n - 1 : n - 1 + len(response_ids) + 1] == response_ids + [tokenizer.eos_id]
    assert ex.labels[-1] == IGNORE_INDEX  # EOS itself predicts nothing
    # train_on_prompt: every next token is learned.
    ex2 = tokenize_segments(segs, tokenizer, max_length=512, train_on_prompt=True)
    assert ex2.labels[:-1] == ex2.input_ids[1:]


def test_model_loss_with_labels_equals_loss_over_response_only(tokenizer) -> None:
    model = tiny_llama(tokenizer.vocab_size).eval()
    ex = tokenize_segments(render_record(ALPACA, "auto", "alpaca", None), tokenizer, max_length=512)
    ids = torch.tensor([ex.input_ids])
    out = model(ids, torch.tensor([ex.labels]))
    logp = torch.log_softmax(model(ids).logits[0], dim=-1)
    n = ex.prompt_len
    targets = ex.input_ids[n:]  # response + EOS, predicted at positions n-1 .. T-2
    manual = -torch.stack([logp[n - 1 + k, tok] for k, tok in enumerate(targets)]).mean()
    torch.testing.assert_close(out.loss, manual)


def test_eos_not_doubled_when_chat_template_ends_turn_with_eos(tokenizer) -> None:
    from llmlab.tokenizers import train_tokenizer_from_iterator

    tok = train_tokenizer_from_iterator("bpe", ["hello there"] * 3, 300, {"eos": "<|im_end|>"})
    rec = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "there"}]}
    ex = tokenize_segments(render_record(rec, "auto", "alpaca", "chatml"), tok, max_length=512)
    assert ex.input_ids.count(tok.eos_id) == 2  # the user and the assistant turn end; none appended
    assert ex.input_ids[-2:] == [tok.eos_id, tok.encode("\n")[0]]
    assert ex.labels[-3] == tok.eos_id  # the end of the assistant turn is learned


def test_truncation_and_dropping(tokenizer, tmp_path) -> None:
    segs = render_record(ALPACA, "auto", "alpaca", None)
    n = len(tokenizer.encode(segs[0][0]))
    ex = tokenize_segments(segs, tokenizer, max_length=n + 1)
    assert len(ex.input_ids) == n + 1 and ex.labels[n - 1] != IGNORE_INDEX
    assert tokenize_segments(segs, tokenizer, max_length=n) is None  # no response token left
    path = write_jsonl(tmp_path / "d.jsonl", [ALPACA, ALPACA_NO_INPUT])
    examples, dropped = load_sft_examples(path, tokenizer, max_length=n)
    assert dropped == 1 and len(examples) == 1 and examples[0].line == 2


# ---------------------------------------------------------------------------------------------- collator
def test_collator_pads_right_with_mask_and_ignored_labels(tokenizer) -> None:
    a = SFTExample([5, 6, 7, 8], [IGNORE_INDEX, 7, 8, IGNORE_INDEX], task=0)
    b = SFTExample([9, 10], [10, IGNORE_INDEX], task=1)
    batch = SFTCollator(pad_id=0)([a, b])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [
        [IGNORE_INDEX, 7, 8, IGNORE_INDEX],
        [10, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
    ]
    assert batch["task_ids"].tolist() == [[0, 0, 0, 0], [1, 1, -1, -1]]
    assert SFTCollator(pad_id=0, pad_to_multiple_of=8)([a, b])["input_ids"].shape == (2, 8)


def test_padding_does_not_change_logits_of_real_tokens(tokenizer) -> None:
    model = tiny_llama(tokenizer.vocab_size).eval()
    a = SFTExample(list(range(3, 13)), [IGNORE_INDEX] * 10)
    b = SFTExample(list(range(20, 24)), [IGNORE_INDEX] * 4)
    batch = SFTCollator(pad_id=0)([a, b])
    with torch.no_grad():
        logits = sft_logits(model, batch)
        alone = model(torch.tensor([b.input_ids])).logits
    torch.testing.assert_close(logits[1, :4], alone[0], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- packing
def test_pack_examples_and_block_mask() -> None:
    exs = [SFTExample([1] * n, [IGNORE_INDEX] * n) for n in (3, 4, 2, 6)]
    rows = pack_examples(exs, max_length=8)
    assert [[len(e) for e in r] for r in rows] == [[3, 4], [2, 6]]
    batch = collate_rows(rows, pad_id=0)
    assert batch["segment_ids"].tolist()[0] == [1, 1, 1, 2, 2, 2, 2, 0]
    assert batch["position_ids"].tolist()[0] == [0, 1, 2, 0, 1, 2, 3, 0]
    mask = block_causal_mask(batch["segment_ids"])[0, 0]
    assert mask[4].tolist() == [False, False, False, True, True, False, False, False]  # 2nd example, position 1
    assert mask[7].tolist() == [False] * 7 + [True]  # padding sees only itself


@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_packed_examples_do_not_attend_to_each_other(tokenizer, family) -> None:
    model = (tiny_llama if family == "llama" else tiny_gpt)(tokenizer.vocab_size).eval()
    first = SFTExample(list(range(5, 12)), [IGNORE_INDEX] * 7)
    changed = SFTExample(list(range(40, 47)), [IGNORE_INDEX] * 7)  # same length, other tokens
    second = SFTExample(list(range(60, 66)), [IGNORE_INDEX] * 6)
    with torch.no_grad():
        packed = sft_logits(model, collate_rows([[first, second]], pad_id=0))
        packed2 = sft_logits(model, collate_rows([[changed, second]], pad_id=0))
        unmasked = model(collate_rows([[first, second]], pad_id=0)["input_ids"]).logits
    torch.testing.assert_close(packed[0, 7:13], packed2[0, 7:13], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(packed[0, :7], packed2[0, :7])
    assert not torch.allclose(unmasked[0, 7:13], packed[0, 7:13], atol=1e-4)  # the mask did something
    if family == "llama":  # positions restart: a packed example is computed exactly as if it were alone
        with torch.no_grad():
            alone = model(torch.tensor([second.input_ids])).logits
        torch.testing.assert_close(packed[0, 7:13], alone[0], atol=1e-5, rtol=1e-5)


def test_packed_stream_fills_rows(tokenizer) -> None:
    exs = [SFTExample([1] * n, [2] * n) for n in (5, 3, 4, 6, 2, 7)]
    stream = SFTBatchStream([exs], [1.0], batch_size=2, max_length=10, pad_id=0, packing=True, seed=0)
    for _ in range(5):
        batch = stream.next_batch()
        assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] <= 10
        assert int(batch["attention_mask"].sum()) >= 10  # rows are filled beyond one example


# ---------------------------------------------------------------------------------------------- mixing
def test_multi_task_sampling_follows_weights() -> None:
    sampler = MixtureSampler([50, 7, 20], [3.0, 1.0, 0.0], seed=0)
    draws = [sampler.next() for _ in range(4000)]
    counts = Counter(t for t, _ in draws)
    assert counts[2] == 0
    assert abs(counts[0] / 4000 - 0.75) < 0.03 and abs(counts[1] / 4000 - 0.25) < 0.03
    # Within a task, examples go round in passes: each of the 7 examples of task 1 is drawn equally often.
    per_example = Counter(i for t, i in draws if t == 1)
    assert max(per_example.values()) - min(per_example.values()) <= 1
    with pytest.raises(ValueError, match="weights"):
        MixtureSampler([5], [0.0])


# ---------------------------------------------------------------------------------------------- errors
def test_jsonl_errors_name_the_line(tmp_path) -> None:
    good = [json.dumps(r) for r in toy_records(6)]
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join([*good[:3], "{not json", *good[3:]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl line 4: not valid JSON"):
        read_sft_records(p)
    lines = good[:6] + [json.dumps({"instruction": "x", "input": ""})]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 7: missing 'output' field$"):
        read_sft_records(p)
    p.write_text(json.dumps({"question": "?"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: unknown record format \(keys: question\)"):
        read_sft_records(p)
    p.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: 'messages' has no assistant turn"):
        read_sft_records(p)
    with pytest.raises(FileNotFoundError, match="data file not found"):
        read_sft_records(tmp_path / "missing.jsonl")


def test_packing_with_prefix_tuning_keeps_examples_apart() -> None:
    """Prefix tuning extends the mask with its virtual keys; packed examples still see only themselves."""
    from llmlab.peft import PrefixConfig, get_peft_model

    model = get_peft_model(tiny_llama(100), PrefixConfig(num_virtual_tokens=3)).eval()
    a, a2 = SFTExample(list(range(5, 12)), [IGNORE_INDEX] * 7), SFTExample(list(range(40, 47)), [IGNORE_INDEX] * 7)
    b = SFTExample(list(range(60, 66)), [IGNORE_INDEX] * 6)
    with torch.no_grad():
        packed = sft_logits(model, collate_rows([[a, b]], pad_id=0))
        packed2 = sft_logits(model, collate_rows([[a2, b]], pad_id=0))
        alone = model(torch.tensor([b.input_ids])).logits
    torch.testing.assert_close(packed[0, 7:13], packed2[0, 7:13], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[0, 7:13], alone[0], atol=1e-5, rtol=1e-5)
