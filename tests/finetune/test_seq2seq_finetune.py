"""`finetune_seq2seq` (the `llmlab finetune task=seq2seq` runner): from-scratch T5/BART runs on a tiny copy task,
outputs (model/ + tokenizer + summary.json with test metrics), exact resume, fine-tuning a saved model, and the
one-line errors raised before anything is written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from llmlab.hub import load_for_inference
from llmlab.recipes.finetune_seq2seq import finetune_seq2seq, load_seq2seq_config

WORDS = "red green blue cat dog sun moon tree fish bird".split()


def _write_task(folder: Path, n_train: int = 120) -> dict[str, str]:
    """Word-order reversal pairs: source 'red cat sun', target 'sun cat red'."""
    rng = random.Random(0)
    paths = {}
    for split, n in (("train", n_train), ("val", 16), ("test", 12)):
        rows = []
        for _ in range(n):
            words = rng.sample(WORDS, rng.randint(2, 4))
            rows.append({"source": " ".join(words), "target": " ".join(reversed(words))})
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[split] = str(path)
    return paths


def _overrides(data: dict[str, str], out: Path, *extra: str) -> list[str]:
    return [
        "model.family=t5", "model.preset=t5-tiny", "tokenizer.kind=bpe", "tokenizer.vocab_size=300",
        f"data.train={data['train']}", f"data.val={data['val']}", f"data.test={data['test']}",
        "train.max_iters=12", "train.eval_interval=6", "train.batch_size=8", "train.progress=false",
        "eval.max_new_tokens=8", "eval.num_beams=2", "eval.samples=2", f"out_dir={out}", *extra,
    ]  # fmt: skip


def test_from_scratch_run_writes_a_loadable_model_and_test_metrics(tmp_path):
    data = _write_task(tmp_path)
    cfg = load_seq2seq_config(None, _overrides(data, tmp_path / "run", "optim.lr=3e-3"))
    summary = finetune_seq2seq(cfg, say=lambda _m: None)
    assert summary["final_train_loss"] < summary["first_train_loss"]
    assert summary["test_examples"] == 12 and set(summary["greedy"]) == {"rougeL", "bleu", "chrf"}
    assert "beam2" in summary and len(summary["samples"]) == 2 and "greedy" in summary["samples"][0]
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["greedy"] == summary["greedy"]
    loaded = load_for_inference(tmp_path / "run" / "model")  # model + tokenizer, through the one loader
    assert type(loaded.model).__name__ == "T5" and loaded.tokenizer.eos_id == loaded.model.config.eos_token_id
    assert (tmp_path / "run" / "tokenizer.json").is_file()


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model" / "model.safetensors"))


def _losses(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["iter"], r["loss"], r["lr"], r.get("val_loss")) for r in rows]


def test_resume_is_exact(tmp_path, monkeypatch):
    """A run killed during step 8 and resumed from its step-5 checkpoint ends bit-identical to one that never
    stopped (dropout on: the RNG state is restored too)."""
    from llmlab.data.seq2seq import Seq2SeqBatchStream

    data = _write_task(tmp_path)
    extra = ("model.overrides={dropout: 0.1}", "train.save_interval=5", "train.max_iters=12", "data.test=null")
    finetune_seq2seq(load_seq2seq_config(None, _overrides(data, tmp_path / "a", *extra)), say=lambda _m: None)
    real, calls = Seq2SeqBatchStream.next_batch, [0]

    def killed(self):  # the job dies while drawing the batch of step 8
        calls[0] += 1
        if calls[0] > 7:
            raise KeyboardInterrupt
        return real(self)

    with monkeypatch.context() as m:
        m.setattr(Seq2SeqBatchStream, "next_batch", killed)
        with pytest.raises(KeyboardInterrupt):
            finetune_seq2seq(load_seq2seq_config(None, _overrides(data, tmp_path / "b", *extra)), say=lambda _m: None)
    assert not (tmp_path / "b" / "summary.json").exists()
    resumed = load_seq2seq_config(None, _overrides(data, tmp_path / "b", *extra, "resume=true"))
    summary = finetune_seq2seq(resumed, say=lambda _m: None)
    assert summary["resumed_from"] == 5
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bart_from_scratch_and_finetuning_a_saved_model(tmp_path):
    data = _write_task(tmp_path)
    bart = load_seq2seq_config(None, _overrides(data, tmp_path / "bart", "model.family=bart", "model.preset=bart-tiny"))
    summary = finetune_seq2seq(bart, say=lambda _m: None)
    assert summary["family"] == "bart"
    tuned = load_seq2seq_config(None, [
        f"base={tmp_path / 'bart' / 'model'}", f"data.train={data['train']}", f"data.test={data['test']}",
        "train.max_iters=3", "train.progress=false", "eval.num_beams=1", f"out_dir={tmp_path / 'tuned'}",
    ])  # fmt: skip
    again = finetune_seq2seq(tuned, say=lambda _m: None)
    assert again["base"] == str(tmp_path / "bart" / "model") and "greedy" in again and "beam4" not in again


def test_errors_come_before_anything_is_written(tmp_path):
    data = _write_task(tmp_path)
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="exactly one of base"):
        load_seq2seq_config(None, _overrides(data, out, "base=somewhere")).validate()
    with pytest.raises(ValueError, match="method 'lora'"):
        load_seq2seq_config(None, _overrides(data, out), method="lora").validate()
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        finetune_seq2seq(load_seq2seq_config(None, _overrides(data, out, f"data.val={tmp_path / 'missing.jsonl'}")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "a", "target": "b"}\n{"source": "a"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected"):
        finetune_seq2seq(load_seq2seq_config(None, _overrides(data, out, f"data.train={bad}")))
    assert not out.exists()


def test_a_decoder_base_is_refused(tmp_path):
    from tiny_models import tiny_gpt

    from llmlab.tokenizers.train import train_tokenizer_from_iterator

    data = _write_task(tmp_path)
    gpt = tiny_gpt()
    gpt.save_pretrained(tmp_path / "gpt")
    tok = train_tokenizer_from_iterator("char", WORDS, 0)
    tok.save(tmp_path / "gpt")
    cfg = load_seq2seq_config(
        None, [f"base={tmp_path / 'gpt'}", f"data.train={data['train']}", f"out_dir={tmp_path / 'o'}"]
    )
    with pytest.raises(ValueError, match="not a T5/BART encoder-decoder"):
        finetune_seq2seq(cfg, say=lambda _m: None)


def test_a_hugging_face_t5_folder_is_a_base(tmp_path):
    """base = a `transformers` T5 folder (+ tokenizer.json): fine-tuned, saved as an llmlab model."""
    from transformers import T5Config, T5ForConditionalGeneration

    from llmlab.recipes.finetune_seq2seq import SPECIALS
    from llmlab.tokenizers.train import train_tokenizer_from_iterator

    data = _write_task(tmp_path)
    tok = train_tokenizer_from_iterator("char", WORDS, 0, SPECIALS["t5"])  # pad 0, unk 1, eos 2
    ids = dict(eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, decoder_start_token_id=tok.pad_id)
    hf_config = T5Config(vocab_size=tok.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2, **ids)
    T5ForConditionalGeneration(hf_config).save_pretrained(tmp_path / "hf")
    tok.save(tmp_path / "hf")
    cfg = load_seq2seq_config(None, [
        f"base={tmp_path / 'hf'}", f"data.train={data['train']}", f"data.test={data['test']}", "train.max_iters=4",
        "train.progress=false", "eval.num_beams=2", "eval.max_new_tokens=6", f"out_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    summary = finetune_seq2seq(cfg, say=lambda _m: None)
    assert summary["family"] == "t5" and summary["iters"] == 4 and "beam2" in summary
    assert load_for_inference(tmp_path / "run" / "model").model.config.vocab_size == tok.vocab_size


def test_llmlab_generate_runs_a_trained_t5(tmp_path, capsys):
    """`llmlab generate --checkpoint <seq2seq model>` decodes the prompt as the source (greedy and beam equal
    `seq2seq_generate`), and refuses the decoder-only options in one line."""
    from llmlab.generate import seq2seq_generate
    from tests.cli_helpers import run_cli

    data = _write_task(tmp_path)
    cfg = load_seq2seq_config(None, _overrides(data, tmp_path / "run", "optim.lr=3e-3", "train.max_iters=60"))
    finetune_seq2seq(cfg, say=lambda _m: None)
    model_dir = tmp_path / "run" / "model"
    loaded = load_for_inference(model_dir)
    ids = loaded.tokenizer.encode("red cat sun") + [loaded.model.config.eos_token_id]
    for beams in (1, 3):
        row = seq2seq_generate(loaded.model, torch.tensor([ids]), max_new_tokens=6, num_beams=beams)[0]
        expected = loaded.tokenizer.decode(row, skip_special_tokens=True).strip()
        assert expected  # the model writes something (it was trained on the task)
        args = ["generate", "-c", str(model_dir), "-p", "red cat sun", "--temperature", "0", "--max-new-tokens", "6"]
        code, out, err = run_cli([*args, *(["--num-beams", "3"] if beams > 1 else [])], capsys)
        assert code == 0, err
        assert out.strip() == expected
    code, _, err = run_cli(["generate", "-c", str(model_dir), "-p", "red cat", "--chat"], capsys)
    assert code == 2 and "decoder-only" in err and len(err.strip().splitlines()) == 1
