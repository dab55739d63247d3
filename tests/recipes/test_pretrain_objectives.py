"""`llmlab pretrain objective=...`: dispatch, config checks, tiny runs of each encoder objective (metrics, model/
loadable by the hub) and exact --resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli

from llmlab.recipes.pretrain_objectives import pretrain_objective, read_documents
from llmlab.recipes.pretrain_objectives_config import load_objective_config, objective_name

TINY = [
    "model.preset=bert-tiny", "model.config.hidden_size=32", "model.config.num_attention_heads=2",
    "model.config.intermediate_size=64", "model.config.num_hidden_layers=1", "data.max_length=32",
    "train.batch_size=4", "train.eval_iters=2", "train.eval_interval=2", "train.log_interval=1",
    "train.progress=false", "train.tensorboard=false", "schedule.warmup_iters=0", "train.save_interval=2",
]  # fmt: skip
LINES = [
    "To be or not to be that is the question",
    "Whether tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune",
    "Or to take arms against a sea of troubles",
    "And by opposing end them to die to sleep",
    "No more and by a sleep to say we end",
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for k in range(3):  # three documents (files) of 12 lines
        (folder / f"doc{k}.txt").write_text("\n".join(f"{line} {k}" for line in LINES * 2) + "\n", encoding="utf-8")
    return folder


def _cfg(corpus: Path, out: Path, *extra: str):
    base = TINY if "model.family=t5" not in extra else [o for o in TINY if not o.startswith("model.")]
    return load_objective_config(None, [*base, f"data.corpus={corpus}", f"out_dir={out}", *extra])


def test_objective_name_from_yaml_and_overrides(tmp_path: Path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("objective: mlm_sop\n", encoding="utf-8")
    assert objective_name(None, []) == "clm"
    assert objective_name(yaml_file, []) == "mlm_sop"
    assert objective_name(yaml_file, ["objective=electra"]) == "electra"


def test_config_errors_are_one_line() -> None:
    with pytest.raises(ValueError, match="unknown objective 'bogus'"):
        load_objective_config(None, ["objective=bogus"])
    with pytest.raises(ValueError, match="trains a t5 or bart model"):
        load_objective_config(None, ["objective=span_corruption", "model.family=bert"])


def test_cli_dispatches_on_objective(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(["pretrain", "objective=mlm_nsp", "--print-config"], capsys)
    assert code == 0 and "objective: mlm_nsp" in out and "mask_prob" in out
    code, out, _ = run_cli(["pretrain", "objective=clm", "--print-config"], capsys)
    assert code == 0 and "objective: clm" in out and "n_layer" in out  # the decoder config (its objective key)
    code, _, err = run_cli(["pretrain", "objective=bogus"], capsys)
    assert code == 2 and "unknown objective" in err


def test_read_documents_folder_and_file(corpus: Path, tmp_path: Path) -> None:
    assert [len(d) for d in read_documents(str(corpus), 0)] == [12, 12, 12]
    single = tmp_path / "one.txt"
    single.write_text("a b\nc d\n\n\ne f\n", encoding="utf-8")
    assert read_documents(str(single), 0) == [["a b", "c d"], ["e f"]]
    with pytest.raises(FileNotFoundError, match="data.corpus"):
        read_documents(str(tmp_path / "missing.txt"), 0)


def test_mlm_nsp_run_logs_accuracies_and_saves_a_loadable_encoder(corpus: Path, tmp_path: Path) -> None:
    from llmlab.hub import load_for_inference

    summary = pretrain_objective(_cfg(corpus, tmp_path / "run", "objective=mlm_nsp", "train.max_iters=3"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["mlm_accuracy"] <= 1.0 and 0.0 <= r["sentence_accuracy"] <= 1.0 for r in rows)
    assert "val_mlm_accuracy" in summary and "val_sentence_accuracy" in summary
    loaded = load_for_inference(tmp_path / "run" / "model", "cpu")
    assert loaded.model.config.sentence_head and loaded.tokenizer.vocab_size == loaded.model.config.vocab_size


@pytest.mark.parametrize("objective", ["mlm_sop", "electra", "simcse"])
def test_each_objective_trains(corpus: Path, tmp_path: Path, objective: str) -> None:
    summary = pretrain_objective(_cfg(corpus, tmp_path / objective, f"objective={objective}", "train.max_iters=2"))
    assert summary["iters"] == 2 and summary["final_val_loss"] is not None
    if objective == "electra":
        assert (tmp_path / objective / "checkpoints" / "last" / "objective_heads.safetensors").is_file()
        assert 0.0 <= summary["val_disc_accuracy"] <= 1.0


@pytest.mark.parametrize(
    "extra",
    [["objective=mlm_sop"], ["objective=electra"],
     ["objective=span_corruption", "model.family=t5", "model.preset=t5-tiny"]],
)  # fmt: skip
def test_resume_is_exact(corpus: Path, tmp_path: Path, extra: list[str]) -> None:
    from safetensors.torch import load_file

    extra = [*extra, "schedule.name=constant"]
    pretrain_objective(_cfg(corpus, tmp_path / "a", *extra, "train.max_iters=4"))
    pretrain_objective(_cfg(corpus, tmp_path / "b", *extra, "train.max_iters=2"))
    pretrain_objective(_cfg(corpus, tmp_path / "b", *extra, "train.max_iters=4"), resume=True)
    a = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_supcon_on_labelled_jsonl(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    records = [{"text": f"{line} {k}", "label": "pos" if k % 2 else "neg"} for k in range(4) for line in LINES]
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    cfg = _cfg(data, tmp_path / "run", "objective=supcon", "options.temperature=0.1", "train.max_iters=2",
               "data.val_fraction=0.25")  # fmt: skip
    summary = pretrain_objective(cfg)
    assert summary["iters"] == 2 and summary["final_val_loss"] > 0
    with pytest.raises(ValueError, match="must exceed the 2 labels"):
        pretrain_objective(_cfg(data, tmp_path / "run2", "objective=supcon", "train.batch_size=2"))


def test_chinese_whole_word_masking_run(tmp_path: Path) -> None:
    folder = tmp_path / "zh"
    folder.mkdir()
    for k in range(2):
        (folder / f"{k}.txt").write_text("我们在北京大学学习中文。\n他们在上海工作。\n" * 8, encoding="utf-8")
    cfg = _cfg(folder, tmp_path / "run", "objective=mlm", "data.language=zh", "options.whole_word=true",
               "train.max_iters=2")  # fmt: skip
    assert pretrain_objective(cfg)["iters"] == 2


def test_word_starts_from_jieba_and_wordpiece() -> None:
    from llmlab.recipes.pretrain_objectives import _word_ids, load_tokenizer_for, tokenize_lines

    cfg = load_objective_config(None, [])
    tokenizer, _, _ = load_tokenizer_for(cfg)
    [zh] = tokenize_lines(tokenizer, ["我们在北京"], "zh")  # jieba: 我们 / 在 / 北京, one token per character
    assert [start for _, start in zh] == [True, False, True, True, False]
    [en] = tokenize_lines(tokenizer, ["unmannerly knave villain"], "en")  # un ##mann ##erly kn ##ave villain
    assert [start for _, start in en] == [True, False, False, True, False, True]
    assert _word_ids([True, True, False, True, True], [True, False, False, False, True]) == [None, 0, 0, 1, None]


@pytest.mark.parametrize("name", ["bert-mini-mlm", "bert-mini-mlm-sop", "bert-tiny-electra", "bert-minilm-simcse"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_objective_config(Path(__file__).parents[2] / "configs" / "pretrain" / f"{name}.yaml", [])
    assert cfg.model.family == "bert" and cfg.objective in ("mlm", "mlm_sop", "electra", "simcse")


def test_simcse_from_the_packaged_minilm(corpus: Path, tmp_path: Path) -> None:
    cfg = _cfg(corpus, tmp_path / "run", "objective=simcse", "model.checkpoint=all-MiniLM-L6-v2", "train.max_iters=1",
               "optim.lr=1e-5")  # fmt: skip
    summary = pretrain_objective(cfg)
    assert summary["iters"] == 1 and summary["params"] > 22_000_000  # MiniLM's 22.7M + the MLP


@pytest.mark.parametrize(("objective", "family"), [("span_corruption", "t5"), ("text_infilling", "bart")])
def test_denoising_objectives_train_t5_and_bart(corpus: Path, tmp_path: Path, objective: str, family: str) -> None:
    from llmlab.hub import load_for_inference

    cfg = load_objective_config(None, [
        f"objective={objective}", f"model.family={family}", f"model.preset={family}-tiny", f"data.corpus={corpus}",
        f"out_dir={tmp_path / 'run'}", "data.max_length=32", "train.batch_size=4", "train.max_iters=2",
        "train.eval_iters=2", "train.eval_interval=1", "train.progress=false", "train.tensorboard=false",
        "schedule.warmup_iters=0",
    ])  # fmt: skip
    summary = pretrain_objective(cfg)
    assert summary["iters"] == 2 and 0.0 <= summary["val_token_accuracy"] <= 1.0
    loaded = load_for_inference(tmp_path / "run" / "model", "cpu")
    assert loaded.model.config.vocab_size == loaded.tokenizer.vocab_size
    if objective == "span_corruption":  # <extra_id_0> is the last id, as HF's T5 tokenizer numbers it
        assert loaded.tokenizer.token_to_id("<extra_id_0>") == loaded.tokenizer.vocab_size - 1


@pytest.mark.parametrize("objective", ["mlm_nsp", "mlm_sop"])
def test_static_masking_fixes_pairs_and_masks(objective: str) -> None:
    """`options.dynamic_masking=false` (BERT's preprocessing): epoch 3 draws the same pairs with the same masks
    as epoch 0; the default (RoBERTa's dynamic masking) re-draws them."""
    from llmlab.recipes.pretrain_objectives import pair_builder
    from llmlab.tokenizers.encoder import SpecialIds

    specials = SpecialIds(cls=1, sep=2, pad=0, mask=3, unk=4)
    # documents of segments of (token, starts-a-word) pairs, as read_documents gives them
    docs = [[[(t, True) for t in range(10 + 7 * d + s, 14 + 7 * d + s)] for s in range(4)] for d in range(5)]
    batches = {}
    for dynamic in (False, True):
        cfg = load_objective_config(None, [f"objective={objective}", f"options.dynamic_masking={str(dynamic).lower()}"])
        build, n = pair_builder(cfg, docs, specials, vocab_size=60, seed=5)
        batches[dynamic] = [build(epoch, list(range(n))) for epoch in (0, 3)]
    first, later = batches[False]
    assert all(torch.equal(first[k], later[k]) for k in first)
    first, later = batches[True]
    assert not torch.equal(first["input_ids"], later["input_ids"])
