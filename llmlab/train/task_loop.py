"""Fine-tuning an encoder task head as a specialisation of the one `Trainer` (`llmlab.train.trainer`), and the
task-level decoding and metrics shared by evaluation and `TaskModel.predict`.

(a) Batches: `TaskBatchStream` draws examples in a seeded shuffled order (`llmlab.data.sft.MixtureSampler`,
reshuffled each epoch) and collates them (`llmlab.data.tasks.collate_examples`); its state is the sampler's, so
a resumed run continues with the same examples. (b) The loss is the head's (`TaskHeadModel`: cross-entropy,
MSE or the QA start/end mean), one unit per micro-batch. (c) Checkpoints hold the trainable parameters
(`llmlab.train.sft_loop.save_trainable`: the whole model for full tuning, adapters + head for LoRA/IA3).

Decoding (`decode`): classes by argmax with softmax scores; regression scores; token tags read at each word's
first sub-token (words cut off by `max_length` are tagged "O"); QA answers by the standard span search over all
windows of a context (`llmlab.eval.metrics.qa.search_answer`); the chosen choice; the relation class.
Metrics (`task_metrics`): accuracy and macro-F1; Pearson and Spearman correlation and MSE; seqeval entity
P/R/F1 and token accuracy; SQuAD exact match and F1 (Chinese by characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.data.sft import MixtureSampler
from llmlab.data.tasks import TaskExample, collate_examples, first_subtoken_positions
from llmlab.train.sft_loop import StreamTrainer
from llmlab.train.trainer import to_device

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class TaskBatchStream:
    """Endless shuffled batches of task examples (one epoch after another), resumable exactly."""

    def __init__(self, task: str, examples: Sequence[TaskExample], batch_size: int, pad_id: int, seed: int) -> None:
        self.task, self.examples, self.batch_size, self.pad_id = task, examples, batch_size, pad_id
        self.sampler = MixtureSampler([len(examples)], [1.0], seed)

    def next_batch(self) -> dict[str, Any]:
        picked = [self.examples[self.sampler.next()[1]] for _ in range(self.batch_size)]
        return collate_examples(self.task, picked, self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def forward_batch(model: nn.Module, batch: dict[str, Any]) -> Any:
    """Run a `TaskHeadModel` on a collated batch (labels included when present)."""
    return model(
        batch["input_ids"], batch.get("labels"), attention_mask=batch["attention_mask"],
        token_type_ids=batch["token_type_ids"], marker_positions=batch.get("marker_positions"),
    )  # fmt: skip


@torch.no_grad()
def run_examples(
    model: nn.Module, task: str, examples: Sequence[TaskExample], batch_size: int, pad_id: int
) -> tuple[list[torch.Tensor], float]:
    """Each example's logits (CPU, padding cut off for token/QA logits) and the mean loss (NaN without labels)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs: list[torch.Tensor] = []
    loss_sum, n = 0.0, 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = to_device(collate_examples(task, chunk, pad_id), device)
        out = forward_batch(model, batch)
        if out.loss is not None:
            loss_sum, n = loss_sum + float(out.loss) * len(chunk), n + len(chunk)
        logits = out.logits.float().cpu()
        for b, ex in enumerate(chunk):
            per_token = task in ("token_classification", "question_answering")
            outputs.append(logits[b, : len(ex.input_ids)] if per_token else logits[b])
    model.train(was_training)
    return outputs, (loss_sum / n if n else math.nan)


def context_lang(text: str, lang: str = "auto") -> str:
    """`lang`, or with "auto": "zh" when `text` has a CJK character, else "en"."""
    return ("zh" if _CJK.search(text) else "en") if lang == "auto" else lang


def decode(
    task: str,
    records: Sequence[dict[str, Any]],
    examples: Sequence[TaskExample],
    logits: Sequence[torch.Tensor],
    labels: Sequence[str],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> list[dict[str, Any]]:
    """One prediction dict per record (see the module docstring); records without an example (relations whose
    markers were cut off) get {"label": None}."""
    from llmlab.eval.metrics.qa import search_answer

    if task == "question_answering":
        windows: dict[int, list[tuple[Any, Any, Any]]] = {}
        for ex, lg in zip(examples, logits, strict=True):
            windows.setdefault(ex.record, []).append((lg[:, 0].tolist(), lg[:, 1].tolist(), ex.offsets))
        out = []
        for i, rec in enumerate(records):
            span = search_answer(rec["context"], windows.get(i, []), n_best=n_best, max_answer_length=max_answer_length)
            out.append({"answer": span.text, "start": span.start_char, "end": span.end_char, "score": span.score})
        return out
    by_record: dict[int, dict[str, Any]] = {}
    for ex, lg in zip(examples, logits, strict=True):
        if task == "regression":
            by_record[ex.record] = {"score": float(lg)}
        elif task == "token_classification":
            words = len(records[ex.record]["tokens"])
            first = first_subtoken_positions(ex.word_ids or [])
            ids = lg.argmax(-1).tolist()
            tags = [labels[ids[first[w]]] if w in first else "O" for w in range(words)]
            by_record[ex.record] = {"tags": tags}
        else:
            probs = torch.softmax(lg, dim=-1)
            best = int(probs.argmax())
            row: dict[str, Any] = {
                "label": best if task == "multiple_choice" else labels[best],
                "score": float(probs[best]),
            }
            if task == "multiple_choice":
                row["choice"] = records[ex.record]["choices"][best]
                row["scores"] = probs.tolist()
            else:
                row["scores"] = {name: float(p) for name, p in zip(labels, probs, strict=True)}
            by_record[ex.record] = row
    return [by_record.get(i, {"label": None}) for i in range(len(records))]


def task_metrics(
    task: str, records: Sequence[dict[str, Any]], predictions: Sequence[dict[str, Any]], lang: str = "auto"
) -> dict[str, float]:
    """The task's metrics of `predictions` (from `decode`) against the records' gold labels."""
    from llmlab.eval.metrics.classification import accuracy, macro_f1

    if task == "regression":
        from scipy.stats import pearsonr, spearmanr

        pred = [p["score"] for p in predictions]
        gold = [float(r["label"]) for r in records]
        metrics = {"mse": sum((a - b) ** 2 for a, b in zip(pred, gold, strict=True)) / len(gold)}
        if len(set(pred)) > 1 and len(set(gold)) > 1:  # correlations need 2+ records that vary on both sides
            metrics |= {"pearson": float(pearsonr(pred, gold)[0]), "spearman": float(spearmanr(pred, gold)[0])}
        return metrics
    if task == "token_classification":
        from llmlab.eval.metrics.ner import entity_scores

        s = entity_scores([p["tags"] for p in predictions], [r["tags"] for r in records])
        return {k: s[k] for k in ("f1", "precision", "recall", "token_accuracy")}
    if task == "question_answering":
        from llmlab.eval.metrics.qa import exact_match, token_f1

        em = [exact_match(p["answer"], r["answers"]["text"] or [""], context_lang(r["context"], lang))
              for p, r in zip(predictions, records, strict=True)]  # fmt: skip
        f1 = [token_f1(p["answer"], r["answers"]["text"] or [""], context_lang(r["context"], lang))
              for p, r in zip(predictions, records, strict=True)]  # fmt: skip
        return {"exact_match": sum(em) / len(em), "f1": sum(f1) / len(f1)}
    pred = [p["label"] for p in predictions]
    gold = [r["label"] if task == "multiple_choice" else str(r["label"]) for r in records]
    return {"accuracy": accuracy(pred, gold), "macro_f1": macro_f1([str(p) for p in pred], [str(g) for g in gold])}


MAIN_METRIC = {
    "sequence_classification": "accuracy",
    "regression": "pearson",
    "token_classification": "f1",
    "question_answering": "f1",
    "multiple_choice": "accuracy",
    "relation_classification": "accuracy",
}


class TaskTrainer(StreamTrainer):
    """Fine-tunes a `TaskHeadModel` on `TaskBatchStream` batches (see the module docstring).

    Args:
        model: the task model with its trainable parameters set (with `resume_state`: already holding the
            checkpoint's trainable weights, `llmlab.train.sft_loop.load_trainable`).
        stream: a `TaskBatchStream`.
        train / optim / schedule / out_dir: as `Trainer`.
        evaluate_fn: held-out metrics of the model ({"val_loss", "val_<metric>"...}); None = no evaluation.
        **kwargs: `Trainer`'s keyword arguments.
    """

    fit_warmup_to_run = True

    def __init__(
        self,
        model: nn.Module,
        stream: TaskBatchStream,
        train: Any,
        optim: Any,
        schedule: Any,
        out_dir: str | Path,
        *,
        evaluate_fn: Callable[[nn.Module], dict[str, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.stream, self.evaluate_fn = stream, evaluate_fn
        super().__init__(model, train, optim, schedule, out_dir, **kwargs)

    def next_batch(self) -> dict[str, Any]:
        return self.stream.next_batch()

    def batch_tokens(self, batch: dict[str, Any]) -> int:
        return int(batch["attention_mask"].sum())

    def batch_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        return forward_batch(self.model, batch).loss

    @property
    def can_evaluate(self) -> bool:
        return self.evaluate_fn is not None

    def evaluate(self) -> dict[str, float]:
        return self.evaluate_fn(self.raw_model) if self.evaluate_fn is not None else {}

    def describe_row(self, row: dict[str, Any]) -> str | None:
        evals = {k: v for k, v in row.items() if k.startswith("val_") and isinstance(v, float)}
        return f"iter {row['iter']}: " + ", ".join(f"{k} {v:.4f}" for k, v in evals.items()) if evals else None

    def summary(self) -> dict[str, Any]:
        return {"wall_time_s": self.train_time}
