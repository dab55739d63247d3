"""``llmlab pretrain objective=span_corruption|text_infilling``: pretrain a T5 or BART from scratch.

    llmlab pretrain objective=span_corruption model.family=t5 model.preset=t5-tiny train.max_iters=200
    llmlab pretrain objective=text_infilling model.family=bart model.preset=bart-tiny

- span_corruption (T5, `llmlab.data.denoising.span_corruption`): segments of up to ``data.max_length - 1``
  tokens; 15% noise in spans of mean 3 (``options.noise_density``, ``options.mean_span``), each replaced by a
  sentinel; EOS closes inputs and targets. The default tokenizer (MiniLM's WordPiece) gets T5's 100 sentinels
  ``<extra_id_0..99>`` appended so that ``<extra_id_0>`` is the LAST id (as HF's T5 tokenizer numbers them).
  Special ids: pad = [PAD] (also the decoder start, as T5), eos = [SEP].
- text_infilling (BART, `llmlab.data.denoising.text_infilling` + `permute_sentences`): ``[CLS] segment [SEP]``
  with its sentences shuffled (``options.permute_sentences``; sentences end at . ! ? ;) and Poisson(3) spans
  (30% of the tokens, ``options.infill_ratio``) each replaced by one [MASK]; the target is the original.
  Special ids: bos = [CLS], eos = [SEP] (also the decoder start, as BART), pad = [PAD].

The run folder is the same as for the encoder objectives (``model/`` = the T5/BART + tokenizer).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from llmlab.recipes.pretrain_objectives_config import DEFAULT_PRESET, ObjectiveConfig

SENTINELS = 100
SENTENCE_ENDS = (".", "!", "?", ";")


def seq2seq_tokenizer(cfg: ObjectiveConfig) -> tuple[Any, dict[str, int], list[int]]:
    """(tokenizer, special ids {pad, eos, bos, mask}, sentinel ids) for the objective."""
    from llmlab.recipes.pretrain_objectives import load_tokenizer_for

    tokenizer, specials, _ = load_tokenizer_for(cfg)
    ids = {"pad": specials.pad, "eos": specials.sep, "bos": specials.cls, "mask": specials.mask}
    sentinels: list[int] = []
    if cfg.objective == "span_corruption":
        names = [f"<extra_id_{k}>" for k in range(SENTINELS)]
        if any(tokenizer.token_to_id(n) is None for n in names):
            tokenizer.backend.add_special_tokens(list(reversed(names)))  # <extra_id_0> becomes the last id
        sentinels = [int(tokenizer.token_to_id(n)) for n in names]
    return tokenizer, ids, sentinels


def denoising_builder(cfg: ObjectiveConfig, segments: list[list[int]], ids: dict[str, int], sentinels: list[int],
                      seed: int, sentence_end_ids: list[int], static: bool = False):  # fmt: skip
    """The `BatchBuilder` of span_corruption / text_infilling over `segments`. Returns (builder, n)."""
    import torch

    from llmlab.data.denoising import permute_sentences, span_corruption, text_infilling
    from llmlab.data.masking import IGNORE_INDEX, masking_seed
    from llmlab.train.encoder_loop import right_pad

    o = cfg.options

    def example(index: int, epoch: int) -> tuple[list[int], list[int]]:
        draw = 0 if static or not o.dynamic_masking else epoch
        gen = torch.Generator().manual_seed(masking_seed(seed, index, draw, dynamic=True))
        seg = segments[index]
        if cfg.objective == "span_corruption":
            return span_corruption(seg, sentinels, o.noise_density, o.mean_span, gen, ids["eos"])
        body = permute_sentences(seg, sentence_end_ids, gen) if o.permute_sentences else seg
        original = [ids["bos"], *seg, ids["eos"]]
        noised = text_infilling([ids["bos"], *body, ids["eos"]], ids["mask"], o.infill_ratio, o.poisson_lambda, gen,
                                keep_first=1, keep_last=1)  # fmt: skip
        return noised, original

    def build(epoch: int, indices: list[int]) -> dict[str, torch.Tensor]:
        pairs = [example(i, epoch) for i in indices]
        inputs = [p[0] for p in pairs]
        return {
            "input_ids": right_pad(inputs, ids["pad"]),
            "attention_mask": right_pad([[1] * len(r) for r in inputs], 0),
            "labels": right_pad([p[1] for p in pairs], IGNORE_INDEX),
        }

    return build, len(segments)


def build_seq2seq_model(cfg: ObjectiveConfig, vocab_size: int, ids: dict[str, int]) -> Any:
    """A fresh T5 / BART of the preset + ``model.config`` with the tokenizer's vocabulary and special ids."""
    if cfg.model.family == "t5":
        from llmlab.models.t5 import PRESETS
        from llmlab.models.t5 import T5 as model_class

        fields = {"pad_token_id": ids["pad"], "eos_token_id": ids["eos"], "decoder_start_token_id": ids["pad"]}
    else:
        from llmlab.models.bart import PRESETS
        from llmlab.models.bart import Bart as model_class

        fields = {"pad_token_id": ids["pad"], "eos_token_id": ids["eos"], "decoder_start_token_id": ids["eos"],
                  "bos_token_id": ids["bos"]}  # fmt: skip
    fields = {**fields, "vocab_size": vocab_size, "block_size": max(cfg.data.max_length + 2, 128),
              **dict(cfg.model.config)}  # fmt: skip
    config = PRESETS.get(cfg.model.preset or DEFAULT_PRESET[cfg.model.family], **fields)
    return model_class(config)


def make_seq2seq_batches(cfg: ObjectiveConfig, tokenizer: Any, ids: dict[str, int], sentinels: list[int]):
    """(train builder, number of train examples, fixed val batches)."""
    from llmlab.data.sentence_tasks import group_segments
    from llmlab.recipes.pretrain_objectives import read_documents, split_documents, tokenize_lines

    seg_len = cfg.data.max_length - (1 if cfg.objective == "span_corruption" else 2)
    documents = read_documents(cfg.data.corpus, cfg.data.max_chars)
    token_docs = [group_segments(tokenize_lines(tokenizer, doc, "en"), seg_len) for doc in documents]
    train_docs, val_docs = split_documents(token_docs, cfg.data.val_fraction)
    flat = lambda docs: [[t[0] for t in seg] for doc in docs for seg in doc if len(seg) >= 2]  # noqa: E731
    ends = [i for i in (tokenizer.token_to_id(s) for s in SENTENCE_ENDS) if i is not None]
    seed, bs = cfg.train.seed, cfg.train.batch_size
    build, n = denoising_builder(cfg, flat(train_docs), ids, sentinels, seed, ends)
    val_segments = flat(val_docs)
    val_build, n_val = denoising_builder(cfg, val_segments, ids, sentinels, seed + 1, ends, static=True)
    n_batches = min(cfg.train.eval_iters, math.ceil(n_val / bs))
    val = [val_build(0, list(range(k * bs, min(n_val, (k + 1) * bs)))) for k in range(n_batches)]
    return build, n, val


def pretrain_seq2seq_objective(cfg: ObjectiveConfig, resume: bool = False, say: Any = print) -> dict[str, Any]:
    """Run span corruption / text infilling; returns the summary (also in ``out_dir/summary.json``)."""

    from llmlab.hub import save_model_folder, save_tokenizer
    from llmlab.models import load_model
    from llmlab.models.pretraining_heads import Seq2SeqDenoising
    from llmlab.recipes.pretrain_objectives import MODEL_DIR, identity
    from llmlab.train.encoder_loop import EncoderObjectiveTrainer, ExampleStream
    from llmlab.train.precision import check_runtime
    from llmlab.train.run_dir import open_run
    from llmlab.train.trainer import seed_everything

    tokenizer, ids, sentinels = seq2seq_tokenizer(cfg)
    build, n_train, val_batches = make_seq2seq_batches(cfg, tokenizer, ids, sentinels)
    check_runtime(cfg.train.device, cfg.train.precision, "none")
    corpus = Path(cfg.data.corpus)
    run = open_run(
        cfg.out_dir, "pretrain", resume=resume, overwrite=cfg.overwrite, max_iters=cfg.train.max_iters,
        identity=identity(cfg), sources=[corpus] if corpus.exists() else [],
    )  # fmt: skip
    seed_everything(cfg.train.seed)
    if run.resume_state is not None:
        model = load_model(run.last)
    else:
        model = build_seq2seq_model(cfg, tokenizer.vocab_size, ids)
    module = Seq2SeqDenoising(model)
    stream = ExampleStream(n_train, cfg.train.batch_size, cfg.train.data_order_seed)
    run.extra_entries = (MODEL_DIR,)  # removed with the run folder if it fails before a checkpoint
    run.create(cfg)
    with run.guard():
        tokenizer_dir = run.path / MODEL_DIR
        tokenizer_dir.mkdir(exist_ok=True)
        save_tokenizer(tokenizer, tokenizer_dir, None)  # with the sentinels: copied into every checkpoint
        trainer = EncoderObjectiveTrainer(
            module, cfg.objective, model, stream, build, val_batches, cfg, run.path,
            tokenizer_file=tokenizer_dir / "tokenizer.json", resume_state=run.resume_state,
            run_info=identity(cfg), say=say,
        )  # fmt: skip
        say(f"{cfg.objective}: {n_train:,} training segments, {len(val_batches)} val batches; "
            f"{sum(p.numel() for p in model.parameters()):,} parameters")  # fmt: skip
        summary = trainer.fit()
        save_model_folder(model.to("cpu"), tokenizer, tokenizer_dir)
        summary.update(model=str(tokenizer_dir), out_dir=str(run.path), train_examples=n_train)
        run.write_summary(summary)
    return summary
