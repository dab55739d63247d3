"""`llmlab finetune` and `llmlab merge` end to end on tiny models: the loss falls, outputs load, errors are clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from finetune_helpers import FAST, finetune_args, toy_records, write_jsonl

from llmlab.cli.main import main


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_nothing_left(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if name in p.name and p.name.startswith(".")], "temporary output left"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, llama_dir) -> Path:
    tmp = tmp_path_factory.mktemp("lora")
    data = write_jsonl(tmp / "train.jsonl", toy_records(80))
    args = finetune_args(
        "lora",
        llama_dir,
        data,
        f"out_dir={tmp / 'run'}",
        "train.max_iters=25",
        "train.eval_interval=0",
        "train.batch_size=8",
        "optim.lr=3e-2",
        "peft.r=4",
        "peft.lora_alpha=8",
        "peft.target_modules=[q_proj,v_proj,o_proj,down_proj]",
        "classification.labels=[red,yellow,green,blue,white,black]",
        *FAST,
    )
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    return tmp / "run"


def test_lora_finetune_loss_falls_and_writes_adapter(lora_run) -> None:
    rows = metrics(lora_run)
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
    assert "val_loss" in rows[-1] and "val_accuracy" in rows[-1]
    for name in (
        "config.yaml",
        "summary.json",
        "tokenizer.json",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
    ):
        assert (lora_run / name).is_file(), name
    cfg = json.loads((lora_run / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4


def test_full_finetune_loss_falls_and_model_loads(tmp_path, llama_dir, tokenizer, capsys) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", toy_records(80))
    code, out, err = run_cli(
        finetune_args(
            "full", llama_dir, data, f"out_dir={tmp_path / 'run'}", "train.max_iters=15", "optim.lr=3e-3", *FAST
        ),
        capsys,
    )
    assert code == 0, err
    rows = metrics(tmp_path / "run")
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"]
    from llmlab.hub import load_for_inference
    from llmlab.models import load_model

    loaded = load_for_inference(tmp_path / "run" / "model")  # model + tokenizer, ready for `llmlab generate`
    assert loaded.tokenizer.encode("red apple") == tokenizer.encode("red apple")
    base = load_model(llama_dir)
    assert not torch.equal(base.model.layers[0].mlp.up_proj.weight, loaded.model.model.layers[0].mlp.up_proj.weight)


@pytest.mark.parametrize("method", ["qlora", "adapter", "prefix", "prompt", "ia3"])
def test_other_peft_methods_train_save_and_reload(method, tmp_path, llama_dir, capsys) -> None:
    from llmlab.models import load_model
    from llmlab.peft import load_adapter

    data = write_jsonl(tmp_path / "train.jsonl", toy_records(24))
    code, _, err = run_cli(
        [
            "finetune",
            "--method",
            method,
            f"base={llama_dir}",
            f"data.train={data}",
            f"out_dir={tmp_path / 'run'}",
            "train.max_iters=3",
            "optim.lr=1e-2",
            *FAST,
        ],
        capsys,
    )
    assert code == 0, err
    adapter = tmp_path / "run" / "adapter"
    ids = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base_logits = load_model(llama_dir)(ids).logits
        adapted = load_adapter(load_model(llama_dir), adapter)(ids).logits
    assert not torch.allclose(base_logits, adapted, atol=1e-4)  # the trained adapter is saved and loads
    code, out, err = run_cli(["merge", "--adapter", str(adapter), "--out", str(tmp_path / "m")], capsys)
    if method in ("qlora", "ia3"):
        assert code == 0, err
        with torch.no_grad():
            torch.testing.assert_close(load_model(tmp_path / "m")(ids).logits, adapted, atol=1e-5, rtol=1e-5)
    else:
        assert code == 2 and "only LoRA, QLoRA and IA3 adapters can be merged" in err
        assert_nothing_left(tmp_path, "m")


def test_multi_task_partial_packing_logs_per_task_loss(tmp_path, llama_dir, capsys) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", toy_records(40, seed=1))
    b = write_jsonl(
        tmp_path / "b.jsonl", [{"prompt": f"{i} plus one is", "completion": f" {i + 1}"} for i in range(40)]
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"base: {llama_dir}\nmethod: partial\npartial:\n  last_n_layers: 1\n"
        f"data:\n  packing: true\n  max_length: 240\n  tasks:\n"
        f"    - {{name: colors, path: {a}, weight: 3}}\n    - {{name: count, path: {b}, weight: 1, template: plain}}\n"
        f"train:\n  max_iters: 4\n  batch_size: 2\n",
        encoding="utf-8",
    )
    code, _, err = run_cli(["finetune", "--config", str(cfg), f"out_dir={tmp_path / 'run'}", *FAST], capsys)
    assert code == 0, err
    rows = metrics(tmp_path / "run")
    assert all("loss_colors" in r and "loss_count" in r for r in rows)
    assert "val_loss_colors" in rows[-1] and "val_loss_count" in rows[-1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["train_examples"] == [36, 36] and summary["val_examples"] == [4, 4]
    # Partial: only the last layer and the head changed.
    from safetensors.torch import load_file

    before, after = (
        load_file(str(llama_dir / "model.safetensors")),
        load_file(str(tmp_path / "run/model/model.safetensors")),
    )
    assert torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(before["model.layers.1.mlp.up_proj.weight"], after["model.layers.1.mlp.up_proj.weight"])


def test_merge_gives_the_adapter_models_logits(lora_run, llama_dir, tmp_path, capsys) -> None:
    from llmlab.models import load_model
    from llmlab.peft import load_adapter

    code, out, err = run_cli(["merge", "--adapter", str(lora_run / "adapter"), "--out", str(tmp_path / "m")], capsys)
    assert code == 0, err
    assert "merged 8 LORA layer(s)" in out
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(0))
    adapted = load_adapter(load_model(llama_dir), lora_run / "adapter")
    merged, base = load_model(tmp_path / "m"), load_model(llama_dir)
    with torch.no_grad():
        want, got, plain = adapted(ids).logits, merged(ids).logits, base(ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain, want, atol=1e-3)  # the adapter does change the model
    assert (tmp_path / "m" / "tokenizer.json").is_file()
    # Hugging Face export of the merged model, with the base given explicitly.
    code, _, err = run_cli(
        [
            "merge",
            "--base",
            str(llama_dir),
            "--adapter",
            str(lora_run / "adapter"),
            "--out",
            str(tmp_path / "hf"),
            "--format",
            "hf",
        ],
        capsys,
    )
    assert code == 0, err
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "hf")(ids).logits, want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- errors
def test_errors_exit_2_with_one_line_and_nothing_written(tmp_path, llama_dir, gpt_dir, lora_run, capsys) -> None:
    recs = [json.dumps(r) for r in toy_records(8)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*recs[:6], json.dumps({"instruction": "x", "input": "y"}), *recs[6:]]) + "\n")
    common = [f"base={llama_dir}", f"out_dir={tmp_path / 'run'}", *FAST]

    code, _, err = run_cli(["finetune", "--method", "lora", f"data.train={bad}", *common], capsys)
    assert code == 2 and err.strip() == f"llmlab: error: {bad} line 7: missing 'output' field"
    assert_nothing_left(tmp_path, "run")

    bad.write_text("\n".join([*recs[:2], "{oops", *recs[2:]]) + "\n")
    code, _, err = run_cli(["finetune", "--method", "full", f"data.train={bad}", *common], capsys)
    assert code == 2 and "line 3: not valid JSON" in err and len(err.strip().splitlines()) == 1

    good = write_jsonl(tmp_path / "good.jsonl", toy_records(20))
    code, _, err = run_cli(["finetune", "--method", "sparse", f"data.train={good}", *common], capsys)
    assert code == 2 and "unknown method 'sparse'; choose one of: full, partial, lora" in err

    code, _, err = run_cli(
        ["finetune", "--method", "lora", f"data.train={good}", "peft.target_modules=[qkv_nope]", *common], capsys
    )
    assert code == 2 and "target module 'qkv_nope' matches no module" in err
    assert_nothing_left(tmp_path, "run")

    code, _, err = run_cli(
        ["merge", "--base", str(gpt_dir), "--adapter", str(lora_run / "adapter"), "--out", str(tmp_path / "merged")],
        capsys,
    )
    assert code == 2 and "made for a Llama model, not a GPT" in err
    assert_nothing_left(tmp_path, "merged")

    code, _, err = run_cli(
        ["finetune", "--method", "full", f"data.train={good}", *common[1:], f"base={lora_run}"], capsys
    )
    assert code == 2 and f"base={lora_run} is an adapter on a base model; fold it in first" in err
    assert_nothing_left(tmp_path, "run")


def test_run_folder_serves_generation_and_perplexity(lora_run, llama_dir, tmp_path, monkeypatch, capsys) -> None:
    """The adapter records its base as an absolute path, so the run loads from any directory; perplexity works
    on it (and on a prefix-tuned run, whose virtual tokens shrink the default window)."""
    from llmlab.hub import load_for_inference
    from llmlab.peft import PrefixConfig, get_peft_model, save_adapter

    assert json.loads((lora_run / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        Path(llama_dir).resolve()
    )
    monkeypatch.chdir(tmp_path)
    loaded = load_for_inference(lora_run)
    text = tmp_path / "heldout.txt"
    text.write_text(" ".join(r["output"] for r in toy_records(400, seed=3)))  # longer than the 256-token context
    prefix_run = tmp_path / "prefix-run"
    save_adapter(get_peft_model(loaded.model.__class__.from_pretrained(llama_dir), PrefixConfig(num_virtual_tokens=6)),
                 prefix_run / "adapter", base_model_name_or_path=str(llama_dir))  # fmt: skip
    loaded.tokenizer.save(prefix_run)
    for run in (lora_run, prefix_run):
        code, out, err = run_cli(["eval", "perplexity", "-c", str(run), "-f", str(text)], capsys)
        assert code == 0, err
        assert "perplexity" in out


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].glob("configs/finetune/*.yaml")), ids=str)
def test_shipped_configs_load(path) -> None:
    from llmlab.recipes.finetune import METHODS, load_finetune_config
    from llmlab.recipes.task_config import TASK_METHODS, load_task_config, peek_task

    task = peek_task(path, [])
    if task == "seq2seq":  # `llmlab finetune task=seq2seq`: the seq2seq runner's config
        from llmlab.recipes.finetune_seq2seq import load_seq2seq_config

        assert load_seq2seq_config(path).task == "seq2seq"
        return
    if task is not None:  # task-*.yaml: encoder task heads (`llmlab finetune task=...`)
        assert load_task_config(path).method in TASK_METHODS
        return
    cfg = load_finetune_config(path)
    assert cfg.method in METHODS


def test_print_config_resolves_method_and_overrides(capsys) -> None:
    code, out, _ = run_cli(["finetune", "--print-config", "--method", "lora", "data.train=x.jsonl", "peft.r=4"], capsys)
    assert code == 0 and "method: lora" in out and "train: x.jsonl" in out and "r: 4" in out
    code, _, err = run_cli(["finetune", "--print-config", "--method", "ia3", "data.train=x.jsonl", "peft.r=4"], capsys)
    assert code == 2 and "peft.r: unknown setting for method ia3; valid:" in err
