"""Pretraining wrappers around a BERT-family encoder (`llmlab.models.bert.Bert`): what each objective computes
from a batch, as one `nn.Module` (so the trainer calls one forward; DDP-ready).

- `MaskedLMPretraining`: MLM (Devlin et al. 2019, https://arxiv.org/abs/1810.04805) with the optional NSP /
  SOP head (ALBERT, Lan et al. 2020, https://arxiv.org/abs/1909.11942) on the pooler. The MLM head runs only on
  the masked positions ((M, C) -> (M, V), not (B, T, V)).
- `ElectraPretraining`: ELECTRA (Clark et al. 2020, https://arxiv.org/abs/2003.10555): a small MLM generator
  and the discriminator share the embedding module; the generator's samples replace the masked tokens and the
  discriminator predicts per token whether it was replaced; loss = generator MLM + lambda * discriminator BCE.
  Here the generator has the discriminator's width and fewer layers (the paper shrinks the width; sharing the
  whole embedding module then needs no projection).
- `Seq2SeqDenoising`: T5 span corruption / BART text infilling on an encoder-decoder (`llmlab.models.seq2seq`):
  the model's cross-entropy on the targets, plus the teacher-forced token accuracy.
- `ContrastiveEncoder`: sentence vectors for SimCSE / SupCon (Gao et al. 2021, https://arxiv.org/abs/2104.08821):
  the [CLS] state through an MLP (dense + tanh; dropped after training, as unsupervised SimCSE) or mean pooling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


@dataclass
class PretrainingOutput:
    """What one objective's forward returns (scalars detached except `loss`).

    Attributes:
        loss: the training loss.
        parts: named loss parts (e.g. ``mlm_loss``, ``sentence_loss``) as floats.
        counts: correct/total counts for accuracies (e.g. ``mlm_correct``, ``mlm_total``).
    """

    loss: torch.Tensor
    parts: dict[str, float]
    counts: dict[str, int]


def freeze_unused(encoder: nn.Module, *, mlm_head: bool, pooler: bool) -> None:
    """Stop training the parts of a `Bert` an objective does not use (they would get no gradient, and an optimizer
    state without them could not be resumed): the MLM head's own weights (not the tied word embedding), and/or the
    pooler with the NSP/SOP classifier."""
    word = encoder.embeddings.word_embeddings.weight
    parts = ([] if mlm_head else ["lm_head"]) + ([] if pooler else ["pooler", "sentence_classifier"])
    for name in parts:
        module = getattr(encoder, name, None)
        for param in module.parameters() if module is not None else []:
            if param is not word:
                param.requires_grad_(False)


def masked_lm_loss(encoder: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """MLM cross-entropy over the masked positions only; returns (loss, correct, total).

    Args:
        encoder: a `Bert` with an MLM head (``lm_head``).
        hidden: (B, T, C) last hidden states.
        labels: (B, T) original ids at masked positions, -100 elsewhere.
    """
    masked = labels != IGNORE_INDEX  # (B, T)
    if not bool(masked.any()):
        return hidden.sum() * 0.0, 0, 0
    logits = encoder.lm_head(hidden[masked])  # (M, V)
    target = labels[masked]  # (M,)
    loss = F.cross_entropy(logits.float(), target)
    correct = int((logits.argmax(-1) == target).sum())
    return loss, correct, int(target.numel())


class MaskedLMPretraining(nn.Module):
    """MLM, plus NSP/SOP when the encoder has a sentence head and `sentence_weight` > 0.

    Args:
        encoder: a `Bert` (``sentence_head=True`` for mlm_nsp / mlm_sop).
        sentence_weight: weight of the sentence-task cross-entropy (0 = MLM only).
    """

    def __init__(self, encoder: nn.Module, sentence_weight: float = 0.0) -> None:
        super().__init__()
        self.encoder, self.sentence_weight = encoder, sentence_weight
        freeze_unused(encoder, mlm_head=True, pooler=sentence_weight > 0)

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainingOutput:
        """`batch`: input_ids, attention_mask, token_type_ids, labels (B, T); sentence_labels (B,) optional."""
        out = self.encoder.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        mlm, correct, total = masked_lm_loss(self.encoder, out.last_hidden_state, batch["labels"])
        parts, counts = {"mlm_loss": float(mlm.detach())}, {"mlm_correct": correct, "mlm_total": total}
        loss = mlm
        if self.sentence_weight > 0 and "sentence_labels" in batch:
            logits = self.encoder.sentence_logits(out.pooler_output)  # (B, 2)
            sentence = F.cross_entropy(logits.float(), batch["sentence_labels"])
            loss = loss + self.sentence_weight * sentence
            parts["sentence_loss"] = float(sentence.detach())
            counts["sentence_correct"] = int((logits.argmax(-1) == batch["sentence_labels"]).sum())
            counts["sentence_total"] = int(batch["sentence_labels"].numel())
        return PretrainingOutput(loss, parts, counts)


def electra_replace(
    original: torch.Tensor, labels: torch.Tensor, masked_logits: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """ELECTRA's discriminator inputs: at every masked position (``labels != -100``, M of them, in row-major
    order) a token is sampled from the generator's softmax; a sample equal to the original counts as original.

    Args:
        original: (B, T) the unmasked ids.
        labels: (B, T) the MLM labels (-100 = not masked).
        masked_logits: (M, V) the generator's logits at the masked positions (no gradient flows through).
        generator: the torch.Generator of the sampling (CPU).

    Returns:
        (disc_inputs, replaced): (B, T) long each; replaced = 1 where the token differs from the original.
    """
    masked = labels != IGNORE_INDEX  # (B, T)
    disc_inputs = original.clone()
    if bool(masked.any()):
        probs = torch.softmax(masked_logits.detach().float(), dim=-1).cpu()  # (M, V)
        sampled = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (M,)
        disc_inputs[masked] = sampled.to(original.device)
    return disc_inputs, (disc_inputs != original).long()


class ElectraPretraining(nn.Module):
    """ELECTRA replaced-token detection with a generator sharing the discriminator's embeddings.

    Args:
        generator: a `Bert` with an MLM head (its ``embeddings`` are replaced by the discriminator's).
        discriminator: the `Bert` that is kept after training.
        discriminator_weight: lambda (the paper's 50).
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, discriminator_weight: float = 50.0) -> None:
        super().__init__()
        generator.embeddings = discriminator.embeddings  # shared token, position and type embeddings
        generator.tie_weights()
        freeze_unused(generator, mlm_head=True, pooler=False)
        freeze_unused(discriminator, mlm_head=False, pooler=False)
        self.generator, self.discriminator = generator, discriminator
        width = discriminator.config.hidden_size
        self.detector = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))
        self.discriminator_weight = discriminator_weight

    def forward(self, batch: dict[str, torch.Tensor], sampler: torch.Generator | None = None) -> PretrainingOutput:
        """`batch`: input_ids (masked), original_ids, attention_mask, token_type_ids, labels (B, T)."""
        mask, types, labels = batch["attention_mask"], batch["token_type_ids"], batch["labels"]
        gen_h = self.generator.encode(batch["input_ids"], mask, types).last_hidden_state  # (B, T, C)
        mlm, correct, total = masked_lm_loss(self.generator, gen_h, labels)
        masked = labels != IGNORE_INDEX
        disc_inputs, replaced = batch["original_ids"], torch.zeros_like(labels)
        if bool(masked.any()):
            logits = self.generator.lm_head(gen_h[masked]).detach()  # (M, V)
            disc_inputs, replaced = electra_replace(batch["original_ids"], labels, logits, sampler)
        disc_h = self.discriminator.encode(disc_inputs, mask, types).last_hidden_state  # (B, T, C)
        scores = self.detector(disc_h).squeeze(-1).float()  # (B, T)
        real = mask.bool()
        bce = F.binary_cross_entropy_with_logits(scores[real], replaced[real].float())
        loss = mlm + self.discriminator_weight * bce
        predicted = (scores[real] > 0).long()
        return PretrainingOutput(
            loss,
            {"mlm_loss": float(mlm.detach()), "disc_loss": float(bce.detach())},
            {
                "mlm_correct": correct, "mlm_total": total,
                "disc_correct": int((predicted == replaced[real]).sum()), "disc_total": int(real.sum()),
                "replaced": int(replaced[real].sum()),
            },
        )  # fmt: skip


class ContrastiveEncoder(nn.Module):
    """Sentence vectors from a `Bert`: the [CLS] state through an MLP (``cls``) or the masked mean (``mean``)."""

    def __init__(self, encoder: nn.Module, pooling: str = "cls") -> None:
        super().__init__()
        self.encoder, self.pooling = encoder, pooling
        freeze_unused(encoder, mlm_head=False, pooler=False)
        width = encoder.config.hidden_size
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.Tanh()) if pooling == "cls" else nn.Identity()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and mask -> (B, C) sentence vectors (not normalised)."""
        h = self.encoder.encode(input_ids, attention_mask).last_hidden_state  # (B, T, C)
        if self.pooling == "cls":
            return self.mlp(h[:, 0])
        weights = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        return (h * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class Seq2SeqDenoising(nn.Module):
    """Denoising loss of an encoder-decoder: ``model(input_ids, labels)`` (decoder inputs = labels shifted right).

    Args:
        model: a `Seq2SeqLM` (T5 or BART).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainingOutput:
        """`batch`: input_ids, attention_mask (B, S), labels (B, T) with -100 on padding."""
        out = self.model(batch["input_ids"], batch["labels"], attention_mask=batch["attention_mask"])
        labels = batch["labels"]
        real = labels != IGNORE_INDEX
        correct = int((out.logits.argmax(-1)[real] == labels[real]).sum())
        return PretrainingOutput(out.loss, {"token_loss": float(out.loss.detach())},
                                 {"token_correct": correct, "token_total": int(real.sum())})  # fmt: skip
