"""`llmlab eval human`: parse the options and hand them to `llmlab.recipes.eval_human`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmlab.cli.options import DeviceOption, overwrite_option, sampling_options
from llmlab.config.sampling import CHAT_OPTIONS
from llmlab.recipes.eval_human import HUMAN_SAMPLING

HUMAN_OPTIONS = tuple(name for name in CHAT_OPTIONS if name != "seed") + ("stop",)  # --seed is the study's


def register(eval_app: typer.Typer) -> None:
    """Attach `llmlab eval human` to the `eval` group."""

    @eval_app.command("human")
    @sampling_options(HUMAN_SAMPLING, HUMAN_OPTIONS)
    def human_cmd(
        study: Annotated[Path, typer.Option("--study", "-s", help="The study (SQLite file) to create/serve/report.")],
        outputs: Annotated[
            list[str] | None,
            typer.Option("--outputs", help='Create from NAME=FILE.jsonl ({"prompt","output"} a line), twice+.'),
        ] = None,
        model: Annotated[
            list[str] | None,
            typer.Option("--model", "-m", help="Create the study by generating with NAME=CHECKPOINT (twice or more)."),
        ] = None,
        prompts: Annotated[
            Path | None, typer.Option("--prompts", help="With --model: a text file, one prompt a line.")
        ] = None,
        chat: Annotated[bool, typer.Option("--chat", help="With --model: use the chat template.")] = False,
        template: Annotated[
            str, typer.Option("--template", help="With --chat: auto (the model's), chatml, llama3, llama2, zh.")
        ] = "auto",
        report: Annotated[bool, typer.Option("--report", help="Print the leaderboard, ratings and agreement.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="With --report: print one JSON object.")] = False,
        host: Annotated[
            str, typer.Option("--host", help="Serve on this address (loopback only by default).")
        ] = "127.0.0.1",
        port: Annotated[
            int, typer.Option("--port", min=0, max=65535, help="Serve on this port (0: any free one).")
        ] = 8000,
        seed: Annotated[
            int, typer.Option("--seed", help="Seed: generation when creating, the bootstrap when reporting.")
        ] = 0,
        bootstrap_iters: Annotated[
            int, typer.Option("--bootstrap-iters", min=1, help="With --report: bootstrap resamples for the CIs.")
        ] = 1000,
        overwrite: overwrite_option("Replace an existing study file that llmlab created.") = False,
        device: DeviceOption = "cpu",
        sampling_given: dict[str, Any] | None = None,
    ) -> None:
        """Human A/B evaluation: raters compare two anonymised outputs and rate both on five criteria.

        Create a study with --outputs (twice or more) or --model (twice or more) + --prompts; serve it with
        --study alone (a page at http://HOST:PORT/); report it with --report: Bradley-Terry leaderboard with
        bootstrap intervals, mean ratings per criterion, Cohen's and Fleiss' kappa.
        """
        from llmlab.recipes import eval_human as recipe

        given = sampling_given or {}
        _check_combination(outputs, model, prompts, chat, template, report, as_json, given)
        if outputs:
            recipe.create_from_outputs(study, outputs, seed=seed, overwrite=overwrite)
        elif model and prompts is not None:
            given = {"seed": seed, **given}
            recipe.create_from_models(
                study,
                model,
                prompts,
                given,
                chat=chat,
                template=template,
                device=device,
                seed=seed,
                overwrite=overwrite,
            )
        elif report:
            recipe.report_study(study, as_json=as_json, seed=seed, iters=bootstrap_iters)
        else:
            recipe.serve_study(study, host=host, port=port)


def _check_combination(
    outputs: list[str] | None,
    model: list[str] | None,
    prompts: Path | None,
    chat: bool,
    template: str,
    report: bool,
    as_json: bool,
    given: dict[str, Any],
) -> None:
    """One-line ValueError for options that do not go together (create, serve and report are separate runs)."""
    if outputs and model:
        raise ValueError("--outputs and --model are two ways to create a study; pick one")
    if (outputs or model) and report:
        raise ValueError("--report reads an existing study; create it first, then run --report")
    if (prompts is not None or chat or template != "auto" or given) and not model:
        raise ValueError(
            "--prompts, --chat, --template and sampling options are for generating with --model; add --model"
        )
    if model and prompts is None:
        raise ValueError("--model generates answers to --prompts FILE (one prompt a line); add --prompts")
    if template != "auto" and not chat:
        raise ValueError("--template picks the chat template of --chat; add --chat")
    if as_json and not report:
        raise ValueError("--json changes the --report output; add --report")
