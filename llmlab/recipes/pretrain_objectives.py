"""``llmlab pretrain objective=<name>``: pretrain an encoder from scratch with an encoder objective.

    llmlab pretrain objective=mlm_sop model.preset=bert-tiny train.max_iters=300 out_dir=runs/bert-sop
    llmlab pretrain --config configs/pretrain/bert-mini-mlm.yaml --resume

Objectives (`llmlab.recipes.pretrain_objectives_config.OBJECTIVES`): mlm, mlm_nsp, mlm_sop, electra, simcse,
supcon train a BERT-family encoder (`llmlab.models.bert`); span_corruption / text_infilling train a T5 / BART
(`llmlab.recipes.pretrain_seq2seq_objectives` when those families are installed). ``objective=clm`` (or none)
is the decoder pretraining of `llmlab.recipes.pretrain`.

Data: the text corpus (``data.corpus``: the built-in ``shakespeare`` plays, a .txt file or a folder) is read as
documents of lines, tokenized (default tokenizer: the packaged MiniLM WordPiece), cut into segments of at most
``(data.max_length - 3) // 2`` tokens, and the tail ``data.val_fraction`` of each document is held out.
The run folder holds ``config.yaml``, ``metrics.jsonl``, ``checkpoints/last`` (exact ``--resume``),
``summary.json`` and ``model/`` (the encoder + tokenizer, loadable by ``llmlab.hub.load_for_inference``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

from llmlab.recipes.pretrain_objectives_config import DEFAULT_PRESET, ObjectiveConfig

MODEL_DIR = "model"
SENTENCE_OBJECTIVES = ("mlm_nsp", "mlm_sop")
PAIR_OBJECTIVES = ("mlm", "mlm_nsp", "mlm_sop", "electra")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")

Token = tuple[int, bool]  # (id, starts a word)


def read_documents(corpus: str, max_chars: int) -> list[list[str]]:
    """The corpus as documents of non-empty lines (see the module docstring), at most `max_chars` characters.

    Raises:
        FileNotFoundError: `corpus` is neither ``shakespeare`` nor an existing file or folder.
    """
    from llmlab.data.sources import BUILTIN_CORPORA

    path = Path(corpus)
    if path.is_file():
        texts = [p for p in _BLANK_LINE.split(path.read_text(encoding="utf-8", errors="replace"))]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"data.corpus folder {path} has no .txt files; point it at text files")
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    elif corpus in BUILTIN_CORPORA:
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in BUILTIN_CORPORA[corpus]()]
    else:
        raise FileNotFoundError(f"data.corpus {corpus!r} is not a file, a folder or 'shakespeare'; fix the path")
    documents, used = [], 0
    for text in texts:
        if max_chars and used >= max_chars:
            break
        text = text[: max_chars - used] if max_chars else text
        used += len(text)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            documents.append(lines)
    return documents


def plain_backend(tokenizer: Any) -> Any:
    """A copy of the tokenizer's `tokenizers.Tokenizer` without padding or truncation (MiniLM's file pads)."""
    from tokenizers import Tokenizer as HFTokenizer

    backend = HFTokenizer.from_str(tokenizer.backend.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


def tokenize_lines(tokenizer: Any, lines: list[str], language: str) -> list[list[Token]]:
    """Token ids of each line with word starts: words of the pre-tokenizer, or jieba's words for ``zh``."""
    from llmlab.data.masking import chinese_word_ids

    out: list[list[Token]] = []
    for line, enc in zip(lines, plain_backend(tokenizer).encode_batch(lines, add_special_tokens=False), strict=True):
        words = chinese_word_ids(line, enc.offsets) if language == "zh" else enc.word_ids
        pairs = enumerate(zip(enc.ids, words, strict=True))
        out.append([(i, k == 0 or w is None or w != words[k - 1]) for k, (i, w) in pairs])
    return out


def split_documents(
    documents: list[list[list[Token]]], val_fraction: float
) -> tuple[list[list[list[Token]]], list[list[list[Token]]]]:
    """(train, val) documents of segments: the last ``ceil(val_fraction * n)`` segments of every document with at
    least 4 segments are held out (as a document of their own)."""
    train, val = [], []
    for doc in documents:
        n_val = math.ceil(val_fraction * len(doc)) if len(doc) >= 4 else 0
        n_val = max(n_val, 2) if n_val else 0
        train.append(doc[: len(doc) - n_val])
        if n_val:
            val.append(doc[len(doc) - n_val :])
    return [d for d in train if d], val


def pair_builder(cfg: ObjectiveConfig, docs: list, specials: Any, vocab_size: int, seed: int, static: bool = False):
    """The `BatchBuilder` of the pair objectives (mlm, mlm_nsp, mlm_sop, electra) over `docs`.

    Pairs are drawn per epoch (seed ``seed * 7919 + epoch``; NSP negatives / SOP swaps re-drawn each epoch),
    masks per example and epoch (`masking_seed`). `static` or ``options.dynamic_masking=false`` fix both the
    pairs and their masks once (epoch 0's), as BERT's preprocessing did, so an example is the same sequence with
    the same mask every epoch. Returns (builder, number of examples).
    """
    import torch

    from llmlab.data.masking import IGNORE_INDEX, mask_tokens, masking_seed
    from llmlab.data.sentence_tasks import next_pairs, nsp_pairs, pack_pair, sop_pairs
    from llmlab.train.encoder_loop import right_pad

    o, objective = cfg.options, cfg.objective
    make_pairs = {"mlm_nsp": nsp_pairs, "mlm_sop": sop_pairs}.get(objective)
    cache: dict[int, list] = {}

    def pairs_for(epoch: int) -> list:
        if epoch not in cache:
            cache.clear()
            gen = torch.Generator().manual_seed(seed * 7919 + epoch)
            cache[epoch] = make_pairs(docs, gen) if make_pairs else next_pairs(docs)
        return cache[epoch]

    fixed = static or not o.dynamic_masking

    def build(epoch: int, indices: list[int]) -> dict[str, torch.Tensor]:
        pairs = pairs_for(0 if fixed else epoch)
        rows: dict[str, list] = {"input_ids": [], "labels": [], "token_type_ids": [], "original_ids": []}
        for index in indices:
            pair = pairs[index]
            ids, types, special = pack_pair([t[0] for t in pair.a], [t[0] for t in pair.b],
                                            specials.cls, specials.sep, cfg.data.max_length)  # fmt: skip
            starts, _, _ = pack_pair([t[1] for t in pair.a], [t[1] for t in pair.b], True, True, cfg.data.max_length)
            word_ids = _word_ids(starts, special) if o.whole_word else None
            draw = 0 if fixed else epoch
            gen = torch.Generator().manual_seed(masking_seed(seed, index, draw, dynamic=True))
            inputs, labels = mask_tokens(ids, special, specials.mask, vocab_size, o.mask_prob, gen, word_ids)
            for key, row in (("input_ids", inputs.tolist()), ("labels", labels.tolist()),
                             ("token_type_ids", types), ("original_ids", ids)):  # fmt: skip
                rows[key].append(row)
        batch = {
            "input_ids": right_pad(rows["input_ids"], specials.pad),
            "original_ids": right_pad(rows["original_ids"], specials.pad),
            "labels": right_pad(rows["labels"], IGNORE_INDEX),
            "token_type_ids": right_pad(rows["token_type_ids"], 0),
            "attention_mask": right_pad([[1] * len(r) for r in rows["input_ids"]], 0),
        }
        if make_pairs:
            batch["sentence_labels"] = torch.tensor([pairs[i].label for i in indices], dtype=torch.long)
        return batch

    return build, len(pairs_for(0))


def _word_ids(starts: list[bool], special: list[bool]) -> list[int | None]:
    """Word index per token from word-start flags (None for special tokens)."""
    out: list[int | None] = []
    word = -1
    for start, is_special in zip(starts, special, strict=True):
        if is_special:
            out.append(None)
            continue
        word += 1 if start or word < 0 else 0
        out.append(word)
    return out


def segment_builder(docs: list, specials: Any, max_length: int):
    """The `BatchBuilder` of simcse over the segments of `docs`: ``[CLS] segment [SEP]``. Returns (builder, n)."""
    from llmlab.train.encoder_loop import right_pad

    segments = [[specials.cls, *[t[0] for t in seg][: max_length - 2], specials.sep] for doc in docs for seg in doc]

    def build(epoch: int, indices: list[int]) -> dict:
        rows = [segments[i] for i in indices]
        return {
            "input_ids": right_pad(rows, specials.pad),
            "attention_mask": right_pad([[1] * len(r) for r in rows], 0),
        }

    return build, len(segments)


def build_encoder(cfg: ObjectiveConfig, vocab_size: int, pad_id: int) -> Any:
    """A fresh `Bert` of the preset + ``model.config`` (or the ``model.checkpoint`` model)."""
    from llmlab.models import load_model
    from llmlab.models.bert import PRESETS, Bert, resolve_encoder_path

    if cfg.model.checkpoint:  # a folder, or all-MiniLM-L6-v2 (the packaged encoder)
        model = load_model(resolve_encoder_path(cfg.model.checkpoint))
        if not isinstance(model, Bert):
            raise ValueError(f"model.checkpoint {cfg.model.checkpoint} is a {type(model).__name__}, not a BERT encoder")
        return model
    fields = {"vocab_size": vocab_size, "pad_token_id": pad_id, **dict(cfg.model.config)}
    fields.setdefault("sentence_head", cfg.objective in SENTENCE_OBJECTIVES)
    fields.setdefault("max_position_embeddings", max(512, cfg.data.max_length))
    config = PRESETS.get(cfg.model.preset or DEFAULT_PRESET["bert"], **fields)
    if config.block_size < cfg.data.max_length:
        raise ValueError(f"data.max_length={cfg.data.max_length} exceeds the model's {config.block_size} positions")
    return Bert(config)


def objective_module(cfg: ObjectiveConfig, encoder: Any) -> Any:
    """The objective's module around `encoder` (`llmlab.models.pretraining_heads`)."""
    from llmlab.models.bert import Bert
    from llmlab.models.pretraining_heads import ContrastiveEncoder, ElectraPretraining, MaskedLMPretraining

    o = cfg.options
    if cfg.objective == "electra":
        layers = max(1, round(encoder.config.num_hidden_layers * o.generator_scale))
        gen_config = dataclasses.replace(encoder.config, num_hidden_layers=layers, sentence_head=False)
        return ElectraPretraining(Bert(gen_config), encoder, o.discriminator_weight)
    if cfg.objective in ("simcse", "supcon"):
        return ContrastiveEncoder(encoder, o.pooling)
    return MaskedLMPretraining(encoder, o.sentence_weight if cfg.objective in SENTENCE_OBJECTIVES else 0.0)


def identity(cfg: ObjectiveConfig) -> dict[str, Any]:
    """What a checkpoint must have been made from to be resumed with `cfg`."""
    return {
        "objective": cfg.objective, "model": dataclasses.asdict(cfg.model), "tokenizer": cfg.tokenizer,
        "data": dataclasses.asdict(cfg.data), "options": dataclasses.asdict(cfg.options),
    }  # fmt: skip


def load_tokenizer_for(cfg: ObjectiveConfig) -> tuple[Any, Any, Path]:
    """(tokenizer, special ids, tokenizer.json path); checks the ids the objective needs."""
    from llmlab.models.bert import minilm_path
    from llmlab.tokenizers.core import load_tokenizer
    from llmlab.tokenizers.encoder import special_ids

    path = Path(cfg.tokenizer) if cfg.tokenizer else minilm_path()
    tokenizer = load_tokenizer(path)
    specials = special_ids(tokenizer)
    for role in ("cls", "sep", "pad", "mask"):
        if getattr(specials, role) is None:
            raise ValueError(
                f"tokenizer {path} has no {role} token; an encoder objective needs [CLS] [SEP] [PAD] [MASK]"
            )
    return tokenizer, specials, path / "tokenizer.json" if path.is_dir() else path


def make_batches(cfg: ObjectiveConfig, tokenizer: Any, specials: Any) -> tuple[Any, int, list]:
    """(train builder, number of train examples, fixed val batches) for the configured objective."""
    from llmlab.data.sentence_tasks import group_segments

    if cfg.objective == "supcon":
        from llmlab.recipes.pretrain_supcon import labelled_batches

        return labelled_batches(cfg, tokenizer, specials)
    seg_len = (cfg.data.max_length - 3) // 2 if cfg.objective in PAIR_OBJECTIVES else cfg.data.max_length - 2
    documents = read_documents(cfg.data.corpus, cfg.data.max_chars)
    token_docs = [group_segments(tokenize_lines(tokenizer, doc, cfg.data.language), seg_len) for doc in documents]
    train_docs, val_docs = split_documents(token_docs, cfg.data.val_fraction)
    seed, bs = cfg.train.seed, cfg.train.batch_size
    if cfg.objective in PAIR_OBJECTIVES:
        build, n = pair_builder(cfg, train_docs, specials, tokenizer.vocab_size, seed)
        enough = len(val_docs) >= (2 if cfg.objective == "mlm_nsp" else 1)  # NSP negatives need 2 documents
        val_build, n_val = (
            pair_builder(cfg, val_docs, specials, tokenizer.vocab_size, seed + 1, static=True) if enough else (None, 0)
        )
    else:
        build, n = segment_builder(train_docs, specials, cfg.data.max_length)
        val_build, n_val = segment_builder(val_docs, specials, cfg.data.max_length) if val_docs else (None, 0)
    n_batches = min(cfg.train.eval_iters, math.ceil(n_val / bs))
    val = [val_build(0, list(range(k * bs, min(n_val, (k + 1) * bs)))) for k in range(n_batches)] if val_build else []
    return build, n, [b for b in val if len(b["input_ids"]) > 1]


def pretrain_objective(cfg: ObjectiveConfig, resume: bool = False, say: Any = print) -> dict[str, Any]:
    """Run the configured objective; returns the summary (also written to ``out_dir/summary.json``).

    Raises:
        FileNotFoundError: a missing corpus / tokenizer, or with `resume` no checkpoint.
        ValueError: an inconsistent setting or an ``out_dir`` that may not be used (one line naming it).
    """

    from llmlab.hub import save_model_folder
    from llmlab.train.encoder_loop import EncoderObjectiveTrainer, ExampleStream, load_objective_heads
    from llmlab.train.precision import check_runtime
    from llmlab.train.run_dir import open_run
    from llmlab.train.trainer import seed_everything

    cfg.validate()
    if cfg.model.family != "bert":
        from llmlab.recipes.pretrain_seq2seq_objectives import pretrain_seq2seq_objective

        return pretrain_seq2seq_objective(cfg, resume=resume, say=say)
    tokenizer, specials, tokenizer_file = load_tokenizer_for(cfg)
    build, n_train, val_batches = make_batches(cfg, tokenizer, specials)
    check_runtime(cfg.train.device, cfg.train.precision, "none")
    corpus = Path(cfg.data.corpus)
    run = open_run(
        cfg.out_dir, "pretrain", resume=resume, overwrite=cfg.overwrite, max_iters=cfg.train.max_iters,
        identity=identity(cfg), sources=[corpus] if corpus.exists() else [],
    )  # fmt: skip
    seed_everything(cfg.train.seed)
    if run.resume_state is not None:
        from llmlab.models.bert import Bert

        encoder = Bert.from_pretrained(run.last)
    else:
        encoder = build_encoder(cfg, tokenizer.vocab_size, specials.pad)
    module = objective_module(cfg, encoder)
    if run.resume_state is not None:
        load_objective_heads(module, run.last)
    stream = ExampleStream(n_train, cfg.train.batch_size, cfg.train.data_order_seed)
    run.extra_entries = (MODEL_DIR,)  # removed with the run folder if it fails before a checkpoint
    run.create(cfg)
    with run.guard():
        trainer = EncoderObjectiveTrainer(
            module, cfg.objective, encoder, stream, build, val_batches, cfg, run.path,
            tokenizer_file=tokenizer_file, resume_state=run.resume_state, run_info=identity(cfg), say=say,
        )  # fmt: skip
        say(f"{cfg.objective}: {n_train:,} training examples, {len(val_batches)} val batches; "
            f"{sum(p.numel() for p in module.parameters()):,} parameters")  # fmt: skip
        summary = trainer.fit()
        out = save_model_folder(encoder.to("cpu"), tokenizer, run.path / MODEL_DIR)
        summary.update(model=str(out), out_dir=str(run.path), train_examples=n_train)
        run.write_summary(summary)
    return summary
