"""`llmlab finetune` (supervised fine-tuning, `llmlab.recipes.finetune`) and `llmlab merge` (`llmlab.recipes.merge`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import (
    CONFIG_COMMAND,
    PrintConfigOption,
    config_option,
    echo_config,
    overrides_argument,
    overwrite_option,
)


def register(app: typer.Typer) -> None:
    """Attach `llmlab finetune` and `llmlab merge` to the root app."""

    @app.command("finetune", context_settings=CONFIG_COMMAND)
    def finetune_cmd(
        overrides: overrides_argument("data.train=sft.jsonl train.max_iters=100 peft.r=16") = None,
        config: config_option("configs/finetune/smollm2-lora.yaml") = None,
        method: Annotated[
            str | None,
            typer.Option("--method", "-m", help="full | partial | lora | qlora | adapter | prefix | prompt | ia3"),
        ] = None,
        resume: Annotated[
            bool, typer.Option("--resume", help="Continue out_dir/checkpoints/last (same settings, exactly).")
        ] = False,
        print_config: PrintConfigOption = False,
    ) -> None:
        """Fine-tune a model on instruction / chat / prompt-completion JSONL (loss on the responses), or, with
        `task=<task>`, an encoder task head (sequence_classification, regression, token_classification,
        question_answering, multiple_choice, relation_classification) or a seq2seq model (task=seq2seq).

        Also under torchrun (DDP): torchrun --nproc_per_node=2 -m llmlab finetune --config ...
        """
        from llmlab.recipes.task_config import peek_task

        all_overrides = [*(overrides or []), *(["resume=true"] if resume else [])]
        task = peek_task(config, all_overrides)
        if task is None:
            from llmlab.recipes.finetune import finetune as run
            from llmlab.recipes.finetune import load_finetune_config as load
        elif task == "seq2seq":
            from llmlab.recipes.finetune_seq2seq import finetune_seq2seq as run
            from llmlab.recipes.finetune_seq2seq import load_seq2seq_config as load
        else:
            from llmlab.recipes.finetune_task import finetune_task as run
            from llmlab.recipes.finetune_task import load_task_config as load
        cfg = load(config, all_overrides, method)
        if print_config:
            echo_config(cfg)
            return
        run(cfg, say=typer.echo)  # prints the result lines (rank 0 only under torchrun)

    @app.command("merge")
    def merge_cmd(
        adapter: Annotated[
            Path,
            typer.Option(
                "--adapter",
                "-a",
                help="Adapter folder (adapter_config.json), or a finetune run folder holding adapter/.",
            ),
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder, or a .gguf file.")],
        base: Annotated[
            str | None,
            typer.Option(
                "--base", "-b", help="Base model (default: the one recorded in the adapter, looked up beside it first)."
            ),
        ] = None,
        out_format: Annotated[
            str | None, typer.Option("--format", "-f", help="llmlab | hf | gguf (default: from --out).")
        ] = None,
        dtype: Annotated[str, typer.Option("--dtype", help="f32 | f16 | bf16 (llmlab) | q8_0 (gguf).")] = "f32",
        overwrite: overwrite_option("Replace an earlier llmlab output at --out (never a foreign folder).") = False,
    ) -> None:
        """Fold a LoRA/QLoRA/IA3 adapter into its base model and save it (llmlab, Hugging Face or GGUF)."""
        from llmlab.recipes.merge import describe, merge

        report = merge(adapter, out, base=base, out_format=out_format, dtype=dtype, overwrite=overwrite)
        typer.echo(describe(report))
