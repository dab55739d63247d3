"""`llmlab generate`: sample text from a checkpoint, streaming it to stdout as it is produced."""

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
            Path, typer.Option("--checkpoint", "-c", help="Checkpoint folder or `llmlab pretrain` run.")
        ],
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
        device: Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda.")] = "cpu",
    ) -> None:
        """Generate text from a trained model.

        A prompt longer than the model's context is cropped to its last block_size tokens (with a warning on
        stderr); the full prompt is still printed.
        """
        import torch

        from llmlab.generate import TextStreamer, load_model_and_tokenizer, make_generator, stream_generate

        model, tokenizer = load_model_and_tokenizer(checkpoint, device=device)
        ids = _start_ids(tokenizer, prompt)
        block_size = model.config.block_size
        if len(ids) > block_size:
            print(
                f"llmlab: warning: the prompt has {len(ids)} tokens, more than the model's context of {block_size}; "
                f"only the last {block_size} are used",
                file=sys.stderr,
            )
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        generator = make_generator(seed, device) if seed is not None else None
        eos = getattr(tokenizer, "eos_id", None) if stop_at_eos else None
        out = sys.stdout
        for sample in range(num_samples):
            if sample > 0:
                out.write("\n---------------\n")
            out.write(prompt)
            out.flush()
            streamer = TextStreamer(tokenizer, prompt_ids=ids)
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
                if eos is not None and token_id == eos:
                    break
                pieces.append(streamer.put(token_id))
                if stream:
                    out.write("".join(pieces))
                    out.flush()
                    pieces.clear()
            pieces.append(streamer.end())
            out.write("".join(pieces))
            out.flush()
        out.write("\n")
        out.flush()
