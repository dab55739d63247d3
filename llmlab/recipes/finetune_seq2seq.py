"""The seq2seq runner behind ``llmlab finetune task=seq2seq``: T5/BART + {"source","target"} JSONL -> model.

    llmlab finetune --config configs/finetune/seq2seq-docstrings.yaml task=seq2seq
    llmlab finetune task=seq2seq base=runs/t5/model data.train=train.jsonl data.val=val.jsonl data.test=test.jsonl

Either fine-tune `base` (a llmlab or Hugging Face T5/BART folder with its tokenizer) or train `model.family` +
`model.preset` from scratch, with a tokenizer from `tokenizer.path` or trained on the training pairs
(`llmlab.tokenizers.train`, SentencePiece-style unigram by default). Training is
`llmlab.train.seq2seq_loop.Seq2SeqTrainer` (loss on target tokens only; exact ``--resume`` from
`checkpoints/last`). At the end the test split is decoded greedily and with beam search and scored with ROUGE-L,
BLEU and chrF (`llmlab.eval.metrics`).

The run folder (`out_dir`, policy of `llmlab.train.run_dir`) holds `config.yaml`, `metrics.jsonl`,
`checkpoints/last/`, `tokenizer.json`, `model/` (an llmlab checkpoint with its tokenizer, loadable by
`llmlab.hub.load_for_inference`) and `summary.json` (losses, test metrics, example outputs).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from llmlab.recipes.finetune_seq2seq_config import Seq2SeqFinetuneConfig, load_seq2seq_config

__all__ = ["Seq2SeqFinetuneConfig", "finetune_seq2seq", "load_seq2seq_config"]

# Special tokens of a tokenizer trained for a from-scratch model (T5's and BART's spellings and order).
SPECIALS = {
    "t5": {"pad": "<pad>", "unk": "<unk>", "eos": "</s>", "bos": None, "mask": None},
    "bart": {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "mask": None},
}


def _run_identity(cfg: Seq2SeqFinetuneConfig) -> dict[str, Any]:
    """What a checkpoint must have been made from to be resumed with `cfg` (JSON primitives)."""
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return {k: d[k] for k in ("base", "method", "model", "tokenizer", "data")} | {"train": {"seed": d["train"]["seed"]}}


def _check_inputs(cfg: Seq2SeqFinetuneConfig) -> list[Path]:
    """FileNotFoundError for a missing data/tokenizer/base path (before anything is loaded); returns the inputs."""
    paths = [p for p in (cfg.data.train, cfg.data.val, cfg.data.test) if p]
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"data file not found: {p}")
    for what, p in (("base", cfg.base), ("tokenizer.path", cfg.tokenizer.path)):
        if p and not Path(p).exists():
            raise FileNotFoundError(f"{what} not found: {p}")
    return [Path(p) for p in (*paths, cfg.base, cfg.tokenizer.path) if p]


def _tokenizer(cfg: Seq2SeqFinetuneConfig, records: list[dict[str, str]], run: Any, say: Any) -> Any:
    """The from-scratch tokenizer: `tokenizer.path`, the run's own (resume), or trained on the training pairs."""
    from llmlab.tokenizers import load_tokenizer
    from llmlab.tokenizers.train import train_tokenizer_from_iterator

    if cfg.tokenizer.path:
        return load_tokenizer(cfg.tokenizer.path)
    if run.resume_state is not None and (run.path / "tokenizer.json").is_file():
        return load_tokenizer(run.path)
    texts = (r[k] for r in records for k in ("source", "target"))
    tok = train_tokenizer_from_iterator(cfg.tokenizer.kind, texts, cfg.tokenizer.vocab_size, SPECIALS[cfg.model.family])
    say(f"trained a {cfg.tokenizer.kind} tokenizer of {tok.vocab_size} tokens on the training pairs")
    return tok


def _new_model(cfg: Seq2SeqFinetuneConfig, tok: Any) -> Any:
    """A randomly initialised `model.family` model from `model.preset`, sized and numbered for `tok`."""
    from llmlab.models import get_family

    family = get_family(str(cfg.model.family))
    if tok.pad_id is None or tok.eos_id is None:
        raise ValueError("the tokenizer needs pad and eos tokens for a seq2seq model; train one without tokenizer.path")
    start = tok.pad_id if cfg.model.family == "t5" else tok.eos_id  # T5 starts from pad, BART from </s>
    ids = {"pad_token_id": tok.pad_id, "eos_token_id": tok.eos_id, "decoder_start_token_id": start}
    if cfg.model.family == "bart" and tok.bos_id is not None:
        ids["bos_token_id"] = tok.bos_id
    config = family.presets.get(cfg.model.preset, **{**dict(cfg.model.overrides), "vocab_size": tok.vocab_size, **ids})
    return family.model_class(config)


def _load(cfg: Seq2SeqFinetuneConfig, records: list[dict[str, str]], run: Any, say: Any) -> tuple[Any, Any]:
    """(model, tokenizer): the base's, or a new model with its tokenizer."""
    from llmlab.hub import load_for_inference
    from llmlab.tokenizers import load_tokenizer

    if cfg.base is None:
        tok = _tokenizer(cfg, records, run, say)
        return _new_model(cfg, tok), tok
    loaded = load_for_inference(cfg.base, require_tokenizer=cfg.tokenizer.path is None)
    if not getattr(loaded.model, "is_encoder_decoder", False):
        raise ValueError(f"base={cfg.base} is a {type(loaded.model).__name__}, not a T5/BART encoder-decoder")
    tok = load_tokenizer(cfg.tokenizer.path) if cfg.tokenizer.path else loaded.tokenizer
    return loaded.model, tok


def _test_report(
    cfg: Seq2SeqFinetuneConfig, model: Any, tok: Any, records: list[dict[str, str]], say: Any
) -> dict[str, Any]:
    """Test loss, and ROUGE-L/BLEU/chrF of greedy and beam outputs, plus a few example outputs."""
    from llmlab.data.seq2seq import encode_seq2seq, eval_batches
    from llmlab.train.seq2seq_loop import generate_texts, seq2seq_val_loss, text_metrics

    d, e, c = cfg.data, cfg.eval, model.config
    records = records[: e.max_examples] if e.max_examples else records
    examples = encode_seq2seq(records, tok, d.max_source_length, d.max_target_length, c.eos_token_id, d.source_prefix)
    report: dict[str, Any] = {"test_examples": len(examples)}
    batches = eval_batches(examples, cfg.train.eval_batch_size, c.pad_token_id)
    report["test_loss"] = seq2seq_val_loss(model, batches, next(model.parameters()).device)
    refs = [r["target"] for r in records]
    outputs = {}
    for name, beams in (("greedy", 1), (f"beam{e.num_beams}", e.num_beams)) if e.num_beams > 1 else (("greedy", 1),):
        hyps = generate_texts(
            model, tok, examples, num_beams=beams, length_penalty=e.length_penalty, max_new_tokens=e.max_new_tokens
        )
        outputs[name] = hyps
        report[name] = text_metrics(hyps, refs, e.lang)
        say(f"test {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in report[name].items()))
    report["samples"] = [
        {"source": r["source"], "target": r["target"], **{k: v[i] for k, v in outputs.items()}}
        for i, r in enumerate(records[: e.samples])
    ]
    return report


def _write_model(model: Any, tok: Any, out: Path) -> str:
    """`out/tokenizer.json` and `out/model/` (llmlab checkpoint + tokenizer), each written atomically."""
    from llmlab.hub import save_model_folder, save_tokenizer

    save_tokenizer(tok, out, None)
    return str(save_model_folder(model, tok, out / "model"))


def finetune_seq2seq(cfg: Seq2SeqFinetuneConfig, say: Any = print) -> dict[str, Any]:
    """Train/fine-tune a T5/BART model as configured; return the summary (also saved as `summary.json`).

    Raises:
        ValueError / FileNotFoundError: one line naming the problem, before anything is written.
    """
    import torch

    from llmlab.data.seq2seq import Seq2SeqBatchStream, encode_seq2seq, examples_fingerprint, read_seq2seq_jsonl
    from llmlab.train.precision import check_runtime
    from llmlab.train.run_dir import check_resume, open_run
    from llmlab.train.seq2seq_loop import Seq2SeqTrainer
    from llmlab.train.sft_loop import load_trainable

    cfg.validate()
    check_runtime(cfg.train.device, cfg.train.precision, "none")
    sources = _check_inputs(cfg)
    d = cfg.data
    train_records = read_seq2seq_jsonl(str(d.train))
    train_records = train_records[: d.max_train_examples] if d.max_train_examples else train_records
    val_records = read_seq2seq_jsonl(d.val) if d.val else []
    test_records = read_seq2seq_jsonl(d.test) if d.test else []
    run = open_run(cfg.out_dir, "finetune", resume=cfg.resume, overwrite=cfg.overwrite, max_iters=cfg.train.max_iters,
                   identity=_run_identity(cfg), sources=sources)  # fmt: skip
    torch.manual_seed(cfg.train.seed)
    model, tok = _load(cfg, train_records, run, say)
    c = model.config
    encode = lambda recs: encode_seq2seq(
        recs, tok, d.max_source_length, d.max_target_length, c.eos_token_id, d.source_prefix
    )  # noqa: E731
    train_examples, val_examples = encode(train_records), encode(val_records)
    run_info = {**_run_identity(cfg), "data_sha256": examples_fingerprint(train_examples)}
    if run.resume_state is not None:
        check_resume(run.resume_state.get("run", {}), run_info, run.path)
        load_trainable(model, run.last)
    model.requires_grad_(True)
    say(f"{type(model).__name__} ({model.num_parameters():,d} parameters), {len(train_examples)} training pairs")
    stream = Seq2SeqBatchStream(train_examples, cfg.train.batch_size, c.pad_token_id, cfg.train.data_order_seed)
    run.create(dataclasses.replace(cfg, resume=False))
    with run.guard():
        if cfg.base is None:
            tok.save(run.path)  # a trained tokenizer is part of the run from the start (resume reads it)
        trainer = Seq2SeqTrainer(
            model, stream, cfg.train, cfg.optim, cfg.schedule, run.path, val_examples=val_examples,
            pad_id=c.pad_token_id, say=say, resume_state=run.resume_state, run_info=run_info,
        )  # fmt: skip
        summary = trainer.fit()
        model.eval()
        if test_records:
            summary.update(_test_report(cfg, model, tok, test_records, say))
        model.to("cpu")
        summary["model"] = _write_model(model, tok, run.path)
        summary.update(base=cfg.base, family=type(model).family_name, train_examples=len(train_examples),
                       val_examples=len(val_examples), checkpoint=str(run.last), out_dir=str(run.path))  # fmt: skip
        run.write_summary(summary)
    say(f"saved: {summary['model']} (resume state: {summary['checkpoint']})")
    return summary
