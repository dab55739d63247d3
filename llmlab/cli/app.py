"""`llmlab app <task>`: parse the options and hand them to `llmlab.recipes.app.run_app`; `llmlab app list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import DeviceOption

TaskArgument = Annotated[str, typer.Argument(help="The task (see `llmlab app list`), or `list`.", show_default=False)]
TextOption = Annotated[str | None, typer.Option("--text", help="The input text.")]
FileOption = Annotated[Path | None, typer.Option("--file", help="A UTF-8 file whose whole content is the input.")]
JsonlOption = Annotated[
    Path | None,
    typer.Option(
        "--jsonl", help='A batch: one JSON object per line ({"text": ...}, + "question" for qa); needs --out.'
    ),
]
OutOption = Annotated[Path | None, typer.Option("--out", help="Where --jsonl results go (one JSON line per input).")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")]
AppModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "--checkpoint",
        "-c",
        help="A chat model (.gguf, checkpoint, Hugging Face folder; default SmolLM2-135M-Instruct) or a "
        "`llmlab finetune task=...` run folder (its encoder head runs ner/qa/classify/relation).",
    ),
]
LangOption = Annotated[str | None, typer.Option("--lang", help="en or zh (default: zh when the text has CJK).")]
LabelsOption = Annotated[
    str | None, typer.Option("--labels", help="Comma-separated labels (classify; replaces intent/relation defaults).")
]
QuestionOption = Annotated[str | None, typer.Option("--question", help="The question (qa).")]
StyleOption = Annotated[str | None, typer.Option("--style", help="The style to rewrite in (rewrite; default formal).")]
MaxNewOption = Annotated[int | None, typer.Option("--max-new-tokens", "-n", help="Reply tokens (default: the task's).")]
TemperatureOption = Annotated[
    float | None, typer.Option("--temperature", "-t", help="0 = greedy (default: the task's; greedy when structured).")
]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Random seed for reproducible samples.")]
ConstrainOption = Annotated[
    bool, typer.Option("--constrain", help="Mask decoding with the task's JSON Schema (structured tasks; xgrammar).")
]
TemplateOption = Annotated[
    str,
    typer.Option("--template", help="Chat template: auto (the model's own), chatml, llama3, llama2, zh, or .jinja."),
]
JsonOption = Annotated[bool, typer.Option("--json", help='Print {"task", "lang", "output", "result"} as JSON.')]


def register(app: typer.Typer) -> None:
    """Attach `llmlab app` to the root app."""

    @app.command("app")
    def app_cmd(
        task: TaskArgument,
        text: TextOption = None,
        file: FileOption = None,
        jsonl: JsonlOption = None,
        out: OutOption = None,
        overwrite: OverwriteOption = False,
        model: AppModelOption = None,
        lang: LangOption = None,
        labels: LabelsOption = None,
        question: QuestionOption = None,
        style: StyleOption = None,
        max_new_tokens: MaxNewOption = None,
        temperature: TemperatureOption = None,
        seed: SeedOption = None,
        constrain: ConstrainOption = False,
        template: TemplateOption = "auto",
        device: DeviceOption = "cpu",
        as_json: JsonOption = False,
    ) -> None:
        """Run an NLP application (summarize, classify, intent, ner, relation, qa, rewrite, story, copywriting,
        code-generate, code-explain) with a chat model or a fine-tuned encoder head.

            llmlab app list
            llmlab app ner --text "Ada Lovelace met Charles Babbage in London."
            llmlab app classify --labels positive,negative --text "I loved it"
            llmlab app qa --text "长城位于中国北方。" --question "长城在哪里？"
            llmlab app ner --jsonl in.jsonl --out out.jsonl
        """
        from llmlab.recipes.app import AppRequest, list_tasks, run_app  # torch loads only when the command runs

        if task == "list":
            list_tasks()
            return
        request = AppRequest(
            task=task, text=text, file=file, jsonl=jsonl, out=out, overwrite=overwrite, model=model, lang=lang,
            labels=labels, question=question, style=style, max_new_tokens=max_new_tokens, temperature=temperature,
            seed=seed, constrain=constrain, template=template, device=device, as_json=as_json,
        )  # fmt: skip
        status = run_app(request)
        if status:
            raise typer.Exit(status)
