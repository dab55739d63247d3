"""`llmlab generate`: sample text from a checkpoint (default: SmolLM2-135M-Instruct), streaming it to stdout.

Three decoders, chosen by the options (the functions are in `llmlab.generate`):
    - sampling / greedy (`stream_generate`): temperature, top-k, top-p, min-p, penalties, stop strings, seed;
    - beam search (`beam_search`): `--num-beams N` (+ `--length-penalty`, `--early-stopping`, penalties);
    - speculative decoding (`speculative_generate`): `--draft MODEL` or `--prompt-lookup N`; greedy output.
Beam search and speculative decoding are deterministic and return the whole completion at once, so they do
not combine with sampling options or `--stream`; `choose_decoder` rejects such combinations with one line.
Every option is checked (`SamplingConfig.validate`, the device, the template name) before the model loads.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from llmlab.config.sampling import DEFAULT_DRAFT_TOKENS, GENERATE_SAMPLING, SamplingConfig, parse_early_stopping
from llmlab.generate import beam_search, make_generator, speculative_generate, stream_generate
from llmlab.generate.text import text_deltas, vanished_characters
from llmlab.nn.device import resolve_device
from llmlab.nn.virtual import context_length
from llmlab.tokenizers.chat import TEMPLATES, apply_chat_template, resolve_template, turn_stops


@dataclass
class GenerateRequest:
    """What `llmlab generate` was asked besides the sampling options (see the CLI's help for each)."""

    checkpoint: Path | None = None
    prompt: str = ""
    num_samples: int = 1
    draft: Path | None = None
    draft_tokens: int | None = None
    prompt_lookup: int | None = None
    stream: bool | None = None
    stop_at_eos: bool = True
    chat: bool = False
    system: str | None = None
    template: str = "auto"
    device: str = "cpu"
    compile: bool = False
    keep_quantized: bool = False


def warn(message: str, err: TextIO | None = None) -> None:
    """One line `llmlab: warning: ...` on stderr."""
    print(f"llmlab: warning: {message}", file=err or sys.stderr, flush=True)


def warn_vanished(
    tokenizer: Any, text: str, what: str, err: TextIO | None = None, warned: set[str] | None = None
) -> None:
    """Warn (one line) when characters of `text` are outside the tokenizer's vocabulary and vanish from it.

    Characters in `warned` are not reported again; the reported ones are added to it.
    """
    warned = set() if warned is None else warned
    missing = [c for c in vanished_characters(tokenizer, text) if c not in warned]
    if missing:
        warned.update(missing)
        shown = " ".join(repr(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
        warn(f"{len(missing)} character(s) of the {what} are not in the tokenizer's vocabulary; dropped: {shown}", err)


def start_ids(tokenizer: Any, prompt: str) -> list[int]:
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


def _flags(names: Iterable[str]) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in names)


def choose_decoder(given: Mapping[str, Any], request: GenerateRequest) -> str:
    """Which decoder the options ask for: 'sample', 'beam' or 'speculative'; ValueError for a bad combination.

    `given` holds the sampling options the user gave (the others are absent).
    """
    beams = given.get("num_beams", 1) > 1
    speculative = request.draft is not None or request.prompt_lookup is not None
    if request.draft is not None and request.prompt_lookup is not None:
        raise ValueError("--draft and --prompt-lookup are two ways to guess tokens for speculative decoding; pick one")
    if beams and speculative:
        raise ValueError("--num-beams cannot be combined with --draft/--prompt-lookup; pick one decoder")
    if not beams and ("length_penalty" in given or "early_stopping" in given):
        raise ValueError("--length-penalty and --early-stopping are beam-search options; add --num-beams N (N > 1)")
    if request.draft_tokens is not None and request.draft is None:
        raise ValueError("--draft-tokens sets how many tokens --draft guesses per step; add --draft MODEL")
    if request.compile and (beams or speculative):
        raise ValueError(
            "--compile speeds up sampling/greedy decoding only; drop it with --num-beams/--draft/--prompt-lookup"
        )
    if not (beams or speculative):
        return "sample"
    flag = "--num-beams" if beams else ("--draft" if request.draft is not None else "--prompt-lookup")
    if given.get("temperature") not in (None, 0.0):
        raise ValueError(
            f"{flag} decodes deterministically but --temperature {given['temperature']} asks for sampling; "
            "drop --temperature or pass --temperature 0"
        )
    sampling = [name for name in ("top_k", "top_p", "min_p") if name in given]
    if sampling:
        raise ValueError(f"{_flags(sampling)} only apply when sampling; drop them with {flag}")
    if request.stream:
        raise ValueError(f"--stream is not available with {flag}: the text is known only at the end; drop --stream")
    if beams:
        if given.get("stop"):
            raise ValueError("--stop is not supported with --num-beams (beams are ranked on whole sequences); drop it")
        if request.num_samples > given["num_beams"]:
            raise ValueError(
                f"--num-samples {request.num_samples} returns that many best beams; use at most --num-beams "
                f"{given['num_beams']}"
            )
        return "beam"
    offs = (("repetition_penalty", None), ("frequency_penalty", 0.0), ("presence_penalty", 0.0))
    penalties = [name for name, off in offs if given.get(name, off) != off]
    if penalties:
        raise ValueError(
            f"{_flags(penalties)} not supported with {flag}: speculative decoding reproduces plain greedy output"
        )
    if not given.get("use_cache", True):
        raise ValueError(f"--no-cache is not possible with {flag}: speculative decoding rolls back a KV cache")
    return "speculative"


def check_template_name(template: str) -> None:
    """A template that is neither 'auto', a built-in name nor a file: ValueError before anything loads."""
    if template != "auto" and template not in TEMPLATES:
        resolve_template(template, None)  # raises for an unknown name


def write_completion(
    out: TextIO,
    tokens: Iterable[int],
    tokenizer: Any,
    prompt_ids: list[int],
    stops: tuple[list[int], list[str]],
    stream: bool,
) -> None:
    """Decode `tokens` to `out` until a stop id or stop string (cut before it); stream as they come if asked."""
    pieces: list[str] = []  # text not printed yet (everything without streaming)
    for delta in text_deltas(tokens, tokenizer, prompt_ids, stops[1], stops[0]):
        pieces.append(delta)
        if stream:
            out.write("".join(pieces))
            out.flush()
            pieces.clear()
    out.write("".join(pieces))
    out.flush()


def run_generate(request: GenerateRequest, given: Mapping[str, Any], out: TextIO | None = None) -> None:
    """`llmlab generate`: validate everything, load the model, decode `num_samples` completions to `out`."""
    out = out or sys.stdout
    given = dict(given)
    if "early_stopping" in given:
        given["early_stopping"] = parse_early_stopping(given["early_stopping"])
    mode = choose_decoder(given, request)
    sampling = GENERATE_SAMPLING.replace(**given).validate()
    device = resolve_device(request.device)
    if request.chat:
        check_template_name(request.template)
    from llmlab.hub import load_for_inference  # looked up per call (tests patch it)

    loaded = load_for_inference(request.checkpoint, device=device, quantized=request.keep_quantized)
    model, tokenizer = loaded.model, loaded.tokenizer
    if getattr(model, "is_encoder_decoder", False):
        run_seq2seq(request, loaded, sampling, mode, out)
        return
    if request.compile:
        from llmlab.generate.fast_weights import check_supported

        check_supported(model)
    ids, shown_prompt, stops = _prompt(request, loaded, sampling)
    context = context_length(model)  # prompt/prefix tuning take P positions
    if len(ids) > context and mode == "sample":
        used = f"only the last {context} are used"
        warn(f"the prompt has {len(ids)} tokens, more than the model's context of {context}; {used}")
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    eos_id = getattr(tokenizer, "eos_id", None)
    eos = [*stops[0], *([eos_id] if eos_id is not None else [])] if request.stop_at_eos else []
    stops = (eos, stops[1])
    rows, report = _decode_at_once(mode, model, input_ids, sampling, request, eos or None)
    generator = make_generator(sampling.seed, device) if sampling.seed is not None else None
    for sample in range(request.num_samples):
        if sample > 0:
            out.write("\n---------------\n")
        out.write(shown_prompt)
        out.flush()
        if mode == "sample":
            steps = stream_generate(
                model,
                input_ids,
                sampling=sampling.replace(stop=()),
                eos_token_id=eos or None,
                generator=generator,
                compile=request.compile,
            )
            tokens: Iterable[int] = (int(step[0]) for step in steps)
        else:
            tokens = rows[sample]
        write_completion(out, tokens, tokenizer, ids, stops, request.stream is not False)
    out.write("\n")
    out.flush()
    if report:
        print(report, file=sys.stderr)


def _prompt(
    request: GenerateRequest, loaded: Any, sampling: SamplingConfig
) -> tuple[list[int], str, tuple[list[int], list[str]]]:
    """(prompt ids, the text printed before the completion, (stop ids, stop strings)) for the request."""
    tokenizer = loaded.tokenizer
    stop_strings = list(sampling.stop)
    if not request.chat:
        warn_vanished(tokenizer, request.prompt, "prompt")
        return start_ids(tokenizer, request.prompt), request.prompt, ([], stop_strings)
    source, _ = resolve_template(request.template, loaded.chat_template)
    messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
        {"role": "user", "content": request.prompt}
    ]
    text = apply_chat_template(messages, source, add_generation_prompt=True)
    warn_vanished(tokenizer, "".join(m["content"] for m in messages), "prompt")
    turn_ids, turn_strings = turn_stops(source, tokenizer)
    return list(tokenizer.encode(text)), "", (turn_ids, turn_strings + stop_strings)  # print only the answer


def _decode_at_once(
    mode: str,
    model: Any,
    input_ids: torch.Tensor,
    sampling: SamplingConfig,
    request: GenerateRequest,
    eos: list[int] | None,
) -> tuple[list[list[int]], str]:
    """Beam search or speculative decoding: (the completions, a report line for stderr); ([], '') for sampling."""
    prompt_len = input_ids.size(1)
    if mode == "beam":
        result = beam_search(
            model, input_ids, sampling=sampling, num_return_sequences=request.num_samples, eos_token_id=eos
        )
        return [row[prompt_len:].tolist() for row in result.sequences], ""
    if mode != "speculative":
        return [], ""
    from llmlab.hub import load_for_inference

    draft_model = None if request.draft is None else load_for_inference(request.draft, device=input_ids.device).model
    k = request.prompt_lookup if request.draft is None else (request.draft_tokens or DEFAULT_DRAFT_TOKENS)
    tokens, stats = speculative_generate(
        model, input_ids, sampling=sampling, draft_model=draft_model, num_draft_tokens=k, eos_token_id=eos
    )
    report = (
        f"llmlab: speculative decoding: {stats.accepted}/{stats.proposed} guessed tokens accepted "
        f"({stats.acceptance_rate:.0%}), {stats.tokens_per_forward:.2f} tokens per forward of the model"
    )
    return [tokens[0, prompt_len:].tolist()] * request.num_samples, report  # greedy: every sample is the same


def run_seq2seq(request: GenerateRequest, loaded: Any, sampling: SamplingConfig, mode: str, out: TextIO) -> None:
    """An encoder-decoder (T5/BART): the prompt is the source text; each sample is one generated target.

    The encoder runs once per sample and the decoder reuses cached self- and cross-attention keys/values
    (`llmlab.generate.seq2seq_generate`); `--num-beams` runs beam search, `--temperature` etc. sampling.
    """
    if request.chat or request.compile or mode == "speculative":
        raise ValueError(
            "--chat, --compile, --draft and --prompt-lookup are for decoder-only models; a T5/BART model takes "
            "the prompt as its source text: drop them"
        )
    if mode == "beam" and request.num_samples > 1:
        raise ValueError("--num-samples > 1 with --num-beams is not supported for T5/BART; drop one of them")
    from llmlab.generate import seq2seq_generate

    model, tokenizer = loaded.model, loaded.tokenizer
    limit = model.config.block_size - 1  # the decoder's positions, its start token included
    if sampling.max_new_tokens > limit:
        warn(f"--max-new-tokens {sampling.max_new_tokens} exceeds the {limit} target positions; using {limit}")
    ids = tokenizer.encode(request.prompt)[: model.config.block_size - 1] + [model.config.eos_token_id]
    input_ids = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)  # (1, S)
    for sample in range(request.num_samples):
        seed = None if sampling.seed is None else sampling.seed + sample  # a different draw per sample
        row = seq2seq_generate(
            model, input_ids, sampling=sampling.replace(seed=seed), max_new_tokens=min(sampling.max_new_tokens, limit)
        )[0]
        if sample > 0:
            out.write("\n---------------\n")
        out.write(tokenizer.decode(row, skip_special_tokens=True).strip())
    out.write("\n")
    out.flush()
