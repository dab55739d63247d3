"""Task heads on an encoder (the Bert family) or, for sequence-level tasks, a decoder: the models behind
`llmlab finetune task=...`.

Heads and losses follow Hugging Face's `BertFor*` classes (same head parameter names, so a head's weights copy
over one-to-one and the logits can be compared on the same weights):

    sequence_classification  pooler (or [CLS] state) -> dropout -> `classifier` (C -> L); cross-entropy
    regression               the same with L = 1; mean squared error
    token_classification     every state -> dropout -> `classifier` (C -> L); cross-entropy, -100 ignored
    question_answering       every state -> `qa_outputs` (C -> 2) = start, end logits; the mean of the two
                             cross-entropies (positions outside the sequence are ignored, as HF clamps them)
    multiple_choice          (B, K, T) rows flattened -> pooler -> dropout -> `classifier` (C -> 1) -> (B, K);
                             cross-entropy over the K choices
    relation_classification  the states at the [E1] and [E2] start markers concatenated (2C) -> dropout ->
                             `classifier` (2C -> L) (Baldini Soares et al. 2019, "Matching the Blanks",
                             https://arxiv.org/abs/1906.03158, "entity markers - entity start")

An encoder is a model with ``is_encoder = True`` and ``encode(input_ids, attention_mask, token_type_ids)`` giving
``last_hidden_state`` (B, T, C) and ``pooler_output`` (B, C) or None (then the [CLS] state is used). The
sequence-level heads can read another sentence vector instead of the pooler: `sentence_pool(hidden, mask)`
(e.g. mean pooling, what sentence-transformers models such as all-MiniLM-L6-v2 were trained with; the recipe
passes `llmlab.embeddings.pooling.pool`). A decoder (GPT, Llama) supports the two sequence-level
tasks through `llmlab.models.heads.SequenceClassifier` (a linear `score` on the last real token).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.models.heads import SequenceClassifier

IGNORE_INDEX = -100
TASK_HEADS = (
    "sequence_classification",
    "regression",
    "token_classification",
    "question_answering",
    "multiple_choice",
    "relation_classification",
)
DECODER_TASKS = ("sequence_classification", "regression")


@dataclass
class TaskOutput:
    """`logits`: (B, L) sequence/relation classes, (B,) regression scores, (B, T, L) token classes, (B, K)
    choices, or (B, T, 2) QA start/end logits (`start_logits`/`end_logits`, each (B, T)); `loss` when labels
    were given."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None

    @property
    def start_logits(self) -> torch.Tensor:
        return self.logits[..., 0]

    @property
    def end_logits(self) -> torch.Tensor:
        return self.logits[..., 1]


def hidden_size(model: nn.Module) -> int:
    """The width of a model's hidden states (its token embedding width)."""
    return int(model.embed_tokens.embedding_dim)


def resize_token_embeddings(model: nn.Module, new_size: int) -> None:
    """Grow the token embedding of `model` to `new_size` rows (for added tokens such as entity markers).

    New rows start at the mean of the old ones (what transformers does since v4.46, so new tokens start
    "average" instead of random). Every module sharing the old embedding matrix (a tied MLM/LM output layer)
    is given the new one, and its bias grows with zeros; `config.vocab_size` is updated.
    """
    embedding: nn.Embedding = model.embed_tokens
    old = embedding.weight
    n_old = old.shape[0]
    if new_size <= n_old:
        return
    with torch.no_grad():
        extra = old.mean(dim=0, keepdim=True).expand(new_size - n_old, -1)
        new_weight = nn.Parameter(torch.cat([old.detach(), extra], dim=0), requires_grad=old.requires_grad)
    grown: dict[int, nn.Parameter] = {id(old): new_weight}  # old parameter -> its grown copy (ties kept)

    def projects_with_old(module: nn.Module) -> bool:  # the module (or a direct child) multiplies by `old`
        return any(getattr(m, "weight", None) is old for m in (module, *module.children()))

    for module in model.modules():
        for name, p in list(module._parameters.items()):
            # `old` itself, or the vocabulary bias of the tied output layer (never a LayerNorm that happens to be
            # as wide as the vocabulary)
            is_vocab_bias = p is not None and p.ndim == 1 and p.shape[0] == n_old and projects_with_old(module)
            if p is None or not (p is old or is_vocab_bias):
                continue
            if id(p) not in grown:  # an output bias over the vocabulary: new tokens start at 0
                grown[id(p)] = nn.Parameter(torch.cat([p.detach(), p.new_zeros(new_size - n_old)]), p.requires_grad)
            module._parameters[name] = grown[id(p)]
        if isinstance(module, nn.Embedding) and module.weight is new_weight:
            module.num_embeddings = new_size
        if isinstance(module, nn.Linear) and module.weight is new_weight:
            module.out_features = new_size
    if hasattr(model, "config") and hasattr(model.config, "vocab_size"):
        model.config.vocab_size = new_size


class TaskHeadModel(nn.Module):
    """An encoder (or, for sequence-level tasks, a decoder) with one task head (see the module docstring).

    Args:
        base: an llmlab Bert (`is_encoder`) or GPT/Llama.
        task: one of `TASK_HEADS`.
        num_labels: classes (ignored for regression, QA and multiple choice).
        dropout: dropout before the head (HF's `hidden_dropout_prob`, 0.1).
        pad_id: decoders only: the padding id (`SequenceClassifier`).
        sentence_pool: encoders: (hidden (B, T, C), attention_mask (B, T)) -> (B, C) sentence vectors for the
            sequence-level heads (sequence classification, regression, multiple choice) instead of the pooler.
    """

    def __init__(
        self,
        base: nn.Module,
        task: str,
        num_labels: int = 2,
        dropout: float = 0.1,
        pad_id: int | None = None,
        sentence_pool: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.sentence_pool = sentence_pool
        if task not in TASK_HEADS:
            raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASK_HEADS)}")
        self.task = task
        self.is_encoder = bool(getattr(base, "is_encoder", False))
        if not self.is_encoder and task not in DECODER_TASKS:
            raise ValueError(
                f"task {task} needs an encoder (a Bert-family base); decoders support {', '.join(DECODER_TASKS)}"
            )
        out = {"regression": 1, "question_answering": 2, "multiple_choice": 1}.get(task, num_labels)
        if out < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.num_labels = out
        if not self.is_encoder:  # the decoder path: `score` on the last real token
            self.decoder = SequenceClassifier(base, out, pad_id)
            return
        self.encoder = base
        width = hidden_size(base)
        p = next(base.parameters())
        self.dropout = nn.Dropout(dropout)
        kw = {"device": p.device, "dtype": p.dtype}
        if task == "question_answering":
            self.qa_outputs = nn.Linear(width, 2, **kw)
        else:
            fan_in = 2 * width if task == "relation_classification" else width
            self.classifier = nn.Linear(fan_in, out, **kw)
        for head in (m for m in (getattr(self, "qa_outputs", None), getattr(self, "classifier", None)) if m):
            nn.init.normal_(head.weight, std=0.02)  # BERT's initializer_range
            nn.init.zeros_(head.bias)

    @property
    def base(self) -> nn.Module:
        """The encoder or decoder under the head."""
        return self.encoder if self.is_encoder else self.decoder.base

    def _pooled(self, out: object, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.sentence_pool is not None:
            h = out.last_hidden_state  # (B, T, C)
            mask = attention_mask if attention_mask is not None else h.new_ones(h.shape[:2])
            return self.sentence_pool(h, mask)  # (B, C)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]  # (B, C)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        marker_positions: torch.Tensor | None = None,
    ) -> TaskOutput:
        """input_ids (B, T), or (B, K, T) for multiple choice; labels: (B,) classes / (B,) float scores /
        (B, T) token classes / (B, 2) QA start and end positions; marker_positions (B, 2) for relations."""
        if not self.is_encoder:
            logits = self.decoder(input_ids, attention_mask=attention_mask).logits  # (B, L)
            return self._with_loss(logits.squeeze(-1) if self.task == "regression" else logits, labels)
        choices = input_ids.shape[1] if self.task == "multiple_choice" else 0
        if choices:  # (B, K, T) -> (B * K, T)
            input_ids, attention_mask, token_type_ids = (
                None if x is None else x.reshape(-1, x.shape[-1]) for x in (input_ids, attention_mask, token_type_ids)
            )
        out = self.encoder.encode(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        h = out.last_hidden_state  # (B, T, C)
        if self.task == "question_answering":
            logits = self.qa_outputs(h)  # (B, T, 2)
        elif self.task == "token_classification":
            logits = self.classifier(self.dropout(h))  # (B, T, L)
        elif self.task == "relation_classification":
            if marker_positions is None:
                raise ValueError("relation classification needs marker_positions (B, 2): where [E1] and [E2] are")
            rows = torch.arange(h.shape[0], device=h.device)[:, None]  # (B, 1)
            pair = h[rows, marker_positions.to(h.device)]  # (B, 2, C)
            logits = self.classifier(self.dropout(pair.reshape(h.shape[0], -1)))  # (B, L)
        else:
            logits = self.classifier(self.dropout(self._pooled(out, attention_mask)))  # (B, L) or (B * K, 1)
            if choices:
                logits = logits.view(-1, choices)  # (B, K)
            elif self.task == "regression":
                logits = logits.squeeze(-1)  # (B,)
        return self._with_loss(logits, labels)

    def _with_loss(self, logits: torch.Tensor, labels: torch.Tensor | None) -> TaskOutput:
        if labels is None:
            return TaskOutput(logits)
        labels = labels.to(logits.device)
        if self.task == "regression":
            loss = F.mse_loss(logits.float(), labels.float())
        elif self.task == "question_answering":
            t = logits.shape[1]
            positions = labels.clamp(0, t)  # HF: positions past the sequence are ignored
            loss = sum(F.cross_entropy(logits[..., k].float(), positions[:, k], ignore_index=t) for k in (0, 1)) / 2
        else:
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return TaskOutput(logits, loss)
