"""Chat sessions: SmolLM2 multi-turn replies, /reset and /save, the context window, stop handling, the CLI.

SmolLM2-135M-Instruct (greedy, few tokens) is loaded once per module; the context-window tests use a tiny
random GPT, and the stop tests a scripted model whose next token is fixed in advance.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_models
import torch
from torch import nn

from llmlab.generate.chat import ChatSession
from llmlab.hub import DEFAULT_MODEL_NAME, load_for_inference
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn.kv_cache import KVCache
from llmlab.nn.outputs import ModelOutput
from llmlab.recipes.chat import run_chat
from llmlab.tokenizers import train_tokenizer_from_iterator
from llmlab.tokenizers.chat import resolve_template

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="module")
def smollm2():
    loaded = load_for_inference(None)
    assert loaded.source == DEFAULT_MODEL_NAME and "<|im_end|>" in (loaded.chat_template or "")
    return loaded


def smol_session(smollm2, **kw) -> ChatSession:
    template, _ = resolve_template("auto", smollm2.chat_template)
    kw = {"temperature": 0.0, "max_new_tokens": 16, **kw}
    return ChatSession(smollm2.model, smollm2.tokenizer, template=template, **kw)


def test_smollm2_multi_turn_stops_at_end_of_turn(smollm2) -> None:
    session = smol_session(smollm2, system="You are a helpful assistant.")
    assert session.stop_token_ids == [smollm2.tokenizer.token_to_id("<|im_end|>")]  # also SmolLM2's EOS
    streamed: list[str] = []
    first = session.send("Hi", on_text=streamed.append)
    assert first and first == "".join(streamed).rstrip()
    assert session.last_generated < 16  # stopped by <|im_end|>, not by the token limit
    assert "<|im_end|>" not in first
    second = session.send("What is 2+2?")
    assert second and session.last_generated <= 16
    prompt = smollm2.tokenizer.decode(session.last_prompt_ids)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert f"<|im_start|>assistant\n{first}<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert [m["role"] for m in session.history] == ["user", "assistant", "user", "assistant"]


def test_smollm2_reset_and_save(smollm2, tmp_path: Path) -> None:
    session = smol_session(smollm2, system="Be brief.", max_new_tokens=8)
    lines = ["Hi", f"/save {tmp_path / 'a.json'}", "/reset", "Name a color.", f"/save {tmp_path / 'b.json'}"]
    out, err = io.StringIO(), io.StringIO()
    replies = run_chat(session, [*lines, "/exit", "never sent"], out=out, err=err)
    assert replies == (2, 0) and err.getvalue() == ""
    assert len(out.getvalue().splitlines()) == 2
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert [m["content"] for m in a["messages"][:2]] == ["Be brief.", "Hi"]
    assert [m["role"] for m in b["messages"]] == ["system", "user", "assistant"]  # /reset dropped "Hi"
    assert b["messages"][1]["content"] == "Name a color." and b["settings"]["max_new_tokens"] == 8
    assert "Hi" not in smollm2.tokenizer.decode(session.last_prompt_ids)
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_smollm2_kv_reuse_matches_re_prefill(smollm2) -> None:
    """Three greedy turns: the cache kept between turns gives the same tokens; turns 2+ prefill only the new part."""
    reuse, full = (smol_session(smollm2, max_new_tokens=12, reuse_cache=flag) for flag in (True, False))
    for i, msg in enumerate(["What is the capital of France?", "And of Germany?", "Which one is bigger?"]):
        prev_prompt, prev_reply = reuse.last_prompt_ids, reuse.last_reply_ids
        assert reuse.send(msg) == full.send(msg)
        assert reuse.last_reply_ids == full.last_reply_ids and reuse.last_prompt_ids == full.last_prompt_ids
        assert full.last_prefill_tokens == len(full.last_prompt_ids)  # re-prefill: everything, every turn
        assert reuse.last_reused_tokens + reuse.last_prefill_tokens == len(reuse.last_prompt_ids)
        if i == 0:
            assert reuse.last_reused_tokens == 0
        else:
            # Cached: the last prompt and the reply tokens fed back (all but the last one generated). The new
            # prompt starts with both, so only the end-of-turn marker, the new message and the header are new.
            assert reuse.last_reused_tokens >= len(prev_prompt) + len(prev_reply) - 1
            new_part = smollm2.tokenizer.decode(reuse.last_prompt_ids[reuse.last_reused_tokens :])
            assert new_part == f"<|im_end|>\n<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n"


def test_cli_piped_chat_prints_one_reply_per_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llmlab", "chat", "--temperature", "0", "--max-new-tokens", "8"],
        input="Hi\nWhat is 2+2?\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(line.strip() for line in lines), proc.stdout
    assert ">>>" not in proc.stdout and proc.stderr == ""  # no prompts or banners when piped


# ---------------------------------------------------------------------------------------------------- tiny models

CORPUS = ["Hello there, how are you? I am fine. 你好 用户 助手 系统\n" * 30]
SPECIALS = {"pad": "<|pad|>", "bos": "<|im_start|>", "eos": "<|im_end|>", "unk": "<|endoftext|>"}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300, special_tokens=SPECIALS)


@pytest.fixture(scope="module")
def tiny_gpt(tokenizer) -> GPT:
    return tiny_models.tiny_gpt(0, vocab_size=tokenizer.vocab_size, block_size=256)


def test_context_window_drops_oldest_turns(tiny_gpt, tokenizer) -> None:
    session = ChatSession(
        tiny_gpt, tokenizer, template="chatml", system="Be brief.", max_new_tokens=4, context_tokens=80, seed=0
    )
    messages = [f"message number {i} hello there" for i in range(6)]
    for i, msg in enumerate(messages):
        session.send(msg)
        ids = session.last_prompt_ids
        assert len(ids) <= 80 - 4
        prompt = tokenizer.decode(ids)
        assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")  # the system prompt is never dropped
        assert prompt.endswith(f"<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n")  # nor the new turn
        kept = len(session.history) // 2 - 1 - session.dropped_turns  # earlier turns in the prompt
        assert all((m in prompt) == (j >= i - kept) for j, m in enumerate(messages[: i + 1]))
        if session.dropped_turns:  # dropping is minimal: one more old turn would not fit
            start = 2 * session.dropped_turns - 2
            assert len(session.render(session.history[start:-1])) > 80 - 4
    assert session.dropped_turns > 0 and "message number 0" not in tokenizer.decode(session.last_prompt_ids)
    assert len(session.history) == 12  # the full conversation is kept for /save

    too_long = "hello there " * 60
    with pytest.raises(ValueError, match="raise --context-tokens"):
        session.send(too_long)
    out, err = io.StringIO(), io.StringIO()
    assert run_chat(session, [too_long, "hello"], out=out, err=err) == (1, 1)  # the error does not end the chat
    assert "llmlab: error:" in err.getvalue() and len(session.history) == 14


def test_bad_settings_and_templates(tiny_gpt, tokenizer) -> None:
    with pytest.raises(ValueError, match="larger than the model's context"):
        ChatSession(tiny_gpt, tokenizer, context_tokens=1000)
    with pytest.raises(ValueError, match="max_new_tokens"):
        ChatSession(tiny_gpt, tokenizer, max_new_tokens=64, context_tokens=64)
    with pytest.raises(ValueError, match="--template chatml or --template zh"):
        resolve_template("auto", None)
    with pytest.raises(ValueError, match="unknown chat template"):
        resolve_template("vicuna", None)
    out, err = io.StringIO(), io.StringIO()
    run_chat(ChatSession(tiny_gpt, tokenizer, max_new_tokens=2), ["/frobnicate", "/save"], out=out, err=err)
    assert "unknown command /frobnicate" in err.getvalue() and "/save needs a file name" in err.getvalue()


class ScriptedLM(nn.Module):
    """A fake causal LM that answers every prompt with the same token ids (then repeats the last one)."""

    def __init__(self, vocab_size: int, script: list[int]) -> None:
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, block_size=256, n_layer=1, n_head=1, n_embd=4)
        self.dummy = nn.Parameter(torch.zeros(1))
        self.script = script
        self.prompt_len = 0

    def make_kv_cache(self, batch_size: int, max_len: int) -> KVCache:
        return KVCache(1, batch_size, max_len, 1, 4)

    def forward(self, input_ids: torch.Tensor, kv_cache: KVCache | None = None) -> ModelOutput:
        b, t = input_ids.shape
        past = kv_cache.seq_len if kv_cache is not None else 0
        if past == 0:
            self.prompt_len = t
        step = min(past + t - self.prompt_len, len(self.script) - 1)
        logits = torch.zeros(b, t, self.config.vocab_size)
        logits[:, -1, self.script[step]] = 1.0
        if kv_cache is not None:
            kv_cache.advance(t)
        return ModelOutput(logits=logits, loss=None, aux_loss=torch.zeros(()), attentions=None)


def test_text_stops_cut_the_reply_and_are_never_streamed(tokenizer) -> None:
    # zh: one turn per line, so the reply ends at the newline even though the model goes on.
    model = ScriptedLM(tokenizer.vocab_size, tokenizer.encode("你好 there\n用户: how are you"))
    session = ChatSession(model, tokenizer, template="zh", system="系统提示", max_new_tokens=30, temperature=0)
    assert session.stop_strings == ["\n"]
    streamed: list[str] = []
    assert session.send("你好", on_text=streamed.append) == "你好 there"
    assert "".join(streamed) == "你好 there" and session.last_generated < 30
    assert tokenizer.decode(session.last_prompt_ids) == "系统: 系统提示\n用户: 你好\n助手: "

    # A tokenizer without ChatML's special tokens spells <|im_end|> in pieces: it ends the turn as text.
    plain = train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300, special_tokens={"eos": "<|endoftext|>"})
    assert len(plain.encode("<|im_end|>")) > 1
    model = ScriptedLM(plain.vocab_size, plain.encode("fine<|im_end|> hello"))
    session = ChatSession(model, plain, template="chatml", max_new_tokens=30, temperature=0)
    assert session.stop_strings == ["<|im_end|>"]
    streamed.clear()
    assert session.send("x", on_text=streamed.append) == "fine" and "".join(streamed) == "fine"

    # The end-of-turn token itself stops generation at once and never shows up.
    model = ScriptedLM(tokenizer.vocab_size, tokenizer.encode("ok") + [tokenizer.eos_id] + tokenizer.encode("more"))
    session = ChatSession(model, tokenizer, template="chatml", max_new_tokens=30, temperature=0)
    assert session.send("x") == "ok" and session.last_generated == len(tokenizer.encode("ok")) + 1
