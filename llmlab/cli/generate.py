"""`llmlab generate`: sample text from a checkpoint (default: SmolLM2-135M-Instruct), streaming it to stdout.

Three decoders, chosen by the flags (the functions are in `llmlab.generate`):
    - sampling / greedy (`stream_generate`): temperature, top-k, top-p, min-p, penalties, stop strings, seed;
    - beam search (`beam_search`): `--num-beams N` (+ `--length-penalty`, `--early-stopping`, penalties);
    - speculative decoding (`speculative_generate`): `--draft MODEL` or `--prompt-lookup N`; greedy output.
Beam search and speculative decoding are deterministic and return the whole completion at once, so they do
not combine with sampling options or `--stream`; `_decoder` rejects such combinations with one line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from llmlab.cli.options import (
    FrequencyPenaltyOption,
    MinPOption,
    ModelOption,
    PresencePenaltyOption,
    RepetitionPenaltyOption,
)

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 200
DEFAULT_DRAFT_TOKENS = 5
EARLY_STOPPING = {"true": True, "false": False, "never": "never"}


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


def _decoder(opts: dict[str, Any]) -> str:
    """Which decoder the options ask for: 'sample', 'beam' or 'speculative'; ValueError for a bad combination.

    `opts` holds the CLI values, None for options the user did not give.
    """
    beams = opts["num_beams"] > 1
    speculative = opts["draft"] is not None or opts["prompt_lookup"] is not None
    if opts["draft"] is not None and opts["prompt_lookup"] is not None:
        raise ValueError("--draft and --prompt-lookup are two ways to guess tokens for speculative decoding; pick one")
    if beams and speculative:
        raise ValueError("--num-beams cannot be combined with --draft/--prompt-lookup; pick one decoder")
    if not beams and (opts["length_penalty"] is not None or opts["early_stopping"] is not None):
        raise ValueError("--length-penalty and --early-stopping are beam-search options; add --num-beams N (N > 1)")
    if opts["draft_tokens"] is not None and opts["draft"] is None:
        raise ValueError("--draft-tokens sets how many tokens --draft guesses per step; add --draft MODEL")
    if not (beams or speculative):
        return "sample"
    flag = "--num-beams" if beams else ("--draft" if opts["draft"] is not None else "--prompt-lookup")
    if opts["temperature"] not in (None, 0.0):
        raise ValueError(
            f"{flag} decodes deterministically but --temperature {opts['temperature']} asks for sampling; "
            "drop --temperature or pass --temperature 0"
        )
    sampling = [name for name in ("top_k", "top_p", "min_p") if opts[name] is not None]
    if sampling:
        names = ", ".join("--" + name.replace("_", "-") for name in sampling)
        raise ValueError(f"{names} only apply when sampling; drop them with {flag}")
    if opts["stream"]:
        raise ValueError(f"--stream is not available with {flag}: the text is known only at the end; drop --stream")
    if beams:
        if opts["stop"]:
            raise ValueError("--stop is not supported with --num-beams (beams are ranked on whole sequences); drop it")
        if opts["num_samples"] > opts["num_beams"]:
            raise ValueError(
                f"--num-samples {opts['num_samples']} returns that many best beams; use at most --num-beams "
                f"{opts['num_beams']}"
            )
        return "beam"
    penalties = [
        name
        for name, off in (("repetition_penalty", None), ("frequency_penalty", 0.0), ("presence_penalty", 0.0))
        if opts[name] not in (None, off)
    ]
    if penalties:
        names = ", ".join("--" + name.replace("_", "-") for name in penalties)
        raise ValueError(f"{names} not supported with {flag}: speculative decoding reproduces plain greedy output")
    if not opts["use_cache"]:
        raise ValueError(f"--no-cache is not possible with {flag}: speculative decoding rolls back a KV cache")
    return "speculative"


def _write_completion(
    out: TextIO,
    tokens: Iterable[int],
    tokenizer: Any,
    prompt_ids: list[int],
    stop_ids: list[int],
    stop_strings: list[str],
    stream: bool,
) -> None:
    """Decode `tokens` to `out` until a stop id or stop string (cut before it); stream as they come if asked."""
    from llmlab.generate import TextStreamer
    from llmlab.generate.stopping import StopStringHoldback

    streamer = TextStreamer(tokenizer, prompt_ids=prompt_ids)
    holdback = StopStringHoldback(stop_strings)  # never prints (part of) a stop string
    pieces: list[str] = []  # text not printed yet (everything without streaming)
    for token_id in tokens:
        if token_id in stop_ids:
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


def register(app: typer.Typer) -> None:
    """Attach `llmlab generate` to the root app."""

    @app.command("generate")
    def generate_cmd(
        checkpoint: ModelOption = None,
        prompt: Annotated[
            str, typer.Option("--prompt", "-p", help="Text to continue ('' starts from EOS/BOS/newline).")
        ] = "",
        max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=0, help="Tokens to generate.")] = 200,
        temperature: Annotated[
            float | None,
            typer.Option(
                "--temperature",
                "-t",
                min=0.0,
                help=f"Sampling temperature, 0 = greedy (default {DEFAULT_TEMPERATURE}).",
            ),
        ] = None,
        top_k: Annotated[
            int | None,
            typer.Option("--top-k", min=0, help=f"Keep the k most likely tokens, 0 = all (default {DEFAULT_TOP_K})."),
        ] = None,
        top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass.")] = None,
        min_p: MinPOption = None,
        repetition_penalty: RepetitionPenaltyOption = None,
        frequency_penalty: FrequencyPenaltyOption = 0.0,
        presence_penalty: PresencePenaltyOption = 0.0,
        stop: Annotated[
            list[str] | None,
            typer.Option("--stop", help="Stop before this text (repeat the option for several stop strings)."),
        ] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Random seed for reproducible samples.")] = None,
        num_samples: Annotated[
            int, typer.Option("--num-samples", min=1, help="Independent samples to draw (the best beams with beams).")
        ] = 1,
        num_beams: Annotated[
            int, typer.Option("--num-beams", min=1, help="Beam search with this many beams (1 = off).")
        ] = 1,
        length_penalty: Annotated[
            float | None,
            typer.Option(
                "--length-penalty", help="Beam score = log-prob / length^this (>0 favours longer; default 1.0)"
            ),
        ] = None,
        early_stopping: Annotated[
            str | None,
            typer.Option("--early-stopping", help="Beam search stops: true, false or never (default false)"),
        ] = None,
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
        answer is printed, and generation stops at the template's end-of-turn token. --num-beams, --draft
        and --prompt-lookup decode deterministically (no sampling options) and print the text at the end.
        """
        import torch

        from llmlab.generate import beam_search, build_penalties, make_generator, speculative_generate, stream_generate
        from llmlab.generate.checkpoint import load_for_inference
        from llmlab.nn.virtual import reserved_positions

        opts = dict(locals())
        mode = _decoder(opts)
        if early_stopping is not None and early_stopping.lower() not in EARLY_STOPPING:
            raise ValueError(f"--early-stopping must be true, false or never (got {early_stopping!r})")
        loaded = load_for_inference(checkpoint, device=device)
        model, tokenizer = loaded.model, loaded.tokenizer
        stop_ids: list[int] = []
        stop_strings: list[str] = list(stop or [])
        if chat:
            from llmlab.recipes.chat import resolve_template, turn_stops
            from llmlab.tokenizers.chat import apply_chat_template

            source, _ = resolve_template(template, loaded.chat_template)
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            ids = list(tokenizer.encode(apply_chat_template(messages, source, add_generation_prompt=True)))
            turn_ids, turn_strings = turn_stops(source, tokenizer)
            stop_ids, stop_strings = turn_ids, turn_strings + stop_strings
            shown_prompt = ""  # print only the answer
        else:
            ids = _start_ids(tokenizer, prompt)
            shown_prompt = prompt
        block_size = model.config.block_size - reserved_positions(model)[0]  # prompt/prefix tuning take P positions
        if len(ids) > block_size and mode == "sample":
            print(
                f"llmlab: warning: the prompt has {len(ids)} tokens, more than the model's context of {block_size}; "
                f"only the last {block_size} are used",
                file=sys.stderr,
            )
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
        eos_id = getattr(tokenizer, "eos_id", None)
        stops = [*stop_ids, *([eos_id] if eos_id is not None else [])] if stop_at_eos else []
        eos = stops or None

        report = ""  # printed on stderr after the text
        rows: list[list[int]] = []  # beam search and speculative decoding: the completions, known in advance
        if mode == "beam":
            penalties = build_penalties(repetition_penalty, frequency_penalty, presence_penalty, len(ids))
            result = beam_search(
                model,
                input_ids,
                max_new_tokens,
                num_beams=num_beams,
                length_penalty=1.0 if length_penalty is None else length_penalty,
                early_stopping=EARLY_STOPPING[(early_stopping or "false").lower()],
                num_return_sequences=num_samples,
                eos_token_id=eos,
                logits_processors=penalties,
                use_cache=use_cache,
            )
            rows = [row[len(ids) :].tolist() for row in result.sequences]
        elif mode == "speculative":
            draft_model = load_for_inference(draft, device=device).model if draft is not None else None
            k = prompt_lookup if draft is None else (draft_tokens or DEFAULT_DRAFT_TOKENS)
            tokens, stats = speculative_generate(
                model, input_ids, max_new_tokens, draft_model=draft_model, num_draft_tokens=k, eos_token_id=eos
            )
            rows = [tokens[0, len(ids) :].tolist()] * num_samples  # greedy: every sample is the same
            report = (
                f"llmlab: speculative decoding: {stats.accepted}/{stats.proposed} guessed tokens accepted "
                f"({stats.acceptance_rate:.0%}), {stats.tokens_per_forward:.2f} tokens per forward of the model"
            )
        generator = make_generator(seed, device) if seed is not None else None
        temperature = DEFAULT_TEMPERATURE if temperature is None else temperature
        top_k = DEFAULT_TOP_K if top_k is None else top_k
        out = sys.stdout
        for sample in range(num_samples):
            if sample > 0:
                out.write("\n---------------\n")
            out.write(shown_prompt)
            out.flush()
            if mode == "sample":
                steps = stream_generate(
                    model,
                    input_ids,
                    max_new_tokens,
                    temperature=temperature,
                    top_k=top_k or None,
                    top_p=top_p,
                    min_p=min_p,
                    repetition_penalty=repetition_penalty,
                    frequency_penalty=frequency_penalty,
                    presence_penalty=presence_penalty,
                    eos_token_id=eos,
                    generator=generator,
                    use_cache=use_cache,
                )
                tokens_out: Iterable[int] = (int(step[0]) for step in steps)
            else:
                tokens_out = rows[sample]
            _write_completion(out, tokens_out, tokenizer, ids, stops, stop_strings, stream is not False)
        out.write("\n")
        out.flush()
        if report:
            print(report, file=sys.stderr)
