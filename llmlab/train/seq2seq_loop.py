"""Seq2seq fine-tuning (T5, BART) as a specialisation of the one `Trainer` (`llmlab.train.trainer`).

(a) Batches come from `llmlab.data.seq2seq.Seq2SeqBatchStream` (source ids + mask, labels = target ids with
-100 padding). (b) The loss of a micro-batch is the mean cross-entropy over its target tokens (the decoder reads
`shift_right(labels)`; nothing is learned on the source), and `loss_units` is the number of target tokens, so a
step with several micro-batches is the token-mean of the step. (c) Checkpoints hold the trainable parameters
(`trainable.safetensors`, as SFT's) and `trainer_state.pt`.

Evaluation: `val_loss` (token-mean over the held-out pairs) during training, and `generation_metrics`
(ROUGE-L, BLEU, chrF of `llmlab.eval.metrics` on decoded greedy or beam outputs of `seq2seq_generate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.data.seq2seq import IGNORE_INDEX, Seq2SeqBatchStream, Seq2SeqExample, collate_seq2seq
from llmlab.eval.metrics.text import bleu, chrf, rouge
from llmlab.generate.seq2seq import seq2seq_generate
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
from llmlab.train.sft_loop import StreamTrainer
from llmlab.train.trainer import to_device


@torch.no_grad()
def seq2seq_val_loss(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device) -> float:
    """Mean cross-entropy per target token over held-out batches (NaN when there are none)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        batch = to_device(batch, device)
        out = model(batch["input_ids"], batch["labels"], attention_mask=batch["attention_mask"])
        n = int((batch["labels"] != IGNORE_INDEX).sum())
        total, count = total + float(out.loss) * n, count + n
    model.train(was_training)
    return total / count if count else math.nan


@torch.no_grad()
def generate_texts(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[Seq2SeqExample],
    *,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 32,
) -> list[str]:
    """Decoded outputs (special tokens dropped) of `seq2seq_generate` for each example's source."""
    device = next(model.parameters()).device
    pad = model.config.pad_token_id
    texts: list[str] = []
    for i in range(0, len(examples), batch_size):
        batch = collate_seq2seq(examples[i : i + batch_size], pad)
        ids = seq2seq_generate(
            model, batch["input_ids"].to(device), batch["attention_mask"].to(device), max_new_tokens=max_new_tokens,
            num_beams=num_beams, length_penalty=length_penalty,
        )  # fmt: skip
        texts.extend(tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids)
    return texts


def text_metrics(hypotheses: Sequence[str], references: Sequence[str], lang: str = "en") -> dict[str, float]:
    """ROUGE-L F (0-100), BLEU and chrF (sacrebleu, 0-100) of hypotheses against one reference each."""
    return {
        "rougeL": 100 * rouge(hypotheses, references, lang)["rougeL"],
        "bleu": bleu(hypotheses, references, lang),
        "chrf": chrf(hypotheses, references, lang),
    }


class Seq2SeqTrainer(StreamTrainer):
    """Fine-tunes (or trains from scratch) an encoder-decoder on `Seq2SeqBatchStream` batches.

    Args:
        model: a `llmlab.models.seq2seq.Seq2SeqLM` with its trainable parameters set; with `resume_state`,
            already holding the checkpoint's weights.
        stream: the training batches.
        train / optim / schedule: the config sections.
        out_dir: the run folder.
        val_examples: held-out pairs for `val_loss` (empty = no loss evaluation).
        pad_id: padding id of the held-out batches.
        extra_eval: more held-out metrics, e.g. ROUGE-L of greedy outputs (rank 0).
        **kwargs: `Trainer`'s keyword arguments.
    """

    fit_warmup_to_run = True

    def __init__(
        self,
        model: nn.Module,
        stream: Seq2SeqBatchStream,
        train: TrainConfig,
        optim: OptimConfig,
        schedule: ScheduleConfig,
        out_dir: str | Path,
        *,
        val_examples: Sequence[Seq2SeqExample] = (),
        pad_id: int = 0,
        extra_eval: Callable[[nn.Module], dict[str, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.stream, self.val_examples, self.pad_id, self.extra_eval = stream, list(val_examples), pad_id, extra_eval
        super().__init__(model, train, optim, schedule, out_dir, **kwargs)

    def next_batch(self) -> dict[str, torch.Tensor]:
        return self.stream.next_batch()

    def loss_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"] != IGNORE_INDEX).sum())

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum()) + self.loss_units(batch)

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the target tokens of the micro-batch."""
        return self.model(batch["input_ids"], batch["labels"], attention_mask=batch["attention_mask"]).loss

    @property
    def can_evaluate(self) -> bool:
        return bool(self.val_examples) or self.extra_eval is not None

    def evaluate(self) -> dict[str, float]:
        """`val_loss` over the held-out pairs (batched by `train.eval_batch_size`) and `extra_eval`'s metrics."""
        row: dict[str, float] = {}
        if self.val_examples:
            size = self.tc.eval_batch_size
            batches = (
                collate_seq2seq(self.val_examples[i : i + size], self.pad_id)
                for i in range(0, len(self.val_examples), size)
            )
            row["val_loss"] = seq2seq_val_loss(self.raw_model, batches, self.device)
        if self.extra_eval is not None and self.ctx.is_main:
            row.update(self.extra_eval(self.raw_model))
        return row

    def describe_row(self, row: dict[str, Any]) -> str | None:
        """Only evaluations are printed (the per-step losses are in metrics.jsonl and the progress bar)."""
        evals = {k: v for k, v in row.items() if k.startswith("val_") and isinstance(v, float)}
        return f"iter {row['iter']}: " + ", ".join(f"{k} {v:.4f}" for k, v in evals.items()) if evals else None

    def summary(self) -> dict[str, Any]:
        return {"wall_time_s": self.train_time}
