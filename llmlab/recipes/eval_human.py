"""`llmlab eval human`: create a human A/B study, serve the rating page, or report the results.

    llmlab eval human --study s.sqlite --outputs A=a.jsonl --outputs B=b.jsonl     # create from outputs
    llmlab eval human --study s.sqlite --model A=ckpt_a --model B=ckpt_b --prompts prompts.txt [--chat]
    llmlab eval human --study s.sqlite [--host 127.0.0.1 --port 8000]              # serve the page
    llmlab eval human --study s.sqlite --report [--json]                            # leaderboard + agreement

The study itself lives in `llmlab.eval.human` (store, app, ranking, report); this module only wires options
to it and, for `--model`, generates the outputs through `llmlab.hub.load_for_inference` + `llmlab.generate`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmlab.config.sampling import SamplingConfig

HUMAN_SAMPLING = SamplingConfig(max_new_tokens=128, temperature=0.0)  # greedy unless sampling options are given


def _named(values: Sequence[str], flag: str) -> dict[str, str]:
    """{name: path} from NAME=PATH values (a bare PATH is named by itself); ValueError on a repeated name."""
    named: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        name, path = (name, path) if sep else (value, value)
        if not name or not path:
            raise ValueError(f"{flag} {value!r}: write {flag} NAME=PATH")
        if name in named:
            raise ValueError(f"{flag}: the name {name!r} is given twice; name each model once ({flag} NAME=PATH)")
        named[name] = path
    return named


def create_from_outputs(study: Path, outputs: Sequence[str], *, seed: int = 0, overwrite: bool = False) -> None:
    """Create `study` from NAME=FILE.jsonl outputs ({"prompt", "output"} per line, same prompts in each)."""
    from llmlab.eval.human.store import check_study_path, create_study, read_outputs_jsonl

    files = _named(outputs, "--outputs")
    check_study_path(study, overwrite=overwrite, sources=files.values())
    rows = {name: read_outputs_jsonl(path) for name, path in files.items()}
    _created(create_study(study, rows, seed=seed, overwrite=overwrite), rows)


def read_prompts(path: Path) -> list[str]:
    """One prompt per non-empty line of a UTF-8 text file (`\\n` inside a line stands for a newline)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompts file; pass --prompts FILE (one prompt a line)")
    prompts = [line.replace("\\n", "\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{path} holds no prompts; write one prompt a line")
    repeated = next((p for i, p in enumerate(prompts) if p in prompts[:i]), None)
    if repeated is not None:
        raise ValueError(f"{path}: the prompt {repeated[:60]!r} is given twice; write each prompt once")
    return prompts


def create_from_models(
    study: Path,
    models: Sequence[str],
    prompts_file: Path,
    given: dict[str, Any],
    *,
    chat: bool = False,
    template: str = "auto",
    device: str = "cpu",
    seed: int = 0,
    overwrite: bool = False,
) -> None:
    """Generate every model's answer to every prompt (greedy by default) and create `study` from them; with
    `chat` the prompt is one user message through `template` ('auto': the model's own)."""
    from llmlab.eval.human.store import check_study_path, create_study
    from llmlab.hub import resolve_source
    from llmlab.nn.device import resolve_device
    from llmlab.recipes.generate import check_template_name

    named = _named(models, "--model")
    if len(named) < 2:
        raise ValueError(f"a study compares two or more models, got {len(named)}; pass --model twice")
    sampling = HUMAN_SAMPLING.replace(**given).validate()
    check_study_path(study, overwrite=overwrite, sources=[prompts_file, *named.values()])
    prompts = read_prompts(prompts_file)
    torch_device = resolve_device(device)
    check_template_name(template)
    for path in named.values():  # every model path resolves (paths only) before the first model loads
        resolve_source(path)
    rows = {}
    for name, path in named.items():
        print(f"llmlab: generating {len(prompts)} answers with {name}", file=sys.stderr, flush=True)
        loaded = _load(path, torch_device)
        rows[name] = [
            (prompt, generate_answer(loaded, prompt, sampling, template if chat else None)) for prompt in prompts
        ]
        del loaded  # one model in memory at a time
    _created(create_study(study, rows, seed=seed, overwrite=overwrite), rows)


def _load(path: str, device: Any) -> Any:
    from llmlab.hub import load_for_inference

    return load_for_inference(Path(path), device=device)


def generate_answer(loaded: Any, prompt: str, sampling: SamplingConfig, template: str | None = None) -> str:
    """One model's completion of `prompt` (a user message through the chat `template` unless None: 'auto' is the
    model's own), cut before EOS, the end of turn or a stop string."""
    import torch

    from llmlab.generate import stream_generate
    from llmlab.generate.text import text_deltas
    from llmlab.tokenizers.chat import apply_chat_template, resolve_template, turn_stops

    tokenizer = loaded.tokenizer
    stop_ids = [tokenizer.eos_id] if getattr(tokenizer, "eos_id", None) is not None else []
    stop_strings: list[str] = list(sampling.stop)
    ids = list(tokenizer.encode(prompt))
    if template is not None:
        source, _ = resolve_template(template, loaded.chat_template)
        ids = list(tokenizer.encode(apply_chat_template([{"role": "user", "content": prompt}], source)))
        turn_ids, turn_strings = turn_stops(source, tokenizer)
        stop_ids, stop_strings = [*turn_ids, *stop_ids], [*turn_strings, *stop_strings]
    device = next(loaded.model.parameters()).device
    steps = stream_generate(
        loaded.model,
        torch.tensor([ids], device=device),  # (1, T)
        sampling=sampling.replace(stop=tuple(stop_strings)),
        eos_token_id=stop_ids or None,
        tokenizer=tokenizer,
    )
    tokens = (int(step[0]) for step in steps)
    return "".join(text_deltas(tokens, tokenizer, ids, stop_strings, stop_ids)).strip()


def _created(path: Path, rows: dict[str, list]) -> None:
    n_prompts, n_models = len(next(iter(rows.values()))), len(rows)
    pairs = n_prompts * n_models * (n_models - 1) // 2
    print(
        f"created study {path}: {n_models} models ({', '.join(rows)}), {n_prompts} prompts, {pairs} pairs "
        f"per rater; serve it with: llmlab eval human --study {path}"
    )


def serve_study(study: Path, *, host: str = "127.0.0.1", port: int = 8000, seed: int | None = None) -> None:
    """Serve the rating page for `study` until interrupted."""
    from llmlab.eval.human.app import listen, serve
    from llmlab.eval.human.store import Study

    with Study(study, seed=seed) as opened, listen(host, port) as sock:
        shown = f"[{host}]" if ":" in host else host
        print(
            f"llmlab: rating page for {study} at http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        if host not in ("127.0.0.1", "::1", "localhost"):
            print(f"llmlab: warning: serving on {host}: anyone who can reach it can vote", file=sys.stderr, flush=True)
        serve(opened, sock)


def report_study(study: Path, *, as_json: bool = False, seed: int = 0, iters: int = 1000) -> None:
    """Print the study's leaderboard, mean ratings and agreement (text, or one JSON object)."""
    from llmlab.eval.human.report import format_report, study_report
    from llmlab.eval.human.store import Study

    with Study(study) as opened:
        report = study_report(opened, seed=seed, iters=iters)
    print(json.dumps(report, ensure_ascii=False, indent=2) if as_json else format_report(report))
