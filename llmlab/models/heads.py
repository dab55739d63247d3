"""Task heads on top of any llmlab decoder (GPT or Llama), and label scoring for classification.

Two ways to classify text with a causal LM:

1. As instruction following: the label words are the response, and a prediction is the label whose tokens
   the model finds most likely after the prompt (`label_log_likelihoods`), as in GPT-3's multiple-choice
   evaluation (Brown et al. 2020, https://arxiv.org/abs/2005.14165).
2. With a sequence-classification head (`SequenceClassifier`): the final hidden state of the last real
   (non-padding) token goes through a linear layer `score` to `num_labels` logits, exactly as Hugging Face's
   `*ForSequenceClassification` (GPT-1 already classified from the last token: Radford et al. 2018,
   https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf).

The classifier asks the llmlab model for its final hidden states (after the final norm) with
`output_hidden_states=True` (and `logits_to_keep=1`, so the unused LM head runs on one position only).
`HiddenStateCapture` does the same with a forward hook on the final norm, for models without that flag.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def final_hidden_module(model: nn.Module) -> nn.Module:
    """The module whose output is the final hidden state (B, T, C) that feeds the LM head.

    That is the model's `final_norm`, or its last layer for post-norm models (whose `final_norm` is Identity
    because their blocks end with a norm).
    """
    norm = getattr(model, "final_norm", None)
    if norm is None:
        raise ValueError(f"{type(model).__name__} has no final_norm; heads need an llmlab model")
    return model.layers[-1] if isinstance(norm, nn.Identity) else norm


class HiddenStateCapture:
    """`with HiddenStateCapture(model) as cap: model(ids)` -> `cap.hidden` is the final hidden state (B, T, C)."""

    def __init__(self, model: nn.Module) -> None:
        self.module = final_hidden_module(model)
        self.hidden: torch.Tensor | None = None
        self._handle = None

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
        self.hidden = output[0] if isinstance(output, tuple) else output

    def __enter__(self) -> HiddenStateCapture:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def logits_at(
    model: nn.Module,
    select: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    call: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Logits (N, V) at the N positions where `select` (B, T) is True, in row-major order.

    Only those positions go through the LM head: the model returns its final hidden states
    (`output_hidden_states=True`, with `logits_to_keep=1` so its own head runs on one position only) and
    `lm_head` maps the N selected ones, (N, C) -> (N, V), instead of all B * T. With a large vocabulary the full
    logits are a large part of a forward/backward pass (a fifth of a SmolLM2 training step), while a loss or a
    score often needs a few positions per row. Models without `lm_head` or `output_hidden_states` compute every
    position's logits and pick.

    Args:
        model: an llmlab causal LM (its `lm_head` is used).
        select: (B, T) bool, the positions whose logits are wanted.
        input_ids: (B, T) token ids.
        call: what runs the forward pass, when it is not `model` itself (e.g. its DDP wrapper).
        **kwargs: more forward arguments (attention_mask, position_ids, ...).
    """
    call = call or model
    head = getattr(model, "lm_head", None)
    if not isinstance(head, nn.Module) or "output_hidden_states" not in inspect.signature(model.forward).parameters:
        return call(input_ids, **kwargs).logits[select]  # (N, V)
    hidden = call(input_ids, output_hidden_states=True, logits_to_keep=1, **kwargs).hidden_states  # (B, T, C)
    return head(hidden[select])  # (N, V)


@dataclass
class ClassifierOutput:
    """`logits` (B, num_labels) and the mean cross-entropy `loss` when labels were given."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None


class SequenceClassifier(nn.Module):
    """A decoder plus a linear head on the last non-padding token (HF `*ForSequenceClassification`).

    Args:
        base: an llmlab `GPT` or `Llama` (kept as `self.base`; its LM head is computed but unused).
        num_labels: number of classes (1: a scalar score, e.g. a reward model, `llmlab.align.reward_model`).
        pad_id: padding id, used to find the last real token when no attention_mask is given.
    """

    def __init__(self, base: nn.Module, num_labels: int, pad_id: int | None = None) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.base = base
        self.config = base.config
        self.num_labels = num_labels
        self.pad_id = pad_id
        width = base.embed_tokens.embedding_dim
        p = next(base.parameters())
        self.score = nn.Linear(width, num_labels, bias=False, device=p.device, dtype=p.dtype)
        nn.init.normal_(self.score.weight, std=0.02)

    def last_token_index(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(B,) index of the rightmost real token of each row (right or left padding), as HF computes it.

        Real tokens are those with `attention_mask == 1`, else those that are not `pad_id`; without either,
        the last position. A row with no real token reads position 0.
        """
        b, t = input_ids.shape
        if attention_mask is not None:
            real = attention_mask.long()
        elif self.pad_id is not None:
            real = (input_ids != self.pad_id).long()
        else:
            return torch.full((b,), t - 1, device=input_ids.device)
        positions = torch.arange(t, device=input_ids.device)  # (T,)
        return (positions * real).argmax(dim=-1)  # (B,)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """input_ids (B, T) right- or left-padded, labels (B,) class ids -> ClassifierOutput."""
        out = self.base(input_ids, attention_mask=attention_mask, output_hidden_states=True, logits_to_keep=1)
        hidden = out.hidden_states  # (B, T, C)
        idx = self.last_token_index(input_ids, attention_mask)  # (B,)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]  # (B, C)
        logits = self.score(pooled.to(self.score.weight.dtype))  # (B, num_labels)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return ClassifierOutput(logits=logits, loss=loss)


@torch.no_grad()
def score_labels(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    label_ids: Sequence[Sequence[int]],
    batch_size: int = 16,
) -> torch.Tensor:
    """log p(label | prompt) for every prompt and candidate label: the sum of the label tokens' log-probabilities.

    Many prompts share a forward pass (right-padded rows), and only the scored positions go through the LM head
    (`logits_at`). When every label is a single token, one row per prompt suffices (the next-token distribution
    after the prompt); otherwise each (prompt, label) pair is a row.

    Args:
        model: an llmlab causal LM.
        prompts: the prompts' token ids.
        label_ids: the tokens of each candidate label (e.g. `tokenizer.encode(word)`).
        batch_size: rows per forward pass.

    Returns:
        (num_prompts, num_labels) float tensor on the CPU; `argmax(-1)` is each prompt's predicted label.
    """
    device = next(model.parameters()).device
    single = all(len(lab) == 1 for lab in label_ids)
    jobs: list[tuple[int, int, list[int]]] = []  # (prompt index, label index or -1, token ids)
    for i, p in enumerate(prompts):
        jobs += [(i, -1, list(p))] if single else [(i, j, list(p) + list(lab)) for j, lab in enumerate(label_ids)]
    scores = torch.zeros(len(prompts), len(label_ids))
    label_index = torch.tensor([lab[0] for lab in label_ids]) if single else None
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        t = max(len(row) for _, _, row in chunk)
        ids = torch.zeros(len(chunk), t, dtype=torch.long)
        mask = torch.zeros(len(chunk), t, dtype=torch.long)
        select = torch.zeros(len(chunk), t, dtype=torch.bool)  # the positions that predict label tokens
        for r, (i, j, row) in enumerate(chunk):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
            n = len(prompts[i])
            select[r, n - 1 : n - 1 + (1 if single else len(label_ids[j]))] = True
        with torch.no_grad():
            logits = logits_at(model, select.to(device), ids.to(device), attention_mask=mask.to(device))  # (M, V)
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()  # rows in job order (row-major selection)
        at = 0
        for i, j, _row in chunk:
            if label_index is not None:
                scores[i] = logp[at, label_index]
                at += 1
            else:
                lab = torch.tensor(label_ids[j])
                scores[i, j] = logp[at : at + len(lab)].gather(1, lab[:, None]).sum()
                at += len(lab)
    return scores


def label_log_likelihoods(
    model: nn.Module, prompt_ids: Sequence[int], label_ids: Sequence[Sequence[int]]
) -> torch.Tensor:
    """log p(label | prompt) for each candidate label of one prompt: `score_labels` for a single prompt.

    Returns:
        (num_labels,) float tensor; `argmax` is the predicted label.
    """
    return score_labels(model, [prompt_ids], label_ids)[0]
