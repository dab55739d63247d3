"""`llmlab generate`: sample text from a checkpoint (default: SmolLM2-135M-Instruct), streaming it to stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def _start_ids(tokenizer, prompt: str) -> list[int]:  # noqa: ANN001 - llmlab Tokenizer
    """Token ids for the prompt; an empty prompt starts from EOS, else BOS, else a newline.

    EOS first: `llmlab data prepare` separates documents with EOS, so "after EOS" is where a model has
    learned to start a new document (GPT-2 samples unconditionally from <|endoftext|> the same way).
    """
    if prompt:
        return list(tokenizer.encode(prompt))
    for special in (getattr(tokenizer, "eos_id", None), getattr(tokenizer, "bos_id", None)):
        if special is not None:
            return [int(special)]
    newline = list(tokenizer.encode("\n"))
    if newline:
        return newline[-1:]
    raise ValueError("empty prompt and the tokenizer has no BOS/EOS or newline token; pass --prompt")


def register(app: typer.Typer) -> None:
    """Attach `llmlab generate` to the root app."""

    @app.command("generate")
    def generate_cmd(
        checkpoint: Annotated[
            Path | None,
            typer.Option(
                "--checkpoint",
                "-c",
                help="A .gguf file, checkpoint/run folder or Hugging Face folder (default: SmolLM2-135M-Instruct).",
            ),
        ] = None,
        prompt: Annotated[
            str, typer.Option("--prompt", "-p", help="Text to continue ('' starts from EOS/BOS/newline).")
        ] = "",
        max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=0, help="Tokens to generate.")] = 200,
        temperature: Annotated[float, typer.Option("--temperature", "-t", min=0.0, help="0 = greedy decoding.")] = 0.8,
        top_k: Annotated[
            int | None, typer.Option("--top-k", min=0, help="Keep the k most likely tokens (0 = all).")
        ] = 200,
        top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass.")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Random seed for reproducible samples.")] = None,
        num_samples: Annotated[int, typer.Option("--num-samples", min=1, help="Independent samples to draw.")] = 1,
        stream: Annotated[
            bool, typer.Option("--stream/--no-stream", help="Print tokens as they are generated.")
        ] = True,
        stop_at_eos: Annotated[
            bool, typer.Option("--stop-at-eos/--no-stop-at-eos", help="Stop at the EOS token.")
        ] = True,
        use_cache: Annotated[
            bool, typer.Option("--cache/--no-cache", help="Use the KV cache (same output, faster).")
        ] = True,
        chat: Annotated[
            bool, typer.Option("--chat", help="Treat the prompt as a user message and answer it (chat template).")
        ] = False,
        system: Annotated[str | None, typer.Option("--system", help="System prompt (with --chat).")] = None,
        template: Annotated[
            str, typer.Option("--template", help="Chat template with --chat: auto, chatml, llama3, llama2, zh.")
        ] = "auto",
        device: Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda.")] = "cpu",
    ) -> None:
        """Generate text from a trained model.

        Without --checkpoint the packaged SmolLM2-135M-Instruct is used. A prompt longer than the model's
        context is cropped to its last block_size tokens (with a warning on stderr); the full prompt is still
        printed. With --chat the prompt is sent as one user message through the chat template, only the
        answer is printed, and generation stops at the template's end-of-turn token.
        """
        import torch

        from llmlab.generate import TextStreamer, make_generator, stream_generate
        from llmlab.generate.checkpoint import load_for_inference
        from llmlab.generate.stopping import StopStringHoldback

        loaded = load_for_inference(checkpoint, device=device)
        model, tokenizer = loaded.model, loaded.tokenizer
        stop_ids: list[int] = []
        stop_strings: list[str] = []
        if chat:
            from llmlab.recipes.chat import resolve_template, turn_stops
            from llmlab.tokenizers.chat import apply_chat_template

            source, _ = resolve_template(template, loaded.chat_template)
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            ids = list(tokenizer.encode(apply_chat_template(messages, source, add_generation_prompt=True)))
            stop_ids, stop_strings = turn_stops(source, tokenizer)
            shown_prompt = ""  # print only the answer
        else:
            ids = _start_ids(tokenizer, prompt)
            shown_prompt = prompt
        block_size = model.config.block_size
        if len(ids) > block_size:
            print(
                f"llmlab: warning: the prompt has {len(ids)} tokens, more than the model's context of {block_size}; "
                f"only the last {block_size} are used",
                file=sys.stderr,
            )
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        generator = make_generator(seed, device) if seed is not None else None
        eos_id = getattr(tokenizer, "eos_id", None)
        stops = [*stop_ids, *([eos_id] if eos_id is not None else [])] if stop_at_eos else []
        eos = stops or None
        out = sys.stdout
        for sample in range(num_samples):
            if sample > 0:
                out.write("\n---------------\n")
            out.write(shown_prompt)
            out.flush()
            streamer = TextStreamer(tokenizer, prompt_ids=ids)
            holdback = StopStringHoldback(stop_strings)  # never prints (part of) a stop string
            pieces: list[str] = []  # text not printed yet (everything with --no-stream)
            for token in stream_generate(
                model,
                input_ids,
                max_new_tokens,
                temperature=temperature,
                top_k=top_k or None,
                top_p=top_p,
                eos_token_id=eos,
                generator=generator,
                use_cache=use_cache,
            ):
                token_id = int(token[0])
                if token_id in stops:
                    break
                pieces.append(holdback.put(streamer.put(token_id)))
                if holdback.stopped:
                    break
                if stream:
                    out.write("".join(pieces))
                    out.flush()
                    pieces.clear()
            pieces += [holdback.put(streamer.end()), holdback.end()]
            out.write("".join(pieces))
            out.flush()
        out.write("\n")
        out.flush()
