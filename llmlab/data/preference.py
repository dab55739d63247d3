"""Preference pairs and prompts for alignment (``llmlab align rm|dpo|ppo|grpo``): JSONL -> token ids -> batches.

    pairs = load_preference_pairs("pairs.jsonl", tokenizer, template="chat", chat_template="chatml")
    stream = PairStream(pairs, batch_size=8, seed=0)
    batch = collate_pairs(stream.next_batch(), pad_id=0)
    # batch["input_ids"]: (2B, T) the B chosen rows, then the B rejected rows, right-padded

A pair row is ``{"prompt": ..., "chosen": ..., "rejected": ..., "margin"?: float}`` (Ouyang et al. 2022,
https://arxiv.org/abs/2203.02155; trl's "preference" format). Each of the three is a string, or a list of
``{"role", "content"}`` messages (trl's "conversational" format: the prompt is the conversation so far, chosen
and rejected are the assistant turn(s) that continue it). How a string prompt is rendered (`template`):

- ``chat``: as one user message with the chat template's generation prompt; the response is the assistant turn
  as the template writes it (with its end-of-turn marker, e.g. ``<|im_end|>``), so a model learns to stop.
- ``alpaca`` / ``alpaca-zh``: the Alpaca prompt (`llmlab.data.templates.alpaca_prompt`) and the bare response.
- ``plain``: prompt and response verbatim.

Message lists always use the chat template. Prompt and response are tokenized separately (the boundary is
exact). Truncation: a prompt longer than `max_prompt_length` tokens keeps its END (the words next to the
response); responses are cut so that prompt + response fits `max_length`. A prompt row (PPO/GRPO) is
``{"prompt": ...}`` plus any fields a reward function reads (e.g. ``answer``), kept in `PromptRecord.record`.

Data parallel (as `llmlab.data.sft.SFTBatchStream`): every rank walks the same seeded epoch permutations and
keeps its slice of each global batch of ``world_size * batch_size`` items.
"""

from __future__ import annotations

import hashlib
import random
import warnings
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from llmlab.data.templates import DEFAULT_CHAT_TEMPLATE, TEMPLATE_NAMES, alpaca_prompt
from llmlab.io import read_jsonl_records

Item = TypeVar("Item")


@dataclass
class PreferencePair:
    """One tokenized preference pair.

    Attributes:
        prompt_ids: the rendered prompt's ids (may be empty for a plain empty prompt).
        chosen_ids: the preferred response's ids (EOS or the end-of-turn marker included unless truncated).
        rejected_ids: the other response's ids.
        margin: the row's ``margin`` field (0.0 when absent): how much better chosen is (Llama 2's margin loss).
        line: line number in the JSONL file.
    """

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    margin: float = 0.0
    line: int = 0


@dataclass
class PromptRecord:
    """One tokenized prompt for sampling (PPO, GRPO, pair building, evaluation).

    Attributes:
        prompt_ids: the rendered prompt's ids (the end kept when truncated).
        text: the prompt as written in the file (a string, or the last user message of a conversation).
        record: the whole JSON object (reward functions read fields such as ``answer``).
        line: line number in the JSONL file.
    """

    prompt_ids: list[int]
    text: str
    record: dict[str, Any] = field(default_factory=dict)
    line: int = 0


# ---------------------------------------------------------------------------------------------- rendering
def _messages(value: Any, name: str) -> list[dict[str, str]]:
    """`value` checked as a list of {'role', 'content'} messages (ValueError naming the field)."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{name!r} must be a non-empty string or a non-empty list of {{'role', 'content'}} messages")
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"{name!r} message {i} must be an object with string 'role' and 'content'")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _field(record: Mapping[str, Any], name: str, *, allow_empty: bool) -> str | list[dict[str, str]]:
    if name not in record:
        raise ValueError(f"missing {name!r} field")
    value = record[name]
    if isinstance(value, str):
        if not value and not allow_empty:
            raise ValueError(f"{name!r} is empty")
        return value
    return _messages(value, name)


def render_prompt(prompt: str | list[dict[str, str]], template: str, chat_template: str | None) -> str:
    """The prompt text the model reads before its response (see the module docstring)."""
    if isinstance(prompt, list) or template == "chat":
        from llmlab.tokenizers.chat import apply_chat_template

        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        return apply_chat_template(messages, chat_template or DEFAULT_CHAT_TEMPLATE, add_generation_prompt=True)
    if template == "plain":
        return prompt
    return alpaca_prompt(prompt, "", template)


def render_response(
    prompt: str | list[dict[str, str]],
    response: str | list[dict[str, str]],
    template: str,
    chat_template: str | None,
) -> str:
    """The response text that follows `render_prompt(prompt, ...)` (chat: the assistant turn(s) with markup)."""
    chat = isinstance(prompt, list) or isinstance(response, list) or template == "chat"
    if not chat:
        assert isinstance(response, str)
        return response
    from llmlab.tokenizers.chat import apply_chat_template

    ct = chat_template or DEFAULT_CHAT_TEMPLATE
    before = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    after = response if isinstance(response, list) else [{"role": "assistant", "content": response}]
    head = apply_chat_template(before, ct, add_generation_prompt=True)
    full = apply_chat_template(before + after, ct, add_generation_prompt=False)
    if not full.startswith(head):
        raise ValueError(
            "the chat template does not render the prompt as a prefix of prompt + response; use "
            "data.template=alpaca/plain or another chat template"
        )
    return full[len(head) :]


def _check_template(template: str) -> None:
    if template not in TEMPLATE_NAMES:
        raise ValueError(f"unknown template {template!r}; choose one of: {', '.join(TEMPLATE_NAMES)}")


def _check_file(path: str | Path, what: str) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")


# ---------------------------------------------------------------------------------------------- tokenizing
def _encode_prompt(tokenizer: Any, text: str, max_prompt_length: int, add_bos: bool) -> list[int]:
    ids = ([tokenizer.bos_id] if add_bos and tokenizer.bos_id is not None else []) + list(tokenizer.encode(text))
    return ids[-max_prompt_length:] if len(ids) > max_prompt_length else ids


def _encode_response(tokenizer: Any, text: str, room: int, add_eos: bool) -> list[int]:
    ids = list(tokenizer.encode(text))
    eos = tokenizer.eos_id
    if add_eos and eos is not None and eos not in ids:
        ids.append(eos)
    return ids[:room]


def encode_pair(
    tokenizer: Any,
    prompt: str | list[dict[str, str]],
    response: str | list[dict[str, str]],
    *,
    template: str = "chat",
    chat_template: str | None = None,
    max_length: int = 256,
    max_prompt_length: int = 128,
    add_bos: bool = False,
    add_eos: bool = True,
) -> tuple[list[int], list[int]]:
    """(prompt_ids, response_ids) of one prompt and response, rendered and truncated as in training.

    The one tokenization of a (prompt, response): `load_preference_pairs` builds pairs with it and
    `llmlab.align.reward_model.RewardScorer.score` scores sampled completions with it.
    """
    prompt_ids = _encode_prompt(tokenizer, render_prompt(prompt, template, chat_template), max_prompt_length, add_bos)
    text = render_response(prompt, response, template, chat_template)
    return prompt_ids, _encode_response(tokenizer, text, max_length - len(prompt_ids), add_eos)


def load_preference_pairs(
    path: str | Path,
    tokenizer: Any,
    *,
    template: str = "chat",
    chat_template: str | None = None,
    max_length: int = 256,
    max_prompt_length: int = 128,
    add_bos: bool = False,
    add_eos: bool = True,
) -> list[PreferencePair]:
    """Read, render and tokenize a preference JSONL file (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``<path> line N: missing 'rejected' field`` (bad JSON, a missing, empty or mistyped field,
            a non-numeric margin), an empty file, or impossible lengths.
    """
    _check_file(path, "preference data")
    _check_template(template)
    if not 1 <= max_prompt_length < max_length:
        raise ValueError(f"need 1 <= max_prompt_length < max_length, got {max_prompt_length} and {max_length}")
    opts = dict(template=template, chat_template=chat_template, max_length=max_length,
                max_prompt_length=max_prompt_length, add_bos=add_bos, add_eos=add_eos)  # fmt: skip
    pairs, same = [], 0
    fix = "each line must be a JSON object with 'prompt', 'chosen' and 'rejected'"
    for lineno, record in read_jsonl_records(path, fix):
        try:
            if not isinstance(record, Mapping):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            prompt = _field(record, "prompt", allow_empty=True)
            chosen = _field(record, "chosen", allow_empty=False)
            rejected = _field(record, "rejected", allow_empty=False)
            margin = record.get("margin", 0.0)
            if isinstance(margin, bool) or not isinstance(margin, (int, float)):
                raise ValueError(f"'margin' must be a number, got {type(margin).__name__}")
            chosen_pair = encode_pair(tokenizer, prompt, chosen, **opts)
            rejected_pair = encode_pair(tokenizer, prompt, rejected, **opts)
        except ValueError as e:
            raise ValueError(f"{path} line {lineno}: {e}") from None
        same += chosen_pair[1] == rejected_pair[1]
        pairs.append(PreferencePair(chosen_pair[0], chosen_pair[1], rejected_pair[1], float(margin), lineno))
    if not pairs:
        raise ValueError(f"{path} holds no pairs; add JSONL lines such as {{'prompt', 'chosen', 'rejected'}}")
    if same:
        warnings.warn(f"{path}: {same} pair(s) have chosen == rejected (no preference signal)", stacklevel=2)
    return pairs


def load_prompt_records(
    path: str | Path,
    tokenizer: Any,
    *,
    template: str = "chat",
    chat_template: str | None = None,
    max_prompt_length: int = 128,
    add_bos: bool = False,
) -> list[PromptRecord]:
    """Read, render and tokenize a prompt JSONL file: ``{"prompt": str | messages, ...}`` per line.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``<path> line N: ...`` for a malformed line, or an empty file.
    """
    _check_file(path, "prompt")
    _check_template(template)
    if max_prompt_length < 1:
        raise ValueError(f"max_prompt_length must be >= 1, got {max_prompt_length}")
    out = []
    for lineno, record in read_jsonl_records(path, "each line must be a JSON object with a 'prompt'"):
        try:
            if not isinstance(record, Mapping):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            prompt = _field(record, "prompt", allow_empty=False)
            ids = _encode_prompt(tokenizer, render_prompt(prompt, template, chat_template), max_prompt_length, add_bos)
            if not ids:
                raise ValueError("the prompt renders to no tokens; write a prompt or set data.add_bos=true")
        except ValueError as e:
            raise ValueError(f"{path} line {lineno}: {e}") from None
        text = prompt if isinstance(prompt, str) else next(
            (m["content"] for m in reversed(prompt) if m["role"] == "user"), prompt[-1]["content"]
        )  # fmt: skip
        out.append(PromptRecord(ids, text, dict(record), lineno))
    if not out:
        raise ValueError(f"{path} holds no prompts; add JSONL lines such as {{'prompt': '...'}}")
    return out


# ---------------------------------------------------------------------------------------------- batching
def pad_right(rows: Sequence[Sequence[int]], starts: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token rows: `input_ids`, `attention_mask` and `response_mask` (1 from `starts[i]` on), (N, T).

    The one right-padding implementation of the alignment data (`llmlab.align.rollout` builds on it).
    """
    width = max(len(r) for r in rows)
    n = len(rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    resp = torch.zeros((n, width), dtype=torch.long)
    for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
        if not row:
            raise ValueError(f"row {i} is empty; every row needs at least one token")
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        attn[i, : len(row)] = 1
        resp[i, start : len(row)] = 1
    return {"input_ids": ids, "attention_mask": attn, "response_mask": resp}


def collate_pairs(pairs: Sequence[PreferencePair], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch of B pairs as 2B right-padded rows: the B chosen rows FIRST, then the B rejected rows.

    Returns:
        `input_ids`, `attention_mask`, `response_mask` (1 on response tokens): (2B, T) long; `margin`: (B,) f32.
    """
    if not pairs:
        raise ValueError("collate_pairs needs at least one pair")
    rows = [p.prompt_ids + p.chosen_ids for p in pairs] + [p.prompt_ids + p.rejected_ids for p in pairs]
    starts = [len(p.prompt_ids) for p in pairs] * 2
    batch = pad_right(rows, starts, pad_id)
    batch["margin"] = torch.tensor([p.margin for p in pairs], dtype=torch.float32)
    return batch


def split_held_out(items: Sequence[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """(train, val): a seeded random `fraction` of `items` held out (at least one when fraction > 0 and n > 1).

    Raises:
        ValueError: fraction outside [0, 1), or nothing left to train on.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    n = len(items)
    n_val = 0 if fraction == 0 or n < 2 else max(1, round(n * fraction))
    if n - n_val < 1:
        raise ValueError(f"{n} item(s) leave nothing to train on after holding out {fraction:.0%}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


class ItemStream(Generic[Item]):
    """Endless batches of items in shuffled epochs (a fresh seeded permutation per epoch).

    Every rank walks the same permutations and keeps items ``[rank * batch_size, (rank + 1) * batch_size)`` of
    each global batch of ``world_size * batch_size`` items, so N ranks see what one process with batch
    ``N * batch_size`` sees. A batch that crosses an epoch's end continues in the next epoch's permutation.

    Args:
        items: the items (at least one).
        batch_size: items per batch on this rank.
        seed: the seed of the permutations (the same on every rank).
        rank / world_size: this process and the number of data-parallel processes.
    """

    def __init__(self, items: Sequence[Item], batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if not items:
            raise ValueError("cannot stream an empty data set")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.items, self.batch_size, self.seed = items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position, self.batches = 0, 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.items)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def _draw(self) -> int:
        if self.position == len(self._order):
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        self.position += 1
        return self._order[self.position - 1]

    def next_batch(self) -> list[Item]:
        """This rank's items of the next global batch."""
        global_batch = [self._draw() for _ in range(self.batch_size * self.world_size)]
        self.batches += 1
        b = self.batch_size
        return [self.items[i] for i in global_batch[self.rank * b : (self.rank + 1) * b]]

    def state_dict(self) -> dict[str, int]:
        """The stream position (plain ints; the permutation is recomputed from the seed)."""
        return {"epoch": self.epoch, "position": self.position, "batches": self.batches, "size": len(self.items)}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue exactly where `state_dict` was taken (ValueError when the data set changed size)."""
        if int(state["size"]) != len(self.items):
            raise ValueError(f"the stream was saved over {state['size']} items but now has {len(self.items)}")
        self.epoch, self.position, self.batches = int(state["epoch"]), int(state["position"]), int(state["batches"])
        self._order = self._permutation(self.epoch)


class PairStream(ItemStream[PreferencePair]):
    """`ItemStream` of preference pairs: ``next_batch() -> list[PreferencePair]`` (collate with `collate_pairs`)."""


class PromptStream(ItemStream[PromptRecord]):
    """`ItemStream` of prompt records: ``next_batch() -> list[PromptRecord]``."""


def pairs_fingerprint(pairs: Sequence[Any]) -> str:
    """A SHA-256 of every pair's tokens and margin: tells whether the training data changed since a checkpoint."""
    h = hashlib.sha256()
    for p in pairs:
        for ids in (p.prompt_ids, p.chosen_ids, p.rejected_ids):
            h.update(array("q", ids).tobytes())
            h.update(len(ids).to_bytes(8, "little"))
        h.update(repr(float(p.margin)).encode())
    return h.hexdigest()
