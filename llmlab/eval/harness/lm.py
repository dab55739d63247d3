"""The language-model side of the harness: `EvalLM` (what the runner asks of a model) and `ModelLM` (an llmlab
model + tokenizer behind it).

A task asks a model two kinds of questions, as in EleutherAI's lm-evaluation-harness (Gao et al.,
https://github.com/EleutherAI/lm-evaluation-harness; multiple-choice scoring by log-likelihood as in GPT-3,
Brown et al. 2020, https://arxiv.org/abs/2005.14165):

- `loglikelihood([(context, continuation), ...])`: log p(continuation | context) summed over the continuation's
  tokens, and whether greedy decoding would reproduce the continuation token by token;
- `generate_until([(context, {"until": [...], "max_new_tokens": n}), ...])`: the greedy continuation, cut at
  the first stop string.

`ModelLM` tokenises exactly as lm-eval's `HFLM` (0.4.x) does, so that the two agree on every score:

- `encode(context + continuation)` once, and the context's length from `encode(context)`, after moving the
  context's trailing whitespace onto the continuation (`_encode_pair`): the continuation's tokens are the
  whole text's tokens after the context's, so a word boundary tokenises as in running text;
- an empty context is replaced by the prefix token (BOS, else EOS);
- the scored sequence is `(context + continuation)[-(max_length + 1):][:-1]` (left truncation to the model's
  context), the last `len(continuation)` positions' next-token distributions are the scores;
- requests run sorted by length (longest first), right-padded, one forward pass per batch; only the
  continuation positions go through the LM head (`llmlab.models.heads.logits_at`).

Generation matches `HFLM.generate_until` string for string (tests/eval/harness/test_lm_eval_parity.py): the
context keeps its last `max_length - max_new_tokens` tokens, greedy decoding, EOS ends a continuation (lm-eval adds
the EOS text to `until`), special tokens are dropped when decoding, and the text is cut before the first stop
string. Differences: where lm-eval refuses `max_new_tokens >= max_length`, llmlab keeps the context's last token,
and an empty context becomes the prefix token.

`add_bos=False` matches lm-eval's default for tokenizers that add no special tokens (llmlab's BPE, SmolLM2);
`add_bos=True` matches `add_bos_token=True` (prepend BOS unless the text already starts with it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from llmlab.models.heads import logits_at
from llmlab.nn.virtual import context_length


@runtime_checkable
class EvalLM(Protocol):
    """What the harness runner needs from a model (one model, an ensemble, ...)."""

    name: str

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(context, continuation) -> (sum log p(continuation | context), whether greedy decoding reproduces it)."""
        ...

    def score(self, requests: list[tuple[str, str]]) -> list[tuple[torch.Tensor, bool]]:
        """Per (context, continuation): the continuation tokens' log-probabilities, (n_continuation_tokens,), whose
        sum is the loglikelihood, and is_greedy. Ensembles combine members at this level."""
        ...

    def generate_until(self, requests: list[tuple[str, dict]]) -> list[str]:
        """(context, {"until": [...], "max_new_tokens": n}) -> greedy continuation, cut at the first stop string."""
        ...

    def tokenizer_fingerprint(self) -> str:
        """Equal for models that share a tokenizer (ensembles check it)."""
        ...


def _sort_order(lengths: Sequence[int], keys: Sequence[tuple[int, ...]] | None = None) -> list[int]:
    """Indices sorted longest first (ties by token ids, as lm-eval's Collator), for tight batches."""
    if keys is None:
        return sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], keys[i]))


class ModelLM:
    """An llmlab causal LM and its tokenizer behind `EvalLM`.

    Args:
        model: an llmlab `GPT` or `Llama` (any decoder whose forward returns `.logits`).
        tokenizer: an llmlab `Tokenizer` (`encode` adds no special tokens; `bos_id`, `eos_id`, `decode`).
        batch_size: sequences per forward pass.
        name: a label for tables and messages.
        add_bos: prepend BOS to every encoded text (lm-eval's `add_bos_token=True`).
    """

    def __init__(
        self, model: nn.Module, tokenizer: Any, *, batch_size: int = 16, name: str = "model", add_bos: bool = False
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if add_bos and tokenizer.bos_id is None:
            raise ValueError(f"add_bos=True but the tokenizer of {name} has no BOS token; drop add_bos")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.name = name
        self.add_bos = add_bos
        self.max_length = context_length(model)
        self.device = next(model.parameters()).device

    # ---- tokenisation (lm-eval's HFLM.tok_encode / _encode_pair) ---------------------------------------------
    @property
    def prefix_token_id(self) -> int:
        """The token that stands for an empty context: BOS, else EOS."""
        tok = self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id
        if tok is None:
            raise ValueError(f"the tokenizer of {self.name} has neither BOS nor EOS; give every request a context")
        return tok

    def tok_encode(self, text: str) -> list[int]:
        """Token ids of `text`, with BOS in front when `add_bos` (unless the text already starts with it)."""
        ids = self.tokenizer.encode(text)
        if self.add_bos and (not ids or ids[0] != self.tokenizer.bos_id):
            ids = [self.tokenizer.bos_id, *ids]
        return ids

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) as lm-eval splits them (trailing context whitespace moves on)."""
        if context == "":
            cont = self.tokenizer.encode(continuation)
            prefix = self.prefix_token_id
            return ([prefix], cont) if not cont or cont[0] != prefix else (cont[:1], cont[1:])
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.tok_encode(context + continuation)
        context_ids = self.tok_encode(context)
        if not context_ids:  # an all-whitespace context moved onto the continuation: condition on the prefix token
            return [self.prefix_token_id], whole
        return context_ids, whole[len(context_ids) :]

    # ---- scoring ---------------------------------------------------------------------------------------------
    def _score_tokens(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[torch.Tensor, bool]]:
        """Per-token log-probs (n_cont,) and is_greedy for token-level (context, continuation) pairs."""
        for _context, cont in pairs:
            if not cont:
                raise ValueError("a continuation encodes to no tokens; every choice/target must be non-empty text")
            if len(cont) > self.max_length:
                raise ValueError(
                    f"a continuation of {len(cont)} tokens exceeds {self.name}'s context {self.max_length}"
                )
        inputs = [(ctx + cont)[-(self.max_length + 1) :][:-1] for ctx, cont in pairs]
        order = _sort_order([len(c) + len(t) for c, t in pairs], [tuple(c + t) for c, t in pairs])
        results: list[tuple[torch.Tensor, bool] | None] = [None] * len(pairs)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = max(len(inputs[i]) for i in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)  # right padding: causal attention ignores it
            select = torch.zeros(len(chunk), width, dtype=torch.bool)  # positions predicting continuation tokens
            for row, i in enumerate(chunk):
                n, n_cont = len(inputs[i]), len(pairs[i][1])
                ids[row, :n] = torch.tensor(inputs[i])
                select[row, n - n_cont : n] = True
            with torch.no_grad():
                logits = logits_at(self.model, select.to(self.device), ids.to(self.device))  # (N, V)
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()  # (N, V), rows in chunk order
            at = 0
            for i in chunk:
                cont = torch.tensor(pairs[i][1])  # (n_cont,)
                rows = logp[at : at + len(cont)]  # (n_cont, V)
                at += len(cont)
                token_lp = rows.gather(1, cont[:, None]).squeeze(1)  # (n_cont,)
                results[i] = (token_lp, bool((rows.argmax(-1) == cont).all()))
        return results  # type: ignore[return-value]

    def score(self, requests: list[tuple[str, str]]) -> list[tuple[torch.Tensor, bool]]:
        """(per continuation token log-probabilities (n_cont,), is_greedy) per (context, continuation)."""
        return self._score_tokens([self.encode_pair(ctx, cont) for ctx, cont in requests])

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(sum log p(continuation | context), is_greedy) per (context, continuation)."""
        return [(float(lp.sum()), greedy) for lp, greedy in self.score(requests)]

    # ---- generation ------------------------------------------------------------------------------------------
    def generate_until(self, requests: list[tuple[str, dict]]) -> list[str]:
        """Greedy continuations, cut before the first stop string of `until`; EOS ends a continuation too."""
        from llmlab.config.sampling import SamplingConfig
        from llmlab.generate import generate_batch

        outputs: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, (_, kwargs) in enumerate(requests):
            groups.setdefault(json.dumps(kwargs, sort_keys=True), []).append(i)
        eos = self.tokenizer.eos_id
        for key, members in groups.items():
            kwargs = json.loads(key)
            until = [s for s in kwargs.get("until", []) if s]
            max_new = int(kwargs.get("max_new_tokens", 256))
            keep = max(1, self.max_length - max_new)
            prompts = [self.tok_encode(requests[i][0])[-keep:] or [self.prefix_token_id] for i in members]
            sampling = SamplingConfig(max_new_tokens=max_new, temperature=0.0, stop=tuple(until))
            order = _sort_order([len(p) for p in prompts])
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                with torch.no_grad():
                    seqs = generate_batch(
                        self.model, [prompts[j] for j in chunk], sampling=sampling, eos_token_id=eos,
                        tokenizer=self.tokenizer,
                    )  # fmt: skip
                for j, seq in zip(chunk, seqs, strict=True):
                    new = seq[len(prompts[j]) :].tolist()
                    if eos is not None and eos in new:
                        new = new[: new.index(eos)]
                    outputs[members[j]] = cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), until)
        return outputs  # type: ignore[return-value]

    def tokenizer_fingerprint(self) -> str:
        """sha256 of the tokenizer's serialised vocabulary and rules (equal for identical tokenizers)."""
        backend = getattr(self.tokenizer, "backend", None)
        text = backend.to_str() if backend is not None else repr(sorted(self.tokenizer.get_vocab().items()))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """`text` up to (not including) the first occurrence of any stop string, as lm-eval cuts generations."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text
