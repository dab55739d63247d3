"""`llmlab generate`: parse the options and hand them to `llmlab.recipes.generate.run_generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmlab.cli.options import DeviceOption, KeepQuantizedOption, ModelOption, sampling_options
from llmlab.config.sampling import DEFAULT_DRAFT_TOKENS, GENERATE_OPTIONS, GENERATE_SAMPLING


def register(app: typer.Typer) -> None:
    """Attach `llmlab generate` to the root app."""

    @app.command("generate")
    @sampling_options(GENERATE_SAMPLING, GENERATE_OPTIONS)
    def generate_cmd(
        checkpoint: ModelOption = None,
        prompt: Annotated[
            str, typer.Option("--prompt", "-p", help="Text to continue ('' starts from EOS/BOS/newline).")
        ] = "",
        num_samples: Annotated[
            int, typer.Option("--num-samples", min=1, help="Independent samples to draw (the best beams with beams).")
        ] = 1,
        draft: Annotated[
            Path | None,
            typer.Option("--draft", help="Speculative decoding with this draft model (same vocabulary; greedy)."),
        ] = None,
        draft_tokens: Annotated[
            int | None,
            typer.Option(
                "--draft-tokens", min=1, help=f"Tokens the draft guesses per step (default {DEFAULT_DRAFT_TOKENS})."
            ),
        ] = None,
        prompt_lookup: Annotated[
            int | None,
            typer.Option("--prompt-lookup", min=1, help="Prompt-lookup decoding guessing N tokens per step (greedy)."),
        ] = None,
        stream: Annotated[
            bool | None,
            typer.Option(
                "--stream/--no-stream", help="Print tokens as they are generated (default: stream when sampling)"
            ),
        ] = None,
        stop_at_eos: Annotated[
            bool, typer.Option("--stop-at-eos/--no-stop-at-eos", help="Stop at the EOS token.")
        ] = True,
        chat: Annotated[
            bool, typer.Option("--chat", help="Treat the prompt as a user message and answer it (chat template).")
        ] = False,
        system: Annotated[str | None, typer.Option("--system", help="System prompt (with --chat).")] = None,
        template: Annotated[
            str, typer.Option("--template", help="Chat template with --chat: auto, chatml, llama3, llama2, zh.")
        ] = "auto",
        device: DeviceOption = "cpu",
        compile: Annotated[
            bool,
            typer.Option("--compile", help="Llama only: static KV cache + torch.compile'd step (slow first call)."),
        ] = False,
        keep_quantized: KeepQuantizedOption = False,
        sampling_given: dict[str, Any] | None = None,
    ) -> None:
        """Generate text from a trained model.

        Without --checkpoint the packaged SmolLM2-135M-Instruct is used. A prompt longer than the model's
        context is cropped to its last block_size tokens (with a warning on stderr); the full prompt is still
        printed. With --chat the prompt is sent as one user message through the chat template, only the
        answer is printed, and generation stops at the template's end-of-turn token. --num-beams, --draft
        and --prompt-lookup decode deterministically (no sampling options) and print the text at the end.
        Characters outside the tokenizer's vocabulary are dropped from the prompt with a warning on stderr.
        """
        fields = dict(locals())  # every option above, by name
        from llmlab.recipes.generate import GenerateRequest, run_generate  # torch loads only when the command runs

        given = fields.pop("sampling_given") or {}
        run_generate(GenerateRequest(**fields), given)
